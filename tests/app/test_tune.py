"""``tune``'s choice on synthetic data: noise keeps the default, a clear gain is taken, and the
simplest candidate within noise of the best wins."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from schemas.tuned import TunedConfig
from streamsim.app import significance, tune
from streamsim.app.evaluate import Interactions, Query

DEFAULT, CLOSE, CLEAR = 0, 1, 2


def hits(rng, pairs: int, rates: list[float], shared: float = 0.6) -> np.ndarray:
    """Pairs × candidates of 0/1 hits at ``rates``; a ``shared`` share of each candidate's hits
    are the default's own (candidates of one recommender agree on most pairs)."""
    base = rng.random(pairs)
    columns = []
    for rate in rates:
        own = rng.random(pairs)
        columns.append(np.where(rng.random(pairs) < shared, base, own) < rate)
    return np.column_stack(columns).astype(np.float64)


def test_a_gain_within_noise_keeps_the_default_and_a_clear_gain_is_taken():
    rng = np.random.default_rng(3)
    values = hits(rng, 600, [0.10, 0.115, 0.20])
    labels = ["cosine()", "bm25()", "rp3beta()"]
    # Without the clear winner: the close candidate scores higher here, yet the default stays.
    close = significance.compare(values[:, :2], DEFAULT, seed=0)
    assert close.mean[CLOSE] > close.mean[DEFAULT] and close.diff_low[CLOSE] < 0 < close.diff_high[CLOSE]
    kept = significance.choose(close, labels[:2], [(0, 0), (0, 1)])
    assert kept.chosen == DEFAULT and kept.best == CLOSE and "beyond noise" in kept.reason
    # With it: the clear winner is taken, and the interval of its gain excludes 0.
    clear = significance.compare(values, DEFAULT, seed=0)
    taken = significance.choose(clear, labels, [(0, 0), (0, 1), (0, 2)])
    assert taken.chosen == CLEAR and clear.diff_low[CLEAR] > 0
    assert clear.low[CLEAR] <= clear.mean[CLEAR] <= clear.high[CLEAR]


def test_the_simplest_candidate_within_noise_of_the_best_is_chosen():
    rng = np.random.default_rng(4)
    # Two candidates far above the default and within noise of each other: the simpler one
    # is chosen even when the more complex one scores a little higher.
    values = hits(rng, 2000, [0.10, 0.20, 0.205], shared=0.9)
    comparison = significance.compare(values, DEFAULT, seed=1)
    assert comparison.mean[2] > comparison.mean[1]
    choice = significance.choose(
        comparison, ["cosine()", "shrinkage(h=5)", "directed() + pop 0.2"], [(0, 0), (0, 1), (1, 5)]
    )
    assert choice.best == 2 and choice.chosen == 1 and set(choice.contenders) == {1, 2}
    assert "simplest of 2 candidates within noise" in choice.reason


def test_picking_the_best_of_many_null_candidates_rarely_beats_the_default():
    # 30 candidates no better than the default: compared one by one at 95%, some "win" in many
    # trials; the simultaneous intervals keep the family-wise rate near 5%.
    simultaneous = one_by_one = 0
    trials = 40
    for trial in range(trials):
        rng = np.random.default_rng(100 + trial)
        comparison = significance.compare(hits(rng, 800, [0.1] * 31), DEFAULT, seed=trial, resamples=400)
        labels, simple = [f"c{k}" for k in range(31)], [(0, k) for k in range(31)]
        simultaneous += significance.choose(comparison, labels, simple).chosen != DEFAULT
        diffs = comparison.resampled - comparison.resampled[:, [DEFAULT]]
        one_by_one += bool((np.percentile(diffs, 2.5, axis=0) > 0).any())
    assert simultaneous / trials <= 0.15
    assert one_by_one >= 2 * max(simultaneous, 2)


def interactions(rng, users: int, items: int, per_user: int, popularity: np.ndarray) -> Interactions:
    """Users holding ``per_user`` items drawn by ``popularity``, with no co-occurrence structure."""
    rows, cols = [], []
    for u in range(users):
        chosen = rng.choice(items, size=per_user, replace=False, p=popularity)
        rows += [u] * per_user
        cols += chosen.tolist()
    matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(users, items))
    return Interactions([f"u{u}" for u in range(users)], [f"i{i}" for i in range(items)], matrix)


