"""The scoring kernel against a brute-force NumPy oracle, plus known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.scoring import MAX_N, NeighbourRow, Scorer


def oracle(items, scores, offsets, weights, excluded, n):
    """score_i = sum_j w_j s_ji in the kernel's summation order; best n by (-score, index)."""
    lengths = np.diff(offsets)
    acc = np.zeros(max(items.max(initial=-1), excluded.max(initial=-1)) + 1)
    np.add.at(acc, items, np.repeat(weights, lengths) * scores)
    candidates = np.setdiff1d(np.unique(items), excluded)
    order = np.lexsort((candidates, -acc[candidates]))[:n]
    return candidates[order], acc[candidates[order]]


@st.composite
def problems(draw):
    history = draw(st.integers(0, 8))
    # A small vocabulary and a few distinct values force duplicates and ties.
    vocabulary = draw(st.integers(1, 25))
    values = st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0, 0.3])
    lengths = draw(st.lists(st.integers(0, 12), min_size=history, max_size=history))
    total = sum(lengths)
    items = np.array(draw(st.lists(st.integers(0, vocabulary - 1), min_size=total, max_size=total)), dtype=np.int32)
    scores = np.array(draw(st.lists(values, min_size=total, max_size=total)), dtype=np.float64)
    weights = np.array(draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 6.0, 0.7]), min_size=history, max_size=history)))
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    excluded = np.array(draw(st.lists(st.integers(0, vocabulary + 3), max_size=6)), dtype=np.int32)
    n = draw(st.integers(0, 40))  # often more than the candidates
    return items, scores, offsets, weights, excluded, n


SCORER = Scorer()  # shared on purpose: scratch reuse across calls must not leak state


@settings(max_examples=400, deadline=None)
@given(problems())
def test_kernel_matches_the_oracle(problem):
    items, scores, offsets, weights, excluded, n = problem
    top = SCORER.top_n(items, scores, offsets, weights, n, excluded=excluded, explain=True)
    want_items, want_scores = oracle(items, scores, offsets, weights, excluded, n)
    np.testing.assert_array_equal(top.items, want_items)
    np.testing.assert_array_equal(top.scores, want_scores)
    assert not np.isin(top.items, excluded).any()
    # The serving path (one NeighbourRow per history item) gives the same answer.
    rows = [
        NeighbourRow(items[offsets[j] : offsets[j + 1]], scores[offsets[j] : offsets[j + 1]])
        for j in range(len(weights))
    ]
    by_rows = SCORER.top_n_rows(rows, weights, n, excluded=excluded, explain=True)
    np.testing.assert_array_equal(by_rows.items, want_items)
    np.testing.assert_array_equal(by_rows.scores, want_scores)
    np.testing.assert_array_equal(by_rows.contributions, top.contributions)
    # Explain: contributions of each result add up to its score, per history item.
    assert top.contributions.shape == (len(want_items), len(weights))
    for k, item in enumerate(top.items):
        for j in range(len(weights)):
            part = items[offsets[j] : offsets[j + 1]] == item
            assert top.contributions[k, j] == pytest.approx(
                weights[j] * scores[offsets[j] : offsets[j + 1]][part].sum()
            )
        assert top.contributions[k].sum() == pytest.approx(top.scores[k])


