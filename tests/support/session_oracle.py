"""Session-kNN written the slow, obvious way (session-rec's loops over dicts and sets): the oracle
:mod:`serving.session_knn` is checked against."""

from __future__ import annotations

import math


def position_weight(name: str, j: int, length: int) -> float:
    return {
        "same": 1.0,
        "div": j / length,
        "quadratic": (j / length) ** 2,
        "log": 1 / math.log10(length - j + 1.7),
    }[name]


def step_decay(name: str, p: int) -> float:
    return {
        "same": 1.0,
        "div": 1 / p,
        "quadratic": 1 / (p * p),
        "log": 1 / math.log10(p + 1.7),
        "linear": 1 - 0.1 * p if p <= 100 else 0.0,
    }[name]


def session_knn_scores(knn, current, sessions, idf=None, ages=None) -> dict[int, float]:
    """{item: score} for ``current`` (item list) against ``sessions`` (list of item lists, oldest
    first: index = recency rank); ``idf`` and ``ages`` are dicts by item / by session index."""
    current = list(current) if knn.last is None else list(current)[-knn.last :]
    length = len(current)
    if not length:
        return {}
    distinct = set(current)
    relevant = {s for s, items in enumerate(sessions) if distinct & set(items)}
    candidates = sorted(relevant, reverse=True)[: knn.sample]
    weight = {}
    for j, item in enumerate(current, start=1):
        if knn.method == "vsknn":
            weight[item] = position_weight(knn.weighting, j, length)
        else:
            weight[item] = math.exp((j - length) / knn.spw)
    scored = []
    for s in candidates:
        items = set(sessions[s])
        dot = sum(weight[i] for i in distinct & items)
        if knn.method == "vsknn" and knn.similarity == "vec":
            sim = dot / len(distinct)
        else:
            sim = dot / (math.sqrt(sum(w * w for w in weight.values())) * math.sqrt(len(items)))
        if knn.method == "vstan" and knn.snh is not None and ages is not None:
            sim *= math.exp(-ages[s] / knn.snh)
        if sim > 0:
            scored.append((s, sim))
    scored.sort(key=lambda pair: (-pair[1], -pair[0]))
    scores: dict[int, float] = {}
    for s, sim in scored[: knn.k]:
        neighbour = list(sessions[s])
        items = set(neighbour)
        newest = max(j for j, item in enumerate(current, start=1) if item in items)
        last_in_n = {item: q for q, item in enumerate(neighbour, start=1)}
        p_star = max(q for q, item in enumerate(neighbour, start=1) if item in distinct)
        for item in items:
            if knn.method == "vsknn":
                value = sim * step_decay(knn.decay, length - newest + 1)
            else:
                value = sim * math.exp(-abs(last_in_n[item] - p_star) / knn.inh)
                if knn.ipw is not None:
                    value *= math.exp((newest - length) / knn.ipw)
            if knn.idf_weight:
                value *= 1 + knn.idf_weight * idf[item]
            scores[item] = scores.get(item, 0.0) + value
    return scores
