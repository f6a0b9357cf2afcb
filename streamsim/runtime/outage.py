"""Loops that outlive a backend outage: one retry schedule, and what retrying cannot fix.

``refresh --continuous`` and the ``stream`` supervisor run for as long as the shop does. A
backend that goes away (an emulator restarted, a zone failing over, a network cut) must cost
them a pause, never their life: whatever fails while the backend is away is retried after
:func:`retry_delay` (2, 4, 8, 16, 32, then every 60 s), however long the outage lasts, and
the loop carries on by itself once the backend answers again. That includes the backend
answering that a table or subscription does not exist: an emulator restarts empty, and
``streamsim up`` provisions it again a moment later.

Only what retrying cannot fix ends a loop, with one error line that names it
(:func:`unfixable`): no credentials, credentials the backend refuses (UNAUTHENTICATED,
PERMISSION_DENIED), or a request it calls invalid (INVALID_ARGUMENT), which no wait changes.

:class:`Outage` keeps the count and the length of the failures in a row for the logs (a
WARNING per failure, with the outage's length so far, and one when it ends, so both show at
the commands' default log level), for the loop's statistics, and for Prometheus
(:func:`serve_metrics`, the commands' ``--metrics-port``): ``streamsim_loop_failures_in_a_row``,
``streamsim_loop_outage_seconds`` (0 while all is well), ``streamsim_loop_failures_total`` and
``streamsim_loop_outages_recovered_total``, each labelled ``loop``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

from streamsim.runtime.cli import describe_error

log = logging.getLogger(__name__)

#: Longest pause between two attempts during an outage: the most a recovery waits to be noticed.
MAX_RETRY_SECONDS = 60
#: gRPC status codes no retry changes: the loop's configuration is wrong.
_UNFIXABLE_CODES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT"})


def retry_delay(failures: int) -> float:
    """Seconds before attempt number ``failures`` + 1: 2, 4, 8, 16, 32, then 60."""
    return float(min(2 ** max(failures, 1), MAX_RETRY_SECONDS))


def _status_code(exc: BaseException) -> str | None:
    grpc = sys.modules.get("grpc")
    if grpc is not None and isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return exc.code().name
    code = getattr(exc, "grpc_status_code", None)  # google.api_core's exceptions
    return getattr(code, "name", None)


def unfixable(exc: BaseException) -> str | None:
    """A sentence naming ``exc`` if retrying cannot fix it (a configuration error), else None."""
    auth = sys.modules.get("google.auth.exceptions")
    if auth is not None and isinstance(exc, auth.GoogleAuthError):
        return describe_error(exc)
    if _status_code(exc) in _UNFIXABLE_CODES:
        return describe_error(exc)
    return None


@dataclasses.dataclass
class Outage:
    """The failures in a row of one loop (``what``: "refresh pass", "pipeline")."""

    what: str
    #: Failures since the last success.
    failures: int = 0
    #: When the first of them happened (monotonic), None while all is well.
    since: float | None = None
    #: Outages this loop has ridden out.
    recovered_total: int = 0
    failures_total: int = 0

    @property
    def seconds(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def failed(self, problem: str) -> float:
        """Count a failure (logged with ``problem``); the seconds to wait before the next attempt."""
        if self.since is None:
            self.since = time.monotonic()
        self.failures += 1
        self.failures_total += 1
        delay = retry_delay(self.failures)
        log.warning(
            "%s failed (%d in a row, backend trouble for %.0f s): %s; retrying in %.0f s",
            self.what,
            self.failures,
            self.seconds,
            problem,
            delay,
        )
        return delay

    def recovered(self) -> dict | None:
        """The outage that just ended (``{"failed_attempts", "seconds"}``), logged; None if there was none."""
        if not self.failures:
            return None
        ended = {"failed_attempts": self.failures, "seconds": round(self.seconds, 1)}
        log.warning("%s succeeded again after %d failures over %.0f s", self.what, self.failures, ended["seconds"])
        self.failures, self.since = 0, None
        self.recovered_total += 1
        return ended


class _OutageCollector:
    def __init__(self, outages: dict[str, Outage]):
        self._outages = outages

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families = (
            (GaugeMetricFamily, "failures_in_a_row", "Failures since the last success", lambda o: o.failures),
            (GaugeMetricFamily, "outage_seconds", "Seconds since the first of those failures", lambda o: o.seconds),
            (CounterMetricFamily, "failures", "Failures, all told", lambda o: o.failures_total),
            (CounterMetricFamily, "outages_recovered", "Outages the loop waited out", lambda o: o.recovered_total),
        )
        for kind, name, doc, value in families:
            family = kind(f"streamsim_loop_{name}", doc, labels=["loop"])
            for loop, outage in self._outages.items():
                family.add_metric([loop], value(outage))
            yield family


def serve_metrics(port: int, outages: dict[str, Outage], host: str = "127.0.0.1") -> None:
    """Serve ``outages`` (loop name -> its :class:`Outage`) as Prometheus metrics on host:port, in a thread."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=True)
    registry.register(_OutageCollector(outages))
    start_http_server(port, addr=host, registry=registry)
