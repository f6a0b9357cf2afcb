"""Trending counters: each event counted once in its (hinted) buckets, with racing writers on the
real emulator; the clamping of future and backlog event times; the windows and the score."""

from __future__ import annotations

import random
import time

import pytest

from schemas import Event, EventType, Weights, trending
from schemas.rows import decode_item
from schemas.trending import DAYS, HOURS, MINUTES, WINDOWS
from streaming.store import FoldStore, fold_batch
from streaming.trending import board_entries, count_events
from streamsim.runtime.bigtable import filters, open_tables
from tests.support.fold_workers import race, redelivery_plans

NOW = 1_800_000_000_000  # a fixed clock for the pure tests (2027-01-15)
WRITERS = 3


def test_future_times_count_now_and_a_backlog_counts_nowhere():
    grown = count_events({}, [(NOW + 3_600_000, 2), (NOW - 8 * trending.DAY_MS, 5)], NOW)
    # The event an hour in the future counts in the current buckets; the 8-day-old one in none.
    assert grown == {(r.family, r.bucket(NOW)): 2 for r in trending.RESOLUTIONS}
    # Two hours ago: too old for the minute buckets (the last hour), in its hour and day.
    two_hours_ago = NOW - 2 * trending.HOUR_MS
    grown = count_events({(HOURS.family, HOURS.bucket(two_hours_ago)): 7}, [(two_hours_ago, 1)], NOW)
    assert grown == {(HOURS.family, HOURS.bucket(two_hours_ago)): 8, (DAYS.family, DAYS.bucket(two_hours_ago)): 1}


def test_a_burst_on_a_cold_item_trends_and_a_steady_item_does_not():
    steady: dict[tuple[str, int], int] = {}
    # 30 events an hour for the past 24 hours, and at the same rate (one every 2 minutes) now.
    for hour in range(1, 25):
        steady[(HOURS.family, HOURS.bucket(NOW) - hour)] = 30
    for minute in range(0, 60, 2):
        steady[(MINUTES.family, MINUTES.bucket(NOW) - minute)] = 1
    count, expected = WINDOWS["15m"].count(steady, NOW)
    assert (count, expected) == (8, 7.5)
    assert trending.score(count, expected, WINDOWS["15m"]) < 1.05
    burst = count_events({}, [(NOW, 30)], NOW)
    entries = {w.name: (c, e) for w, c, e in board_entries({}, burst, NOW)}
    # 30 events against nothing expected: trending in every window it passes the minimum of.
    assert entries == {"15m": (30, 0.0), "1h": (30, 0.0), "24h": (30, 0.0)}
    assert trending.score(30, 0.0, WINDOWS["15m"]) == 7.0
    # One browse of a cold item is no trend: no board cell.
    assert board_entries({}, count_events({}, [(NOW, 1)], NOW), NOW) == []


def _in(window: str, entries) -> list:
    return [(count, expected) for w, count, expected in entries if w.name == window]


def test_a_falling_item_writes_the_cell_that_takes_it_down():
    window = WINDOWS["15m"]
    past = {(HOURS.family, HOURS.bucket(NOW) - 1): 24 * 100}  # 100 an hour: 25 expected in 15m
    # Neither trending before nor after: no 15m cell.
    steady = {**past, (MINUTES.family, MINUTES.bucket(NOW)): 6}
    assert _in("15m", board_entries(steady, count_events(steady, [(NOW, 1)], NOW), NOW)) == []
    # Trending before (6 against nothing), not after (its baseline grew): the cell that says so.
    rising = {(MINUTES.family, MINUTES.bucket(NOW)): 6}
    (written,) = _in("15m", board_entries(rising, past, NOW))
    assert written == (6, 25.0) and not trending.trending(*written, window)


def test_the_board_codec_round_trips():
    assert trending.decode_entry(trending.encode_entry(42, 3.25)) == (42, 3.25)
    with pytest.raises(ValueError):
        trending.decode_entry(b"short")


