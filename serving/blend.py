"""Popularity blend: re-rank item-item candidates with the items' popularity.

score'_i = (1 - w) · score_i / max score + w · pop_i / max pop, over the candidates the
neighbour lists gave and the head of the popularity list (so w = 1 is plain popularity
and w = 0 the neighbour ranking, with popular items only as its fill).
"""

from __future__ import annotations

import numpy as np


def blend(
    items: np.ndarray,
    scores: np.ndarray,
    popular_items: np.ndarray,
    popular_counts: np.ndarray,
    weight: float,
    n: int,
    excluded: np.ndarray | None = None,
) -> np.ndarray:
    """The n best item indices. ``popular_items`` are the head of the popularity list (what
    serving holds) with their ``popular_counts``; a candidate outside that head counts as 0."""
    if weight <= 0.0:
        return np.asarray(items)[:n]
    pop = dict(zip(np.asarray(popular_items).tolist(), np.asarray(popular_counts, dtype=np.float64).tolist()))
    top_score = float(np.max(scores)) if len(scores) else 0.0
    top_pop = max(pop.values(), default=0.0)
    merged: dict[int, float] = {}
    for item, score in zip(np.asarray(items).tolist(), np.asarray(scores).tolist()):
        merged[item] = (1.0 - weight) * (score / top_score if top_score > 0 else 0.0)
    skip = set(np.asarray(excluded).tolist()) if excluded is not None else set()
    for item, count in pop.items():
        if item in skip:
            continue
        merged[item] = merged.get(item, 0.0) + weight * (count / top_pop if top_pop > 0 else 0.0)
    ranked = sorted(merged.items(), key=lambda pair: (-pair[1], pair[0]))
    return np.array([item for item, _ in ranked[:n]], dtype=np.int64)
