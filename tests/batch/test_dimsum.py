"""The pure numeric core of DIMSUM (NumPy/SciPy, no Spark) against brute-force oracles."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from batch import dimsum
from batch.source import blocks_from_scores


def random_scores(rng, users=60, items=25, density=0.2, weights=(0.5, 2.0, 6.0, 8.5)):
    scores = {}
    for u in range(users):
        row = {f"i{j:02d}": float(rng.choice(weights)) for j in range(items) if rng.random() < density}
        if row:
            scores[f"u{u}"] = row
    return scores


def as_inputs(scores, buckets=8):
    ids = sorted({i for row in scores.values() for i in row})
    index = {item: k for k, item in enumerate(ids)}
    norm2 = np.zeros(len(ids))
    for row in scores.values():
        for item, r in row.items():
            norm2[index[item]] += r * r
    return ids, index, norm2, blocks_from_scores(scores, index, buckets)


def dense_matrix(scores, index):
    users = sorted(scores)
    x = np.zeros((len(users), len(index)))
    for u, user in enumerate(users):
        for item, r in scores[user].items():
            x[u, index[item]] = r
    return x


def full_gram(blocks, n, norm2, params, item_hash):
    p, q = dimsum.sampling_probabilities(norm2, params.gamma(n), params.entry_scale)
    parts = []
    for block in blocks:
        sampled = dimsum.sample_block(block, n, p, q, item_hash, params.seed)
        parts.append((block.bucket, dimsum.block_gram(sampled.matrix)))
    return dimsum.sum_in_bucket_order(parts)


def test_exact_mode_equals_scipy_cosine_oracle():
    rng = np.random.default_rng(1)
    scores = random_scores(rng)
    ids, index, norm2, blocks = as_inputs(scores)
    params = dimsum.DimsumParams(threshold=0.0)
    gram = full_gram(blocks, len(ids), norm2, params, dimsum.id_hashes(ids)).toarray()
    oracle = dimsum.exact_cosines(sparse.csr_matrix(dense_matrix(scores, index))).toarray()
    off = ~np.eye(len(ids), dtype=bool)
    assert np.abs(gram[off] - oracle[off]).max() < 1e-12
    assert (oracle[off] > 0).sum() > 50  # the fixture really has co-occurrences


def test_probabilities_follow_the_design_formula():
    norm2 = np.array([1.0, 100.0, 10_000.0])
    params = dimsum.DimsumParams(threshold=0.5)
    gamma = params.gamma(1000)
    assert gamma == pytest.approx(10 * math.log(1000) / 0.5)
    p, q = dimsum.sampling_probabilities(norm2, gamma)
    sg = math.sqrt(gamma)
    assert p.tolist() == pytest.approx([1.0, min(1, sg / 10), sg / 100])
    assert q.tolist() == pytest.approx([1.0, min(sg, 10), sg])
    p0, q0 = dimsum.sampling_probabilities(norm2, dimsum.DimsumParams(threshold=0).gamma(1000))
    assert p0.tolist() == [1.0, 1.0, 1.0] and q0.tolist() == [1.0, 10.0, 100.0]


def test_keep_decisions_are_uniform_and_depend_only_on_seed_user_item():
    users = dimsum.id_hashes([f"u{k}" for k in range(20_000)])
    item = dimsum.id_hashes(["sku"])[0]
    u1 = dimsum.keep_uniforms(7, users, np.full(len(users), item, dtype=np.uint64))
    u2 = dimsum.keep_uniforms(7, users[::-1], np.full(len(users), item, dtype=np.uint64))[::-1]
    assert np.array_equal(u1, u2)
    assert 0 <= u1.min() and u1.max() < 1
    assert abs(u1.mean() - 0.5) < 0.01
    assert abs((u1 < 0.3).mean() - 0.3) < 0.01
    other_seed = dimsum.keep_uniforms(8, users, np.full(len(users), item, dtype=np.uint64))
    assert not np.array_equal(u1, other_seed)


def test_sampled_estimate_is_unbiased_over_seeds():
    rng = np.random.default_rng(3)
    # Few items with many users each: norms well above sqrt(gamma), so p_i < 1.
    scores = random_scores(rng, users=300, items=8, density=0.5, weights=(0.5, 1.0, 2.0))
    ids, index, norm2, blocks = as_inputs(scores)
    # The textbook sampler (M = 1), which keeps fewest entries: the hardest case.
    params = dimsum.DimsumParams(threshold=0.2, entry_scale=1.0)
    p, _ = dimsum.sampling_probabilities(norm2, params.gamma(len(ids)), params.entry_scale)
    assert (p < 0.7).all()
    oracle = dimsum.exact_cosines(sparse.csr_matrix(dense_matrix(scores, index))).toarray()
    hashes = dimsum.id_hashes(ids)
    estimates = [
        full_gram(blocks, len(ids), norm2, dataclasses.replace(params, seed=seed), hashes).toarray()
        for seed in range(200)
    ]
    mean = np.mean(estimates, axis=0)
    off = ~np.eye(len(ids), dtype=bool)
    assert np.abs(mean[off] - oracle[off]).max() < 0.03
    # Sampling did happen: single estimates differ from the oracle.
    assert np.abs(estimates[0][off] - oracle[off]).max() > 0.01


def test_pairs_emitted_count_kept_entries():
    block = dimsum.UserBlock(
        0, dimsum.id_hashes(["a", "b"]), np.array([0, 3, 5]), np.array([0, 1, 2, 0, 2], np.int32), np.ones(5)
    )
    out = dimsum.sample_block(block, 3, np.ones(3), np.ones(3), dimsum.id_hashes(["x", "y", "z"]), 0)
    assert (out.pairs_exact, out.pairs_emitted) == (3 + 1, 3 + 1)
    none = dimsum.sample_block(block, 3, np.zeros(3), np.ones(3), dimsum.id_hashes(["x", "y", "z"]), 0)
    assert none.pairs_emitted == 0 and none.matrix.nnz == 0


def test_row_subset_of_gram_is_bitwise_equal_to_full_rows():
    rng = np.random.default_rng(5)
    scores = random_scores(rng, users=200, items=40)
    ids, index, norm2, blocks = as_inputs(scores)
    p, q = dimsum.sampling_probabilities(norm2, dimsum.DimsumParams(threshold=0.3).gamma(len(ids)))
    rows = np.array([1, 7, 30])
    mask = np.zeros(len(ids), dtype=bool)
    mask[rows] = True
    for block in blocks:
        x = dimsum.sample_block(block, len(ids), p, q, dimsum.id_hashes(ids), 1).matrix
        full = dimsum.block_gram(x)[rows].toarray()
        subset = dimsum.block_gram(x, rows).toarray()
        assert np.array_equal(full, subset)
        # Only the users holding those items, sampled on their own: still the same rows.
        holders = block.holding(mask)
        assert holders.users < block.users
        x_holders = dimsum.sample_block(holders, len(ids), p, q, dimsum.id_hashes(ids), 1).matrix
        assert np.array_equal(dimsum.block_gram(x_holders, rows).toarray(), full)


def test_bucket_sum_is_order_independent():
    rng = np.random.default_rng(9)
    parts = [(b, sparse.random(5, 5, density=0.5, random_state=b, format="csr") * 1e3) for b in range(6)]
    shuffled = [parts[k] for k in rng.permutation(6)]
    assert np.array_equal(dimsum.sum_in_bucket_order(parts).toarray(), dimsum.sum_in_bucket_order(shuffled).toarray())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=8, max_size=8), min_size=1, max_size=8),
    st.integers(1, 5),
    st.floats(0.0, 0.5),
)
def test_top_k_rows_sorted_without_self_and_above_floor(dense, k, floor):
    gram = sparse.csr_matrix(np.array(dense))
    own = np.arange(gram.shape[0])
    for r, (cols, vals) in enumerate(dimsum.top_k_rows(gram, own, k, floor)):
        assert len(cols) <= k
        assert r not in cols.tolist()
        assert (vals > floor).all()
        pairs = list(zip((-vals).tolist(), cols.tolist()))
        assert pairs == sorted(pairs)
        # Nothing better was left out.
        row = np.array(dense[r])
        row[r] = -1
        best = sorted(((-v, c) for c, v in enumerate(row.tolist()) if v > floor))[:k]
        assert [c for _, c in best] == cols.tolist()


def test_params_reject_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        dimsum.DimsumParams(threshold=1.5)
    with pytest.raises(ValueError, match="top-k"):
        dimsum.DimsumParams(top_k=0)
    with pytest.raises(ValueError, match="seed"):
        dimsum.DimsumParams(seed=-1)
    with pytest.raises(ValueError, match="buckets"):
        dimsum.check_buckets(12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 4), st.integers(0, 4))
def test_incremental_merge_equals_recomputing_every_row(seed, k, n_affected, extra):
    """Merged clean rows + recomputed rows == top-K of the new matrix, for random changes.

    Stored lists ``extra`` entries deeper than K (a warm loop's) merge to exact top lists
    of at least K entries.
    """
    from batch import incremental

    rng = np.random.default_rng(seed)
    n = 14
    # Coarse values make ties likely, which the ordering must break like a full pass.
    old = np.round(rng.random((n, n)) * (rng.random((n, n)) < 0.6), 1)
    old = np.triu(old, 1) + np.triu(old, 1).T
    affected = np.zeros(n, dtype=bool)
    affected[rng.choice(n, size=n_affected, replace=False)] = True
    new = old.copy()
    changes = np.round(rng.random((n, n)) * (rng.random((n, n)) < 0.6), 1)
    changes = np.triu(changes, 1) + np.triu(changes, 1).T
    new[affected, :] = changes[affected, :]
    new[:, affected] = changes[:, affected]
    positions = np.arange(n)
    depth = k + extra
    old_rows = {p: row for p, row in enumerate(dimsum.top_k_rows(sparse.csr_matrix(old), positions, depth, 0.0))}
    want = dimsum.top_k_rows(sparse.csr_matrix(new), positions, depth, 0.0)

    bar = incremental.candidate_bars({p: r for p, r in old_rows.items() if not affected[p]}, affected, k)
    a_rows = np.flatnonzero(affected)
    c, a, v = [], [], []
    for row in a_rows.tolist():  # what the engine's reduce emits for the A rows
        for col in range(n):
            if col != row and not affected[col] and new[row, col] > 0 and new[row, col] >= bar[col]:
                c.append(col), a.append(row), v.append(new[row, col])
    deeper_only = {}
    merges, again = incremental.merge_rows(
        {p: r for p, r in old_rows.items() if not affected[p]},
        affected,
        (np.array(c, dtype=np.int32), np.array(a, dtype=np.int32), np.array(v)),
        k,
        depth,
        deeper_only,
    )
    for p in range(n):
        cols, vals = want[p]
        if affected[p] or p in again.tolist():
            continue  # recomputed from the new matrix: equal by construction
        got = merges.get(p, deeper_only.get(p))
        if p in deeper_only:  # the stored first K stay right
            assert [g[0] for g in got[:k]] == old_rows[p][0].tolist()[:k]
        if got is None:  # carried over unchanged
            got_cols, got_vals = old_rows[p]
        else:
            got_cols, got_vals = [g[0] for g in got], [g[1] for g in got]
        # An exact prefix of the new top list, at least K long where that has K entries.
        assert len(got_cols) >= min(k, len(cols))
        assert list(got_cols) == cols.tolist()[: len(got_cols)] and list(got_vals) == vals.tolist()[: len(got_vals)]