def queries_of(data: Interactions, rng, targets_by: np.ndarray) -> list[Query]:
    out = []
    for u in range(len(data.users)):
        own = data.matrix[u].indices.astype(np.int64)
        unseen = np.setdiff1d(np.arange(len(data.items)), own)
        p = targets_by[unseen] / targets_by[unseen].sum()
        out.append(Query(own, np.ones(len(own)), int(rng.choice(unseen, p=p)), own))
    return out


@pytest.fixture
def plain_knobs(monkeypatch):
    # Stage 2 adds nothing, so the clear winner is one candidate.
    monkeypatch.setattr(tune, "KNOB_GRID", {"popularity_blend": (0.0,)})


def test_tune_keeps_the_default_on_data_without_structure(plain_knobs):
    rng = np.random.default_rng(6)
    flat = np.full(120, 1 / 120)
    data = interactions(rng, 400, 120, 4, flat)
    outcome = tune.search(data, queries_of(data, rng, flat), metric="hr@10", allow_repeats=False, seed=0)
    # Some candidate scores higher than cosine on these pairs, by luck: the default stays.
    assert outcome.choice.best != outcome.comparison.reference
    assert outcome.chosen == outcome.default and outcome.default.label == "cosine()"
    config = tune.config_of(outcome, {"validation_pairs": 400}, seed=0)
    assert config.similarity == "cosine" and config.serving.popularity_blend == 0.0
    assert "beyond noise" in config.provenance["choice"]["reason"]
    assert TunedConfig.from_json(config.to_json()).provenance["choice"]["vs_default"] == [0.0, 0.0, 0.0]


def decoyed(groups: int = 40, decoys: int = 12, alone: int = 500) -> tuple[Interactions, list[Query]]:
    """Item A_k goes with B_k for 20 shoppers; each of A_k's ``decoys`` D_kj goes with it for 2
    shoppers, and B_k is also bought alone by ``alone`` others. Cosine (on any entries: they
    are near binary here) ranks every decoy above the popular B_k (2/√(44·2) > 20/√(44·520));
    shrinkage's h discounts the pairs few shoppers support and ranks B_k first. Validation:
    [A_k] -> B_k."""
    items = []
    rows, cols, vals = [], [], []
    user = 0
    for k in range(groups):
        a, b = len(items), len(items) + 1
        items += [f"a{k}", f"b{k}"] + [f"d{k}-{j}" for j in range(decoys)]
        for _ in range(20):
            rows += [user, user]
            cols += [a, b]
            vals += [1.0, 1.0]
            user += 1
        for j in range(decoys):
            for _ in range(2):
                rows += [user, user]
                cols += [a, b + 1 + j]
                vals += [1.0, 1.0]
                user += 1
        for _ in range(alone):
            rows.append(user)
            cols.append(b)
            vals.append(1.0)
            user += 1
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(user, len(items)))
    data = Interactions([f"u{u}" for u in range(user)], items, matrix)
    queries = [
        Query(np.array([14 * k]), np.ones(1), 14 * k + 1, np.array([14 * k])) for k in range(groups) for _ in range(5)
    ]
    return data, queries


def test_tune_chooses_a_clearly_better_candidate(plain_knobs, monkeypatch):
    monkeypatch.setattr(tune, "MEASURE_GRID", [("cosine", {}), ("shrinkage", {"h": 100}), ("jaccard", {})])
    monkeypatch.setattr(tune, "ENTRY_GRID", ())  # the default entries only
    data, queries = decoyed()
    outcome = tune.search(data, queries, metric="hr@10", allow_repeats=False, seed=0)
    assert [c.label for c in outcome.candidates] == ["cosine()", "shrinkage(h=100)", "jaccard()", "popular"]
    assert outcome.chosen.label == "shrinkage(h=100)"
    gain, low, _ = outcome.gain(outcome.choice.chosen)
    assert low > 0 and gain > 0.5
    config = tune.config_of(outcome, {}, seed=0)
    assert config.similarity == "shrinkage" and config.provenance["choice"]["vs_default"][1] > 0
