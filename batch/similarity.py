"""The similarity registry: what a DIMSUM pass turns its co-occurrence sums into.

Every measure comes out of the same sampled pass (``batch.dimsum``), whose error bound needs
every entry within [0, M]. A measure says

- ``weigh``: how a user's scores become the entries x_ui whose column Gram the pass samples.
  None: x = f(r_ui), the pass's entry transform (``schemas.entries``: raw, capped, saturated,
  log), bounded by its ceiling; otherwise binary, BM25-saturated or degree-damped r_ui, bounded
  by the measure's own ``entry_bound`` (those measures take the raw scores: the transform is
  theirs already). It sees one user's whole row (the
  pass reads rows whole, so the user's list length and Σr are at hand) and the stream's
  per-item statistics; nothing else.
- ``entry_bound``: the largest x_ui whatever the scores (None: x = f(r), bounded by f's
  ceiling). It is the sampler's M, so every entry is <= M by construction.
- ``scale``: the column scale n_i the sampler divides by. Where the stream's statistics
  give ‖x_i‖ exactly (norm² for raw scores, the user count for binary entries) it is that;
  any n_i > 0 keeps the estimate unbiased (p_i / q_i = 1 / n_i whatever n_i), only the
  variance bound needs the true norm. None means the pass takes ‖x_i‖ from one column sum
  of its own entries (BM25, whose entries depend on every holder's list length, which no
  per-item statistic of the stream can follow).
- ``finish``: how g_ij, the sampled estimate of Σ_u x_ui·x_uj / (n_i·n_j), becomes the
  score s_ij of neighbour j in row i, elementwise, from g, n and the item statistics.

At s = 0 the pass's g is exact, so each measure's rows equal its brute-force oracle
(``tests/batch/test_similarity.py``). Only symmetric measures whose entries depend on
nothing but the pair itself may be refreshed incrementally (``incremental``): the merge
of ``batch.incremental`` reuses s(a, c) as s(c, a), and a measure that reads a user's list
length changes the rows of every item the user holds when one event arrives.

Weighted RP3beta also divides row i by (Σ_u r_ui)^α, a statistic the stream does not keep:
the pass sums it over its own blocks (``Measure.weight_sums``), as BM25 sums its norms.

Directed co-occurrence needs the order of each user's events: it is a function of
sequences (:func:`directed_cooccurrence`), not of a Gram. ``streamsim evaluate``/``tune``
apply it to ordered files; a full refresh applies it to the stream's ``recent`` rows (each
user's last ``schemas.layout.RECENT_EVENTS`` events) with the same functions, summed per
bucket (:func:`directed_counts`, :func:`occurrences`) and finished per row block
(:func:`directed_finish`), in ``batch.engine.directed_rows``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy import sparse

from batch import dimsum
from schemas import entries
from schemas.tuned import MEASURE_PARAMS, Param, resolve_params

DEFAULT = "cosine"


@dataclasses.dataclass(frozen=True)
class ItemStats:
    """What the stream keeps per item (``items`` n:), plus the pass's user count."""

    #: Σ_u f(r_ui)² for the pass's entry transform f (the stream folds it for raw scores and
    #: for ``entries.FOLDED``; None: the pass sums its own entries, :func:`apply`).
    norm2: np.ndarray | None
    users: np.ndarray  # users with r_ui > 0
    #: Users in the pass (BM25's average list length is Σ users_i / n_users).
    n_users: int
    #: Σ_u r_ui, which the stream does not keep: a pass sums it over its own blocks for the
    #: measures that ask (``Measure.weight_sums``); None until then.
    weight_sums: np.ndarray | None = None


