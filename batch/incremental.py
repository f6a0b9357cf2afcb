"""Which rows an incremental pass must recompute, and how the others are merged. Pure NumPy.

Let A be the affected items (dirty, or whose q changed). A pair with neither item in A
keeps its estimate bit for bit, so a clean row c can only change through its entries
against A. The pass recomputes the rows of A (their complete lists give every new
score s(c, a), by symmetry) and, for each clean row, merges its stored list with those
new scores:

- its stored entries outside A are the best clean entries, and every clean entry not
  stored ranks after the stored K-th entry (the list was an exact top K);
- so the merge of stored clean entries and new A scores is exact if the stored list was
  not full, or if the merge's K-th entry still ranks no later than the stored K-th one.
  Otherwise an unknown clean entry could move up: that row is recomputed in full.

Ranking is :func:`batch.dimsum.top_k_rows`' order: score descending, then item position.

Stored lists may be deeper than K (a warm loop keeps its own lists to ``depth`` entries
and writes their first K): a list of K or more entries is an exact top list down to its
last entry, so the merge is exact down to that entry, and the row needs a recompute only
when fewer than K merged entries rank before it. Deeper lists make that rare.
"""

from __future__ import annotations

import numpy as np

Row = tuple[np.ndarray, np.ndarray]  # (item positions, scores), best first


def candidate_bars(old: dict[int, Row], affected: np.ndarray, k: int) -> np.ndarray:
    """Per item, the score a new s(c, a) must reach to matter for row c.

    Rows of A are recomputed (+inf: no candidates). A full clean list (K or more entries)
    without any entry of A changes only if a new score reaches its last; every other row takes all.
    """
    bar = np.full(len(affected), -np.inf)
    for position, (cols, vals) in old.items():
        if len(cols) >= k and not affected[cols].any():
            bar[position] = vals[-1]
    bar[affected] = np.inf
    return bar


def _by_row(candidates: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[int, Row]:
    """Candidates grouped by the row they are for: row -> (items of A, scores)."""
    rows, items, scores = (np.asarray(part) for part in candidates)
    if not len(rows):
        return {}
    order = np.argsort(rows, kind="stable")
    rows, items, scores = rows[order], items[order], scores[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    return {int(rows[a]): (items[a:b], scores[a:b]) for a, b in zip(starts.tolist(), ends.tolist())}


def merge_rows(
    old: dict[int, Row],
    affected: np.ndarray,
    candidates: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int,
    depth: int | None = None,
    deeper_only: dict | None = None,
) -> tuple[dict[int, list[tuple[int, float]]], np.ndarray]:
    """New lists of the clean rows that change, and the clean rows that need a full recompute.

    Lists are merged to ``depth`` entries (default ``k``), and cut after the last entry
    known to be exact (module docstring): at least ``k`` unless the row is recomputed.
    With ``deeper_only``, rows whose first ``k`` entries are unchanged go there instead
    (the stored row stays right; only a deeper list kept elsewhere changes).

    A touched row whose merged list equals its stored one (same items, same scores) is
    left out: the stored cell stays visible, so it needs no rewrite.

    ``candidates`` are (row c, item a, score) for a in A, as the recomputed A rows gave them.
    """
    news = _by_row(candidates)
    touched = set(news)
    touched.update(p for p, (cols, _) in old.items() if not affected[p] and affected[cols].any())
    merges, recompute = {}, []
    empty = (np.empty(0, np.int64), np.empty(0))
    for position in sorted(touched):
        if affected[position]:
            continue
        cols, vals = old.get(position, empty)
        clean = ~affected[cols]
        new_cols, new_vals = news.get(position, empty)
        all_cols = np.concatenate([cols[clean], new_cols]).astype(np.int64, copy=False)
        all_vals = np.concatenate([vals[clean], new_vals]).astype(np.float64, copy=False)
        # top_k_rows' order (score descending, then item position).
        best = np.lexsort((all_cols, -all_vals))[: depth or k]
        merged_cols, merged_vals = all_cols[best], all_vals[best]
        if len(cols) >= k:
            last_val, last_col = float(vals[-1]), int(cols[-1])
            exact = (merged_vals > last_val) | ((merged_vals == last_val) & (merged_cols <= last_col))
            merged_cols, merged_vals = merged_cols[exact], merged_vals[exact]
            if len(merged_cols) < k:
                recompute.append(position)
                continue
        merged = list(zip(merged_cols.tolist(), merged_vals.tolist()))
        stored = list(zip(cols.tolist(), vals.tolist()))
        if merged == stored:
            continue  # unchanged: carried over, no rewrite
        if deeper_only is not None and merged[:k] == stored[:k]:
            deeper_only[position] = merged
            continue
        merges[position] = merged
    return merges, np.asarray(recompute, dtype=np.int64)
