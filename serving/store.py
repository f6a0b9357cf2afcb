"""The serving reads: user histories, similarity rows, the generation pointer, popularity.

Every read goes through the asyncio Bigtable gateway with a deadline and no retry:
a request that cannot be answered in time fails fast with :class:`BackendUnavailable`
(HTTP 503), and the channel reconnects on its own once Bigtable is back.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Container

import numpy as np

from schemas import codecs, layout, trending
from schemas.rows import (
    CatalogCells,
    decode_catalog,
    decode_catalog_log,
    decode_holders,
    decode_purchases,
    decode_recent,
    neighbours_cell,
)
from streamsim.runtime.bigtable import filters
from streamsim.runtime.bigtable.aio import AsyncTables
from streamsim.runtime.bigtable.aio import Unavailable as BackendUnavailable
from streamsim.runtime.bigtable.table import prefix_end
from streamsim.runtime.settings import Settings

__all__ = ["BackendUnavailable", "BigtableStore", "request_deadline"]

#: Loop time by which the current request must be answered (None: no budget).
#: Set per request by the app; each RPC gets the smaller of its own deadline
#: and what is left, so a request that needs several reads still fails in time.
#: A context variable rather than asyncio.timeout: that costs a timer per
#: request even when the cache answers without any RPC.
request_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_deadline", default=None)

_HISTORY = filters.chain(filters.column(layout.SCORES, layout.SCORE), filters.newest())
#: Items of a user's history a request reads at most: a bot's history must not make one
#: request read millions of rows. The first ones in item order (a prefix scan).
MAX_HISTORY_ITEMS = 1000
_POINTER = filters.chain(filters.column(layout.GENERATION, layout.CURRENT), filters.newest())
#: An item's catalogue cells and its user count (the per-category popularity fill).
_CATALOG = filters.chain(
    filters.union(filters.family(layout.CATALOG), filters.column(layout.ITEM_STATS, layout.USERS)), filters.newest()
)
_CATALOG_LOG = filters.chain(filters.family(layout.CATALOG_LOG), filters.newest())
#: One catalogue read in the background (a page of the load, or of the change log):
#: longer than a request's, as nobody waits on it.
BACKGROUND_DEADLINE_SECONDS = 10.0
_SESSION = filters.session_events()
_RECENT = filters.recent_events()
_PURCHASES = filters.purchases()
_PASS_STATS = filters.chain(filters.column(layout.PASS_STATS, layout.STATS), filters.newest())


class BigtableStore:
    """Create it inside the event loop that uses it and :meth:`close` it once."""

    def __init__(self, settings: Settings, *, deadline_seconds: float = 0.5):
        self._deadline = deadline_seconds
        self._tables = AsyncTables(settings)
        self._ids = settings.tables

    async def close(self) -> None:
        await self._tables.close()

    @property
    def rows_read(self) -> int:
        """Rows Bigtable returned to this store so far (the cost model's reads per request)."""
        return self._tables.rows_read

    def _timeout(self) -> float:
        timeout = self._deadline
        deadline = request_deadline.get()
        if deadline is not None:
            timeout = min(timeout, deadline - asyncio.get_running_loop().time())
        return timeout

    async def _read(self, table_id: str, keys: list[bytes], row_filter) -> dict:
        return await self._tables.read(table_id, keys, row_filter, timeout=self._timeout())

    async def _read_prefix(self, table_id: str, prefix: bytes, row_filter, limit: int) -> dict:
        return await self._tables.read_prefix(table_id, prefix, row_filter, limit=limit, timeout=self._timeout())

    async def read_history(self, user: str) -> tuple[list[str], np.ndarray]:
        """The user's items and r_ui (float64), in item order (at most MAX_HISTORY_ITEMS); empty if none."""
        rows = await self._read_prefix(self._ids.users, layout.user_prefix(user), _HISTORY, MAX_HISTORY_ITEMS)
        return _history(rows)

    async def read_histories(self, users: list[str], timeout: float) -> dict[str, tuple[list[str], np.ndarray]]:
        """:meth:`read_history` of several users in one ReadRows call (as few as it takes)."""
        prefixes = {layout.user_prefix(user): user for user in users}
        found = await self._tables.read_prefixes(
            self._ids.users, list(prefixes), _HISTORY, limit_each=MAX_HISTORY_ITEMS, timeout=timeout
        )
        return {prefixes[prefix]: _history(rows) for prefix, rows in found.items()}

    async def read_session_holders(self, items: list[str], limit: int) -> dict[str, list[tuple[str, int]]]:
        """Each item's newest ``limit`` clicks as ``(session key, cell timestamp)``, newest
        first, in one read (an item never clicked: an empty list)."""
        keys = {layout.item_sessions_key(item): item for item in items}
        found = await self._tables.read_cells(
            self._ids.sessions, list(keys), filters.session_holders(limit), timeout=self._timeout()
        )
        lists = {item: [] for item in items}
        for key, cells in found.items():
            lists[keys[key]] = decode_holders(cells, limit)
        return lists

    async def read_session_items(self, sessions: list[str]) -> dict[str, tuple[list[str], int]]:
        """Each session's items in click order (its last SESSION_EVENTS) and the time (event
        ms) of its newest click (-1: no clicks), in one read."""
        keys = {layout.session_row_key(session): session for session in sessions}
        found = await self._tables.read_cells(self._ids.sessions, list(keys), _SESSION, timeout=self._timeout())
        items = {session: ([], -1) for session in sessions}
        for key, cells in found.items():
            newest = max((c.timestamp_micros for c in cells), default=None)
            items[keys[key]] = (
                decode_recent(cells, layout.SESSION_EVENTS),
                -1 if newest is None else layout.recent_event_ms(newest),
            )
        return items

    async def read_recent(self, user: str) -> list[tuple[str, int]]:
        """The user's ``recent`` events as ``(item, event ms)``, oldest first."""
        key = layout.recent_row_key(user)
        found = await self._tables.read_cells(self._ids.recent, [key], _RECENT, timeout=self._timeout())
        cells = sorted(
            (c for c in found.get(key, []) if c.family == layout.ORDER and c.qualifier == layout.RECENT),
            key=lambda c: c.timestamp_micros,
        )[-layout.RECENT_EVENTS :]
        return [(c.value.decode("utf-8"), layout.recent_event_ms(c.timestamp_micros)) for c in cells]

    def remaining(self) -> float:
        """Seconds this request may still spend on one RPC."""
        return self._timeout()

    async def read_catalog_page(
        self, start: bytes, end: bytes | None, after: bool, limit: int
    ) -> list[tuple[bytes, str, CatalogCells, int]]:
        """A page of the catalogue load: ``(key, item, cells, users)`` of the ``items``
        rows from ``start`` (``after``: excluded) to ``end`` (excluded; None: the
        table's end), in key order."""
        rows = await self._tables.read_range(
            self._ids.items, start, end, _CATALOG, limit=limit, timeout=BACKGROUND_DEADLINE_SECONDS, after=after
        )
        page = []
        for key, row in rows.items():
            users = row.get(layout.ITEM_STATS, {}).get(layout.USERS)
            count = codecs.decode_int64(users.value) if users is not None else 0
            page.append((key, layout.id_from_row_key(key), decode_catalog(row), count))
        return page

    async def read_catalog_log(
        self, start: bytes, after: bool, limit: int, known: Container[bytes] = ()
    ) -> list[tuple[bytes, int, list[tuple[str, CatalogCells]] | None]]:
        """``(key, written_ms, changes)`` of the change-log rows from ``start``
        (``after``: excluded), in key order (write order); ``changes`` as
        :func:`schemas.rows.decode_catalog_log` gives them, None for a ``known`` key
        (not decoded again)."""
        end = prefix_end(layout.CATALOG_LOG_PREFIX)
        rows = await self._tables.read_range(
            self._ids.meta, start, end, _CATALOG_LOG, limit=limit, timeout=BACKGROUND_DEADLINE_SECONDS, after=after
        )
        return [
            (key, layout.parse_catalog_log_key(key)[0], None if key in known else decode_catalog_log(row))
            for key, row in rows.items()
        ]

    async def read_pointer(self) -> int | None:
        """The generation serving should use, or None before the first pass."""
        row = (await self._read(self._ids.meta, [layout.GENERATION_ROW], _POINTER)).get(layout.GENERATION_ROW, {})
        cell = row.get(layout.GENERATION, {}).get(layout.CURRENT)
        return codecs.decode_int64(cell.value) if cell is not None else None

    async def read_popular(self, generation: int) -> tuple[list[str], np.ndarray] | None:
        """The popularity list as of ``generation``; None if the store has none.

        Every pass writes one (possibly empty), so None means the generation's
        rows are not in the store: never written, collected, or lost.
        """
        rows = await self._read(self._ids.meta, [layout.POPULAR_ROW], filters.visible_at(generation))
        cell = neighbours_cell(rows.get(layout.POPULAR_ROW, {}))
        return None if cell is None else codecs.decode_neighbours_arrays(cell.value)

    async def read_freshness(self, generation: int) -> dict[str, int | None] | None:
        """``layout.FRESHNESS_KEYS`` of the pass that wrote ``generation``; None if it recorded none."""
        key = layout.pass_row_key(generation)
        row = (await self._read(self._ids.meta, [key], _PASS_STATS)).get(key, {})
        cell = row.get(layout.PASS_STATS, {}).get(layout.STATS)
        stats = json.loads(cell.value) if cell is not None else {}
        if layout.WATERMARK_KEY not in stats:
            return None
        return {name: stats.get(name) for name in layout.FRESHNESS_KEYS}

    async def has_generation(self, generation: int) -> bool:
        """:meth:`read_popular` is not None, without reading the list itself."""
        row_filter = filters.chain(filters.visible_at(generation), filters.strip_values())
        rows = await self._read(self._ids.meta, [layout.POPULAR_ROW], row_filter)
        return neighbours_cell(rows.get(layout.POPULAR_ROW, {})) is not None

    async def read_board(self, window: trending.Window, now_ms: int) -> list[tuple[str, tuple[int, float]]]:
        """The items on ``window``'s trending board as of ``now_ms``: ``(item, (count, expected))``
        of each item's newest cell stamped within the window, in one bounded range read."""
        rows = await self._tables.read_range(
            self._ids.meta,
            window.board_prefix,
            prefix_end(window.board_prefix),
            filters.board(window, now_ms),
            limit=trending.BOARD_SHARDS,
            timeout=self._timeout(),
        )
        return [
            (qualifier.decode("utf-8"), trending.decode_entry(cell.value))
            for row in rows.values()
            for qualifier, cell in row.get(window.board_family, {}).items()
        ]

    async def read_neighbours(self, generation: int, items: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
        """Packed top-K lists of ``items`` as of ``generation``, in one read.

        Items without a similarity row in that generation are absent from the
        result; the lists keep their stored order.
        """
        keys = {layout.item_row_key(item): item for item in items}
        rows = await self._read(self._ids.similarities, list(keys), filters.visible_at(generation))
        found = {}
        for key, row in rows.items():
            cell = neighbours_cell(row)
            if cell is not None:
                found[keys[key]] = codecs.decode_neighbours_arrays(cell.value)
        return found

    # --- bought together and buy again (``batch.bought`` writes what these read) ----------
    async def read_purchases(self, user: str) -> list[tuple[str, int]]:
        """The user's purchase index as ``(item, event ms)``, oldest first (one row read)."""
        key = layout.recent_row_key(user)
        found = await self._tables.read_cells(self._ids.recent, [key], _PURCHASES, timeout=self._timeout())
        return decode_purchases(found.get(key, []))

    async def read_bought(self, generation: int, items: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
        """Bought-together lists of ``items`` as of ``generation`` (absent: no ``b:top`` cell), in one read."""
        cells = await self._bought_column(generation, items, layout.TOP)
        return {item: codecs.decode_neighbours_arrays(value) for item, value in cells.items()}

    async def read_repurchase(self, generation: int, items: list[str]) -> dict[str, tuple[int, int, int]]:
        """``(buyers, repeat buyers, interval ms)`` of ``items`` as of ``generation``, in one read."""
        cells = await self._bought_column(generation, items, layout.REPURCHASE)
        return {item: codecs.decode_repurchase(value) for item, value in cells.items()}

    async def _bought_column(self, generation: int, items: list[str], qualifier: bytes) -> dict[str, bytes]:
        keys = {layout.item_row_key(item): item for item in items}
        rows = await self._read(
            self._ids.similarities, list(keys), filters.visible_at(generation, layout.BOUGHT, qualifier)
        )
        found = {}
        for key, row in rows.items():
            cell = row.get(layout.BOUGHT, {}).get(qualifier)
            if cell is not None:
                found[keys[key]] = cell.value
        return found


def _history(rows: dict) -> tuple[list[str], np.ndarray]:
    items, scores = [], []
    for key, row in rows.items():
        cell = row.get(layout.SCORES, {}).get(layout.SCORE)
        if cell is not None:
            items.append(layout.ids_from_pair_key(key)[1])
            scores.append(codecs.decode_double(cell.value))
    return items, np.array(scores, dtype=np.float64)
