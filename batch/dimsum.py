"""DIMSUM's numeric core: sampling, per-bucket Gram, top-K. Pure NumPy/SciPy, no Spark.

The estimator (docs/design.md; Zadeh & Carlsson, Spark's ``columnSimilarities``): threshold s,
γ = 10·ln(n)/s with n the number of items, sg = √γ, p_i = min(1, sg/‖c_i‖),
q_i = min(sg, ‖c_i‖); s = 0 means exact (p = 1, q = ‖c_i‖).

How it is vectorised: instead of sampling pairs, every ENTRY (u, i) of the users × items
matrix is kept independently with probability p_i and, if kept, scaled to r_ui/q_i. For
i ≠ j, E[B_ui·B_uj] = p_i·p_j, so entry (i, j) of the Gram XᵀX is, in expectation,
Σ_u r_ui·r_uj/(‖c_i‖·‖c_j‖) = cos(i, j): the same unbiased estimator, with the same
per-pair variance, computed by one sparse matrix product per block of users.

The keep decision is a counter-based hash of (seed, user id, item id), so it does not depend
on how users are partitioned. Sums are made bit-for-bit reproducible too: users are grouped
into fixed *buckets* of the salted row-key space (see :func:`bucket_of_key`), each bucket's
Gram is computed over its users in key order, and bucket Grams are added in bucket order
(:func:`sum_in_bucket_order`), whatever the number of Spark partitions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable

import numpy as np
from scipy import sparse

#: Largest number of buckets: the salt is 4 hex digits (16 bits) of the row key.
MAX_BUCKETS = 1 << 16


@dataclasses.dataclass(frozen=True)
class DimsumParams:
    """What a pass computes; two passes with equal params and input give equal rows."""

    threshold: float = 0.1
    seed: int = 0
    top_k: int = 50
    #: Neighbours must score strictly above this floor to be kept.
    min_similarity: float = 0.0
    #: M: sampling treats entries as x/M, in [0, 1] as Zadeh-Carlsson's bound assumes (the
    #: estimate is unbiased whatever M; a larger M keeps more entries). None: the ceiling of
    #: the pass's entry transform (``schemas.entries``), which bounds every entry by
    #: construction; a number overrides it, for experiments only (entries above it void the bound).
    entry_scale: float | None = None

    def __post_init__(self):
        # (bool is an int subclass: True is not a threshold or a count.)
        if not (_is_number(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ValueError(f"threshold {self.threshold!r} must be within [0, 1] (0 = exact)")
        if not (_is_integer(self.seed) and 0 <= self.seed < 1 << 64):
            raise ValueError(f"seed {self.seed!r} must be an integer in [0, 2**64)")
        if not (_is_integer(self.top_k) and 1 <= self.top_k <= 10_000):
            raise ValueError(f"top-k {self.top_k!r} must be an integer in [1, 10000]")
        # Scores r_ui are non-negative (positive event weights), so every cosine is in
        # [0, 1], and a neighbour must score strictly ABOVE the floor. A floor >= 1 would
        # keep nothing but sampling overshoot (a DIMSUM estimate of a cosine near 1 can
        # exceed 1): an empty or noise-only generation. A negative floor means nothing
        # more than 0 (pairs that share no user are never scored). Hence [0, 1).
        if not (_is_number(self.min_similarity) and 0.0 <= self.min_similarity < 1.0):
            raise ValueError(
                f"min-similarity {self.min_similarity!r} must be within [0, 1): similarities are cosines of "
                "non-negative scores, and a neighbour must score above it"
            )
        if self.entry_scale is not None and not (_is_number(self.entry_scale) and self.entry_scale > 0):
            raise ValueError(f"entry scale {self.entry_scale!r} must be a positive number")

    def gamma(self, n_items: int) -> float:
        """γ = 10·ln(n)/s (∞ when s = 0: nothing is sampled)."""
        if self.threshold == 0:
            return math.inf
        # ln(1) = 0 would make γ = 0 and drop every entry; a 1-item matrix has no pairs anyway.
        return 10.0 * math.log(max(n_items, 2)) / self.threshold


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sampling_probabilities(norm2: np.ndarray, gamma: float, entry_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(p, q) per item from the stream's squared column norms.

    With entries scaled to x/M (M = ``entry_scale``) the column norms are ‖c_i‖/M, so
    p_i = min(1, M·sg/‖c_i‖); q_i = M·min(sg, ‖c_i‖/M) keeps the kept values r_ui/q_i.
    M = ∞ (raw scores, which no ceiling bounds) keeps every entry: the exact pass.
    """
    norms = np.sqrt(np.asarray(norm2, dtype=np.float64))
    # An item with no users has no entries; 1 keeps the divisions finite.
    norms = np.where(norms > 0, norms, 1.0)
    if math.isinf(gamma):
        return np.ones_like(norms), norms
    sg = math.sqrt(gamma) * entry_scale
    return np.minimum(1.0, sg / norms), np.minimum(sg, norms)


def id_hashes(ids: Iterable[str]) -> np.ndarray:
    """A stable 64-bit hash per id (blake2b), the counter of the sampler."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest(), "little") for i in ids),
        dtype=np.uint64,
    )


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Vigna's splitmix64 finaliser on uint64 arrays (wrapping arithmetic is intended)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def keep_uniforms(seed: int, user_hash: np.ndarray, item_hash: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) per entry, a pure function of (seed, user, item)."""
    with np.errstate(over="ignore"):
        key = splitmix64(np.asarray([seed], dtype=np.uint64))[0]
        mixed = splitmix64(splitmix64(user_hash ^ key) ^ item_hash)
    # The top 53 bits fill a double's mantissa exactly.
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def bucket_of_key(key: bytes, buckets: int) -> int:
    """The bucket of a salted row key (``layout`` keys start with 4 hex digits)."""
    return int(key[:4], 16) * buckets // MAX_BUCKETS