Weigh = Callable[[np.ndarray, np.ndarray, np.ndarray, ItemStats, Mapping[str, float]], np.ndarray]
Scale = Callable[[ItemStats, Mapping[str, float]], "np.ndarray | None"]
Finish = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, ItemStats, Mapping[str, float]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Measure:
    name: str
    doc: str
    #: (indptr, indices, values, stats, params) -> x values, row by row (None: x = r).
    weigh: Weigh | None
    scale: Scale
    #: (g, row items, column items, n, stats, params) -> scores (None: the score is g).
    finish: Finish | None
    incremental: bool = False
    #: Largest entry x_ui whatever the scores (None: entries are f(r_ui), bounded by the
    #: transform's ceiling). The sampler divides entries by it (``dimsum.sampling_probabilities``).
    entry_bound: Callable[[Mapping[str, float]], float] | None = None
    #: A function of each user's event order (:func:`directed_cooccurrence`), not of a Gram:
    #: a refresh computes it from the ``recent`` rows (``batch.engine.directed_rows``).
    sequences: bool = False
    #: The finish reads ``ItemStats.weight_sums`` (one more read of the pass's blocks).
    weight_sums: bool = False
    #: (the transform's ceiling C, params) -> the largest entry x_ui when every f(r_ui) <= C
    #: (the entries are the transformed scores themselves unless ``weigh`` says otherwise).
    ceiling_bound: Callable[[float, Mapping[str, float]], float] = lambda ceiling, params: ceiling

    @property
    def params(self) -> dict[str, Param]:
        """Its parameters and their ranges: the tuned configuration's contract owns them."""
        return MEASURE_PARAMS[self.name]

    def resolve(self, given: Mapping[str, object] | None = None) -> dict[str, float]:
        """Defaults overlaid with ``given``, each checked against its range."""
        return resolve_params(self.name, given)


def _list_lengths(indptr: np.ndarray) -> np.ndarray:
    counts = np.diff(indptr)
    return np.repeat(counts, counts).astype(np.float64)


def _binary(indptr, indices, values, stats, params):
    return np.ones_like(values, dtype=np.float64)


def _bm25(indptr, indices, values, stats, params):
    """Okapi BM25 on r_ui, a user's list as the document: long lists saturate and weigh less."""
    k1, b = params["k1"], params["b"]
    average = max(float(np.sum(stats.users)) / max(stats.n_users, 1), 1.0)
    length = _list_lengths(indptr)
    return values * (k1 + 1.0) / (values + k1 * (1.0 - b + b * length / average))


def _rp3_entries(indptr, indices, values, stats, params):
    """Binary entries damped by the user's degree: Σ_u x_ui·x_uj = Σ_u deg_u^-α."""
    return _list_lengths(indptr) ** (-params["alpha"] / 2.0)


def _user_sums(indptr, values) -> np.ndarray:
    """s_u = Σ_k r_uk, repeated over the user's entries."""
    counts = np.diff(indptr)
    owners = np.repeat(np.arange(len(counts)), counts)
    return np.bincount(owners, weights=values, minlength=len(counts))[owners]


def _rp3_weighted_entries(indptr, indices, values, stats, params):
    """x_ui = (r_ui/√s_u)^α, so Σ_u x_ui·x_uj = Σ_u r_ui^α·(r_uj/s_u)^α, the walk's middle
    (r: the transformed scores; the walk's probabilities do not change with their scale).

    Bounded by construction: r_ui <= s_u gives x_ui <= r_ui^(α/2) <= C^(α/2) for entries
    bounded by the transform's ceiling C: M = C^(α/2) (``Measure.ceiling_bound``)."""
    return (values / np.sqrt(_user_sums(indptr, values))) ** params["alpha"]


def _norms(stats, params):
    return np.sqrt(stats.norm2)


def _user_counts(stats, params):
    # ‖x_i‖ for binary entries; an upper bound of it for RP3beta's damped ones.
    return np.sqrt(stats.users.astype(np.float64))


def _own_norms(stats, params):
    return None


def _sums(g, rows, cols, n):
    return g * n[rows] * n[cols]


def _shrinkage(g, rows, cols, n, stats, params):
    return _sums(g, rows, cols, n) / (n[rows] * n[cols] + params["h"])


def _asymmetric(g, rows, cols, n, stats, params):
    alpha = params["alpha"]
    return _sums(g, rows, cols, n) / (n[rows] ** (2 * alpha) * n[cols] ** (2 * (1 - alpha)))


def _jaccard(g, rows, cols, n, stats, params):
    common = _sums(g, rows, cols, n)
    union = stats.users[rows] + stats.users[cols] - common
    return common / np.maximum(union, 1e-12)


