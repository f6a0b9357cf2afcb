"""The synchronous Bigtable gateway: raw ReadRows, MutateRows and SampleRowKeys, one retry policy.

Contract of :class:`Table`:

- :meth:`read_rows` yields ``(row_key, {family: {qualifier: Cell}})`` in key order,
  keeping the newest cell of each column that the filter lets through (timestamps
  kept). Keys asked for but absent are simply not yielded. A transient failure is
  retried from where the stream stopped (rows already yielded are not repeated).
- :meth:`mutate` applies each entry's mutations atomically per row, in chunks, and
  retries transient failures of the call or of single entries; an entry that still
  fails raises :class:`WriteError`, so no caller can mistake a lost write for done.
  Entries must be idempotent (absolute values), which every streamsim writer's are:
  a retried entry that had in fact been applied changes nothing.
- :meth:`check_and_mutate` is one atomic CheckAndMutateRow: one row's mutations,
  chosen by whether a filter matches the row as it is. Used for the conditional
  generation-pointer flip (``batch.generations``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import quote

import grpc

from schemas.rows import Cell
from streamsim.runtime.bigtable import messages
from streamsim.runtime.bigtable.wire import rows_from_responses

log = logging.getLogger(__name__)

Row = dict[str, dict[bytes, Cell]]

#: Row keys per ReadRows request: well under the request-size limit, and a bounded response.
KEYS_PER_READ = 1000
#: Rows per MutateRows call. Bigtable caps a call at 100k mutations; a row of a busy
#: batch carries a few dozen, and a failed chunk is cheap to retry.
ROWS_PER_WRITE = 1000
#: Attempts of a call (or of the entries of a call) that failed transiently.
ATTEMPTS = 6
#: Deadline of one call: a chunk is at most a few thousand rows.
CALL_TIMEOUT_SECONDS = 120
TRANSIENT = frozenset(
    {
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
    }
)
_TRANSIENT_CODES = frozenset(code.value[0] for code in TRANSIENT)
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


class WriteError(RuntimeError):
    """Rows that could not be written after the retries (or failed for good)."""


class ReadError(RuntimeError):
    """A read that failed for good (or transiently, ATTEMPTS times)."""


def _backoff(attempt: int) -> None:
    time.sleep(min(0.1 * 2**attempt, 5.0))


def retry(call: Callable, what: str, error=ReadError):
    """``call()``, retried on transient gRPC failures with exponential backoff."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() not in TRANSIENT or attempt == ATTEMPTS:
                raise error(f"{what} failed: {exc.code().name} {exc.details()}") from exc
            log.warning("%s failed (%s), retry %d", what, exc.code().name, attempt)
            _backoff(attempt)


