"""Writers racing on the real emulator: processes with their own clients fold overlapping
batches of the same users and items, with redeliveries and crashes between the pair and
item writes. The state must equal the oracle: no event lost, none counted twice."""

from __future__ import annotations

import random

import pytest

from schemas import Event, EventType, layout
from streaming import state
from tests.support.fold_oracle import entry_norms, fold_oracle
from tests.support.fold_workers import race, redelivery_plans

pytestmark = pytest.mark.slow
WRITERS = 4


def _stream(seed: int, events: int = 4000, users: int = 30, items: int = 12) -> list[Event]:
    """A second apart, so a user's events without a session span several session windows;
    a third of them name one of 20 sessions (some longer than SESSION_EVENTS)."""
    rnd = random.Random(seed)
    return [
        Event(
            f"e{n}",
            f"u{rnd.randrange(users)}",
            f"i{rnd.randrange(items)}",
            rnd.choice(list(EventType)),
            n * 1000,
            f"s{rnd.randrange(20)}" if rnd.random() < 1 / 3 else None,
        )
        for n in range(events)
    ]


def _assert_equals_oracle(settings, events) -> None:
    scores, norms = fold_oracle(events)
    got = state.scan_users(settings)
    assert got.keys() == scores.keys()
    wrong = {u: (got[u], scores[u]) for u in scores if got[u] != pytest.approx(scores[u], rel=1e-12)}
    assert not wrong, f"{len(wrong)} users differ, e.g. {next(iter(wrong.items()))}"
    items = state.scan_items(settings)
    assert {i: v["norm2"] for i, v in items.items()} == pytest.approx(norms, rel=1e-9)
    # The transformed entries' norms: f(r_new)² - f(r_old)² per step, each step applied once.
    assert {i: v["entry_norm2"] for i, v in items.items()} == pytest.approx(entry_norms(scores), rel=1e-9)
    holders = {}
    for row in scores.values():
        for item in row:
            holders[item] = holders.get(item, 0) + 1
    assert {i: v["users"] for i, v in items.items()} == holders
    assert sum(v["events"] for v in items.values()) == len({e.event_id for e in events})
    # Recent sequences: each user's last RECENT_EVENTS events in event-time order.
    by_user: dict[str, list[Event]] = {}
    for event in sorted({e.event_id: e for e in events}.values(), key=lambda e: e.ts_ms):
        by_user.setdefault(event.user, []).append(event)
    expected = {u: [e.item for e in evs[-layout.RECENT_EVENTS :]] for u, evs in by_user.items()}
    assert state.scan_recent(settings) == expected
    # The purchase index: each user's last PURCHASES_KEPT purchases, each once.
    bought = {u: [(e.item, e.ts_ms) for e in evs if e.type is EventType.PURCHASE] for u, evs in by_user.items()}
    assert state.scan_purchases(settings) == {u: p[-layout.PURCHASES_KEPT :] for u, p in bought.items() if p}
    assert state.scan_sessions(settings) == session_index_oracle(events)


def session_index_oracle(events: list[Event]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per item, the session of each of its newest SESSIONS_PER_ITEM clicks; per session, its
    newest SESSION_EVENTS items in order (each event once, however often it was delivered)."""
    distinct = sorted(
        {e.event_id: e for e in events}.values(), key=lambda e: layout.recent_cell_micros(e.ts_ms, e.event_id)
    )
    holders: dict[str, list[str]] = {}
    sessions: dict[str, list[str]] = {}
    for e in distinct:
        key = layout.session_key(e.user, e.session, e.ts_ms)
        holders.setdefault(e.item, []).append(key)
        sessions.setdefault(key, []).append(e.item)
    return (
        {item: keys[::-1][: layout.SESSIONS_PER_ITEM] for item, keys in holders.items()},
        {key: items[-layout.SESSION_EVENTS :] for key, items in sessions.items()},
    )


def test_racing_writers_lose_nothing_and_count_nothing_twice(fresh_stack):
    events = _stream(seed=1)
    totals = race(fresh_stack, redelivery_plans(events, seed=2, writers=WRITERS))
    # The race happened: writers collided and completed each other's item folds.
    assert totals.conflicts > 0
    _assert_equals_oracle(fresh_stack, events)


def test_the_race_is_real_without_the_version_checks(fresh_stack):
    """The same race with plain writes loses events: the test above can fail."""
    events = _stream(seed=3)
    race(fresh_stack, redelivery_plans(events, seed=4, writers=WRITERS), blind=True)
    with pytest.raises(AssertionError):
        _assert_equals_oracle(fresh_stack, events)
