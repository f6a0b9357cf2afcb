"""Brute-force oracles of bought together and repurchase statistics: loops over every user and
every pair of items, no shared code with ``batch.bought``."""

from __future__ import annotations

import math
import random

from schemas import Event, EventType

HOUR = 3_600_000


def bought_together_oracle(
    purchases: dict[str, list[tuple[str, int]]], window_ms: int, min_support: int, k: int
) -> dict[str, list[tuple[str, float]]]:
    """item -> [(item, co / sqrt(buyers_i · buyers_j))] best first (ties by id), co >= min_support."""
    items = sorted({item for bought in purchases.values() for item, _ in bought})
    buyers = {i: sum(any(x == i for x, _ in bought) for bought in purchases.values()) for i in items}
    lists: dict[str, list[tuple[str, float]]] = {}
    for i in items:
        scored = []
        for j in items:
            if i == j:
                continue
            co = 0
            for bought in purchases.values():
                times_i = [t for x, t in bought if x == i]
                times_j = [t for x, t in bought if x == j]
                if any(abs(a - b) <= window_ms for a in times_i for b in times_j):
                    co += 1
            if co >= min_support:
                scored.append((j, co / math.sqrt(buyers[i] * buyers[j])))
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        if scored:
            lists[i] = scored[:k]
    return lists


def repurchase_oracle(purchases: dict[str, list[tuple[str, int]]], min_gap_ms: int) -> dict[str, tuple[int, int, int]]:
    """item -> (buyers, repeat buyers, geometric mean of the repeat buyers' mean gaps in ms)."""
    out = {}
    for i in sorted({item for bought in purchases.values() for item, _ in bought}):
        buyers, gaps = 0, []
        for bought in purchases.values():
            times = sorted(t for x, t in bought if x == i)
            if times:
                buyers += 1
            if len(times) > 1:
                gaps.append(max((times[-1] - times[0]) / (len(times) - 1), min_gap_ms))
        mean = round(math.exp(sum(math.log(g) for g in gaps) / len(gaps))) if gaps else 0
        out[i] = (buyers, len(gaps), mean)
    return out


def crafted_stream(seed: int) -> tuple[list[Event], dict[str, list[tuple[str, int]]]]:
    """A crafted stream: random purchases and browses, plus items browsed together by
    everyone (``x1``, ``x2``) but never bought together; and the purchases it holds."""
    rnd = random.Random(seed)
    events, purchases, n = [], {}, 0
    for u in range(25):
        user = f"u{u}"
        for _ in range(rnd.randrange(2, 9)):
            item, ts = f"i{rnd.randrange(8)}", rnd.randrange(0, 72 * HOUR)
            kind = rnd.choice([EventType.PURCHASE, EventType.BROWSE, EventType.BASKET])
            events.append(Event(f"e{n}", user, item, kind, ts))
            n += 1
            if kind is EventType.PURCHASE:
                purchases.setdefault(user, []).append((item, ts))
        for item in ("x1", "x2"):
            events.append(Event(f"e{n}", user, item, EventType.BROWSE, 80 * HOUR))
            n += 1
    # x1 and x2 are bought, but never by one user within the window.
    for user, item, ts in (("u0", "x1", 0), ("u1", "x2", 0), ("u2", "x1", 0), ("u2", "x2", 50 * HOUR)):
        events.append(Event(f"e{n}", user, item, EventType.PURCHASE, ts))
        purchases.setdefault(user, []).append((item, ts))
        n += 1
    return events, purchases