@settings(max_examples=300, deadline=None)
@given(problems(), st.data())
def test_catalogue_filters_match_the_oracle(problem, data):
    items, scores, offsets, weights, excluded, n = problem
    # Facts shorter than the vocabulary at times: an index beyond them has no category and is shown.
    facts = data.draw(st.integers(0, 30))
    category = np.array(data.draw(st.lists(st.integers(-1, 3), min_size=facts, max_size=facts)), dtype=np.int32)
    hidden = np.array(data.draw(st.lists(st.booleans(), min_size=facts, max_size=facts)), dtype=bool)
    codes = data.draw(st.none() | st.lists(st.integers(-1, 4), max_size=3))
    codes = None if codes is None else np.array(codes, dtype=np.int32)
    rows = [
        NeighbourRow(items[offsets[j] : offsets[j + 1]], scores[offsets[j] : offsets[j + 1]])
        for j in range(len(weights))
    ]
    top = SCORER.top_n_rows(
        rows, weights, n, excluded=excluded, explain=True, category=category, hidden=hidden, codes=codes
    )
    # The oracle: rank everything, then drop what the filters refuse, then take n.
    everything, all_scores = oracle(items, scores, offsets, weights, excluded, 10**6)
    of = np.array([category[i] if i < facts else -1 for i in everything], dtype=np.int32)
    shown = np.array([not (i < facts and hidden[i]) for i in everything], dtype=bool)
    keep = shown & (np.isin(of, codes) if codes is not None else True)
    np.testing.assert_array_equal(top.items, everything[keep][:n])
    np.testing.assert_array_equal(top.scores, all_scores[keep][:n])
    plain = SCORER.top_n(items, scores, offsets, weights, 10**3, excluded=excluded, explain=True)
    assert top.contributions.shape == (len(top.items), len(weights))
    for k, item in enumerate(top.items.tolist()):
        np.testing.assert_array_equal(top.contributions[k], plain.contributions[plain.items.tolist().index(item)])


def test_known_answer_with_tie_break_and_exclusion():
    # History a (w=2) -> [b .5, c .25, d 1], history e (w=1) -> [c .5, b 0, d .5]
    items = np.array([1, 2, 3, 2, 1, 3], dtype=np.int32)
    scores = np.array([0.5, 0.25, 1.0, 0.5, 0.0, 0.5])
    top = Scorer().top_n(
        items,
        scores,
        np.array([0, 3, 6]),
        np.array([2.0, 1.0]),
        5,
        excluded=np.array([3], dtype=np.int32),
        explain=True,
    )
    # b = 1.0, c = 0.5 + 0.5 = 1.0: a tie, broken by the lower index (b=1).
    assert top.items.tolist() == [1, 2]
    assert top.scores.tolist() == [1.0, 1.0]
    assert top.contributions.tolist() == [[1.0, 0.0], [0.5, 0.5]]


def test_empty_history_and_zero_n():
    scorer = Scorer()
    empty = scorer.top_n(np.empty(0, np.int32), np.empty(0), np.array([0]), np.empty(0), 10)
    assert empty.items.size == 0 and empty.contributions is None
    none = scorer.top_n(np.array([1], np.int32), np.array([1.0]), np.array([0, 1]), np.array([1.0]), 0)
    assert none.items.size == 0


def test_scratch_grows_with_the_vocabulary():
    scorer = Scorer(capacity=2)
    top = scorer.top_n(np.array([100_000, 5], np.int32), np.array([1.0, 2.0]), np.array([0, 2]), np.array([1.0]), 3)
    assert top.items.tolist() == [5, 100_000]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"items": np.array([0.5, 1.5])}, "items must be int32"),
        ({"items": np.array([-1, 0], np.int32)}, ">= 0"),
        ({"items": np.array([[0, 1]], np.int32)}, "one-dimensional"),
        ({"scores": np.array([np.nan, 1.0])}, "finite"),
        ({"weights": np.array([np.inf])}, "finite"),
        ({"scores": np.array([1.0])}, "differ in shape"),
        ({"offsets": np.array([0, 1])}, "offsets"),
        ({"offsets": np.array([1, 2])}, "offsets"),
        ({"offsets": np.array([0, 3, 2])}, "offsets"),
        ({"excluded": np.array([-3], np.int32)}, ">= 0"),
        ({"n": MAX_N + 1}, "n must be"),
        ({"n": -1}, "n must be"),
        ({"n": 2.0}, "n must be"),
        ({"items": np.array([2**40, 1])}, "does not fit"),
    ],
)
def test_bad_inputs_are_clear_errors(change, message):
    args = {
        "items": np.array([0, 1], np.int32),
        "scores": np.array([0.5, 0.5]),
        "offsets": np.array([0, 2]),
        "weights": np.array([1.0]),
        "n": 2,
        "excluded": None,
    }
    if "offsets" in change and len(change["offsets"]) == 3:
        args["weights"] = np.array([1.0, 1.0])
    args.update(change)
    n, excluded = args.pop("n"), args.pop("excluded")
    with pytest.raises(ValueError, match=message):
        Scorer().top_n(args["items"], args["scores"], args["offsets"], args["weights"], n, excluded=excluded)