def _rp3beta(g, rows, cols, n, stats, params):
    degree = stats.users.astype(np.float64)
    return _sums(g, rows, cols, n) / (degree[rows] ** params["alpha"] * degree[cols] ** params["beta"])


def _rp3beta_weighted(g, rows, cols, n, stats, params):
    walk = _sums(g, rows, cols, n) / stats.weight_sums[rows] ** params["alpha"]
    return walk / stats.users[cols].astype(np.float64) ** params["beta"]


def _unit_bound(params):
    return 1.0


def _bm25_bound(params):
    return params["k1"] + 1.0


def _needs_sequences(*_):
    raise ValueError("directed co-occurrence is computed from sequences (directed_cooccurrence), not by DIMSUM")


REGISTRY: dict[str, Measure] = {
    "cosine": Measure(
        "cosine",
        "Σ r_ui·r_uj / (‖i‖·‖j‖): the default, and the only measure refreshed incrementally",
        None,
        _norms,
        None,
        incremental=True,
    ),
    "shrinkage": Measure(
        "shrinkage",
        "cosine with shrinkage: C_ij / (‖i‖·‖j‖ + h), which discounts pairs few users support",
        None,
        _norms,
        _shrinkage,
    ),
    "bm25": Measure(
        "bm25",
        "cosine of BM25-weighted scores: r(k1+1)/(r + k1(1-b+b·len_u/avg len)), long user lists weigh less",
        _bm25,
        _own_norms,
        None,
        entry_bound=_bm25_bound,
    ),
    "asymmetric": Measure(
        "asymmetric",
        "asymmetric cosine: C_ij / (‖i‖^2α · ‖j‖^2(1-α)); α = 0.5 is cosine",
        None,
        _norms,
        _asymmetric,
    ),
    "jaccard": Measure(
        "jaccard",
        "|U_i ∩ U_j| / |U_i ∪ U_j| over the users holding each item",
        _binary,
        _user_counts,
        _jaccard,
        entry_bound=_unit_bound,
    ),
    "rp3beta": Measure(
        "rp3beta",
        "RP3beta: Σ_u deg_u^-α / (deg_i^α · pop_j^β), a random walk item -> user -> item, popularity damped",
        _rp3_entries,
        _user_counts,
        _rp3beta,
        entry_bound=_unit_bound,
    ),
    "rp3beta_weighted": Measure(
        "rp3beta_weighted",
        "RP3beta on r_ui: the walk item -> user -> item steps with P(i->u) = r_ui/Σ_v r_vi and "
        "P(u->j) = r_uj/Σ_k r_uk (each to the power α), divided by pop_j^β",
        _rp3_weighted_entries,
        _own_norms,
        _rp3beta_weighted,
        weight_sums=True,
        ceiling_bound=lambda ceiling, params: ceiling ** (params["alpha"] / 2.0),
    ),
    "directed": Measure(
        "directed",
        "order-aware co-occurrence: j after i within a window, 1/distance, reverse pairs at a weight, "
        "divided by pop_j^β (from each user's event order; full refreshes only)",
        _needs_sequences,
        _needs_sequences,
        None,
        sequences=True,
    ),
}


def measure(name: str) -> Measure:
    resolve_params(name)  # an unknown name: the contract's error
    return REGISTRY[name]


