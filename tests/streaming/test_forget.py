"""Forgetting a user on the real emulator: every table scanned, the norms against an oracle
without the user, redelivered pre-erasure events, new activity, and racing writers."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import random
import time

import pytest

from batch import dimsum
from batch.generations import Generations
from batch.refresh import PassOptions, run_pass
from schemas import Event, EventType, Weights, entries, layout, parse_message
from schemas.events import ForgetRequest
from streaming import forget, state
from streaming.store import FoldStats, FoldStore, fold_batch
from streamsim.app.cli import main as streamsim_main
from streamsim.runtime.bigtable import open_tables
from tests.streaming.test_dead_letters import _publish_raw, _stream_until_idle
from tests.support.fold_oracle import entry_norms, fold_oracle
from tests.support.fold_workers import redelivery_plans, run_writer
from tests.support.pubsub import drain
from tests.support.similarity_oracles import score_matrix

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
    # The session index: the user's time-cut sessions (layout.session_key), as rows or as holders.
    own = user + layout.PAIR_SEPARATOR.decode()
    holders, sessions = state.scan_sessions(settings)
    found += [f"sessions {key!r}" for key, items in sessions.items() if key.startswith(own) and items]
    found += [f"sessions holder of {i!r}" for i, keys in holders.items() if any(k.startswith(own) for k in keys)]
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
    bought = {u: [e for e in evs if e.type is EventType.PURCHASE] for u, evs in by_user.items()}
    purchases = {u: [(e.item, e.ts_ms) for e in evs[-layout.PURCHASES_KEPT :]] for u, evs in bought.items() if evs}
    assert state.scan_purchases(settings) == purchases


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
        "purchases": min(sum(e.type is EventType.PURCHASE for e in gone), layout.PURCHASES_KEPT),
        # Every event is dated in the first SESSION_GAP: one time-cut session, its newest clicks.
        "session_clicks": min(len(gone), layout.SESSION_EVENTS),
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


def _forget_once_folding(settings, user, at_ms, start):
    """Forget ``user`` as soon as the racing writers have folded some of the user's events."""
    start.wait()
    while not state.read_user(settings, user, limit=1)["scores"]:
        time.sleep(0.01)
    return forget.forget_user(settings, user, at_ms)


def _redeliver_after_the_tombstone(settings, user, events, start):
    """A late redelivery of the user's covered events, sent once the tombstone is there."""
    start.wait()
    meta = open_tables(settings).meta
    while user not in forget.read_tombstones(meta, [user]):
        time.sleep(0.01)
    return fold_batch(FoldStore(settings), events, Weights()).forgotten


@pytest.mark.slow
def test_forget_racing_fold_writers(fresh_stack):
    """Four fold processes (each batch delivered twice, some dying between the pair and item
    writes) race a forget of one user. Events of the user dated after the erasure are new
    data; those the erasure took while in flight come back with a final replay (their ids
    went with the rows), so the end state must equal the oracle without the covered events."""
    at_ms = 1_500
    events = _stream(seed=5, events=3000, users=6, items=6)
    writers = 4
    plans = redelivery_plans(events, seed=6, writers=writers)
    covered = [e for e in events if e.user == GONE and e.ts_ms <= at_ms]
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Event()
    with context.Pool(writers + 2) as pool:
        runs = [pool.apply_async(run_writer, (fresh_stack, plan, start)) for plan in plans]
        erasure = pool.apply_async(_forget_once_folding, (fresh_stack, GONE, at_ms, start))
        late = pool.apply_async(_redeliver_after_the_tombstone, (fresh_stack, GONE, covered, start))
        start.set()
        totals = FoldStats()
        for run in runs:
            totals.add(FoldStats(**run.get(timeout=300)))
        receipt = erasure.get(timeout=300)
        assert late.get(timeout=300) == len(covered)
    assert receipt["state"] == "complete"
    _fold(fresh_stack, events, chunk=500)
    expected = [e for e in events if not (e.user == GONE and e.ts_ms <= at_ms)]
    _assert_state_is(fresh_stack, expected)
    # The race happened: writers collided.
    assert totals.conflicts > 0


def _exact_rows(scores) -> dict[str, dict[str, float]]:
    """Every item's exact neighbours (cosines of f(r_ui), the default pass's entries)."""
    ids, x = score_matrix(scores)
    x.data = entries.DEFAULT.apply(x.data)
    cos = dimsum.exact_cosines(x).toarray()
    return {a: {b: cos[i, j] for j, b in enumerate(ids) if j != i and cos[i, j] > 0} for i, a in enumerate(ids)}


