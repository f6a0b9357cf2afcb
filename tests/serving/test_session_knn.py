"""Session-kNN (V-SKNN, STAN, VSTAN) against the slow oracle on random small sets, plus answers by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import session_knn
from serving.session_knn import SessionKnn
from tests.support.session_oracle import session_knn_scores


def run(knn: SessionKnn, current, sessions, idf=None, ages=None) -> dict[int, float]:
    """The module's two calls on in-memory sessions (numbered oldest first)."""
    by_item: dict[int, list[int]] = {}
    for s, items in enumerate(sessions):
        for item in dict.fromkeys(items):
            by_item.setdefault(item, []).append(s)
    found = session_knn.neighbours(
        knn,
        np.array(current, dtype=np.int64),
        lambda item: np.array(by_item.get(item, [])[-knn.sample :], dtype=np.int64),
        lambda ss: np.array([len(set(sessions[s])) for s in ss]),
        None if ages is None else (lambda ss: np.array([ages[s] for s in ss])),
    )
    items, scores, newest = session_knn.item_scores(
        knn,
        np.array(current, dtype=np.int64),
        found,
        lambda s: np.array(sessions[s], dtype=np.int64),
        None if idf is None else (lambda its: np.array([idf[i] for i in its])),
    )
    assert np.all(np.diff(items) > 0)
    # The tie-break: the most recent neighbour holding the item.
    for item, session in zip(items.tolist(), newest.tolist()):
        assert session in found.sessions.tolist() and item in sessions[session]
        assert not any(item in sessions[s] for s in found.sessions.tolist() if s > session)
    return dict(zip(items.tolist(), scores.tolist()))


def test_v_sknn_by_hand():
    # Current session [a, b] (a=0, b=1): weights div a 1/2, b 1; vec sim divides by |C| = 2.
    sessions = [[0, 2], [1, 3, 3], [0, 1, 4]]
    scores = run(SessionKnn(k=2), [0, 1], sessions)
    # Neighbours: s2 (a and b: 1.5/2 = 0.75, step 1), then s1 (b: 0.5, step 1) and s0 (a: 0.25,
    # step 2) tie below... k=2 keeps s2 and s1.
    assert scores == pytest.approx({0: 0.75, 1: 0.75 + 0.5, 3: 0.5, 4: 0.75})
    # With every neighbour, s0 votes 0.25 * 1/2 (its newest shared click is 2 steps back).
    assert run(SessionKnn(k=3), [0, 1], sessions)[2] == pytest.approx(0.125)


def test_the_sample_keeps_the_most_recent_candidates():
    sessions = [[0, 9], [0, 8], [0, 7]]
    # m = 2: the oldest session (item 9) is never compared.
    assert set(run(SessionKnn(sample=2), [0], sessions)) == {0, 7, 8}
    # Ties on similarity: the more recent neighbour wins the last place.
    assert set(run(SessionKnn(k=1), [0], sessions)) == {0, 7}


def test_vstan_by_hand():
    knn = SessionKnn(method="vstan", k=5, spw=1.0, inh=2.0, ipw=1.0)
    # One neighbour [5, 0, 6] holding the older of the current clicks [0, 1].
    scores = run(knn, [0, 1], [[5, 0, 6]])
    w = math.exp(-1)  # position weight of click 1 of 2
    sim = w / (math.sqrt(w * w + 1) * math.sqrt(3))
    ipw = math.exp((1 - 2) / 1.0)  # the shared click is one step before the newest
    # p* = 2 (item 0's place in the neighbour); items at distance 1, 0, 1.
    assert scores == pytest.approx({5: sim * math.exp(-1 / 2) * ipw, 0: sim * ipw, 6: sim * math.exp(-1 / 2) * ipw})


@st.composite
def problems(draw):
    vocabulary = draw(st.integers(2, 12))
    item = st.integers(0, vocabulary - 1)
    sessions = draw(st.lists(st.lists(item, min_size=1, max_size=7), min_size=0, max_size=25))
    current = draw(st.lists(item, min_size=0, max_size=8))
    method = draw(st.sampled_from(session_knn.METHODS))
    knn = SessionKnn(
        method=method,
        k=draw(st.integers(1, 8)),
        sample=draw(st.integers(1, 30)),
        weighting=draw(st.sampled_from(sorted(session_knn.POSITION_WEIGHTS))),
        similarity=draw(st.sampled_from(["vec", "cosine"])),
        decay=draw(st.sampled_from(sorted(session_knn.STEP_DECAYS))),
        idf_weight=draw(st.sampled_from([0.0, 1.0, 5.0])),
        spw=draw(st.sampled_from([0.5, 1.02, 4.9])),
        inh=draw(st.sampled_from([0.45, 2.05, 9.8])),
        ipw=draw(st.sampled_from([None, 1.02, 4.9])),
        snh=draw(st.sampled_from([None, 3.0])),
        last=draw(st.sampled_from([None, 1, 3])),
    )
    idf = {i: float(draw(st.sampled_from([0.0, 0.5, 2.0]))) for i in range(vocabulary)}
    ages = [float(a) for a in range(len(sessions), 0, -1)]
    return knn, current, sessions, idf, ages


@settings(max_examples=300, deadline=None)
@given(problems())
def test_matches_the_oracle(problem):
    knn, current, sessions, idf, ages = problem
    got = run(knn, current, sessions, idf, ages)
    want = session_knn_scores(knn, current, sessions, idf, ages)
    assert got.keys() == want.keys()
    for item, score in want.items():
        assert got[item] == pytest.approx(score, rel=1e-9, abs=1e-12)


def test_top_and_the_item_item_blend():
    votes = session_knn.Votes(np.array([1, 4, 7, 8]), np.array([2.0, 4.0, 4.0, 4.0]), np.array([0, 3, 5, 3]))
    # Equal scores: the item of the most recent neighbour first, then the lower item.
    assert session_knn.top(votes, 3).tolist() == [7, 4, 8]
    assert session_knn.top(votes, 5, excluded=np.array([4, 8])).tolist() == [7, 1]
    knn = SessionKnn(item_item=0.5)
    blended = session_knn.with_item_item(knn, votes, np.array([1, 9]), np.array([1.0, 0.5]))
    assert blended.items.tolist() == [1, 4, 7, 8, 9]
    assert blended.scores.tolist() == pytest.approx([0.25 + 0.5, 0.5, 0.5, 0.5, 0.25])
    assert blended.newest.tolist() == [0, 3, 5, 3, -1]


@pytest.mark.parametrize(
    "bad",
    [
        dict(method="sknn"),
        dict(k=0),
        dict(weighting="cubic"),
        dict(similarity="jaccard"),
        dict(spw=0.0),
        dict(item_item=1.5),
        dict(last=0),
    ],
)
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        SessionKnn(**bad)