def parse_params(pairs: Iterable[str]) -> dict[str, float]:
    """``["k1=1.2", "b=0.75"]`` -> {"k1": "1.2", ...}; values are checked by :meth:`Measure.resolve`."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"bad --param {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


# --- applying a measure: the same calls on one user block or on a whole matrix ---
def weigh(m: Measure, params, indptr, indices, values, stats: ItemStats) -> np.ndarray:
    return values if m.weigh is None else m.weigh(indptr, indices, values, stats, params)


def column_norm2(x: sparse.csr_matrix, n_items: int) -> np.ndarray:
    """Σ_u x_ui² per column (measures whose ``scale`` is None)."""
    return np.bincount(x.indices, weights=x.data * x.data, minlength=n_items)


def scales(m: Measure, params, stats: ItemStats, own_norm2: np.ndarray | None = None) -> np.ndarray:
    """n_i per item, > 0 (an item without entries gets 1: it has no pairs anyway)."""
    n = m.scale(stats, params)
    if n is None:
        if own_norm2 is None:
            raise ValueError(f"similarity {m.name!r} needs the column sums of its entries")
        n = np.sqrt(own_norm2)
    n = np.asarray(n, dtype=np.float64)
    return np.where(n > 0, n, 1.0)


def finish_rows(
    m: Measure, params, g: sparse.csr_matrix, row_items: np.ndarray, n: np.ndarray, stats
) -> sparse.csr_matrix:
    """Scores from g for the rows ``row_items`` (positions) of a row block."""
    if m.finish is None:
        return g
    g = g.tocsr()
    rows = np.repeat(np.asarray(row_items), np.diff(g.indptr))
    data = m.finish(g.data, rows, g.indices, n, stats, params)
    return sparse.csr_matrix((data, g.indices, g.indptr), shape=g.shape)


def finish_pairs(m: Measure, params, g: np.ndarray, left: np.ndarray, right: np.ndarray, n, stats) -> np.ndarray:
    return g if m.finish is None else m.finish(g, left, right, n, stats, params)


@dataclasses.dataclass(frozen=True)
class Applied:
    """A measure with its parameters, entry transform and the pass's statistics: what Spark
    tasks need. Holds the measure by name (tasks resolve it from :data:`REGISTRY`), so it pickles.
    """

    name: str
    params: tuple[tuple[str, float], ...]
    stats: ItemStats
    #: n_i, the column scale the sampler divides by (:func:`scales`).
    n: np.ndarray
    #: M: every entry x_ui is <= M (:func:`entry_scale`).
    entry_scale: float
    transform: entries.EntryTransform = entries.DEFAULT

    @property
    def measure(self) -> Measure:
        return REGISTRY[self.name]

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(self.params)

    def weighted(self, block: dimsum.UserBlock) -> dimsum.UserBlock:
        return weighted_block(self.measure, self.kwargs, transformed(self.transform, block), self.stats)

    def finish(self, g: sparse.csr_matrix, row_items: np.ndarray) -> sparse.csr_matrix:
        return finish_rows(self.measure, self.kwargs, g, row_items, self.n, self.stats)

    def finish_pairs(self, g: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return finish_pairs(self.measure, self.kwargs, g, left, right, self.n, self.stats)

    def record(self) -> dict:
        """What a generation's statistics say about the measure."""
        return {"similarity": self.name, "similarity_params": self.kwargs}


def apply(
    name: str,
    given: Mapping[str, object] | None,
    stats: ItemStats,
    dimsum_params: dimsum.DimsumParams,
    own_norm2: Callable[[Callable[[dimsum.UserBlock], dimsum.UserBlock]], np.ndarray] | None = None,
    transform: entries.EntryTransform | str = entries.DEFAULT,
) -> Applied:
    """Resolve a measure for a pass. ``own_norm2(entries_of_block)`` sums x² per item over the
    pass's blocks, for what the stream's statistics do not give: the norms of a transform the
    stream does not fold (``stats.norm2`` None), a measure's own column scale (BM25)."""
    m = measure(name)
    params = m.resolve(given)
    f = effective_transform(m, transform)

    def summed(entries_of):
        if own_norm2 is None:
            raise ValueError(f"similarity {name!r} with entries {f.spec!r} needs the column sums of its entries")
        return own_norm2(entries_of)

    if stats.norm2 is None:
        stats = dataclasses.replace(stats, norm2=summed(lambda block: transformed(f, block)))
    if m.weight_sums and stats.weight_sums is None:
        # Σ_u (√f_ui)² = Σ_u f_ui: the pass's own column sums, of square roots.
        stats = dataclasses.replace(stats, weight_sums=summed(lambda block: _square_roots(transformed(f, block))))
    own = None
    if m.scale(stats, params) is None:
        own = summed(lambda block: weighted_block(m, params, transformed(f, block), stats))
    return Applied(
        name,
        tuple(sorted(params.items())),
        stats,
        scales(m, params, stats, own),
        entry_scale(m, params, dimsum_params, f),
        f,
    )


