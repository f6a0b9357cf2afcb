"""Choosing a similarity on the shop's own data: a validation split carved from training only,
a small grid over the registry's measures and the query-time knobs, the winner with its provenance.

The search runs in two stages so that it stays small: every measure setting is scored with
plain knobs, then the best few are scored with every popularity blend and recency decay.
The cosine and popularity baselines are always among the candidates, so the winner is
never below either on the validation split.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable

import numpy as np
from scipy import sparse

from batch import similarity
from schemas import entries
from schemas.tuned import QueryKnobs, TunedConfig
from streamsim.app import evaluate
from streamsim.app.evaluate import Interactions, Method, Query

log = logging.getLogger(__name__)

#: Validation pairs scored per candidate at most (a seeded sample beyond it).
MAX_VALIDATION_PAIRS = 10_000
#: Measure settings of stage 1 (directed only on ordered data).
MEASURE_GRID: list[tuple[str, dict]] = [
    ("cosine", {}),
    ("shrinkage", {"h": 5}),
    ("shrinkage", {"h": 20}),
    ("bm25", {"k1": 1.2, "b": 0.75}),
    ("bm25", {"k1": 1.2, "b": 0.3}),
    ("bm25", {"k1": 3.0, "b": 0.75}),
    ("asymmetric", {"alpha": 0.2}),
    ("asymmetric", {"alpha": 0.35}),
    ("jaccard", {}),
    ("rp3beta", {"alpha": 1.0, "beta": 0.3}),
    ("rp3beta", {"alpha": 1.0, "beta": 0.5}),
    ("directed", {"window": 3, "reverse": 0.5, "beta": 0.3}),
    ("directed", {"window": 5, "reverse": 0.5, "beta": 0.3}),
    ("directed", {"window": 5, "reverse": 0.25, "beta": 0.5}),
]
#: Entry transforms (``schemas.entries``) searched beside the default, for the measures whose
#: entries are the scores (cosine, shrinkage, asymmetric; the others bound their own).
ENTRY_GRID = ("raw", "cap:6", "log:6")
BLENDS = (0.0, 0.05, 0.2)
DECAYS = (1.0, 0.8, 0.5)
#: Measure settings that go on to stage 2.
FINALISTS = 3


@dataclasses.dataclass(frozen=True)
class Candidate:
    similarity: str
    #: (name, value) pairs, sorted: a candidate is a dict key.
    params: tuple[tuple[str, float], ...]
    knobs: QueryKnobs
    #: The entry transform's spec.
    entries: str = entries.DEFAULT.spec

    @property
    def label(self) -> str:
        if self.knobs.popularity_blend >= 1.0:
            return "popular"  # the blend at 1 ranks by popularity alone
        params = ",".join([f"{k}={v:g}" for k, v in self.params] + self._entries_label())
        knobs = []
        if self.knobs.popularity_blend:
            knobs.append(f"pop {self.knobs.popularity_blend:g}")
        if self.knobs.recency_decay < 1:
            knobs.append(f"decay {self.knobs.recency_decay:g}")
        return f"{self.similarity}({params})" + (" + " + " + ".join(knobs) if knobs else "")

    def _entries_label(self) -> list[str]:
        return [] if self.entries == entries.DEFAULT.spec else [f"entries={self.entries}"]


def _without(interactions: Interactions, removed: set[tuple[int, int]]) -> Interactions:
    """The interactions without the (user, item) entries in ``removed``."""
    coo = interactions.matrix.tocoo()
    keep = np.array([(u, i) not in removed for u, i in zip(coo.row.tolist(), coo.col.tolist())], dtype=bool)
    matrix = sparse.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=coo.shape)
    sequences = interactions.sequences
    if sequences is not None:
        gone: dict[int, set[int]] = {}
        for u, i in removed:
            gone.setdefault(u, set()).add(i)
        sequences = [s if u not in gone else s[~np.isin(s, list(gone[u]))] for u, s in enumerate(sequences)]
    return Interactions(interactions.users, interactions.items, matrix, sequences)


def carve_users(interactions: Interactions, fraction: float, seed: int = 0) -> tuple[Interactions, list[Query]]:
    """Hold out the newest item of a ``fraction`` of the users with two items or more."""
    rng = np.random.default_rng(seed)
    lengths = np.diff(interactions.matrix.indptr)
    eligible = np.flatnonzero(lengths >= 2)
    chosen = rng.choice(
        eligible, size=min(len(eligible), max(1, round(fraction * len(interactions.users)))), replace=False
    )
    held = []
    for u in sorted(chosen.tolist()):
        if interactions.sequences is not None and len(interactions.sequences[u]):
            item = int(interactions.sequences[u][-1])
        else:
            row = interactions.matrix[u]
            item = int(row.indices[np.argmax(row.data)])
        held.append((u, item))
    train = _without(interactions, set(held))
    queries = evaluate.user_queries(train, [(train.users[u], train.items[i]) for u, i in held])
    return train, queries


def carve_sessions(interactions: Interactions, fraction: float) -> tuple[Interactions, list[Query]]:
    """The newest ``fraction`` of the sessions (file order) become next-item pairs s[:k] -> s[k]."""
    sequences = interactions.sequences or []
    cut = len(sequences) - max(1, round(fraction * len(sequences)))
    if cut < 1:
        raise ValueError("too few sessions to carve a validation split")
    train_sequences = sequences[:cut]
    known = np.zeros(len(interactions.items), dtype=bool)
    for s in train_sequences:
        known[s] = True
    queries = []
    for s in sequences[cut:]:
        for k in range(1, len(s)):
            # Items unseen in training cannot be scored (as in evaluate's session_queries).
            prefix = s[:k][known[s[:k]]]
            queries.append(Query(prefix, np.ones(len(prefix)), int(s[k]) if known[s[k]] else -1, prefix))
    matrix = interactions.matrix[:cut]
    return Interactions(interactions.users[:cut], interactions.items, matrix, train_sequences), queries


def sample(queries: list[Query], limit: int, seed: int = 0) -> list[Query]:
    if len(queries) <= limit:
        return queries
    chosen = np.sort(np.random.default_rng(seed).choice(len(queries), size=limit, replace=False))
    return [queries[k] for k in chosen.tolist()]


def measure_grid(ordered: bool) -> list[tuple[str, dict, str]]:
    """(measure, parameters, entry transform) settings of stage 1: the grid with the default
    entries, then the measures whose entries are the scores with each other transform."""
    grid = [(name, params) for name, params in MEASURE_GRID if ordered or not similarity.REGISTRY[name].sequences]
    return [(name, params, entries.DEFAULT.spec) for name, params in grid] + [
        (name, params, spec)
        for spec in ENTRY_GRID
        if spec != entries.DEFAULT.spec
        for name, params in grid
        if similarity.REGISTRY[name].entry_bound is None and not similarity.REGISTRY[name].sequences
    ]


def search(
    interactions: Interactions,
    queries: list[Query],
    *,
    metric: str,
    allow_repeats: bool,
    decay: bool = False,
    top_k: int = evaluate.TOP_K,
    on_step: Callable[[str], None] | None = None,
) -> tuple[Candidate, dict[str, dict]]:
    """The best candidate by ``metric`` on ``queries`` and every candidate's metrics (by label).

    ``decay``: also search recency decay over the queries' order (sessions, or ``--with-order``)."""
    ordered = interactions.sequences is not None
    builders = {
        (name, tuple(sorted(params.items())), spec): evaluate.measure_similarities(name, params, transform=spec)
        for name, params, spec in measure_grid(ordered)
    }
    plain = QueryKnobs(allow_repeats=allow_repeats)
    stage1 = {Candidate(name, key, plain, spec): Method(build, plain) for (name, key, spec), build in builders.items()}
    popular = Candidate("cosine", (), dataclasses.replace(plain, popularity_blend=1.0))
    stage1[popular] = Method(builders[("cosine", (), entries.DEFAULT.spec)], popular.knobs)
    results = _score(interactions, queries, stage1, top_k, on_step)
    ranked = sorted((c for c in stage1 if c != popular), key=lambda c: _rank(results[c], metric))
    stage2 = {}
    for finalist in ranked[:FINALISTS]:
        build = builders[(finalist.similarity, finalist.params, finalist.entries)]
        for blend_weight in BLENDS:
            for weight in DECAYS if ordered and decay else (1.0,):
                knobs = QueryKnobs(popularity_blend=blend_weight, recency_decay=weight, allow_repeats=allow_repeats)
                candidate = Candidate(finalist.similarity, finalist.params, knobs, finalist.entries)
                if candidate not in stage1:
                    stage2[candidate] = Method(build, knobs)
    results.update(_score(interactions, queries, stage2, top_k, on_step))
    # Ties on the metric go to MRR@20, then to the earlier (simpler) candidate: stage 1
    # before stage 2, grid order (min keeps the first of equals).
    best = min(results, key=lambda c: _rank(results[c], metric))
    return best, {c.label: m for c, m in results.items()}


def _rank(metrics: dict, metric: str) -> tuple[float, float]:
    return (-metrics[metric], -metrics["mrr@20"])


def _score(interactions, queries, methods: dict[Candidate, Method], top_k, on_step) -> dict[Candidate, dict]:
    named = {c.label: m for c, m in methods.items()}
    by_label = {c.label: c for c in methods}
    scored = evaluate.score_queries(interactions, queries, named, top_k, on_method=on_step)
    return {by_label[label]: metrics for label, metrics in scored.items()}


def stage_sizes(ordered: bool, decay: bool) -> int:
    """Candidates :func:`search` scores at most (for a progress bar)."""
    knobs = len(BLENDS) * (len(DECAYS) if ordered and decay else 1)
    return len(measure_grid(ordered)) + 1 + FINALISTS * (knobs - 1)


def config_of(best: Candidate, metrics: dict, provenance: dict) -> TunedConfig:
    return TunedConfig(
        best.similarity,
        dict(best.params),
        best.knobs,
        {
            **provenance,
            "score": metrics,
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        entries=best.entries,
    )