def _visible(settings, generation) -> dict[str, dict[str, float]]:
    return {item: dict(zip(ids, s)) for item, ids, s in Generations(settings).read_all(generation)}


def _close(got: dict, expected: dict) -> bool:
    return got.keys() == expected.keys() and all(
        got[a].keys() == expected[a].keys() and all(abs(got[a][b] - v) < 1e-9 for b, v in expected[a].items())
        for a in expected
    )


def test_the_receipt_names_the_first_generation_computed_without_the_user(spark, fresh_stack):
    events = _stream(seed=8, events=1500, users=40, items=12)
    _fold(fresh_stack, events)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=100), partitions=2)
    before = run_pass(spark, fresh_stack, options)
    with_user, _ = fold_oracle(events)
    without_user, _ = fold_oracle([e for e in events if e.user != GONE])
    assert _close(_visible(fresh_stack, before["generation"]), _exact_rows(with_user))
    assert not _close(_visible(fresh_stack, before["generation"]), _exact_rows(without_user))

    forget.forget_user(fresh_stack, GONE, at_ms=10_000)
    assert forget.receipt(fresh_stack, GONE)["first_generation"] is None  # no pass since
    after = run_pass(spark, fresh_stack, options)
    # The pass after the erasure (the user's items were marked dirty; whichever mode the
    # planner picks) equals a computation from scratch without the user; the receipt names it.
    assert after["dirty_items"] == len({e.item for e in events if e.user == GONE})
    assert _close(_visible(fresh_stack, after["generation"]), _exact_rows(without_user))
    assert forget.receipt(fresh_stack, GONE)["first_generation"] == after["generation"]
    later = run_pass(spark, fresh_stack, dataclasses.replace(options, full=True))
    assert forget.receipt(fresh_stack, GONE)["first_generation"] == after["generation"] < later["generation"]


def test_forget_command_erases_and_reports_the_receipt(fresh_stack, capsys):
    events = _stream(seed=9, events=200)
    _fold(fresh_stack, events)
    connection = fresh_stack.to_argv()
    assert streamsim_main(["forget", GONE, "u4", *connection]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["user"] for p in printed] == [GONE, "u4"]
    assert printed[0]["receipt"]["removed"]["events"] == sum(e.user == GONE for e in events)
    assert _rows_naming(fresh_stack, GONE) == [] and _rows_naming(fresh_stack, "u4") == []
    _assert_state_is(fresh_stack, [e for e in events if e.user not in (GONE, "u4")])

    assert streamsim_main(["forget", "--status", GONE, "never-seen", *connection]) == 0
    status = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == [{"user": GONE, "receipt": printed[0]["receipt"]}, {"user": "never-seen", "receipt": None}]

    assert streamsim_main(["forget", "bad\x01id", *connection]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("streamsim forget: user") and "control characters" in err


@pytest.mark.slow
def test_a_forget_message_on_the_events_topic_erases_the_user(fresh_stack):
    """Through the real stream (Pub/Sub emulator, Beam's local runner): the user's events, then
    the erasure request, a redelivered pre-erasure event, a malformed request, new activity."""
    before = [Event(f"b{n}", GONE, f"i{n % 3}", EventType.BROWSE, 1_000 + n) for n in range(6)]
    others = [Event(f"o{n}", "u1", f"i{n % 3}", EventType.BASKET, 1_000 + n) for n in range(6)]
    _publish_raw(fresh_stack, [(e.to_json(), {}) for e in before + others])
    _stream_until_idle(fresh_stack)
    assert state.read_user(fresh_stack, GONE)["events"] == len(before)

    malformed = b'{"kind": "forget", "user": "", "ts": 2000}'
    after = Event("a1", GONE, "i2", EventType.PURCHASE, 3_000)
    messages = [ForgetRequest(GONE, 2_000).to_json(), before[0].to_json(), malformed, after.to_json()]
    _publish_raw(fresh_stack, [(m, {}) for m in messages])
    _stream_until_idle(fresh_stack)

    _assert_state_is(fresh_stack, others + [after])
    assert forget.receipt(fresh_stack, GONE)["removed"]["events"] == len(before)
    [letter] = drain(fresh_stack, fresh_stack.pubsub.dead_letter_subscription)
    assert letter.data == malformed and letter.attributes["error"] == "bad_field"
    assert drain(fresh_stack, fresh_stack.pubsub.events_subscription) == []
