"""Popularity blend: re-rank item-item candidates with the items' popularity.

score'_i = (1 - w) · score_i / max score + w · pop_i / max pop, over the candidates the
neighbour lists gave and the head of the popularity list (so w = 1 is plain popularity
and w = 0 the neighbour ranking, with popular items only as its fill).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence


def blend(
    items: Sequence[Hashable],
    scores: Sequence[float],
    popular_items: Sequence[Hashable],
    popular_counts: Sequence[float],
    weight: float,
    n: int,
    excluded: Collection[Hashable] = (),
) -> list[tuple[Hashable, float]]:
    """The n best (item, blended score), best first; ties keep the candidates' order
    (neighbours by score, then the popular list). ``popular_items`` are the head of the
    popularity list (what serving holds) with their ``popular_counts``; a candidate outside
    that head counts as popularity 0."""
    pop = dict(zip(popular_items, (float(c) for c in popular_counts)))
    scores = [float(s) for s in scores]
    top_score = max(scores, default=0.0)
    top_pop = max(pop.values(), default=0.0)
    merged: dict[Hashable, float] = {}
    for item, score in zip(items, scores):
        merged[item] = (1.0 - weight) * (score / top_score if top_score > 0 else 0.0)
    skip = set(excluded)
    for item, count in pop.items():
        if item not in skip:
            merged[item] = merged.get(item, 0.0) + weight * (count / top_pop if top_pop > 0 else 0.0)
    order = {item: k for k, item in enumerate(merged)}
    ranked = sorted(merged.items(), key=lambda pair: (-pair[1], order[pair[0]]))
    return ranked[:n]
