"""Choosing a similarity on the shop's own data: a validation split carved from training only,
a small grid over the registry's measures and the query-time knobs, and a choice that holds.

The search runs in two stages so that it stays small: every measure setting is scored with
plain knobs, then the best few are scored with every combination of :data:`KNOB_GRID`.
Every candidate is scored on the same validation pairs, so they are compared pair by pair
(:mod:`streamsim.app.significance`): the default (cosine, plain knobs) stays unless a
candidate beats it beyond noise, and then the simplest candidate within noise of the best
is chosen, not whichever happened to score highest.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
from collections.abc import Callable

import numpy as np
from scipy import sparse

from batch import similarity
from schemas import entries
from schemas.tuned import QueryKnobs, TunedConfig
from streamsim.app import evaluate, significance
from streamsim.app.evaluate import Interactions, Method, Query

log = logging.getLogger(__name__)

#: Validation pairs scored per candidate at most (a seeded sample beyond it).
MAX_VALIDATION_PAIRS = 50_000
#: Sessions held out by default: the newest 10%, or more (up to 30%) until they give this many pairs.
SESSION_PAIRS_WANTED = 10_000
#: Fewer pairs than this cannot tell the candidates apart: ``tune`` refuses.
MIN_VALIDATION_PAIRS = 100
#: Warn when the default's score is known only to within this share of itself (too few pairs or hits).
COARSE_RESOLUTION = 0.2
#: Measure settings of stage 1 (directed only on ordered data), the measures simplest first:
#: the order breaks ties among candidates within noise of one another. A new setting is one line.
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
    ("rp3beta_weighted", {"alpha": 1.0, "beta": 0.3}),
    ("rp3beta_weighted", {"alpha": 1.0, "beta": 0.5}),
    ("directed", {"window": 3, "reverse": 0.5, "beta": 0.3}),
    ("directed", {"window": 5, "reverse": 0.5, "beta": 0.3}),
    ("directed", {"window": 5, "reverse": 0.25, "beta": 0.5}),
]
#: Stage 2: query-time settings crossed with each finalist, the plain value first. A new
#: dimension is one line (and a field of :class:`schemas.tuned.QueryKnobs`).
KNOB_GRID: dict[str, tuple[float, ...]] = {
    "popularity_blend": (0.0, 0.05, 0.2),
    "recency_decay": (1.0, 0.8, 0.5),
}
#: Knobs that weigh a history by its order: searched on sessions, or with ``--with-order``.
ORDER_KNOBS = frozenset({"recency_decay"})
#: Entry transforms (``schemas.entries``) searched beside the default, for the measures whose
#: entries are the scores (cosine, shrinkage, asymmetric; the others bound their own).
ENTRY_GRID = ("raw", "cap:6", "log:6")
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


def session_share(interactions: Interactions) -> float:
    """The share of the newest sessions :func:`carve_sessions` holds out by default."""
    sequences = interactions.sequences or []
    if not sequences:
        return 0.1
    pairs = np.cumsum([max(len(s) - 1, 0) for s in reversed(sequences)])
    needed = int(np.searchsorted(pairs, SESSION_PAIRS_WANTED)) + 1
    return float(min(0.3, max(0.1, needed / len(sequences))))


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


def knob_grid(ordered: bool, decay: bool) -> list[dict[str, float]]:
    """Every combination of the searched knobs (the plain one first)."""
    dims = {k: v for k, v in KNOB_GRID.items() if k not in ORDER_KNOBS or (ordered and decay)}
    return [dict(zip(dims, values)) for values in itertools.product(*dims.values())]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Every candidate scored (stage 1 in grid order, then stage 2), compared and chosen."""

    candidates: list[Candidate]
    metrics: list[dict]
    metric: str
    comparison: significance.Comparison
    choice: significance.Choice

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.choice.chosen]

    @property
    def default(self) -> Candidate:
        return self.candidates[self.comparison.reference]

    def interval(self, k: int) -> tuple[float, float, float]:
        c = self.comparison
        return float(c.mean[k]), float(c.low[k]), float(c.high[k])

    def gain(self, k: int) -> tuple[float, float, float]:
        c = self.comparison
        return float(c.diff[k]), float(c.diff_low[k]), float(c.diff_high[k])

    @property
    def coarse(self) -> bool:
        """Too few pairs or hits: the default's own interval is wider than COARSE_RESOLUTION of its score."""
        score, low, high = self.interval(self.comparison.reference)
        return bool((high - low) / 2.0 >= COARSE_RESOLUTION * score)

    def ranked(self) -> list[int]:
        """Candidates by score, best first (ties: the simpler first)."""
        return sorted(
            range(len(self.candidates)), key=lambda k: (-self.comparison.mean[k], complexity(self.candidates[k]))
        )


