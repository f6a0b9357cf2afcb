"""Brute-force oracles of the similarity tests: dense loops, no shared code with the pass."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def score_matrix(scores: dict[str, dict[str, float]]) -> tuple[list[str], sparse.csr_matrix]:
    """Item ids (sorted) and the user × item matrix of ``{user: {item: r_ui}}``."""
    ids = sorted({i for row in scores.values() for i in row})
    index = {item: k for k, item in enumerate(ids)}
    x = np.zeros((len(scores), len(ids)))
    for u, row in enumerate(scores.values()):
        for item, r in row.items():
            x[u, index[item]] = r
    return ids, sparse.csr_matrix(x)


def directed_loop_oracle(sequences, n: int, window: int, reverse: float, beta: float) -> np.ndarray:
    """Directed co-occurrence by loops: j up to ``window`` places after i adds 1/distance to
    (i, j) and ``reverse``/distance to (j, i); columns divided by popularity^beta."""
    expected, pop = np.zeros((n, n)), np.zeros(n)
    for seq in sequences:
        for a in seq:
            pop[a] += 1
        for x in range(len(seq)):
            for y in range(x + 1, min(len(seq), x + window + 1)):
                if seq[x] != seq[y]:
                    expected[seq[x], seq[y]] += 1.0 / (y - x)
                    expected[seq[y], seq[x]] += reverse / (y - x)
    return expected / np.maximum(pop, 1)[None, :] ** beta


def weighted_walk_oracle(r: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Weighted RP3beta by loops over users: item i -> user u with probability r_ui / Σ_v r_vi,
    user u -> item j with r_uj / Σ_k r_uk, each step to the power alpha; columns divided by
    the number of users holding j to the power beta."""
    users, n = r.shape
    expected = np.zeros((n, n))
    for i in range(n):
        into_i = sum(r[v, i] for v in range(users))
        for u in range(users):
            if r[u, i] == 0:
                continue
            out_of_u = sum(r[u, k] for k in range(n))
            for j in range(n):
                if r[u, j] > 0:
                    expected[i, j] += (r[u, i] / into_i) ** alpha * (r[u, j] / out_of_u) ** alpha
    holders = np.array([sum(1 for u in range(users) if r[u, j] > 0) for j in range(n)], dtype=float)
    return expected / np.maximum(holders, 1)[None, :] ** beta