class Table:
    """One table over a shared channel (see :func:`streamsim.runtime.bigtable.open_table`)."""

    def __init__(self, channel, name: str, *, app_profile_id: str = ""):
        self.name = name
        self._app_profile_id = app_profile_id
        # Cloud Bigtable routes on this header; the emulator ignores it.
        self._metadata = (("x-goog-request-params", f"table_name={quote(name, safe='')}"),)
        self._read = channel.unary_stream(
            messages.READ_ROWS,
            request_serializer=messages.ReadRowsRequest.SerializeToString,
            response_deserializer=messages.ReadRowsResponse.FromString,
        )
        self._mutate = channel.unary_stream(
            messages.MUTATE_ROWS,
            request_serializer=messages.MutateRowsRequest.SerializeToString,
            response_deserializer=messages.MutateRowsResponse.FromString,
        )
        self._sample = channel.unary_stream(
            messages.SAMPLE_ROW_KEYS,
            request_serializer=messages.SampleRowKeysRequest.SerializeToString,
            response_deserializer=messages.SampleRowKeysResponse.FromString,
        )
        self._channel = channel  # for the stubs made on first use (check_and_mutate)

    # --- reads ---------------------------------------------------------------
    def read_rows(
        self,
        keys: Iterable[bytes] | None = None,
        *,
        start: bytes | None = None,
        end: bytes | None = None,
        row_filter=None,
    ) -> Iterator[tuple[bytes, Row]]:
        """Rows of ``keys`` (any order; read sorted, in batches), or of [start, end) (all if neither)."""
        if keys is None:
            yield from self._read_range(start, end, row_filter)
            return
        ordered = sorted(set(keys))
        for offset in range(0, len(ordered), KEYS_PER_READ):
            yield from self._read_keys(ordered[offset : offset + KEYS_PER_READ], row_filter)

    def read_row(self, key: bytes, row_filter=None) -> Row:
        """One row (``{}`` if it does not exist or nothing passes the filter)."""
        for _, row in self._read_keys([key], row_filter):
            return row
        return {}

    def _read_keys(self, keys: list[bytes], row_filter) -> Iterator[tuple[bytes, Row]]:
        def request(last: bytes | None):
            # Rows come back in key order: a retry asks only for the keys after the last one yielded.
            pending = keys if last is None else [k for k in keys if k > last]
            if not pending:  # an empty key list would read the whole table
                return None
            message = self._request(row_filter)
            message.rows.row_keys.extend(pending)
            return message

        return self._stream(request, "read")

    def _read_range(self, start: bytes | None, end: bytes | None, row_filter) -> Iterator[tuple[bytes, Row]]:
        def request(last: bytes | None):
            message = self._request(row_filter)
            if start is not None or end is not None or last is not None:
                row_range = message.rows.row_ranges.add()
                if last is not None:
                    row_range.start_key_open = last
                elif start is not None:
                    row_range.start_key_closed = start
                if end is not None:
                    row_range.end_key_open = end
            return message

        return self._stream(request, "scan")

    def _request(self, row_filter):
        request = messages.ReadRowsRequest(table_name=self.name, app_profile_id=self._app_profile_id)
        if row_filter is not None:
            request.filter.CopyFrom(row_filter)
        return request

    def _stream(self, request_after, what: str) -> Iterator[tuple[bytes, Row]]:
        """Rows of ``request_after(None)``; after a transient failure, of ``request_after(last key)``."""
        last = None
        for attempt in range(1, ATTEMPTS + 1):
            request = request_after(last)
            if request is None:
                return
            try:
                for key, row in rows_from_responses(
                    self._read(request, timeout=CALL_TIMEOUT_SECONDS, metadata=self._metadata)
                ):
                    last = key
                    yield key, row
                return
            except grpc.RpcError as exc:
                if exc.code() not in TRANSIENT or attempt == ATTEMPTS:
                    raise ReadError(f"{what} {self.name} failed: {exc.code().name} {exc.details()}") from exc
                log.warning("%s %s failed (%s), retry %d", what, self.name, exc.code().name, attempt)
                _backoff(attempt)

    def sample_row_keys(self) -> list[bytes]:
        """Keys that split the table into tablets of about equal size (the last is empty)."""
        request = messages.SampleRowKeysRequest(table_name=self.name, app_profile_id=self._app_profile_id)
        return retry(
            lambda: [r.row_key for r in self._sample(request, timeout=CALL_TIMEOUT_SECONDS, metadata=self._metadata)],
            f"sample {self.name}",
        )

    # --- writes --------------------------------------------------------------
    def mutate(self, entries: Iterable) -> int:
        """Apply ``messages.entry`` rows; returns how many were written."""
        entries = list(entries)
        for offset in range(0, len(entries), ROWS_PER_WRITE):
            self._mutate_chunk(entries[offset : offset + ROWS_PER_WRITE])
        return len(entries)

    def _mutate_chunk(self, pending: list) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            codes = retry(lambda: self._mutate_call(pending), f"write {self.name}", WriteError)
            failed = [(e, c) for e, c in zip(pending, codes) if c != 0]
            if not failed:
                return
            fatal = [c for _, c in failed if c not in _TRANSIENT_CODES]
            if fatal or attempt == ATTEMPTS:
                raise WriteError(f"{len(failed)} rows of {self.name} failed (codes {sorted({c for _, c in failed})})")
            log.warning("%d rows of %s failed transiently, retry %d", len(failed), self.name, attempt)
            pending = [e for e, _ in failed]
            _backoff(attempt)

    def _mutate_call(self, entries: list) -> list[int]:
        request = messages.MutateRowsRequest(table_name=self.name, app_profile_id=self._app_profile_id)
        request.entries.extend(entries)
        codes: list[int | None] = [None] * len(entries)
        for response in self._mutate(request, timeout=CALL_TIMEOUT_SECONDS, metadata=self._metadata):
            for item in response.entries:
                codes[item.index] = item.status.code
        # An entry without a reported status was not applied: retry it.
        return [_UNAVAILABLE if code is None else code for code in codes]

    def check_and_mutate(self, row_key: bytes, predicate, *, true_mutations=(), false_mutations=()) -> bool:
        """Atomically: if ``predicate`` (a ``RowFilter``) lets any cell of the row through,
        apply ``true_mutations``, else ``false_mutations``; returns whether it matched.

        A row that does not exist matches nothing. Transient failures are retried like
        every call here, but unlike :meth:`mutate` an attempt whose answer was lost may
        have been applied, and a retry then sees the row it changed: the returned flag is
        that of the last attempt. Callers make the mutation conditional on what it sets
        (a compare-and-set is then safe to repeat) and read the row back when the flag
        alone cannot tell them what happened.
        """
        request = messages.CheckAndMutateRowRequest(
            table_name=self.name, app_profile_id=self._app_profile_id, row_key=row_key
        )
        request.predicate_filter.CopyFrom(predicate)
        request.true_mutations.extend(true_mutations)
        request.false_mutations.extend(false_mutations)
        response = retry(lambda: self._check_and_mutate_call(request), f"check-and-mutate {self.name}", WriteError)
        return response.predicate_matched

    def _check_and_mutate_call(self, request):
        stub = self.__dict__.get("_check_and_mutate")
        if stub is None:
            stub = self._check_and_mutate = self._channel.unary_unary(
                messages.CHECK_AND_MUTATE_ROW,
                request_serializer=messages.CheckAndMutateRowRequest.SerializeToString,
                response_deserializer=messages.CheckAndMutateRowResponse.FromString,
            )
        return stub(request, timeout=CALL_TIMEOUT_SECONDS, metadata=self._metadata)
