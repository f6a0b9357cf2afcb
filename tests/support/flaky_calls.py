"""Stand-ins for a started gRPC call, to inject failures at the gateway's call seam
(``Table._start_check_and_mutate``) without mocking Bigtable itself."""

from __future__ import annotations


class Failed:
    """A call that failed before reaching the server: nothing was applied."""

    def __init__(self, error: Exception):
        self._error = error

    def result(self, timeout=None):
        raise self._error


class AnswerLost:
    """A call the server applied, whose answer never came back."""

    def __init__(self, call, error: Exception):
        self._call, self._error = call, error

    def result(self, timeout=None):
        self._call.result(timeout)
        raise self._error