def check_buckets(buckets: int) -> int:
    if not (isinstance(buckets, int) and 1 <= buckets <= MAX_BUCKETS and buckets & (buckets - 1) == 0):
        raise ValueError(f"buckets {buckets!r} must be a power of two in [1, {MAX_BUCKETS}]")
    return buckets


@dataclasses.dataclass
class UserBlock:
    """The users of one bucket, in row-key order, as CSR over the global item index.

    ``values`` are the raw r_ui (unsampled, unscaled); ``indices`` are item positions in
    the pass's sorted item list.
    """

    bucket: int
    user_hash: np.ndarray  # uint64, one per user
    indptr: np.ndarray  # int64, len(users) + 1
    indices: np.ndarray  # int32
    values: np.ndarray  # float64

    @property
    def users(self) -> int:
        return len(self.user_hash)

    def holding(self, item_mask: np.ndarray) -> UserBlock:
        """The users with an entry on a masked item, in the same order (all their entries).

        Exactly the users that contribute to those items' Gram rows, so the rows computed
        from this block equal the full block's bit for bit.
        """
        counts = np.diff(self.indptr)
        hits = np.bincount(
            np.repeat(np.arange(self.users), counts), weights=item_mask[self.indices], minlength=self.users
        )
        keep = hits > 0
        if keep.all():
            return self
        entry_keep = np.repeat(keep, counts)
        return UserBlock(
            self.bucket,
            self.user_hash[keep],
            np.concatenate(([0], np.cumsum(counts[keep], dtype=np.int64))),
            self.indices[entry_keep],
            self.values[entry_keep],
        )

    def matrix(self, n_items: int) -> sparse.csr_matrix:
        return sparse.csr_matrix((self.values, self.indices, self.indptr), shape=(self.users, n_items))


@dataclasses.dataclass(frozen=True)
class SampledBlock:
    matrix: sparse.csr_matrix  # kept entries, scaled to r_ui / q_i
    pairs_emitted: int  # Σ_u C(kept entries of u, 2)
    pairs_exact: int  # Σ_u C(entries of u, 2)


def sample_block(
    block: UserBlock, n_items: int, p: np.ndarray, q: np.ndarray, item_hash: np.ndarray, seed: int
) -> SampledBlock:
    counts = np.diff(block.indptr)
    indices, values = block.indices, block.values
    if np.all(p[indices] >= 1.0):
        keep = None
        kept_counts = counts
    else:
        entry_user = np.repeat(block.user_hash, counts)
        keep = keep_uniforms(seed, entry_user, item_hash[indices]) < p[indices]
        kept_counts = np.bincount(np.repeat(np.arange(block.users), counts)[keep], minlength=block.users)
        indices, values = indices[keep], values[keep]
    indptr = np.concatenate(([0], np.cumsum(kept_counts, dtype=np.int64)))
    matrix = sparse.csr_matrix((values / q[indices], indices, indptr), shape=(block.users, n_items))
    return SampledBlock(
        matrix=matrix,
        pairs_emitted=int((kept_counts * (kept_counts - 1) // 2).sum()),
        pairs_exact=int((counts * (counts - 1) // 2).sum()),
    )


def block_gram(x: sparse.csr_matrix, rows: np.ndarray | None = None) -> sparse.csr_matrix:
    """Rows ``rows`` (global item positions; all if None) of XᵀX for one block of users.

    Each output row is computed on its own by SciPy's SMMP product, summing over users in
    block order, so a subset of rows equals the same rows of the full product bit for bit
    (incremental passes rely on it).
    """
    xt = x.T.tocsr()
    if rows is not None:
        xt = xt[rows]
    return (xt @ x).tocsr()


def sum_in_bucket_order(parts: Iterable[tuple[int, sparse.csr_matrix]]) -> sparse.csr_matrix:
    """Σ of per-bucket matrices, added in bucket order so the float result is reproducible."""
    ordered = sorted(parts, key=lambda part: part[0])
    if not ordered:
        raise ValueError("nothing to sum")
    total = ordered[0][1]
    for _, part in ordered[1:]:
        total = total + part
    return total.tocsr()


def top_k_rows(
    gram: sparse.csr_matrix, row_items: np.ndarray, k: int, floor: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row: the k best (item positions, scores) above ``floor``, without the row's own item.

    Order: score descending, ties by item position (= item id order), so equal inputs give
    equal lists.
    """
    gram = gram.tocsr()
    out = []
    indptr, indices, data = gram.indptr, gram.indices, gram.data
    for r, own in enumerate(np.asarray(row_items).tolist()):
        cols = indices[indptr[r] : indptr[r + 1]]
        vals = data[indptr[r] : indptr[r + 1]]
        mask = (vals > floor) & (cols != own)
        cols, vals = cols[mask], vals[mask]
        if len(vals) > k:
            kth = np.partition(vals, len(vals) - k)[len(vals) - k]
            # >= keeps every tie at the boundary so the tie-break below is by item id.
            mask = vals >= kth
            cols, vals = cols[mask], vals[mask]
        order = np.lexsort((cols, -vals))[:k]
        out.append((cols[order].astype(np.int32), vals[order]))
    return out


def exact_cosines(x: sparse.csr_matrix) -> sparse.csr_matrix:
    """Brute-force cosine of every column pair (the oracle; small matrices only)."""
    x = sparse.csr_matrix(x, dtype=np.float64)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    scaled = x @ sparse.diags(1.0 / norms)
    return (scaled.T @ scaled).tocsr()