def _square_roots(block: dimsum.UserBlock) -> dimsum.UserBlock:
    return dataclasses.replace(block, values=np.sqrt(block.values))


def entry_scale(m: Measure, params, dimsum_params: dimsum.DimsumParams, transform: entries.EntryTransform) -> float:
    """M: the measure's own bound on its entries, else the transform's ceiling (never a value
    read). ``--entry-scale`` overrides the ceiling for experiments."""
    if m.entry_bound is not None:
        return m.entry_bound(params)
    if dimsum_params.entry_scale is not None:
        return dimsum_params.entry_scale
    return m.ceiling_bound(transform.ceiling, params)


def effective_transform(m: Measure, transform: entries.EntryTransform | str) -> entries.EntryTransform:
    """The transform a measure's entries go through: ``transform`` for measures whose entries
    are the scores, raw for those that bound their own (binary, BM25: ``entry_bound``)."""
    return entries.parse(transform) if m.entry_bound is None else entries.RAW


def transformed(transform: entries.EntryTransform, block: dimsum.UserBlock) -> dimsum.UserBlock:
    """The block with f(r_ui) in place of r_ui."""
    if transform.kind == "raw":
        return block
    return dataclasses.replace(block, values=transform.apply(block.values))


def weighted_block(m: Measure, params, block: dimsum.UserBlock, stats: ItemStats) -> dimsum.UserBlock:
    """The block with its entries x_ui in place of f(r_ui)."""
    if m.weigh is None:
        return block
    return dataclasses.replace(block, values=weigh(m, params, block.indptr, block.indices, block.values, stats))


def single_node(
    m: Measure,
    params,
    matrix: sparse.csr_matrix,
    users: Sequence[str],
    items: Sequence[str],
    dimsum_params: dimsum.DimsumParams,
    transform: entries.EntryTransform | str = entries.DEFAULT,
) -> tuple[sparse.csr_matrix, dict]:
    """The measure over a users x items matrix of raw r_ui with the pass's own steps, on one node.

    Returns every row's scores (not cut to top-K) and the pass's sampling counts.
    """
    n_items = len(items)
    f = effective_transform(m, transform)
    block = dimsum.UserBlock(
        0,
        dimsum.id_hashes(users),
        matrix.indptr.astype(np.int64),
        matrix.indices.astype(np.int32),
        matrix.data.astype(np.float64),
    )
    block = transformed(f, block)
    stats = stats_of(block.matrix(n_items))
    if m.weight_sums:
        stats = dataclasses.replace(stats, weight_sums=np.asarray(block.matrix(n_items).sum(axis=0)).ravel())
    block = weighted_block(m, params, block, stats)
    own = column_norm2(block.matrix(n_items), n_items) if m.scale(stats, params) is None else None
    n = scales(m, params, stats, own)
    p, q = dimsum.sampling_probabilities(n * n, dimsum_params.gamma(n_items), entry_scale(m, params, dimsum_params, f))
    sampled = dimsum.sample_block(block, n_items, p, q, dimsum.id_hashes(items), dimsum_params.seed)
    gram = dimsum.block_gram(sampled.matrix)
    scores = finish_rows(m, params, gram, np.arange(n_items), n, stats)
    return scores, {"pairs_emitted": sampled.pairs_emitted, "pairs_exact": sampled.pairs_exact}


def stats_of(matrix: sparse.csr_matrix) -> ItemStats:
    """The stream's item statistics of a users x items matrix of entries (what the fold would
    have folded for them)."""
    csc = matrix.tocsc()
    return ItemStats(
        norm2=np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel(),
        users=np.diff(csc.indptr).astype(np.int64),
        n_users=matrix.shape[0],
    )


