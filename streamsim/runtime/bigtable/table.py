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

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import quote

import grpc

from schemas.rows import Cell
from streamsim.runtime.bigtable import messages
from streamsim.runtime.bigtable.wire import merge_chunks, rows_from_responses

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


#: CheckAndMutateRow calls in flight at once (each is a single-row RPC).
MAX_CONCURRENT_CONDITIONALS = 256


@dataclasses.dataclass(frozen=True)
class Conditional:
    """One CheckAndMutateRow: ``if_matched`` applies if ``predicate`` yields a cell, else ``otherwise``."""

    row_key: bytes
    predicate: object
    if_matched: list = dataclasses.field(default_factory=list)
    otherwise: list = dataclasses.field(default_factory=list)


class WriteError(RuntimeError):
    """Rows that could not be written after the retries (or failed for good)."""


class ReadError(RuntimeError):
    """A read that failed for good (or transiently, ATTEMPTS times)."""


def prefix_end(prefix: bytes) -> bytes | None:
    """The first key after every key that starts with ``prefix`` (None: no end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


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


def _cells(responses) -> Iterator[tuple[bytes, list[Cell]]]:
    """``(key, cells)`` of a ``ReadRowsResponse`` stream, every version kept (:meth:`Table.read_cells`)."""
    return merge_chunks(chunk for response in responses for chunk in response.chunks)


class Table:
    """One table over a shared channel (see :func:`streamsim.runtime.bigtable.open_table`)."""

    def __init__(self, channel, name: str, *, app_profile_id: str = ""):
        self.name = name
        self._app_profile_id = app_profile_id
        #: What this table's reads returned so far (response bytes, cells): bounded-read checks.
        self.bytes_read = 0
        self.cells_read = 0
        #: Rows looked up (keys asked for, found or not; rows a range read returned), rows
        #: written by MutateRows, CheckAndMutateRow calls: what Bigtable nodes are sized on
        #: (docs/cost.md).
        self.rows_read = 0
        self.rows_written = 0
        self.rows_checked = 0
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
        self._check_and_mutate = channel.unary_unary(
            messages.CHECK_AND_MUTATE_ROW,
            request_serializer=messages.CheckAndMutateRowRequest.SerializeToString,
            response_deserializer=messages.CheckAndMutateRowResponse.FromString,
        )
        self._sample = channel.unary_stream(
            messages.SAMPLE_ROW_KEYS,
            request_serializer=messages.SampleRowKeysRequest.SerializeToString,
            response_deserializer=messages.SampleRowKeysResponse.FromString,
        )

    # --- reads ---------------------------------------------------------------
    def read_rows(
        self,
        keys: Iterable[bytes] | None = None,
        *,
        start: bytes | None = None,
        end: bytes | None = None,
        prefix: bytes | None = None,
        prefixes: Iterable[bytes] | None = None,
        row_filter=None,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, Row]]:
        """Rows of ``keys`` (any order; read sorted, in batches), of the rows under ``prefix``
        or any of ``prefixes`` (read in batches), or of [start, end) (all if none is given);
        at most ``limit`` rows (ranges only)."""
        if keys is not None:
            ordered = sorted(set(keys))
            for offset in range(0, len(ordered), KEYS_PER_READ):
                yield from self._read_keys(ordered[offset : offset + KEYS_PER_READ], row_filter)
            return
        if prefixes is not None:
            ordered = sorted(set(prefixes))
            for offset in range(0, len(ordered), KEYS_PER_READ):
                ranges = [(p, prefix_end(p)) for p in ordered[offset : offset + KEYS_PER_READ]]
                yield from self._read_ranges(ranges, row_filter, None)
            return
        if prefix is not None:
            start, end = prefix, prefix_end(prefix)
        yield from self._read_ranges([(start, end)], row_filter, limit)

    def read_cells(
        self,
        keys: Iterable[bytes] | None = None,
        *,
        start: bytes | None = None,
        end: bytes | None = None,
        row_filter=None,
    ) -> Iterator[tuple[bytes, list[Cell]]]:
        """Like :meth:`read_rows` (by ``keys`` or [start, end)) but every cell the filter lets
        through, as ReadRows sends them (a column's versions newest first): for columns whose
        versions are the data (``recent``). The filter bounds the versions read."""
        if keys is not None:
            ordered = sorted(set(keys))
            for offset in range(0, len(ordered), KEYS_PER_READ):
                yield from self._read_keys(ordered[offset : offset + KEYS_PER_READ], row_filter, _cells)
            return
        yield from self._read_ranges([(start, end)], row_filter, None, _cells)

    def read_row(self, key: bytes, row_filter=None) -> Row:
        """One row (``{}`` if it does not exist or nothing passes the filter)."""
        for _, row in self._read_keys([key], row_filter):
            return row
        return {}

    def _read_keys(self, keys: list[bytes], row_filter, merge=rows_from_responses) -> Iterator[tuple[bytes, Row]]:
        def request(last: bytes | None, _read: int):
            # Rows come back in key order: a retry asks only for the keys after the last one yielded.
            pending = keys if last is None else [k for k in keys if k > last]
            if not pending:  # an empty key list would read the whole table
                return None
            message = self._request(row_filter)
            message.rows.row_keys.extend(pending)
            return message

        # A key costs Bigtable a lookup whether or not its row exists.
        self.rows_read += len(keys)
        return self._stream(request, "read", merge, count_rows=False)

    def _read_ranges(
        self, ranges: list[tuple[bytes | None, bytes | None]], row_filter, limit: int | None, merge=rows_from_responses
    ) -> Iterator[tuple[bytes, Row]]:
        """Rows of sorted, disjoint [start, end) ranges (None: unbounded)."""

        def request(last: bytes | None, read: int):
            if limit is not None and read >= limit:
                return None
            message = self._request(row_filter)
            if limit is not None:
                message.rows_limit = limit - read
            for start, end in ranges:
                if last is not None and end is not None and end <= last:
                    continue  # read completely before the failure
                if start is None and end is None and last is None:
                    return message  # the whole table: no range at all
                row_range = message.rows.row_ranges.add()
                if last is not None and (start is None or start <= last):
                    row_range.start_key_open = last
                elif start is not None:
                    row_range.start_key_closed = start
                if end is not None:
                    row_range.end_key_open = end
            return message if message.rows.row_ranges else None

        return self._stream(request, "scan", merge)

    def _counted(self, responses):
        for response in responses:
            self.bytes_read += response.ByteSize()
            self.cells_read += len(response.chunks)
            yield response

    def _request(self, row_filter):
        request = messages.ReadRowsRequest(table_name=self.name, app_profile_id=self._app_profile_id)
        if row_filter is not None:
            request.filter.CopyFrom(row_filter)
        return request

    def _stream(
        self, request_after, what: str, merge=rows_from_responses, *, count_rows: bool = True
    ) -> Iterator[tuple[bytes, Row]]:
        """Rows of ``request_after(None, 0)``; after a transient failure, of
        ``request_after(last key yielded, rows yielded)``."""
        last, read = None, 0
        for attempt in range(1, ATTEMPTS + 1):
            request = request_after(last, read)
            if request is None:
                return
            try:
                for key, row in merge(
                    self._counted(self._read(request, timeout=CALL_TIMEOUT_SECONDS, metadata=self._metadata))
                ):
                    last, read = key, read + 1
                    self.rows_read += count_rows
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
        self.rows_written += len(entries)
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

    # --- conditional writes ----------------------------------------------------
    def check_and_mutate(self, row_key: bytes, predicate, *, true_mutations=(), false_mutations=()) -> bool:
        """Atomically: if ``predicate`` (a ``RowFilter``) lets any cell of the row through,
        apply ``true_mutations``, else ``false_mutations``; returns whether it matched.

        A row that does not exist matches nothing. As for :meth:`check_and_mutate_many`,
        a retried attempt may see the row its lost first attempt changed: callers make the
        mutation conditional on what it sets and read the row back when the flag alone
        cannot tell them what happened.
        """
        conditional = Conditional(row_key, predicate, list(true_mutations), list(false_mutations))
        return self.check_and_mutate_many([conditional])[0]

    def check_and_mutate_many(self, conditionals: list[Conditional]) -> list[bool]:
        """Run each CheckAndMutateRow (concurrently); whether each one's predicate matched.

        A transient failure is retried. The retry may find the predicate changed by the
        first attempt itself (it was applied, then the answer was lost): callers must read
        "did not match" as "re-read and decide again", never as "nothing was written",
        which every streamsim caller does (see ``streaming.store``).
        """
        results: list[bool] = []
        self.rows_checked += len(conditionals)
        for offset in range(0, len(conditionals), MAX_CONCURRENT_CONDITIONALS):
            results += self._check_and_mutate_window(conditionals[offset : offset + MAX_CONCURRENT_CONDITIONALS])
        return results

    def _check_and_mutate_window(self, conditionals: list[Conditional]) -> list[bool]:
        results: list[bool | None] = [None] * len(conditionals)
        pending = list(range(len(conditionals)))
        for attempt in range(1, ATTEMPTS + 1):
            futures = [(i, self._start_check_and_mutate(self._conditional_request(conditionals[i]))) for i in pending]
            pending = []
            for i, future in futures:
                try:
                    results[i] = future.result().predicate_matched
                except grpc.RpcError as exc:
                    if exc.code() not in TRANSIENT or attempt == ATTEMPTS:
                        raise WriteError(
                            f"check-and-mutate {self.name} failed: {exc.code().name} {exc.details()}"
                        ) from exc
                    pending.append(i)
            if not pending:
                break
            log.warning("%d check-and-mutates of %s failed transiently, retry %d", len(pending), self.name, attempt)
            _backoff(attempt)
        return results

    def _start_check_and_mutate(self, request):
        """Send one CheckAndMutateRow; its ``result()`` is the response (a gRPC future)."""
        return self._check_and_mutate.future(request, timeout=CALL_TIMEOUT_SECONDS, metadata=self._metadata)

    def _conditional_request(self, conditional: Conditional):
        request = messages.CheckAndMutateRowRequest(
            table_name=self.name, app_profile_id=self._app_profile_id, row_key=conditional.row_key
        )
        request.predicate_filter.CopyFrom(conditional.predicate)
        request.true_mutations.extend(conditional.if_matched)
        request.false_mutations.extend(conditional.otherwise)
        return request
