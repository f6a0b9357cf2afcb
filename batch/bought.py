"""Bought together and repurchase statistics, from the stream's purchase index, in the refresh pass.

Input: every user's purchase index (``recent`` p:e, the user's last PURCHASES_KEPT
purchases as ``(item, event ms)``), read by the pass's key ranges. Nothing else: browsing
and basketing never make two items "bought together".

**Bought together.** Items i != j are bought together by user u when u purchased both
within ``layout.BOUGHT_TOGETHER_WINDOW`` of event time (the cell holds no session id; a
basket checked out at once lands within seconds). Each user counts once per pair:
co(i, j) = |{u : u bought i and j within the window}|. With buyers(i) = users whose
index holds a purchase of i, the list of i ranks j by

    score(i, j) = co(i, j) / sqrt(buyers(i) · buyers(j))      (cosine of the binary
                                                              user × item purchase vectors,
                                                              restricted to co-purchases)

kept when co(i, j) >= ``min_support`` (default MIN_CO_BUYERS: one shopper's basket is
not a pattern), best first, equal scores by item id, at most K per item. The normalisation
stops a best-seller from topping every list (its buyers(j) is large).

**Repurchase statistics**, per item: buyers, repeat buyers (users with 2+ purchases of it
in their index), and the typical repurchase interval: the geometric mean over repeat
buyers of each one's mean gap (last - first) / (purchases - 1), at least
MIN_INTERVAL_MS. A geometric mean because gaps are heavy-tailed (days for milk, months
for shampoo, and a few buyers who restock once a year).

**Why Spark, and the cost.** A user's work is bounded: at most PURCHASES_KEPT purchases,
hence at most PURCHASES_KEPT²/2 pairs. The pairs are reduced by key on Spark, in the same
session and over the same key ranges as the pass's user reads, because the number of
distinct pairs grows with the shop (a driver-side dict would not). The lists (<= K per
purchased item) and the statistics (one per purchased item) are collected to the driver,
as the similarity rows are: two Spark jobs (:func:`compute`). The pass records the phase's
wall time (``phases_seconds.bought_together``) and its counts (``bought_together``). On the
tests' data (163 events, 38 purchases, ``local[2]`` on a shared 2-core machine at load 6.5)
it took 3.3-5.3 s against DIMSUM's 0.9-2.8 s: the fixed cost of two jobs (four stages), not
of the data; it grows with purchases, which are a few percent of the events DIMSUM reads.

**Incremental passes** recompute the whole set: it is read from one narrow family, and an
item's co-purchases cannot be patched from dirty marks (a user's purchase leaving the
bounded index changes pairs of items nobody marked).

**Publication.** Every row written is stamped with the pass's generation, in the
``similarities`` family ``b`` (``b:top`` the list, ``b:rebuy`` the statistics), so the
pointer flip publishes them with the similarity rows and a rollback takes them back. A
pass writes the rows of every purchased item, plus an empty list and zero statistics for
every item whose newest cell before this generation is not empty any more
(:func:`Generations.read_bought_items`): no stale list stays visible. (Two overlapping
passes: a list that emptied between their reads may stay visible until the next pass.)
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Iterable
from datetime import timedelta

from schemas import layout

#: Co-buyers a pair needs to be listed.
MIN_CO_BUYERS = 2
#: Gaps shorter than this count as this (two purchases in the same minute are one order).
MIN_INTERVAL_MS = 60_000
WINDOW_MS = layout.BOUGHT_TOGETHER_WINDOW // timedelta(milliseconds=1)


@dataclasses.dataclass(frozen=True)
class Repurchase:
    buyers: int
    repeat_buyers: int
    #: Typical interval between one buyer's purchases (ms); 0 without repeat buyers.
    interval_ms: int

    @property
    def rate(self) -> float:
        return self.repeat_buyers / self.buyers if self.buyers else 0.0


def user_pairs(purchases: list[tuple[str, int]], window_ms: int = WINDOW_MS) -> set[tuple[str, str]]:
    """The pairs ``(i, j)``, i < j, a user bought within ``window_ms`` of each other
    (at most len(purchases)² / 2)."""
    ordered = sorted(purchases, key=lambda p: p[1])
    pairs = set()
    for k, (item, ms) in enumerate(ordered):
        for other, later in ordered[k + 1 :]:
            if later - ms > window_ms:
                break
            if other != item:
                pairs.add((item, other) if item < other else (other, item))
    return pairs


def user_item_stats(purchases: list[tuple[str, int]]) -> dict[str, tuple[int, int, float]]:
    """item -> (1, 1 if bought twice or more else 0, log of the mean gap or 0): one user's
    share of the items' repurchase statistics (summed over users)."""
    times: dict[str, list[int]] = {}
    for item, ms in purchases:
        times.setdefault(item, []).append(ms)
    out = {}
    for item, stamps in times.items():
        if len(stamps) < 2:
            out[item] = (1, 0, 0.0)
        else:
            gap = (max(stamps) - min(stamps)) / (len(stamps) - 1)
            out[item] = (1, 1, math.log(max(gap, MIN_INTERVAL_MS)))
    return out


