"""``GET /trending?window=15m|1h|24h[&category=…][&n=…]``: the items whose event rate rose most.

The stream keeps, per window, a board of the items trending in it (``schemas.trending``:
each item's newest (count, expected) cell, written by its last fold). A request reads the
window's board in one bounded range read (BOARD_SHARDS rows, at most BOARD_READ_CELLS cells
each, only cells stamped within the window), ranks the items by the smoothed ratio
``(count + prior) / (expected + prior)`` and keeps those still trending (count at least the
window's minimum, score above MIN_SCORE), visible and of the category asked for.

The ranked board is cached per window for ``ttl_seconds`` (1 s by default), and one read per
window is in flight at a time (the requests that miss meanwhile wait for it): many requests
share one read, and a burst still shows within seconds of its fold.

No popularity fill: a short list means few items are rising now, and padding it with
steadily popular ones would call them trending. A shop that wants a full row asks
``/recommendations`` for the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from schemas import trending
from serving import params
from serving import rules as merchandising
from serving.catalog import Catalogue
from serving.store import BigtableStore

SOURCE = "trending"
DEFAULT_WINDOW = "15m"


@dataclasses.dataclass(frozen=True)
class TrendingQuery:
    window: trending.Window
    n: int
    category: str | None = None


def trending_query(query, default_n: int) -> TrendingQuery:
    values = params._single(query, {"window", "category", "n"})
    name = values.get("window", DEFAULT_WINDOW)
    window = trending.WINDOWS.get(name)
    if window is None:
        raise params.BadRequest(f"window must be one of {', '.join(trending.WINDOWS)}")
    n = params.parse_n(values["n"]) if "n" in values else default_n
    category = params.check_id("category", values["category"]) if "category" in values else None
    return TrendingQuery(window, n, category)


class TrendingBoards:
    """The boards as serving reads them: one bounded read per window per ``ttl_seconds``."""

    def __init__(self, store: BigtableStore, catalogue: Catalogue, *, ttl_seconds: float = 1.0, clock=time.time):
        self._store = store
        self._catalogue = catalogue
        self._ttl = ttl_seconds
        self._clock = clock
        #: window name -> (expires at, [(item, score, count, expected)] best first)
        self._cached: dict[str, tuple[float, list[tuple[str, float, int, float]]]] = {}
        #: window name -> the read in flight
        self._reading: dict[str, asyncio.Future] = {}

    async def ranked(self, window: trending.Window) -> list[tuple[str, float, int, float]]:
        cached = self._cached.get(window.name)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        reading = self._reading.get(window.name)
        if reading is None:
            reading = self._reading[window.name] = asyncio.ensure_future(self._read(window))
            reading.add_done_callback(lambda _: self._reading.pop(window.name, None))
        # shield: a request that gives up (its client went away) does not cancel the others' read.
        return await asyncio.shield(reading)

    async def _read(self, window: trending.Window) -> list[tuple[str, float, int, float]]:
        now = self._clock()
        cells = await self._store.read_board(window, int(now * 1000))
        ranked = sorted(
            (
                (item, trending.score(count, expected, window), count, expected)
                for item, (count, expected) in cells
                if trending.trending(count, expected, window)
            ),
            key=lambda entry: (-entry[1], entry[0]),
        )
        self._cached[window.name] = (now + self._ttl, ranked)
        return ranked

    async def top(self, query: TrendingQuery, rules: merchandising.Rules = merchandising.NO_RULES) -> list[dict]:
        """The query's n best that are visible and in its category (if any), the merchandising
        ``rules`` applied (:func:`serving.rules.apply`: every visible candidate of the bounded
        board is ranked again, so a boost may lift one from far down)."""
        ranked = await self.ranked(query.window)
        hidden = self._catalogue.hidden
        code = None
        if query.category is not None:
            codes = self._catalogue.codes([query.category])
            if not len(codes):
                return []  # a category no item has
            code = int(codes[0])
        wanted = query.n if rules is merchandising.NO_RULES else len(ranked)

        def eligible(item: str) -> bool:
            return item not in hidden and (code is None or self._catalogue.category_code(item) == code)

        picked = []
        for item, score, count, expected in ranked:
            if len(picked) == wanted:
                break
            if eligible(item):
                picked.append(
                    {"item": item, "score": score, "count": count, "expected": round(expected, 3), "source": SOURCE}
                )
        if rules is merchandising.NO_RULES:
            return picked
        return merchandising.apply(rules, SOURCE, picked, query.n, self._catalogue.category_of, eligible)
