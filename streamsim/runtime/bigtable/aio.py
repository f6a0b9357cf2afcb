"""The Bigtable gateway for asyncio callers: ReadRows over ``grpc.aio``, with a deadline.

Reads are not retried: an asyncio caller (serving) answers a request within a budget,
so a call that fails or runs out of time raises :class:`Unavailable` at once, and the
channel reconnects quickly on its own once Bigtable is back (see the channel options
in :mod:`streamsim.runtime.clients`). Rows have the same shape as the sync gateway's.
"""

from __future__ import annotations

import bisect

import grpc

from schemas.rows import Cell
from streamsim.runtime.bigtable import messages
from streamsim.runtime.bigtable.table import prefix_end
from streamsim.runtime.bigtable.wire import merge_chunks, rows_from_responses
from streamsim.runtime.clients import open_bigtable_channel
from streamsim.runtime.settings import Settings


def _owner(ordered: list[bytes], key: bytes) -> bytes:
    """The prefix of sorted, disjoint ``ordered`` that ``key`` starts with."""
    return ordered[bisect.bisect_right(ordered, key) - 1]


def _before(prefix: bytes, key: bytes) -> bool:
    """True if every key under ``prefix`` sorts before ``key`` (its range was read past)."""
    end = prefix_end(prefix)
    return end is not None and end <= key


class Unavailable(RuntimeError):
    """Bigtable did not answer in time or refused the call."""


class AsyncTables:
    """Read-only access to a deployment's tables from one event loop.

    Create it inside the loop that uses it (``grpc.aio`` channels bind to the
    running loop) and :meth:`close` it once.
    """

    def __init__(self, settings: Settings):
        self._app_profile_id = settings.app_profile_id
        self._base = f"projects/{settings.project}/instances/{settings.instance}/tables/"
        self.ids = settings.tables
        #: Rows looked up so far: keys asked for, rows a range read returned (docs/cost.md).
        self.rows_read = 0
        self._channel = open_bigtable_channel(settings, aio=True)
        self._read_rows = self._channel.unary_stream(
            messages.READ_ROWS,
            request_serializer=messages.ReadRowsRequest.SerializeToString,
            response_deserializer=messages.ReadRowsResponse.FromString,
        )

    async def close(self) -> None:
        await self._channel.close()

    async def read(
        self, table_id: str, keys: list[bytes], row_filter, *, timeout: float
    ) -> dict[bytes, dict[str, dict[bytes, Cell]]]:
        """``{key: row}`` for the keys that exist (newest cell per column)."""
        request = self._request(table_id, row_filter)
        request.rows.row_keys.extend(keys)
        return await self._call(request, timeout, looked_up=len(keys))

    async def read_cells(self, table_id: str, keys: list[bytes], row_filter, *, timeout: float) -> dict[bytes, list]:
        """``{key: cells}``: every cell the filter lets through, a column's versions newest
        first (for columns whose versions are the data); the filter bounds them."""
        request = self._request(table_id, row_filter)
        request.rows.row_keys.extend(keys)
        return await self._call(request, timeout, versions=True)

    async def read_prefix(
        self, table_id: str, prefix: bytes, row_filter, *, limit: int, timeout: float
    ) -> dict[bytes, dict[str, dict[bytes, Cell]]]:
        """``{key: row}`` of at most ``limit`` rows under ``prefix``, in key order."""
        request = self._request(table_id, row_filter)
        row_range = request.rows.row_ranges.add()
        row_range.start_key_closed = prefix
        end = prefix_end(prefix)
        if end is not None:
            row_range.end_key_open = end
        request.rows_limit = limit
        return await self._call(request, timeout)

    async def read_range(
        self, table_id: str, start: bytes, end: bytes | None, row_filter, *, limit: int, timeout: float, after=False
    ) -> dict[bytes, dict[str, dict[bytes, Cell]]]:
        """``{key: row}`` of at most ``limit`` rows from ``start`` (``after``: excluded) to ``end`` (excluded)."""
        request = self._request(table_id, row_filter)
        row_range = request.rows.row_ranges.add()
        if after:
            row_range.start_key_open = start
        else:
            row_range.start_key_closed = start
        if end is not None:
            row_range.end_key_open = end
        request.rows_limit = limit
        return await self._call(request, timeout)

    async def read_prefixes(
        self, table_id: str, prefixes: list[bytes], row_filter, *, limit_each: int, timeout: float
    ) -> dict[bytes, dict[bytes, dict[str, dict[bytes, Cell]]]]:
        """``{prefix: {key: row}}``: for each prefix what :meth:`read_prefix` with
        ``limit=limit_each`` returns, in as few ReadRows calls as it takes (usually one).

        ReadRows has one row limit for all its ranges, not one per range: each call
        asks for the sum of what the prefixes still lack, so no call reads more than
        their own reads would together. A prefix that took another's share (one
        with more than ``limit_each`` rows) is cut to its first ``limit_each``, and
        the prefixes the call did not reach are read again, after the last key read.
        """
        found: dict[bytes, dict] = {p: {} for p in prefixes}
        # prefix -> key after which it still has to be read (None: from its start).
        pending: dict[bytes, bytes | None] = dict.fromkeys(sorted(found))
        while pending:
            request = self._request(table_id, row_filter)
            for prefix, after in pending.items():
                row_range = request.rows.row_ranges.add()
                if after is None:
                    row_range.start_key_closed = prefix
                else:
                    row_range.start_key_open = after
                end = prefix_end(prefix)
                if end is not None:
                    row_range.end_key_open = end
            budget = sum(limit_each - len(found[p]) for p in pending)
            request.rows_limit = budget
            rows = await self._call(request, timeout)
            ordered = sorted(pending)
            for key, row in rows.items():
                prefix = _owner(ordered, key)
                if len(found[prefix]) < limit_each:
                    found[prefix][key] = row
            if len(rows) < budget:
                break  # every range was read to its end
            last = max(rows)
            pending = {
                p: (last if p == _owner(ordered, last) else after)
                for p, after in pending.items()
                if len(found[p]) < limit_each and not _before(p, last)
            }
        return found

    def _request(self, table_id: str, row_filter):
        return messages.ReadRowsRequest(
            table_name=self._base + table_id, filter=row_filter, app_profile_id=self._app_profile_id
        )

    async def _call(self, request, timeout: float, *, looked_up: int | None = None, versions: bool = False) -> dict:
        if timeout <= 0:
            raise Unavailable("the request's time budget is spent")
        responses = []
        try:
            async for response in self._read_rows(request, timeout=timeout):
                responses.append(response)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"Bigtable {exc.code().name}") from None
        if versions:
            rows = dict(merge_chunks(chunk for response in responses for chunk in response.chunks))
        else:
            rows = dict(rows_from_responses(responses))
        self.rows_read += len(rows) if looked_up is None else looked_up
        return rows