def oracle(m: Measure, params, matrix: sparse.csr_matrix) -> np.ndarray:
    """The measure on a users x items matrix, dense and by definition (tests; small inputs)."""
    r = sparse.csr_matrix(matrix, dtype=np.float64).toarray()
    users = (r > 0).sum(axis=0).astype(np.float64)
    name = m.name
    if name in ("cosine", "shrinkage", "asymmetric", "bm25"):
        x = r
        if name == "bm25":
            lengths = (r > 0).sum(axis=1, keepdims=True)
            average = max(users.sum() / max(r.shape[0], 1), 1.0)
            norm = 1 - params["b"] + params["b"] * lengths / average
            x = np.where(r > 0, r * (params["k1"] + 1) / (r + params["k1"] * norm), 0.0)
        dots = x.T @ x
        norms = np.sqrt((x * x).sum(axis=0))
        if name == "shrinkage":
            return dots / (np.outer(norms, norms) + params["h"])
        if name == "asymmetric":
            a = params["alpha"]
            with np.errstate(divide="ignore", invalid="ignore"):
                out = dots / np.outer(norms ** (2 * a), norms ** (2 * (1 - a)))
            return np.nan_to_num(out)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nan_to_num(dots / np.outer(norms, norms))
    binary = (r > 0).astype(np.float64)
    if name == "jaccard":
        common = binary.T @ binary
        union = users[:, None] + users[None, :] - common
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nan_to_num(common / union)
    if name == "rp3beta":
        degree_u = binary.sum(axis=1)
        p_ui = binary / np.maximum(degree_u, 1)[:, None]  # user -> item
        p_iu = (binary / np.maximum(users, 1)[None, :]).T  # item -> user
        walk = (p_iu ** params["alpha"]) @ (p_ui ** params["alpha"])
        return walk / np.maximum(users, 1)[None, :] ** params["beta"]
    if name == "rp3beta_weighted":
        edge = r > 0  # (a step along no edge has probability 0, even to the power 0)
        p_ui = np.where(edge, r / np.maximum(r.sum(axis=1), 1e-300)[:, None], 0.0)  # user -> item, ∝ r_ui
        p_iu = np.where(edge, r / np.maximum(r.sum(axis=0), 1e-300)[None, :], 0.0).T  # item -> user, ∝ r_ui
        walk = np.where(p_iu > 0, p_iu ** params["alpha"], 0.0) @ np.where(p_ui > 0, p_ui ** params["alpha"], 0.0)
        return walk / np.maximum(users, 1)[None, :] ** params["beta"]
    raise ValueError(f"no oracle for {name!r}")


def _flat(sequences: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [np.empty(0, np.int64)])


def directed_counts(sequences: Sequence[np.ndarray], n_items: int, window: float, reverse: float) -> sparse.csr_matrix:
    """Row i, column j: Σ over sequences of 1/d for each j at d <= window places after i, plus
    ``reverse``/d for each j at d places before i (a repeat of i itself counts nothing).

    Linear in the sequences: the counts of a union of sequence sets are the sum of theirs,
    so a pass sums them per bucket."""
    flat = _flat(sequences)
    owner = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    rows, cols, vals = [], [], []
    for d in range(1, int(window) + 1):
        a, b = flat[:-d], flat[d:]
        keep = (owner[:-d] == owner[d:]) & (a != b)
        rows.append(a[keep])
        cols.append(b[keep])
        vals.append(np.full(int(keep.sum()), 1.0 / d))
    rows, cols, vals = (np.concatenate(part or [np.empty(0)]) for part in (rows, cols, vals))
    forward = sparse.csr_matrix((vals, (rows.astype(np.int64), cols.astype(np.int64))), shape=(n_items, n_items))
    return (forward + reverse * forward.T).tocsr()


def occurrences(sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """pop_j: how often each item occurs in all sequences (linear too)."""
    return np.bincount(_flat(sequences), minlength=n_items).astype(np.float64)


def directed_finish(counts: sparse.csr_matrix, pop: np.ndarray, beta: float) -> sparse.csr_matrix:
    """Counts (any block of rows, all columns) divided by pop_j^β column by column."""
    return (sparse.csr_matrix(counts) @ sparse.diags(1.0 / np.maximum(pop, 1.0) ** beta)).tocsr()


def directed_cooccurrence(
    sequences: Sequence[np.ndarray], n_items: int, window: float = 5, reverse: float = 0.5, beta: float = 0.3
) -> sparse.csr_matrix:
    """Row i, column j: :func:`directed_counts` divided by pop_j^β (pop: :func:`occurrences`)."""
    return directed_finish(directed_counts(sequences, n_items, window, reverse), occurrences(sequences, n_items), beta)
