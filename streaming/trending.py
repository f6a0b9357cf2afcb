"""Trending counters and board cells: what an item fold adds (pure; ``streaming.store`` writes it).

**Exactly once.** The counters (``schemas.trending``) live in the item's ``items`` row and
are written only inside the item fold's version-checked CheckAndMutateRow, the write that
moves ``n:events``. A fold reads the row (stats, version and the counter buckets it may
touch, in one row read), adds to the counters the same per-user event deltas it adds to
``n:events`` (``ItemFold.added``: ``stamp_events(new) - stamp_events(old)`` of each pair
whose stamp grew) and commits both only if the version is still the one it read. A writer
that loses the race re-reads and recomputes; a retried or duplicated bundle finds the stamps
applied and adds nothing. So each event enters the counters once, exactly as it enters
``n:events`` (``streaming.store``'s argument, unchanged). Each writer writes only buckets
inside the range it read, so every counter it writes is "what it read + its delta".

**Aggregates only go up.** An erasure (``streaming.forget``) takes a user's contribution out
of the stats (r -> 0) but not out of the counters: they count events that happened (how
many, not whose), like a page-view total, and they age out within days anyway.

**Which bucket.** The item stage sees absolute contributions, not events; the pair stage
passes on, per pair, the event time of the pair's newest event in its batch (the hint;
merged updates keep the newest) and all the pair's new events are counted in that time's
buckets. The hint is clamped to the fold's clock (a client clock in the future counts
now), and events older than ``schemas.trending.OLDEST_COUNTED`` count nowhere (a backlog
replayed days late must not trend now). The counts are exact; only their bucket is a hint.

**Board cells.** After its commit, a fold computes the item's window counts and baselines
from the counters it just wrote, as of its clock, and writes a blind board cell for each
window in which the item is trending, or was trending before this fold (so an item that
falls back writes a cell that says so, rather than leaving its old one up). A crash between
the commit and the board write leaves the board behind until the item's next fold: the board
is a view, the counters are the truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from schemas import trending

Counters = Mapping[tuple[str, int], int]
_MS = timedelta(milliseconds=1)


def count_events(counters: Counters, additions: Iterable[tuple[int, int]], now_ms: int) -> dict[tuple[str, int], int]:
    """The new absolute values of the buckets that ``additions`` ((event ms, events)) grow."""
    oldest = now_ms - trending.OLDEST_COUNTED // _MS
    grown: dict[tuple[str, int], int] = {}
    for event_ms, events in additions:
        when = min(event_ms, now_ms)
        if events <= 0 or when < oldest:
            continue
        for resolution in trending.RESOLUTIONS:
            bucket = resolution.bucket(when)
            if bucket >= resolution.first(now_ms):  # inside the range the fold read
                key = (resolution.family, bucket)
                grown[key] = grown.get(key, counters.get(key, 0)) + events
    return grown


def board_entries(
    before: Counters, grown: Mapping[tuple[str, int], int], now_ms: int
) -> list[tuple[trending.Window, int, float]]:
    """``(window, count, expected)`` of each window whose board cell the fold writes (module docstring)."""
    after = {**before, **grown}
    entries = []
    for window in trending.WINDOWS.values():
        count, expected = window.count(after, now_ms)
        if trending.trending(count, expected, window) or trending.trending(*window.count(before, now_ms), window):
            entries.append((window, count, expected))
    return entries
