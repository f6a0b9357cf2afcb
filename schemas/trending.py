"""Trending now: the windowed event counters, the board and the score (pure: stream and serving share it).

**Counters** (``items`` rows, written by the item fold in its version-checked write,
``streaming.trending``). An item's events are counted at three resolutions, each in its
own column family with one cell per bucket (qualifier = the bucket's index since the epoch,
zero-padded so qualifiers sort as buckets do, value = int64)::

    tm:<minute>   the last MINUTES.keep minutes   (the 15m and 1h windows)
    th:<hour>     the last HOURS.keep hours       (the 24h window; the 15m and 1h baselines)
    td:<day>      the last DAYS.keep days         (the 24h baseline)

Three families rather than one: each gets the GC age its buckets need (a minute cell is
useless after an hour), so an active item holds ~100 counter cells, not a week of minutes.
A fold reads only the buckets it may write or use (a qualifier range per family, bounded:
MINUTES.keep + HOURS.keep + DAYS.keep cells), and writes only buckets inside that range, so
every counter it writes is the value it read in the same versioned read, plus its delta.

**Windows** (what ``/trending?window=`` accepts) and their baselines, as of ``now``:

- ``15m``: minute buckets [m-14, m]; expected = hours [h-24, h-1] scaled to 15 minutes;
- ``1h``:  minute buckets [m-59, m]; expected = hours [h-24, h-1] scaled to 1 hour;
- ``24h``: hour buckets [h-23, h];   expected = days [d-7, d-1] scaled to 1 day.

The baseline of the short windows ends before the current hour, so a burst does not raise its
own baseline; the 24h window's baseline ends before the current (UTC) day and overlaps the
window by less than a day (a burst yesterday evening raises it by a seventh at most).

**Score**: ``(count + PRIOR) / (expected + PRIOR)``, a ratio of the window's count to the
item's own expected count, smoothed by PRIOR pseudo-events on both sides: an item with
no past (expected 0) scores ``1 + count/PRIOR`` rather than infinity, and a steadily
popular item scores ~1 whatever its volume. An item is *trending* in a window when its
count is at least the window's ``min_count`` (one browse of a cold item is not a trend)
and its score is above MIN_SCORE (its rate rose).

**Board** (``meta`` rows ``trend#<window>#<shard>``, family ``board_family``, one column per
item, written blind by the item fold after its commit): value = :func:`encode_entry`
(count, expected), cell timestamp = the fold's clock (ms). Readers take each column's newest
cell stamped within the window (GC max_age drops older ones lazily), so an item leaves the
board one window after its last event, and a stale writer's older cell never hides a newer one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from datetime import timedelta

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclasses.dataclass(frozen=True)
class Resolution:
    """One counter family: buckets of ``width_ms``; the newest ``keep`` (the current one included) are kept."""

    family: str
    width_ms: int
    keep: int
    digits: int

    def bucket(self, ms: int) -> int:
        return ms // self.width_ms

    def qualifier(self, bucket: int) -> bytes:
        return b"%0*d" % (self.digits, bucket)

    def parse(self, qualifier: bytes) -> int:
        return int(qualifier)

    def first(self, now_ms: int) -> int:
        """The oldest bucket a fold at ``now_ms`` reads or writes."""
        return self.bucket(now_ms) - self.keep + 1

    @property
    def gc_age(self) -> timedelta:
        """A little over what readers use (whole hours, for Terraform): lazy GC, readers filter by range."""
        hours = -(-self.keep * self.width_ms // HOUR_MS) + 1
        return timedelta(hours=hours + hours // 8)


MINUTES = Resolution("tm", MINUTE_MS, 60, 10)
HOURS = Resolution("th", HOUR_MS, 25, 8)
DAYS = Resolution("td", DAY_MS, 8, 6)
RESOLUTIONS = (MINUTES, HOURS, DAYS)
#: Events older than this (their time, clamped to now) count in no bucket: a backlog
#: replayed days later must not trend "now", and the oldest day bucket read ends here.
OLDEST_COUNTED = timedelta(days=DAYS.keep - 1)

#: A trending item's score must be above this (its rate rose against its baseline).
MIN_SCORE = 1.0
#: Shards of each window's board: the item folds' blind writes spread over this many rows.
BOARD_SHARDS = 16
#: Cells a reader takes per board row at most (the read stays bounded, ~2 MB in all, whatever
#: the traffic; the board holds only rising items, normally far fewer).
BOARD_READ_CELLS = 4000
BOARD_PREFIX = b"trend#"


@dataclasses.dataclass(frozen=True)
class Window:
    name: str
    width_ms: int
    #: The window's buckets: the newest ``buckets`` of ``counted``.
    counted: Resolution
    buckets: int
    #: The baseline: ``baseline_buckets`` of ``baseline`` ending before the current one.
    baseline: Resolution
    baseline_buckets: int
    #: Events the window needs before the item can trend; also the score's prior.
    min_count: int

    @property
    def board_family(self) -> str:
        return "t" + self.name

    @property
    def board_age(self) -> timedelta:
        """GC age of the board family: the window, rounded up to whole hours, plus one."""
        return timedelta(hours=-(-self.width_ms // HOUR_MS) + 1)

    def board_key(self, shard: int) -> bytes:
        return BOARD_PREFIX + self.name.encode("ascii") + b"#%02d" % shard

    @property
    def board_prefix(self) -> bytes:
        return BOARD_PREFIX + self.name.encode("ascii") + b"#"

    def count(self, counters: dict[tuple[str, int], int], now_ms: int) -> tuple[int, float]:
        """(events in the window, events its baseline expects) as of ``now_ms``; counters: (family, bucket) -> n."""
        last = self.counted.bucket(now_ms)
        count = sum(counters.get((self.counted.family, b), 0) for b in range(last - self.buckets + 1, last + 1))
        current = self.baseline.bucket(now_ms)
        past = sum(counters.get((self.baseline.family, b), 0) for b in range(current - self.baseline_buckets, current))
        return count, past * self.width_ms / (self.baseline_buckets * self.baseline.width_ms)


WINDOWS: dict[str, Window] = {
    w.name: w
    for w in (
        Window("15m", 15 * MINUTE_MS, MINUTES, 15, HOURS, 24, 5),
        Window("1h", HOUR_MS, MINUTES, 60, HOURS, 24, 10),
        Window("24h", DAY_MS, HOURS, 24, DAYS, 7, 20),
    )
}


def score(count: float, expected: float, window: Window) -> float:
    """The smoothed ratio (module docstring); the prior is the window's min_count."""
    return (count + window.min_count) / (expected + window.min_count)


def trending(count: float, expected: float, window: Window) -> bool:
    return count >= window.min_count and score(count, expected, window) > MIN_SCORE


def board_shard(item: str) -> int:
    """The board row (of every window) an item's cell goes to: a stable hash of its id."""
    return hashlib.blake2b(item.encode("utf-8"), digest_size=2).digest()[0] % BOARD_SHARDS


_ENTRY = struct.Struct(">qd")


def encode_entry(count: int, expected: float) -> bytes:
    """A board cell's value: the window's count (int64) and its expected count (double), big-endian."""
    return _ENTRY.pack(count, expected)


def decode_entry(value: bytes) -> tuple[int, float]:
    if len(value) != _ENTRY.size:
        raise ValueError(f"a trending board cell holds {_ENTRY.size} bytes, not {len(value)}")
    return _ENTRY.unpack(value)