def _counters(settings) -> dict[str, dict[str, int]]:
    """Every stored counter cell, summed per item and family (the test reads them all)."""
    families = [r.family for r in trending.RESOLUTIONS]
    row_filter = filters.chain(filters.families(*families), filters.newest())
    sums: dict[str, dict[str, int]] = {}
    from schemas import layout

    for key, row in open_tables(settings).items.read_rows(row_filter=row_filter):
        counters = decode_item(row).counters
        per_family = sums.setdefault(layout.id_from_row_key(key), dict.fromkeys(families, 0))
        for (family, _), n in counters.items():
            per_family[family] += n
    return sums


@pytest.mark.slow
def test_racing_writers_count_each_event_exactly_once(fresh_stack):
    rnd = random.Random(7)
    now = int(time.time() * 1000)
    # Within the last 40 minutes, a tenth an hour in the future (a client clock that lies).
    events = [
        Event(
            f"e{n}",
            f"u{rnd.randrange(25)}",
            f"i{rnd.randrange(8)}",
            rnd.choice(list(EventType)),
            now + (3_600_000 if rnd.random() < 0.1 else -rnd.randrange(40 * 60_000)),
        )
        for n in range(1500)
    ]
    totals = race(fresh_stack, redelivery_plans(events, seed=8, writers=WRITERS))
    assert totals.conflicts > 0, "the writers never raced: the test proves nothing"
    oracle: dict[str, int] = {}
    for e in events:
        oracle[e.item] = oracle.get(e.item, 0) + 1
    counted = _counters(fresh_stack)
    assert counted == {item: dict.fromkeys(("tm", "th", "td"), n) for item, n in oracle.items()}
    # No bucket after the writers' clocks: the future events counted in the minute they were folded.
    latest = MINUTES.bucket(int(time.time() * 1000))
    store = FoldStore(fresh_stack)
    for row in store.read_items(oracle).values():
        assert max(b for f, b in row.counters if f == "tm") <= latest
        assert row.events == sum(n for (f, _), n in row.counters.items() if f == "tm")


def test_a_replayed_backlog_adds_to_the_stats_but_not_to_trending(fresh_stack):
    store = FoldStore(fresh_stack)
    store.clock = lambda: NOW
    old = [Event(f"o{k}", f"u{k}", "old", EventType.BROWSE, NOW - 9 * trending.DAY_MS) for k in range(30)]
    stats = fold_batch(store, old, Weights())
    row = store.read_items(["old"])["old"]
    assert stats.accepted == 30 and row.events == 30 and row.counters == {} and stats.board_cells == 0
    fresh = [Event(f"f{k}", f"v{k}", "old", EventType.BROWSE, NOW - 60_000) for k in range(30)]
    assert fold_batch(store, fresh, Weights()).board_cells == 3  # 30 fresh events: on every board
    assert fold_batch(store, fresh, Weights()).board_cells == 0  # redelivered: counted once
    row = store.read_items(["old"])["old"]
    assert row.events == 60 and sum(n for (f, _), n in row.counters.items() if f == "tm") == 30


def test_the_fold_reads_only_the_buckets_in_its_range(fresh_stack):
    """Counter cells GC has not removed yet (a day of minutes, a month of hours) stay unread."""
    from schemas import encode_int64, layout
    from streamsim.runtime.bigtable import entry, set_cell

    minute, hour, day = (r.bucket(NOW) for r in (MINUTES, HOURS, DAYS))
    cells = [set_cell("tm", MINUTES.qualifier(minute - k), encode_int64(1)) for k in range(1440)]
    cells += [set_cell("th", HOURS.qualifier(hour - k), encode_int64(1)) for k in range(720)]
    cells += [set_cell("td", DAYS.qualifier(day - k), encode_int64(1)) for k in range(30)]
    open_tables(fresh_stack).items.mutate([entry(layout.item_row_key("busy"), cells)])
    store = FoldStore(fresh_stack)
    store.clock = lambda: NOW
    counters = store.read_items(["busy"])["busy"].counters
    assert len(counters) == MINUTES.keep + HOURS.keep + DAYS.keep == 93
    assert min(b for f, b in counters if f == "tm") == minute - 59
    # A fold adds to what it read: each current bucket held 1, and 2 events come.
    fold_batch(store, [Event(f"b{k}", f"bu{k}", "busy", EventType.BROWSE, NOW) for k in range(2)], Weights())
    counters = store.read_items(["busy"])["busy"].counters
    assert counters[("tm", minute)] == 3 and counters[("td", day)] == 3 and len(counters) == 93
