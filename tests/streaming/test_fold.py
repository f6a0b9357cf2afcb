"""Fold logic: pure functions (property tests), the Beam parse step, and the
Bigtable fold against the real emulator (idempotence, crash healing)."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from schemas import Event, EventType, Weights, entries
from schemas.rows import ItemRow, PairRow
from streaming import state
from streaming.fold import fold_item, fold_pair
from streaming.pipeline import ParseEvents
from streaming.store import FoldStats, FoldStore, fold_batch
from tests.support.fold_oracle import entry_norms, fold_oracle

W = Weights()

events_strategy = st.lists(
    st.builds(
        Event,
        event_id=st.sampled_from([f"e{i}" for i in range(12)]),
        user=st.just("u"),
        item=st.just("a"),
        type=st.sampled_from(list(EventType)),
        ts_ms=st.just(0),
    ),
    max_size=30,
)


def _canonical(events):
    """First occurrence of each id wins (ids are unique per event by contract)."""
    seen = {}
    for e in events:
        seen.setdefault(e.event_id, e)
    return list(seen.values())


def _apply(row: PairRow, fold) -> PairRow:
    folded = {e: t for e, t in row.folded.items() if e not in fold.forget_ids}
    tick = max(row.folded.values(), default=0)
    folded.update({e: tick + 1 + k for k, e in enumerate(fold.new_ids)})
    return PairRow(r=fold.r, events=fold.events, version=row.version + fold.changed, folded=folded)


@given(events_strategy, st.integers(min_value=0, max_value=30))
@hyp_settings(max_examples=200, deadline=None)
def test_fold_pair_is_exactly_once_in_any_split(events, cut):
    events = _canonical(events)
    whole = fold_pair("u", "a", events, PairRow(), W)
    # Two batches, the second redelivering part of the first.
    first = fold_pair("u", "a", events[:cut], PairRow(), W)
    second = fold_pair("u", "a", events[max(0, cut - 3) :] + events[:cut], _apply(PairRow(), first), W)
    after = _apply(_apply(PairRow(), first), second)
    assert after.r == pytest.approx(whole.r) and after.events == len(events) == whole.events
    assert second.duplicates == min(cut, len(events)) + max(0, min(cut, len(events)) - max(0, cut - 3))
    # Folding the whole stream again changes nothing, and hands on the absolute values.
    again = fold_pair("u", "a", events, after, W)
    assert not again.changed and again.duplicates == len(events)
    assert again.contribution == (after.r, after.events)


def test_fold_pair_keeps_a_bounded_number_of_ids(monkeypatch):
    from streaming import fold

    monkeypatch.setattr(fold, "MAX_FOLDED_PER_PAIR", 5)
    row = PairRow()
    for start in range(0, 12, 4):
        batch = [Event(f"e{k}", "u", "a", EventType.BROWSE, k) for k in range(start, start + 4)]
        result = fold_pair("u", "a", batch, row, W)
        row = _apply(row, result)
        assert len(row.folded) <= 5
    assert row.events == 12 and set(row.folded) == {f"e{k}" for k in range(7, 12)}
    # Within the window a redelivery is a duplicate; beyond it, it would count again.
    assert fold_pair("u", "a", [Event("e11", "u", "a", EventType.BROWSE, 0)], row, W).duplicates == 1
    assert fold_pair("u", "a", [Event("e0", "u", "a", EventType.BROWSE, 0)], row, W).changed


@given(st.dictionaries(st.sampled_from("xyz"), st.tuples(st.floats(0.5, 50), st.integers(1, 9)), max_size=3))
def test_fold_item_replay_changes_nothing(incoming):
    first = fold_item("i", incoming, {}, ItemRow())
    assert first.norm2 == pytest.approx(sum(r * r for r, _ in incoming.values()))
    assert first.entry_norm2 == pytest.approx(sum(entries.FOLDED.square(r) for r, _ in incoming.values()))
    assert first.users == len(incoming)
    stored = ItemRow(norm2=first.norm2, users=first.users, events=first.events, entry_norm2=first.entry_norm2)
    replay = fold_item("i", incoming, incoming, stored)
    assert not replay.changed
    assert (replay.norm2, replay.entry_norm2, replay.users, replay.events) == (
        first.norm2,
        first.entry_norm2,
        first.users,
        first.events,
    )


@hyp_settings(deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 50), st.integers(1, 4)), min_size=1, max_size=8))
def test_fold_item_steps_move_the_entry_norm_to_the_last_value(steps):
    """f(r)² of a sum is not a sum of f(r)²: the fold moves by f(r_new)² - f(r_old)², so after
    any sequence of growing absolute values the norm is f(r_last)², whatever the steps."""
    r, n, row, stored = 0.0, 0, ItemRow(), {}
    for grow, events in steps:
        r, n = r + grow, n + events
        fold = fold_item("i", {"u": (r, n)}, stored, row)
        row = ItemRow(norm2=fold.norm2, users=fold.users, events=fold.events, entry_norm2=fold.entry_norm2)
        stored = {"u": (r, n)}
    assert row.entry_norm2 == pytest.approx(entries.FOLDED.square(r), rel=1e-9, abs=1e-12)
    assert row.norm2 == pytest.approx(r * r, rel=1e-9)


def test_fold_item_ignores_stale_contribution():
    stored = ItemRow(norm2=16.0, users=1, events=2)
    stale = fold_item("i", {"u": (2.0, 1)}, {"u": (4.0, 2)}, stored)
    assert not stale.changed and stale.norm2 == 16.0
    newer = fold_item("i", {"u": (6.0, 3)}, {"u": (4.0, 2)}, stored)
    assert newer.norm2 == pytest.approx(36.0) and newer.users == 1 and newer.events == 3


def test_fold_pair_rejects_foreign_event():
    with pytest.raises(ValueError, match="folded into"):
        fold_pair("u", "a", [Event("e", "v", "a", EventType.BROWSE, 0)], PairRow(), W)


def test_parse_events_splits_good_and_dead_letters():
    good = Event("e1", "u1", "i1", EventType.BASKET, 1_700_000_000_000)
    messages = [
        PubsubMessage(good.to_json(), {}),
        PubsubMessage(b"not json", {"origin": "test"}),
        PubsubMessage(b'{"event_id":"e2","user":"u","item":"i","type":"like","ts":1}', {}),
        PubsubMessage(b'{"user":"u","item":"i","type":1,"ts":1}', {"event_id": "from-attr"}),
    ]
    with BeamTestPipeline() as p:
        events, letters, _, _ = p | beam.Create(messages) | ParseEvents()
        assert_that(
            events | "ids" >> beam.Map(lambda d: (d.event.event_id, d.event.type.value)),
            equal_to([("e1", "basket"), ("from-attr", "browse")]),
            label="events",
        )
        assert_that(
            letters | "codes" >> beam.Map(lambda d: (d.data, d.error, d.attributes.get("origin"))),
            equal_to([(b"not json", "not_json", "test"), (messages[2].data, "bad_type", None)]),
            label="dead letters",
        )


# --- against the Bigtable emulator -------------------------------------------
def _events(n_users=40, n_items=25, n=600):
    import random

    rng = random.Random(7)
    return [
        Event(f"e{k}", f"u{rng.randrange(n_users)}", f"i{rng.randrange(n_items)}", rng.choice(list(EventType)), k)
        for k in range(n)
    ]


def _oracle(events):
    return fold_oracle(events, W)


def _assert_state(settings, events):
    scores, norms = _oracle(events)
    got_users = state.scan_users(settings)
    assert got_users.keys() == scores.keys()
    for user, row in scores.items():
        assert got_users[user] == pytest.approx(row), user
    got_items = state.scan_items(settings)
    assert {i: v["norm2"] for i, v in got_items.items()} == pytest.approx(norms)
    assert {i: v["entry_norm2"] for i, v in got_items.items()} == pytest.approx(entry_norms(scores))
    for item, info in got_items.items():
        assert info["users"] == sum(1 for row in scores.values() if item in row)
        assert info["dirty"]


def test_fold_batch_is_idempotent_on_bigtable(fresh_stack):
    events = _events()
    store = FoldStore(fresh_stack)
    first = fold_batch(store, events[:400], W)
    assert first.duplicates == 0 and first.accepted == 400
    # A retried bundle and an overlapping redelivery.
    retried = fold_batch(store, events[:400], W)
    assert retried.duplicates == 400 and retried.pairs_written == 0 and retried.items_written == 0
    fold_batch(store, events[300:] + events[300:], W)
    _assert_state(fresh_stack, events)
    user = events[0].user
    assert state.read_user(fresh_stack, user)["events"] == sum(1 for e in events if e.user == user)


def test_crash_between_pair_and_item_writes_heals_on_redelivery(fresh_stack):
    events = _events(n=300)
    store = FoldStore(fresh_stack)
    # A writer that dies after the pair writes: items never saw the batch.
    store.fold_users(events, W, FoldStats())
    assert state.scan_items(fresh_stack) == {}
    healed = fold_batch(store, events, W)
    assert healed.duplicates == len(events) and healed.pairs_written == 0
    _assert_state(fresh_stack, events)


def test_an_intent_left_by_a_dead_item_writer_is_completed(fresh_stack, monkeypatch):
    events = _events(n=200)
    store = FoldStore(fresh_stack)
    stats = FoldStats()
    contributions = store.fold_users(events, W, stats)
    # Die after the item stats (with their intents) are committed, before the contributions rows.
    monkeypatch.setattr(store, "_write_intents", lambda committed: None)
    store.fold_items(contributions, stats)
    monkeypatch.undo()
    assert all(row.intents for row in store.read_items(contributions).values())
    # The redelivery finds the intents, writes them for the dead writer, and applies nothing twice.
    healed = fold_batch(store, events, W)
    assert healed.intents_completed == len(contributions) and healed.items_written == 0
    assert not any(row.intents for row in store.read_items(contributions).values())
    _assert_state(fresh_stack, events)


def test_unknown_user_and_item_read_as_empty(fresh_stack):
    assert state.read_user(fresh_stack, "nobody") == {
        "user": "nobody",
        "scores": {},
        "norm2": 0.0,
        "events": 0,
        "item_events": {},
        "truncated": False,
    }
    item = state.read_item(fresh_stack, "nothing")
    assert item["norm2"] == 0.0 and item["dirty"] is False and item["users"] == 0
