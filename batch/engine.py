"""The Spark side of DIMSUM: per-bucket Grams, a reproducible reduce, top-K rows.

Input is an RDD of :class:`batch.dimsum.UserBlock` (one per bucket, from Bigtable or from
memory). Stage 1 samples each block and computes its Gram rows; each row block of that
Gram is shuffled keyed by row block. Stage 2 adds a row block's bucket Grams in bucket
order and keeps the top K per row. No Python loop runs per emitted pair: both stages are
SciPy sparse products and sums; the only Python loop is per output row (top-K selection).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from batch.dimsum import DimsumParams, block_gram, sample_block, sampling_probabilities, sum_in_bucket_order, top_k_rows
from batch.similarity import Applied

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GramResult:
    #: Global positions of the rows computed, sorted.
    rows: np.ndarray
    #: position -> (neighbour positions, scores), best first; rows with no neighbour are absent.
    top: dict[int, tuple[np.ndarray, np.ndarray]]
    #: (row c, neighbour a, score) for rows outside ``rows`` that an incremental pass must merge.
    candidates: tuple[np.ndarray, np.ndarray, np.ndarray]
    pairs_emitted: int
    pairs_exact: int
    users: int
    #: Incremental passes: clean rows that had to be recomputed in full.
    clean_rows_recomputed: int = 0


@dataclasses.dataclass(frozen=True)
class _Plan:
    n_items: int
    p: np.ndarray
    q: np.ndarray
    item_hash: np.ndarray
    seed: int
    rows: np.ndarray | None  # None: all rows
    row_block_size: int
    top_k: int
    floor: float
    #: Incremental only: rows whose full lists feed candidates, and each column's entry bar.
    source_rows: np.ndarray | None = None
    bar: np.ndarray | None = None
    #: The measure (None: cosine of the raw scores, the stream's norms).
    similarity: Applied | None = None

    @property
    def row_mask(self) -> np.ndarray:
        mask = np.zeros(self.n_items, dtype=bool)
        mask[self.rows] = True
        return mask


def _contributions(block, plan: _Plan, counters):
    if plan.similarity is not None:
        block = plan.similarity.weighted(block)
    if plan.rows is not None:
        # Users without an entry on these rows add nothing to them: skip their work.
        block = block.holding(plan.row_mask)
    sampled = sample_block(block, plan.n_items, plan.p, plan.q, plan.item_hash, plan.seed)
    counters[0].add(sampled.pairs_emitted)
    counters[1].add(sampled.pairs_exact)
    counters[2].add(block.users)
    gram = block_gram(sampled.matrix, plan.rows)
    size = plan.row_block_size
    for rb in range(math.ceil(gram.shape[0] / size)):
        part = gram[rb * size : (rb + 1) * size]
        if part.nnz:
            yield rb, (block.bucket, part)


def _reduce(item, plan: _Plan):
    rb, parts = item
    total = sum_in_bucket_order(parts)
    positions = (plan.rows if plan.rows is not None else np.arange(plan.n_items))[
        rb * plan.row_block_size : rb * plan.row_block_size + total.shape[0]
    ]
    if plan.similarity is not None:
        total = plan.similarity.finish(total, positions)
    tops = top_k_rows(total, positions, plan.top_k, plan.floor)
    cands = (np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0))
    if plan.bar is not None:
        coo = total.tocoo()
        row_item = positions[coo.row]
        sel = (
            plan.source_rows[row_item]
            & (coo.data >= plan.bar[coo.col])
            & (coo.data > plan.floor)
            & (coo.col != row_item)
        )
        cands = (coo.col[sel].astype(np.int32), row_item[sel].astype(np.int32), coo.data[sel])
    return positions, tops, cands


def similarity_rows(
    sc,
    blocks,
    norm2: np.ndarray,
    item_hash: np.ndarray,
    params: DimsumParams,
    rows: np.ndarray | None = None,
    source_rows: np.ndarray | None = None,
    bar: np.ndarray | None = None,
    reduce_partitions: int | None = None,
    similarity: Applied | None = None,
) -> GramResult:
    """Top-K rows ``rows`` (all if None) of the DIMSUM estimate over ``blocks`` (an RDD).

    Incremental passes also give ``source_rows`` (bool per item: rows whose complete
    lists are wanted as candidates for the other rows) and ``bar`` (per item: the score a
    candidate must reach, +inf for the rows being recomputed).

    ``similarity`` (:func:`applied`) gives the entries (transform, measure weights), their
    scales and M, and turns the sums into the measure; without it, the cosine of raw scores.
    """
    n = len(norm2)
    if similarity is None:
        # Raw scores: no ceiling bounds them, so M is only what the parameters say (∞: exact).
        scale = math.inf if params.entry_scale is None else params.entry_scale
        p, q = sampling_probabilities(norm2, params.gamma(n), scale)
    else:
        p, q = sampling_probabilities(similarity.n**2, params.gamma(n), similarity.entry_scale)
    n_rows = n if rows is None else len(rows)
    parts = reduce_partitions or max(1, 2 * sc.defaultParallelism)
    size = max(1, math.ceil(n_rows / parts))
    plan = _Plan(
        n, p, q, item_hash, params.seed, rows, size, params.top_k, params.min_similarity, source_rows, bar, similarity
    )
    shared = sc.broadcast(plan)
    counters = (sc.accumulator(0), sc.accumulator(0), sc.accumulator(0))
    n_blocks = max(1, math.ceil(n_rows / size))
    try:
        reduced = (
            blocks.flatMap(lambda block: _contributions(block, shared.value, counters))
            .groupByKey(numPartitions=n_blocks, partitionFunc=lambda rb: rb)
            .map(lambda item: _reduce(item, shared.value))
            .collect()
        )
    finally:
        shared.unpersist()
    top, cand_parts = {}, []
    for positions, tops, cands in reduced:
        for position, (cols, vals) in zip(positions.tolist(), tops):
            if len(cols):
                top[position] = (cols, vals)
        cand_parts.append(cands)
    if cand_parts:
        candidates = tuple(np.concatenate([c[i] for c in cand_parts]) for i in range(3))
    else:
        candidates = (np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0))
    return GramResult(
        rows=np.arange(n) if rows is None else rows,
        top=top,
        candidates=candidates,
        pairs_emitted=counters[0].value,
        pairs_exact=counters[1].value,
        users=counters[2].value,
    )


def _directed_parts(bucket_sequences, n_items: int, row_block_size: int, window: float, reverse: float, counters):
    """One bucket's directed counts, split by row block (``similarity.directed_counts``)."""
    from batch import similarity

    bucket, sequences = bucket_sequences
    counts = similarity.directed_counts(sequences, n_items, window, reverse)
    counters[0].add(counts.nnz)
    counters[1].add(len(sequences))
    for rb in range(math.ceil(n_items / row_block_size)):
        part = counts[rb * row_block_size : (rb + 1) * row_block_size]
        if part.nnz:
            yield rb, (bucket, part)


