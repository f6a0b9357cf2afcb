"""Session-kNN served from the stream's session index: answers against the brute-force oracle,
and a session the fold writes after the server started shapes the next answer (no refresh)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from schemas import Event, EventType, layout
from serving.config import ServingConfig
from serving.session_knn import SessionKnn
from streaming.store import FoldStore
from tests.serving.live import items, serve
from tests.support.session_oracle import session_knn_scores

KNN = SessionKnn(k=6, sample=12)
BASE_MS = 1_700_000_000_000


def _sessions(seed: int, count: int = 60, vocabulary: int = 15) -> dict[str, list[str]]:
    """Sessions without a repeated item (so an item's m newest clicks are its m newest sessions)."""
    rnd = random.Random(seed)
    return {f"s{n}": rnd.sample([f"i{k}" for k in range(vocabulary)], rnd.randint(2, 5)) for n in range(count)}


def _events(sessions: dict[str, list[str]], start: int) -> list[Event]:
    events, clock = [], start
    for session, clicks in sessions.items():
        for item in clicks:
            clock += 1000
            events.append(Event(f"{session}-{clock}", f"user-{session}", item, EventType.BROWSE, clock, session))
    return events


def _oracle(events: list[Event], clicks: list[str], own: set[str] = frozenset()) -> dict[str, float]:
    """The scores from the events alone: each item's ``sample`` newest clicks, sessions ranked by
    their newest click on an item of the query, then session-kNN written the slow way."""
    ordered = sorted(events, key=lambda e: layout.recent_cell_micros(e.ts_ms, e.event_id))
    newest_on_query: dict[str, int] = {}
    per_item: dict[str, list[Event]] = {}
    for e in ordered:
        per_item.setdefault(e.item, []).append(e)
    for item in set(clicks):
        for e in per_item.get(item, [])[-KNN.sample :]:
            if e.session not in own:
                newest_on_query[e.session] = layout.recent_cell_micros(e.ts_ms, e.event_id)
    sessions = sorted(newest_on_query, key=lambda s: (newest_on_query[s], s))
    items_of = {s: [e.item for e in ordered if e.session == s] for s in sessions}
    vocabulary = {item: k for k, item in enumerate(dict.fromkeys(clicks))}
    for s in sessions:
        for item in items_of[s]:
            vocabulary.setdefault(item, len(vocabulary))
    names = list(vocabulary)
    scores = session_knn_scores(
        KNN, [vocabulary[i] for i in clicks], [[vocabulary[i] for i in items_of[s]] for s in sessions]
    )
    return {names[k]: v for k, v in scores.items()}


def _check(answer: dict, expected: dict[str, float], n: int, excluded=()) -> None:
    """The answer's session votes are the oracle's best n (its items without ``excluded``)."""
    expected = {item: score for item, score in expected.items() if item not in set(excluded)}
    voted = [e for e in answer["items"] if e["source"] == "sessions"]
    assert len(voted) == min(n, len(expected))
    for entry in voted:
        assert entry["score"] == pytest.approx(expected[entry["item"]], rel=1e-9)
    # The best n by score (ties in any order).
    best = sorted(expected.values(), reverse=True)[: len(voted)]
    assert [e["score"] for e in voted] == pytest.approx(best, rel=1e-9)


def test_session_answers_equal_the_oracle_and_a_new_session_counts_at_once(seeded):
    sessions = _sessions(seed=5)
    events = _events(sessions, BASE_MS)
    store = FoldStore(seeded)
    store.append_sessions(events)
    live = serve(seeded, session_knn=KNN, session_cache_seconds=0.0)
    try:
        rnd = random.Random(9)
        for _ in range(12):
            clicks = [f"i{rnd.randrange(15)}" for _ in range(rnd.randint(1, 4))]
            body = {"items": [{"item": i} for i in clicks], "n": 8}
            status, answer = live.post("/recommendations", body)
            assert status == 200
            _check(answer, _oracle(events, clicks), 8, excluded=clicks)
            # Repeats allowed: the session's own items are scored like any other.
            status, answer = live.post("/recommendations", {**body, "allow_repeats": True})
            assert status == 200
            _check(answer, _oracle(events, clicks), 8)
        # A session of the index by its id: its clicks, itself never its own neighbour.
        status, answer = live.get("/recommendations?session=s7&n=8")
        assert status == 200 and answer["session"] == "s7"
        _check(answer, _oracle(events, sessions["s7"], {"s7"}), 8, excluded=sessions["s7"])

        # A session folded now, holding an item nobody clicked before: the next answer has it.
        status, before = live.post("/recommendations", {"items": [{"item": "i3"}], "n": 30, "allow_repeats": True})
        assert status == 200 and "brand-new" not in items(before)
        fresh = _events({"fresh": ["i3", "brand-new"]}, BASE_MS + 10**9)
        store.append_sessions(fresh)
        status, after = live.post("/recommendations", {"items": [{"item": "i3"}], "n": 30, "allow_repeats": True})
        assert status == 200 and "brand-new" in items(after)
        _check(after, _oracle(events + fresh, ["i3"]), 30)
    finally:
        live.stop()


def test_a_users_current_session_is_the_query(seeded):
    """``?user=``: the user's clicks back to the last 30-minute gap, their own sessions left out."""
    sessions = _sessions(seed=6)
    events = _events(sessions, BASE_MS)
    late = BASE_MS + 10**8
    walk = [
        Event("w0", "walker", "i9", EventType.BROWSE, late),  # a visit of its own, long before
        Event("w1", "walker", "i3", EventType.BROWSE, late + 3_600_000),
        Event("w2", "walker", "i5", EventType.BROWSE, late + 3_600_000 + 600_000),
    ]
    store = FoldStore(seeded)
    store.append_sessions(events + walk)
    store.append_recent(walk)
    live = serve(seeded, session_knn=KNN, session_cache_seconds=0.0)
    try:
        status, answer = live.get("/recommendations?user=walker&n=8")
        assert status == 200
        keys = {layout.session_key("walker", None, e.ts_ms) for e in walk[1:]}
        # The index files the walker's events under their window keys: here, as the oracle sees them.
        named = events + [dataclasses.replace(e, session=layout.session_key("walker", None, e.ts_ms)) for e in walk]
        _check(answer, _oracle(named, ["i3", "i5"], keys), 8)
    finally:
        live.stop()


def test_unservable_settings_are_refused(stack):
    with pytest.raises(ValueError, match="V-SKNN"):
        ServingConfig(settings=stack, session_method="vstan")
    with pytest.raises(ValueError, match="not one of"):
        ServingConfig(settings=stack, session_method="gru4rec")
    assert ServingConfig(settings=stack, session_method="v-sknn").session_knn == SessionKnn()