def test_rows_are_checked_when_built():
    with pytest.raises(ValueError, match="int32"):
        NeighbourRow(np.array([1.5]), np.array([1.0]))
    with pytest.raises(ValueError, match="differ in length"):
        NeighbourRow(np.array([1], np.int32), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=">= 0"):
        NeighbourRow(np.array([-1], np.int32), np.array([1.0]))
    with pytest.raises(ValueError, match="finite"):
        NeighbourRow(np.array([1], np.int32), np.array([np.nan]))
    row = NeighbourRow(np.array([4, 2], np.int32), np.array([0.5, 0.25]))
    with pytest.raises(ValueError, match="1 rows but 2 weights"):
        Scorer().top_n_rows([row], np.array([1.0, 2.0]), 3)
    with pytest.raises(TypeError):
        Scorer().top_n_rows([(np.array([1]), np.array([1.0]))], np.array([1.0]), 3)
    assert Scorer().top_n_rows([row], np.array([2.0]), 3).items.tolist() == [4, 2]


@settings(max_examples=300, deadline=None)
@given(problems(), st.data())
def test_rule_multipliers_match_the_oracle(problem, data):
    """Merchandising rules: each candidate's score times its factor before the ranking."""
    items, scores, offsets, weights, excluded, n = problem
    facts = data.draw(st.integers(0, 30))
    category = np.full(facts, -1, dtype=np.int32)
    hidden = np.array(data.draw(st.lists(st.booleans(), min_size=facts, max_size=facts)), dtype=bool)
    # A few distinct factors (boost, bury, neutral) keep ties possible after the multiplication.
    factor = np.array(
        data.draw(st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]), min_size=facts, max_size=facts)),
        dtype=np.float64,
    )
    rows = [
        NeighbourRow(items[offsets[j] : offsets[j + 1]], scores[offsets[j] : offsets[j + 1]])
        for j in range(len(weights))
    ]
    top = SCORER.top_n_rows(rows, weights, n, excluded=excluded, category=category, hidden=hidden, factor=factor)
    # The oracle: every candidate's sum times its factor (1 beyond the facts), hidden ones out, ranked.
    everything, all_scores = oracle(items, scores, offsets, weights, excluded, 10**6)
    shown = np.array([not (i < facts and hidden[i]) for i in everything], dtype=bool)
    multiplied = all_scores * np.array([factor[i] if i < facts else 1.0 for i in everything])
    candidates, values = everything[shown], multiplied[shown]
    order = np.lexsort((candidates, -values))[:n]
    np.testing.assert_array_equal(top.items, candidates[order])
    np.testing.assert_array_equal(top.scores, values[order])


def test_a_boost_reorders_and_a_bury_sinks():
    rows = [NeighbourRow(np.array([0, 1, 2], dtype=np.int32), np.array([0.9, 0.5, 0.4]))]
    facts = dict(category=np.full(3, -1, dtype=np.int32), hidden=np.zeros(3, dtype=bool))
    plain = Scorer().top_n_rows(rows, np.ones(1), 3, **facts)
    assert plain.items.tolist() == [0, 1, 2]
    ruled = Scorer().top_n_rows(rows, np.ones(1), 3, factor=np.array([0.5, 1.0, 2.0]), **facts)
    assert ruled.items.tolist() == [2, 1, 0] and ruled.scores.tolist() == [0.8, 0.5, 0.45]
    with pytest.raises(ValueError, match="factor"):
        Scorer().top_n_rows(rows, np.ones(1), 3, factor=np.ones(2), **facts)