def directed_rows(
    sc, sequences, n_items: int, params: DimsumParams, given: dict, reduce_partitions: int | None = None
) -> GramResult:
    """Top-K rows of directed co-occurrence over ``sequences`` (an RDD of ``(bucket, [item
    positions per user])``, :func:`batch.source.read_sequences`): exact, no sampling.

    Counts and occurrences are linear in the sequences, so each bucket's are computed apart
    and summed in bucket order (reproducible, as the Gram stage); a row block is then divided
    by pop_j^β (:func:`batch.similarity.directed_finish`): one definition with ``evaluate``.
    """
    from batch import similarity

    resolved = similarity.REGISTRY["directed"].resolve(given)
    window, reverse, beta = resolved["window"], resolved["reverse"], resolved["beta"]
    pop = sc.broadcast(
        sequences.map(lambda b: similarity.occurrences(b[1], n_items)).fold(np.zeros(n_items), lambda a, b: a + b)
    )
    parts = reduce_partitions or max(1, 2 * sc.defaultParallelism)
    size = max(1, math.ceil(n_items / parts))
    top_k, floor = params.top_k, params.min_similarity
    counters = (sc.accumulator(0), sc.accumulator(0))

    def reduce(item):
        rb, blocks = item
        total = similarity.directed_finish(sum_in_bucket_order(blocks), pop.value, beta)
        positions = np.arange(rb * size, rb * size + total.shape[0])
        return positions, top_k_rows(total, positions, top_k, floor)

    try:
        reduced = (
            sequences.flatMap(lambda b: _directed_parts(b, n_items, size, window, reverse, counters))
            .groupByKey(numPartitions=max(1, math.ceil(n_items / size)), partitionFunc=lambda rb: rb)
            .map(reduce)
            .collect()
        )
    finally:
        pop.unpersist()
    top = {
        position: (cols, vals)
        for positions, tops in reduced
        for position, (cols, vals) in zip(positions.tolist(), tops)
        if len(cols)
    }
    empty = (np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0))
    return GramResult(np.arange(n_items), top, empty, counters[0].value, counters[0].value, counters[1].value)