def complexity(candidate: Candidate) -> tuple[int, int]:
    """Smaller is simpler: fewer settings off their plain value (the query knobs, the entry
    transform), then a measure earlier in the grid. Settings of one measure are equally simple
    (the better scoring one is taken)."""
    plain = QueryKnobs(allow_repeats=candidate.knobs.allow_repeats)
    moved = sum(getattr(candidate.knobs, k) != getattr(plain, k) for k in KNOB_GRID)
    moved += candidate.entries != entries.DEFAULT.spec
    measures = list(dict.fromkeys(name for name, _ in MEASURE_GRID))
    return moved, measures.index(candidate.similarity)


def search(
    interactions: Interactions,
    queries: list[Query],
    *,
    metric: str,
    allow_repeats: bool,
    decay: bool = False,
    top_k: int = evaluate.TOP_K,
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> Outcome:
    """Every candidate's metrics on ``queries``, compared pair by pair with the default, and the choice.

    ``decay``: also search recency decay over the queries' order (sessions, or ``--with-order``)."""
    ordered = interactions.sequences is not None
    builders = {
        (name, tuple(sorted(params.items())), spec): evaluate.measure_similarities(name, params, transform=spec)
        for name, params, spec in measure_grid(ordered)
    }
    plain = QueryKnobs(allow_repeats=allow_repeats)
    stage1 = {Candidate(name, key, plain, spec): Method(build, plain) for (name, key, spec), build in builders.items()}
    popular = Candidate(similarity.DEFAULT, (), dataclasses.replace(plain, popularity_blend=1.0))
    stage1[popular] = Method(builders[(similarity.DEFAULT, (), entries.DEFAULT.spec)], popular.knobs)
    results, values = _score(interactions, queries, stage1, metric, top_k, on_step)
    ranked = sorted((c for c in stage1 if c != popular), key=lambda c: (-results[c][metric], complexity(c)))
    stage2 = {}
    for finalist in ranked[:FINALISTS]:
        build = builders[(finalist.similarity, finalist.params, finalist.entries)]
        for knobs in knob_grid(ordered, decay):
            knobs = dataclasses.replace(plain, **knobs)
            candidate = Candidate(finalist.similarity, finalist.params, knobs, finalist.entries)
            if candidate not in stage1:
                stage2[candidate] = Method(build, candidate.knobs)
    more, more_values = _score(interactions, queries, stage2, metric, top_k, on_step)
    results.update(more)
    values.update(more_values)
    candidates = list(results)
    default = candidates.index(Candidate(similarity.DEFAULT, (), plain))
    comparison = significance.compare(np.column_stack([values[c] for c in candidates]), default, seed=seed)
    choice = significance.choose(comparison, [c.label for c in candidates], [complexity(c) for c in candidates])
    return Outcome(candidates, [results[c] for c in candidates], metric, comparison, choice)


def _score(interactions, queries, methods: dict[Candidate, Method], metric, top_k, on_step):
    """Metrics per candidate, and each query's value of ``metric`` per candidate."""
    named = {c.label: m for c, m in methods.items()}
    by_label = {c.label: c for c in methods}
    each: dict[str, dict[str, np.ndarray]] = {}
    scored = evaluate.score_queries(interactions, queries, named, top_k, on_method=on_step, per_query=each)
    return (
        {by_label[label]: metrics for label, metrics in scored.items()},
        {by_label[label]: each[label][metric] for label in scored},
    )


def stage_sizes(ordered: bool, decay: bool) -> int:
    """Candidates :func:`search` scores at most (for a progress bar)."""
    return len(measure_grid(ordered)) + 1 + FINALISTS * (len(knob_grid(ordered, decay)) - 1)


def config_of(outcome: Outcome, provenance: dict, seed: int) -> TunedConfig:
    """The chosen candidate, with the comparison that chose it in the provenance."""
    chosen, c = outcome.choice.chosen, outcome.comparison
    return TunedConfig(
        outcome.chosen.similarity,
        dict(outcome.chosen.params),
        outcome.chosen.knobs,
        {
            **provenance,
            "score": outcome.metrics[chosen],
            "choice": {
                "chosen": outcome.chosen.label,
                "default": outcome.default.label,
                "best": outcome.candidates[outcome.choice.best].label,
                "reason": outcome.choice.reason,
                # [mean, low, high] of the metric on the validation pairs.
                "score": _rounded(outcome.interval(chosen)),
                "default_score": _rounded(outcome.interval(c.reference)),
                "best_score": _rounded(outcome.interval(outcome.choice.best)),
                "vs_default": _rounded(outcome.gain(chosen)),
                "resolution": round(c.resolution, 6),
                "coarse": outcome.coarse,
                "bootstrap": {
                    "resamples": len(c.resampled),
                    "confidence": c.confidence,
                    "seed": seed,
                    "intervals": "percentile over resampled pairs (scores); simultaneous max-t over "
                    "the candidates (differences from the default)",
                },
            },
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        entries=outcome.chosen.entries,
    )


def _rounded(values) -> list[float]:
    return [round(v, 6) for v in values]
