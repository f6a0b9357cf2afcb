"""The serving reads: user histories, similarity rows, the generation pointer, popularity.

Every read goes through the asyncio Bigtable gateway with a deadline and no retry:
a request that cannot be answered in time fails fast with :class:`BackendUnavailable`
(HTTP 503), and the channel reconnects on its own once Bigtable is back.
"""

from __future__ import annotations

import asyncio
import contextvars
import json

import numpy as np

from schemas import codecs, layout
from schemas.rows import neighbours_cell
from streamsim.runtime.bigtable import filters
from streamsim.runtime.bigtable.aio import AsyncTables
from streamsim.runtime.bigtable.aio import Unavailable as BackendUnavailable
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
_PASS_STATS = filters.chain(filters.column(layout.PASS_STATS, layout.STATS), filters.newest())


class BigtableStore:
    """Create it inside the event loop that uses it and :meth:`close` it once."""

    def __init__(self, settings: Settings, *, deadline_seconds: float = 0.5, app_profile_id: str = ""):
        self._deadline = deadline_seconds
        self._tables = AsyncTables(settings, app_profile_id=app_profile_id)
        self._ids = settings.tables

    async def close(self) -> None:
        await self._tables.close()

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
        items, scores = [], []
        for key, row in rows.items():
            cell = row.get(layout.SCORES, {}).get(layout.SCORE)
            if cell is not None:
                items.append(layout.ids_from_pair_key(key)[1])
                scores.append(codecs.decode_double(cell.value))
        return items, np.array(scores, dtype=np.float64)

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