def applied(sc, blocks, name: str, given, stats, params: DimsumParams, transform=None) -> Applied:
    """:func:`batch.similarity.apply` with the pass's blocks, for what sums its own entries
    (BM25's scale, the norms of an entry transform the stream does not fold)."""
    from batch import similarity
    from schemas import entries

    n = len(stats.users)

    def own_norm2(weigh):
        def column_sums(block):
            return similarity.column_norm2(weigh(block).matrix(n), n)

        return blocks.map(column_sums).fold(np.zeros(n), lambda a, b: a + b)

    return similarity.apply(name, given, stats, params, own_norm2, transform or entries.DEFAULT)


def exact_cosines_of_pairs(
    blocks, norm2: np.ndarray, left: np.ndarray, right: np.ndarray, similarity: Applied | None = None
) -> np.ndarray:
    """Exact cos(left[k], right[k]) from the raw rows and the stream's norms (spot checks);
    with ``similarity``, the exact measure from its entries and scales."""
    n = len(norm2)
    if len(left) == 0:
        return np.empty(0)

    def dots(block):
        if similarity is not None:
            block = similarity.weighted(block)
        x = block.matrix(n)
        return np.asarray(x[:, left].multiply(x[:, right]).sum(axis=0)).ravel()

    total = blocks.map(dots).fold(np.zeros(len(left)), lambda a, b: a + b)
    if similarity is None:
        return total / np.sqrt(norm2[left] * norm2[right])
    return similarity.finish_pairs(total / (similarity.n[left] * similarity.n[right]), left, right)


def spot_check(
    blocks,
    norm2: np.ndarray,
    result: GramResult,
    params: DimsumParams,
    sample_pairs: int = 300,
    similarity: Applied | None = None,
) -> dict:
    """Estimate vs exact score on a seeded sample of the kept neighbour pairs.

    The sample is drawn from the pairs the pass kept (what serving will use), so it leans
    towards pairs the estimate ranks high.
    """
    pairs = [
        (row, col, val) for row, (cols, vals) in result.top.items() for col, val in zip(cols.tolist(), vals.tolist())
    ]
    if not pairs:
        return {"pairs": 0, "pairs_above_threshold": 0, "mean_relative_error": None, "within_20pct": None}
    rng = np.random.default_rng(params.seed)
    chosen = rng.choice(len(pairs), size=min(sample_pairs, len(pairs)), replace=False)
    left = np.array([pairs[k][0] for k in chosen])
    right = np.array([pairs[k][1] for k in chosen])
    estimate = np.array([pairs[k][2] for k in chosen])
    exact = exact_cosines_of_pairs(blocks, norm2, left, right, similarity)
    # The threshold is a cosine: other measures' scores live on other scales.
    cosine = similarity is None or similarity.name == "cosine"
    above = exact >= max(params.threshold if cosine else 0.0, 1e-12)
    rel = np.abs(estimate[above] - exact[above]) / exact[above]
    return {
        "pairs": int(len(chosen)),
        "pairs_above_threshold": int(above.sum()),
        "mean_relative_error": float(rel.mean()) if len(rel) else None,
        "within_20pct": float((rel <= 0.2).mean()) if len(rel) else None,
    }
