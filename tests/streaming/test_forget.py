"""Forgetting a user on the real emulator: every table scanned, the norms against an oracle
without the user, redelivered pre-erasure events, new activity, and racing writers."""

from __future__ import annotations

import multiprocessing
import random
import time

import pytest

from schemas import Event, EventType, Weights, layout, parse_message
from schemas.events import ForgetRequest
from streaming import forget, state
from streaming.store import FoldStats, FoldStore, fold_batch
from streamsim.runtime.bigtable import open_tables
from tests.support.fold_oracle import entry_norms, fold_oracle
from tests.support.fold_workers import Batch, run_writer

GONE = "u3"


def _stream(seed: int, events: int, users: int = 10, items: int = 8, start: int = 0) -> list[Event]:
    rnd = random.Random(seed)
    return [
        Event(f"e{seed}-{n}", f"u{rnd.randrange(users)}", f"i{rnd.randrange(items)}", rnd.choice(list(EventType)), n)
        for n in range(start, start + events)
    ]


def _fold(settings, events, chunk: int = 50) -> FoldStats:
    store, stats = FoldStore(settings), FoldStats()
    for offset in range(0, len(events), chunk):
        stats.add(fold_batch(store, events[offset : offset + chunk], Weights()))
    return stats


def _rows_naming(settings, user: str) -> list[str]:
    """Every row of any table whose key, a qualifier or an intent names ``user`` (the
    tombstone and the erasure marks name only its pseudonym, ``layout.user_token``)."""
    tables = open_tables(settings)
    quoted = f'"{user}"'.encode()
    found = []
    for name in ("users", "contributions"):
        found += [f"{name} {k!r}" for k, _ in getattr(tables, name).read_rows() if user in layout.ids_from_pair_key(k)]
    found += [f"recent {k!r}" for k, _ in tables.recent.read_rows() if layout.id_from_row_key(k) == user]
    for name in ("items", "similarities", "meta"):
        for key, row in getattr(tables, name).read_rows():
            qualifiers = {q for family in row.values() for q in family}
            intents = [c.value for c in row.get(layout.INTENTS, {}).values()]
            if user.encode() in key.split(b"#") or user.encode() in qualifiers or any(quoted in v for v in intents):
                found.append(f"{name} {key!r}")
    return found


def _assert_state_is(settings, events) -> None:
    """Users, item norms (raw and transformed), counts and recent sequences equal the oracle."""
    scores, norms = fold_oracle(events)
    flat = {(u, i): r for u, row in scores.items() for i, r in row.items()}
    got = {(u, i): r for u, row in state.scan_users(settings).items() for i, r in row.items()}
    assert got == pytest.approx(flat, rel=1e-12)
    items = state.scan_items(settings)
    held = {i: v for i, v in items.items() if v["users"] or v["norm2"]}
    assert {i: v["norm2"] for i, v in held.items()} == pytest.approx(norms, rel=1e-9, abs=1e-9)
    assert {i: v["entry_norm2"] for i, v in held.items()} == pytest.approx(entry_norms(scores), rel=1e-9, abs=1e-9)
    holders: dict[str, int] = {}
    for row in scores.values():
        for item in row:
            holders[item] = holders.get(item, 0) + 1
    assert {i: v["users"] for i, v in held.items()} == holders
    unique = {e.event_id: e for e in events}
    per_item: dict[str, int] = {}
    for e in unique.values():
        per_item[e.item] = per_item.get(e.item, 0) + 1
    assert {i: v["events"] for i, v in held.items()} == per_item
    by_user: dict[str, list[Event]] = {}
    for e in sorted(unique.values(), key=lambda e: e.ts_ms):
        by_user.setdefault(e.user, []).append(e)
    recent = {u: [e.item for e in evs[-layout.RECENT_EVENTS :]] for u, evs in by_user.items()}
    assert state.scan_recent(settings) == recent