def add_stats(a: tuple[int, int, float], b: tuple[int, int, float]) -> tuple[int, int, float]:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def repurchase(summed: tuple[int, int, float]) -> Repurchase:
    buyers, repeat, log_gaps = summed
    interval = round(math.exp(log_gaps / repeat)) if repeat else 0
    return Repurchase(buyers, repeat, interval)


def score(co: int, buyers_i: int, buyers_j: int) -> float:
    return co / math.sqrt(buyers_i * buyers_j)


def _best(k: int):
    """Merge two best-first lists of (-score, item), keeping ``k``."""

    def merge(a: list, b: list) -> list:
        return heapq.nsmallest(k, a + b)

    return merge


@dataclasses.dataclass
class BoughtTogether:
    """What a pass publishes: item -> best-first ``[(item, score)]``, item -> statistics."""

    lists: dict[str, list[tuple[str, float]]]
    stats: dict[str, Repurchase]
    users: int = 0
    pairs: int = 0
    #: Items whose newest cells before the pass are not empty (rewritten, empty if not purchased now).
    cleared: set[str] = dataclasses.field(default_factory=set)

    def rows(self) -> Iterable[tuple[str, list[tuple[str, float]], Repurchase]]:
        """Rows to write: every purchased item, and the ``cleared`` items not purchased now (empty)."""
        empty = Repurchase(0, 0, 0)
        for item in sorted(self.stats.keys() | self.lists.keys() | self.cleared):
            yield item, self.lists.get(item, []), self.stats.get(item, empty)

    def record(self) -> dict:
        return {
            "buyers": self.users,
            "items": len(self.stats),
            "pairs": self.pairs,  # listed: with at least the minimum support
            "items_with_list": sum(bool(v) for v in self.lists.values()),
            "items_emptied": len(self.cleared - self.stats.keys()),
        }


def _user_records(purchases: list[tuple[str, int]], window_ms: int):
    """One user's share, keyed for one reduce: ``(item,)`` -> statistics, ``(i, j)`` -> 1."""
    for item, share in user_item_stats(purchases).items():
        yield (item,), share
    for pair in user_pairs(purchases, window_ms):
        yield pair, 1


def _add(a, b):
    return a + b if isinstance(a, int) else add_stats(a, b)


def compute(purchases, k: int, min_support: int = MIN_CO_BUYERS, window_ms: int = WINDOW_MS) -> BoughtTogether:
    """The lists and statistics from an RDD of per-user purchase lists (``[(item, ms)]``).

    Two Spark jobs: one reduce of every user's statistics and pairs (keys ``(item,)`` and
    ``(i, j)``: one read of the purchase index, one shuffle), whose statistics are collected;
    then the pairs with enough support, scored with the broadcast buyer counts, reduced to
    the best K per item and collected."""
    sc = purchases.context
    users, pairs = sc.accumulator(0), sc.accumulator(0)

    def records(user_purchases):
        users.add(1)
        return _user_records(user_purchases, window_ms)

    reduced = purchases.flatMap(records).reduceByKey(_add).cache()
    try:
        summed = reduced.filter(lambda kv: len(kv[0]) == 1).collectAsMap()
        stats = {key[0]: repurchase(s) for key, s in summed.items()}
        buyers = sc.broadcast({item: s.buyers for item, s in stats.items()})

        def both_ways(kv):
            (i, j), n = kv
            pairs.add(1)
            s = score(n, buyers.value[i], buyers.value[j])
            return ((i, [(-s, j)]), (j, [(-s, i)]))

        best = (
            reduced.filter(lambda kv: len(kv[0]) == 2 and kv[1] >= min_support)
            .flatMap(both_ways)
            .reduceByKey(_best(k))
            .collectAsMap()
        )
        buyers.unpersist()
    finally:
        reduced.unpersist()
    lists = {item: [(j, -negative) for negative, j in sorted(entries)] for item, entries in best.items()}
    return BoughtTogether(lists, stats, users=users.value, pairs=pairs.value)
