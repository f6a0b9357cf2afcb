"""The similarity registry against brute-force NumPy oracles, on one node and on Spark."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from batch import dimsum, engine, similarity
from batch.similarity import REGISTRY
from batch.source import blocks_from_csr
from schemas import entries
from tests.support.similarity_oracles import directed_loop_oracle, weighted_walk_oracle

GRAM_MEASURES = [name for name, m in REGISTRY.items() if not m.sequences]
TRANSFORMS = ["raw", entries.DEFAULT.spec, "cap:2", "log:6"]


def random_matrix(seed: int, users: int = 80, items: int = 30, density: float = 0.2) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((users, items)) < density, rng.choice([0.5, 2.0, 6.0, 8.5], (users, items)), 0.0)
    dense[0] = 0.5  # every item has a user
    return sparse.csr_matrix(dense)


def transformed(matrix: sparse.csr_matrix, spec: str) -> sparse.csr_matrix:
    out = matrix.copy()
    out.data = entries.parse(spec).apply(out.data)
    return out


def random_params(m, rng) -> dict[str, float]:
    return {name: float(rng.uniform(spec.low, min(spec.high, 3.0))) for name, spec in m.params.items()}


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{k:03d}" for k in range(count)]


@pytest.mark.parametrize("name", GRAM_MEASURES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exact_pass_equals_the_oracle(name, seed):
    rng = np.random.default_rng(seed)
    matrix = random_matrix(seed)
    m = REGISTRY[name]
    params = m.resolve(random_params(m, rng) if seed > 1 else None)
    spec = TRANSFORMS[seed % len(TRANSFORMS)]
    scores, counts = similarity.single_node(
        m,
        params,
        matrix,
        ids("u", matrix.shape[0]),
        ids("i", matrix.shape[1]),
        dimsum.DimsumParams(threshold=0.0),
        transform=spec,
    )
    expected = similarity.oracle(m, params, transformed(matrix, similarity.effective_transform(m, spec).spec))
    got = scores.toarray()
    off = ~np.eye(matrix.shape[1], dtype=bool)
    assert np.allclose(got[off], expected[off], rtol=1e-9, atol=1e-12)
    assert counts["pairs_emitted"] == counts["pairs_exact"]
    # The measures differ from one another (so the oracle comparison is not vacuous).
    if name != "cosine":
        cosine = similarity.oracle(REGISTRY["cosine"], {}, matrix)
        assert not np.allclose(expected[off], cosine[off]) or params.get("alpha") == 0.5


@pytest.mark.parametrize("name", GRAM_MEASURES)
def test_sampled_pass_is_close_to_the_oracle_on_average(name):
    matrix = random_matrix(4, users=300, items=12, density=0.4)
    m = REGISTRY[name]
    params = m.resolve()
    expected = similarity.oracle(
        m, params, transformed(matrix, similarity.effective_transform(m, entries.DEFAULT).spec)
    )
    # Weighted RP3beta's entries (f_ui/√s_u) sit far below their bound M = C^(α/2) on this
    # small input, so only a smaller (experimental) scale samples there.
    scale = {"entry_scale": 0.25} if name == "rp3beta_weighted" else {}
    runs = [
        similarity.single_node(
            m,
            params,
            matrix,
            ids("u", matrix.shape[0]),
            ids("i", matrix.shape[1]),
            dimsum.DimsumParams(threshold=0.5, seed=seed, **scale),
        )
        for seed in range(300)
    ]
    assert any(c["pairs_emitted"] < c["pairs_exact"] for _, c in runs)  # it did sample
    mean = np.mean([s.toarray() for s, _ in runs], axis=0)
    off = ~np.eye(matrix.shape[1], dtype=bool)
    # Unbiased: the average over seeds approaches the exact scores (per pair and in total).
    assert abs(mean[off].sum() - expected[off].sum()) / expected[off].sum() < 0.05
    assert np.abs(mean[off] - expected[off]).mean() / expected[off].mean() < 0.25


def test_spark_engine_applies_every_measure_as_the_single_node_pass(spark):
    matrix = random_matrix(5, users=120, items=20)
    users, items = ids("u", matrix.shape[0]), ids("i", matrix.shape[1])
    blocks = spark.sparkContext.parallelize(blocks_from_csr(users, matrix, 8), 3)
    stats = similarity.stats_of(transformed(matrix, entries.DEFAULT.spec))
    params = dimsum.DimsumParams(threshold=0.0, top_k=len(items))
    for name in GRAM_MEASURES:
        applied = engine.applied(spark.sparkContext, blocks, name, None, stats, params)
        result = engine.similarity_rows(
            spark.sparkContext, blocks, stats.norm2, dimsum.id_hashes(items), params, similarity=applied
        )
        expected = similarity.oracle(REGISTRY[name], applied.kwargs, transformed(matrix, applied.transform.spec))
        for i in range(len(items)):
            cols, vals = result.top.get(i, (np.empty(0, int), np.empty(0)))
            want = {j: expected[i, j] for j in range(len(items)) if j != i and expected[i, j] > 0}
            assert set(cols.tolist()) == set(want), name
            assert np.allclose(vals, [want[j] for j in cols.tolist()], rtol=1e-9), name
        check = engine.spot_check(blocks, stats.norm2, result, params, 50, similarity=applied)
        assert check["mean_relative_error"] < 1e-9, name


def test_params_are_checked_with_one_line_errors():
    assert REGISTRY["shrinkage"].resolve({"h": "5"}) == {"h": 5.0}
    with pytest.raises(ValueError, match="has no parameter 'k1'"):
        REGISTRY["shrinkage"].resolve({"k1": 1})
    with pytest.raises(ValueError, match=r"must be within \[0, 1\]"):
        REGISTRY["bm25"].resolve({"b": 2})
    with pytest.raises(ValueError, match="not a number"):
        REGISTRY["rp3beta"].resolve({"beta": "high"})
    with pytest.raises(ValueError, match="unknown similarity 'pearson'"):
        similarity.measure("pearson")
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        similarity.parse_params(["h"])
    with pytest.raises(ValueError, match="computed from sequences"):
        similarity.apply("directed", None, similarity.stats_of(random_matrix(1)), dimsum.DimsumParams())


def test_directed_cooccurrence_equals_a_loop_oracle():
    rng = np.random.default_rng(6)
    n = 15
    sequences = [rng.integers(0, n, size=rng.integers(1, 9)) for _ in range(60)]
    window, reverse, beta = 3, 0.4, 0.7
    got = similarity.directed_cooccurrence(sequences, n, window, reverse, beta).toarray()
    expected = directed_loop_oracle(sequences, n, window, reverse, beta)
    assert np.allclose(got, expected)
    assert got.sum() > 0


def test_weighted_rp3beta_is_the_weighted_walk_and_the_binary_walk_on_binary_scores():
    matrix = random_matrix(7, users=40, items=12, density=0.3)
    users, items = ids("u", matrix.shape[0]), ids("i", matrix.shape[1])
    m = REGISTRY["rp3beta_weighted"]
    exact = dimsum.DimsumParams(threshold=0.0)
    for alpha, beta in ((1.0, 0.3), (0.6, 0.9)):
        params = m.resolve({"alpha": alpha, "beta": beta})
        got = similarity.single_node(m, params, matrix, users, items, exact, "raw")[0].toarray()
        expected = weighted_walk_oracle(matrix.toarray(), alpha, beta)
        off = ~np.eye(len(items), dtype=bool)
        assert np.allclose(got[off], expected[off], rtol=1e-9, atol=1e-12)
        # The weights matter: the binary walk ranks differently on the same scores.
        binary = similarity.single_node(REGISTRY["rp3beta"], params, matrix, users, items, exact, "raw")[0].toarray()
        assert not np.allclose(got[off], binary[off])
        # With every r_ui = 1 the weighted walk is the binary one.
        ones = matrix.copy()
        ones.data[:] = 1.0
        weighted_ones = similarity.single_node(m, params, ones, users, items, exact)[0].toarray()
        binary_ones = similarity.single_node(REGISTRY["rp3beta"], params, ones, users, items, exact)[0].toarray()
        assert np.allclose(weighted_ones[off], binary_ones[off], rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(
        st.lists(st.floats(0.5, 1e6, allow_nan=False, allow_infinity=False), min_size=6, max_size=6),
        min_size=4,
        max_size=12,
    ),
    spec=st.sampled_from(["cap:6", "cap:0.5", "saturate:1", "saturate:0.25", "log:6", "log:100"]),
)
def test_every_sampled_entry_is_within_m_by_construction(scores, spec):
    """Whatever the scores (a bot's r_ui of 10^6 included), every entry a measure samples is
    <= M, and M is the same for any data: a property of the measure and the transform."""
    rng = np.random.default_rng(len(scores))
    dense = np.where(rng.random((len(scores), 6)) < 0.6, np.asarray(scores), 0.0)
    dense[0] = scores[0]
    matrix = sparse.csr_matrix(dense)
    block = blocks_from_csr(ids("u", matrix.shape[0]), matrix, 1)[0]
    params = dimsum.DimsumParams(threshold=0.3)

    def applied(name, data, transform=spec):
        def own_norm2(entries_of):
            return similarity.column_norm2(entries_of(block).matrix(6), 6)

        stats = similarity.stats_of(transformed(data, similarity.effective_transform(REGISTRY[name], transform).spec))
        return similarity.apply(name, None, stats, params, own_norm2, transform)

    unit = sparse.csr_matrix(np.ones((2, 6)))
    for name in GRAM_MEASURES:
        measure = applied(name, matrix)
        x = measure.weighted(block).values
        assert math.isfinite(measure.entry_scale) and np.all(x <= measure.entry_scale * (1 + 1e-12)), name
        assert applied(name, unit).entry_scale == measure.entry_scale, name
    # Raw scores have no ceiling: M = ∞, so every entry is kept (the exact pass), never sampled unbounded.
    raw = applied("cosine", matrix, "raw")
    p, _ = dimsum.sampling_probabilities(raw.n**2, params.gamma(6), raw.entry_scale)
    assert math.isinf(raw.entry_scale) and np.all(p == 1.0)
