"""Buy again: which of a user's purchases to offer again, and in what order.

Candidates are the items of the user's purchase index (``recent`` p:e, the last
PURCHASES_KEPT purchases: one row read). For each, the published repurchase statistics
(``batch.bought``: buyers B, repeat buyers R, typical interval T; read once per generation,
:class:`RepurchaseCache`) without the user's own share, so the evidence is other users'
(the statistics may predate the user's purchase; then one buyer too many is taken out,
never too few: the rate errs low):

    B' = max(B - 1, 0),  R' = max(R - [the user bought it twice or more], 0)
    rate = R' / (B' + 1)                  (shrunk towards 0: one buyer who rebought is
                                           not a habit; 10 of 10 gives 0.91)
    x = (now - the user's last purchase of it) / T
    timing(x) = x · e^(1 - x)   for x <= 1 (rises to 1 at the typical interval: just
                                bought is not yet due)
              = x^(-1/2)        for x > 1  (then fades slowly: overdue is still likely,
                                long overdue less so)
    score = rate · timing(x)

Items with rate < MIN_REPURCHASE_RATE or no repeat buyer among others are not
repurchasable and are left out, as are hidden items; there is no popularity fill (buy
again offers only what the user bought).
"""

from __future__ import annotations

import math
from collections import OrderedDict

#: Below this smoothed rate an item is not bought again often enough to offer.
MIN_REPURCHASE_RATE = 0.1


#: An item without published statistics (never bought, or its row not in the generation).
NO_STATS = (0, 0, 0)


class RepurchaseCache:
    """Bounded LRU of ``(generation view, item) -> (buyers, repeat buyers, interval ms)``.

    A generation's statistics never change once published (as its neighbour rows), so an
    item read once is good for the rest of the generation; items without statistics are
    cached as NO_STATS. Without it, every buy-again request would read Bigtable twice.
    """

    def __init__(self, max_items: int):
        if max_items < 1:
            raise ValueError(f"the repurchase cache needs room for at least 1 item, got {max_items}")
        self.max_items = max_items
        self._stats: OrderedDict[tuple[object, str], tuple[int, int, int]] = OrderedDict()

    def lookup(self, generation, items: list[str]) -> tuple[dict[str, tuple[int, int, int]], list[str]]:
        """The cached statistics of ``items`` and the items to read."""
        found, missing = {}, []
        for item in items:
            stats = self._stats.get((generation, item))
            if stats is None:
                missing.append(item)
            else:
                self._stats.move_to_end((generation, item))
                found[item] = stats
        return found, missing

    def store(self, generation, item: str, stats: tuple[int, int, int]) -> None:
        self._stats[(generation, item)] = stats
        self._stats.move_to_end((generation, item))
        while len(self._stats) > self.max_items:
            self._stats.popitem(last=False)

    def __len__(self) -> int:
        return len(self._stats)


def timing(x: float) -> float:
    """The time factor at ``x`` = time since the last purchase / the typical interval."""
    if x <= 1.0:
        return max(x, 0.0) * math.exp(1.0 - x)
    return x**-0.5


def rank(
    purchases: list[tuple[str, int]],
    stats: dict[str, tuple[int, int, int]],
    now_ms: int,
    n: int,
    *,
    min_rate: float = MIN_REPURCHASE_RATE,
) -> list[tuple[str, float, int]]:
    """``(item, score, last purchase ms)`` best first (ties by item id), at most ``n``.

    ``purchases``: the user's ``(item, event ms)``; ``stats``: item -> (B, R, T ms)."""
    last: dict[str, int] = {}
    count: dict[str, int] = {}
    for item, ms in purchases:
        last[item] = max(ms, last.get(item, ms))
        count[item] = count.get(item, 0) + 1
    scored = []
    for item, bought_ms in last.items():
        buyers, repeat, interval = stats.get(item, (0, 0, 0))
        others = max(buyers - 1, 0)
        repeat_others = max(repeat - (count[item] > 1), 0)
        rate = repeat_others / (others + 1)
        if repeat_others == 0 or rate < min_rate or interval <= 0:
            continue
        scored.append((item, rate * timing((now_ms - bought_ms) / interval), bought_ms))
    scored.sort(key=lambda entry: (-entry[1], entry[0]))
    return scored[:n]