def test_forget_erases_every_row_and_the_norms_equal_an_oracle_without_the_user(fresh_stack):
    events = _stream(seed=1, events=600)
    _fold(fresh_stack, events)
    assert _rows_naming(fresh_stack, GONE), "the user must hold rows before the erasure"
    touched = set(state.read_user(fresh_stack, GONE)["scores"])
    asked = int(time.time() * 1000)
    receipt = forget.forget_user(fresh_stack, GONE, at_ms=10_000)

    assert _rows_naming(fresh_stack, GONE) == []
    kept = [e for e in events if e.user != GONE]
    _assert_state_is(fresh_stack, kept)
    gone = [e for e in events if e.user == GONE]
    assert receipt["state"] == "complete" and receipt["epoch"] == 1 and receipt["requested_ms"] == 10_000
    assert receipt["removed"] == {
        "pairs": len(touched),
        "events": len(gone),
        "items": len(touched),
        "recent_events": min(len(gone), layout.RECENT_EVENTS),
    }
    # The items the user touched are marked dirty by the erasure, for the next pass.
    for item in touched:
        assert state.read_item(fresh_stack, item)["dirty_since_ms"] >= asked - 5

    # Redelivered and late pre-erasure events bring nothing back.
    stats = _fold(fresh_stack, gone[::-1] + [Event("late", GONE, "i1", EventType.PURCHASE, 9_999)])
    assert stats.forgotten == len(gone) + 1 and stats.accepted == 0
    assert _rows_naming(fresh_stack, GONE) == []
    _assert_state_is(fresh_stack, kept)

    # A repeated request (same time) changes nothing; new activity after the erasure is new data.
    assert forget.forget_user(fresh_stack, GONE, at_ms=10_000) == receipt
    fresh = [Event(f"new{n}", GONE, f"i{n % 3}", EventType.BASKET, 10_001 + n) for n in range(5)]
    _fold(fresh_stack, fresh + fresh[:2])
    _assert_state_is(fresh_stack, kept + fresh)

    # A second erasure removes that too (epoch 2), and the first epoch's events stay out.
    second = forget.forget_user(fresh_stack, GONE, at_ms=20_000)
    assert second["epoch"] == 2 and second["removed"]["events"] == len(fresh)
    _fold(fresh_stack, gone + fresh)
    assert _rows_naming(fresh_stack, GONE) == []
    _assert_state_is(fresh_stack, kept)


def test_an_erasure_request_is_a_message_of_the_events_topic():
    request = parse_message(b'{"kind": "forget", "user": "u3", "ts": "2026-11-22T10:00:00Z"}')
    assert request == ForgetRequest("u3", 1795341600000)
    assert parse_message(request.to_json()) == request


def _forget_later(settings, user, at_ms, start, delay):
    start.wait()
    time.sleep(delay)
    return forget.forget_user(settings, user, at_ms)


@pytest.mark.slow
def test_forget_racing_fold_writers(fresh_stack):
    """Four fold processes (each batch delivered twice, some dying between the pair and item
    writes) race a forget of one user. Events of the user dated after the erasure are new
    data; those the erasure took while in flight come back with a final replay (their ids
    went with the rows), so the end state must equal the oracle without the covered events."""
    at_ms = 1_500
    events = _stream(seed=5, events=3000, users=6, items=6)
    writers = 4
    rnd = random.Random(6)
    plans: list[list[Batch]] = [[] for _ in range(writers)]
    for offset in range(0, len(events), 100):
        chunk = events[offset : offset + 100]
        first, second = rnd.sample(range(writers), 2)
        plans[first].append(Batch(rnd.sample(chunk, len(chunk)), crash_before_items=rnd.random() < 0.3))
        plans[second].append(Batch(list(reversed(chunk))))
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Event()
    with context.Pool(writers + 1) as pool:
        runs = [pool.apply_async(run_writer, (fresh_stack, plan, start)) for plan in plans]
        erasure = pool.apply_async(_forget_later, (fresh_stack, GONE, at_ms, start, 0.3))
        start.set()
        totals = FoldStats()
        for run in runs:
            totals.add(FoldStats(**run.get(timeout=300)))
        receipt = erasure.get(timeout=300)
    assert receipt["state"] == "complete"
    _fold(fresh_stack, events, chunk=500)
    expected = [e for e in events if not (e.user == GONE and e.ts_ms <= at_ms)]
    _assert_state_is(fresh_stack, expected)
    # The race happened: writers collided, and pre-erasure deliveries met the tombstone.
    assert totals.conflicts > 0 and totals.forgotten > 0
