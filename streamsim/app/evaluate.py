"""Offline evaluation: how often the recommender finds a held-out interaction.

Three protocols share one scoring path:

- held-out pairs: for every ``(user, item)`` pair the user's training history is
  scored (``streamsim evaluate --train F --test PAIRS``, or ``--split-by-time 0.9``
  of one event file, which holds out each user's new items after the cut);
- sessions: a ``prefix -> target`` pair scores the prefix, the newest item weighing
  most (``--sessions TRAIN --test-pairs PAIRS``); items of the prefix may be
  recommended again (``allow_repeats``), as shoppers do go back to them.

A history is scored with the server's kernel (:class:`serving.scoring.Scorer`)
against a method's similarity rows, excluded items are left out, and short lists
are filled from popularity as the server fills them. We record:

- ``hr@k``: the fraction of pairs whose item is in the top k;
- ``ndcg@10``: 1 / log2(rank + 2) for a hit at 0-based rank < 10, else 0, averaged;
- ``mrr@20``: 1 / (rank + 1) for a hit at rank < 20, else 0, averaged;
- ``coverage``: distinct items in all top-10 lists / items in the catalogue.

A :class:`Method` is a similarity builder ``(interactions, top_k) -> (rows, stats)``
(items x items top-k CSR; None: popularity alone) and the query-time knobs the server
applies (:class:`schemas.tuned.QueryKnobs`). The builders run the refresh pass's own
code on one node (``batch.similarity``, ``batch.dimsum``).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy import sparse

from batch import dimsum, similarity
from schemas import Event, Weights, entries, layout
from schemas.tuned import QueryKnobs
from serving import session_knn
from serving.blend import blend
from serving.scoring import Scorer
from serving.session_knn import SessionKnn
from streamsim.app.session_index import SessionIndex

log = logging.getLogger(__name__)

#: Neighbours kept per item, as the refresh keeps them by default.
TOP_K = 50
#: Longest list scored per query; hr@20 and mrr@20 need 20.
LIST_LENGTH = 20
#: Candidates a popularity blend re-ranks: the kernel's best and the popular list's head.
BLEND_CANDIDATES = 100


@dataclasses.dataclass(frozen=True)
class Interactions:
    """Users x items matrix of r_ui, with the ids of its rows and columns.

    ``sequences`` (optional): each user's item positions in event order, for measures
    and knobs that need order (directed co-occurrence, recency decay).
    """

    users: list[str]
    items: list[str]
    matrix: sparse.csr_matrix
    sequences: list[np.ndarray] | None = None

    @property
    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.users)}

    @property
    def item_index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.items)}


def build_interactions(events: Iterable[Event], weights: Weights) -> Interactions:
    """r_ui = sum of weights of u's events on i (duplicate event ids count once); the
    sequences follow event time (ties: file order)."""
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    rows, cols, values, times, seen = [], [], [], [], set()
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        rows.append(users.setdefault(event.user, len(users)))
        cols.append(items.setdefault(event.item, len(items)))
        values.append(weights.of(event.type))
        times.append(event.ts_ms)
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=(len(users), len(items)), dtype=np.float64)
    matrix.sum_duplicates()
    order = np.lexsort((np.arange(len(rows)), np.asarray(times, dtype=np.int64), np.asarray(rows, dtype=np.int64)))
    return Interactions(
        list(users), list(items), matrix, _split_by_owner(np.asarray(rows)[order], np.asarray(cols)[order], len(users))
    )


def _split_by_owner(owners: np.ndarray, values: np.ndarray, count: int) -> list[np.ndarray]:
    """``values`` (sorted by owner) cut into one array per owner 0..count-1."""
    cuts = np.searchsorted(owners, np.arange(count + 1))
    return [values[cuts[k] : cuts[k + 1]].astype(np.int64) for k in range(count)]


def read_held_out(path: str) -> list[tuple[str, str]]:
    """A ``user,item`` CSV with a header (e.g. Tmall's ``test_buy.csv``); a bad row names its line."""
    pairs = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header[:2]] != ["user", "item"]:
                raise ValueError(f"{path}: expected a header 'user,item', got {header}")
            for row in reader:
                if not row:
                    continue
                if len(row) < 2 or not row[0].strip() or not row[1].strip():
                    raise ValueError(f"{path}:{reader.line_num}: expected 'user,item', got {len(row)} field(s)")
                pairs.append((row[0], row[1]))
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text after line {reader.line_num} ({exc.reason})") from None
    if not pairs:
        raise ValueError(f"{path} has a header and no pairs: nothing to evaluate")
    return pairs


def _open_text(path: str):
    with open(path, "rb") as probe:
        packed = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if packed else open(path, encoding="utf-8")


def read_sessions(path: str) -> list[list[str]]:
    """One session per line, space-separated item ids in click order (.gz ok); blank lines skipped."""
    with _open_text(path) as handle:
        sessions = [line.split() for line in handle]
    sessions = [s for s in sessions if s]
    if not sessions:
        raise ValueError(f"{path}: no sessions (expected one line of space-separated item ids per session)")
    return sessions


def read_test_pairs(path: str) -> list[tuple[list[str], str]]:
    """``prefix<TAB>target`` lines after a header ``prefix\ttarget`` (.gz ok)."""
    with _open_text(path) as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if [h.strip().lower() for h in header] != ["prefix", "target"]:
            raise ValueError(f"{path}: expected a header 'prefix<TAB>target', got {header}")
        pairs = []
        for number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            prefix, tab, target = line.rstrip("\n").partition("\t")
            if not tab or not prefix.split() or not target.strip():
                raise ValueError(f"{path}:{number}: expected 'item item ...<TAB>item'")
            pairs.append((prefix.split(), target.strip()))
    if not pairs:
        raise ValueError(f"{path} has a header and no pairs: nothing to evaluate")
    return pairs


def session_interactions(sessions: Sequence[Sequence[str]]) -> Interactions:
    """Each session as a user: r = 1 per item it holds (repeats count once), order kept."""
    items: dict[str, int] = {}
    sequences = [np.array([items.setdefault(i, len(items)) for i in s], dtype=np.int64) for s in sessions]
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cols = np.concatenate(sequences) if sequences else np.empty(0, np.int64)
    matrix = sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(sequences), len(items)))
    matrix.data[:] = 1.0  # duplicates were summed
    return Interactions([f"session-{k}" for k in range(len(sequences))], list(items), matrix, sequences)


def split_by_time(events: list[Event], fraction: float) -> tuple[list[Event], list[tuple[str, str]]]:
    """Events before the time quantile ``fraction`` train; each user's (user, item) pairs after
    it that are new to that user (not in their training events) are held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--split-by-time {fraction!r} must be within (0, 1)")
    if len(events) < 2:
        raise ValueError("--split-by-time needs at least two events")
    ordered = sorted(events, key=lambda e: e.ts_ms)
    cut = ordered[min(int(len(ordered) * fraction), len(ordered) - 1)].ts_ms
    train = [e for e in ordered if e.ts_ms < cut]
    seen = {(e.user, e.item) for e in train}
    users = {e.user for e in train}
    held, added = [], set()
    for e in ordered:
        if e.ts_ms >= cut and e.user in users and (e.user, e.item) not in seen and (e.user, e.item) not in added:
            added.add((e.user, e.item))
            held.append((e.user, e.item))
    if not train or not held:
        raise ValueError(f"--split-by-time {fraction:g} leaves no training events or no new held-out pairs")
    return train, held


def _as_rows(rows: list[tuple[np.ndarray, np.ndarray]], n_items: int) -> sparse.csr_matrix:
    indptr = np.concatenate(([0], np.cumsum([len(cols) for cols, _ in rows])))
    indices = np.concatenate([cols for cols, _ in rows] or [np.empty(0, np.int32)])
    data = np.concatenate([vals for _, vals in rows] or [np.empty(0)])
    return sparse.csr_matrix((data, indices, indptr), shape=(n_items, n_items))


def _top(scores: sparse.csr_matrix, top_k: int) -> sparse.csr_matrix:
    n = scores.shape[0]
    return _as_rows(dimsum.top_k_rows(scores, np.arange(n), top_k, 0.0), n)


def measure_similarities(
    name: str,
    params: dict | None = None,
    threshold: float = 0.0,
    entry_scale: float | None = None,
    seed: int = 0,
    transform: entries.EntryTransform | str = entries.DEFAULT,
):
    """A registry measure through the refresh pass's own steps, on one node: the entries
    ``transform`` gives, M its ceiling (``entry_scale`` overrides it, as ``--entry-scale`` does).
    With a threshold, the stats also hold the error of the pairs above it (cosine)."""
    m = similarity.measure(name)
    resolved = m.resolve(params)
    transform = entries.parse(transform)

    def method(interactions: Interactions, top_k: int = TOP_K) -> tuple[sparse.csr_matrix, dict]:
        if m.sequences:
            if interactions.sequences is None:
                raise ValueError(f"similarity {name!r} needs ordered events")
            # Each user's (session's) last RECENT_EVENTS events: what the stream's ``recent`` rows keep.
            recent = [s[-layout.RECENT_EVENTS :] for s in interactions.sequences]
            scores = similarity.directed_cooccurrence(recent, len(interactions.items), **resolved)
            return _top(scores, top_k), {}
        matrix = interactions.matrix
        params_ = dimsum.DimsumParams(threshold=threshold, seed=seed, top_k=top_k, entry_scale=entry_scale)

        def run(p):
            return similarity.single_node(m, resolved, matrix, interactions.users, interactions.items, p, transform)

        scores, stats = run(params_)
        if threshold > 0 and name == similarity.DEFAULT:
            exact, _ = run(dataclasses.replace(params_, threshold=0.0))
            stats.update(_error_above(scores, exact, threshold))
        return _top(scores, top_k), stats

    return method


def dimsum_similarities(
    threshold: float,
    seed: int = 0,
    entry_scale: float | None = None,
    transform: entries.EntryTransform | str = entries.DEFAULT,
):
    """What ``streamsim refresh --threshold s`` computes by default (the default measure and
    entry transform, M its ceiling, seed 0), with the pass's own numeric core, on one node."""
    return measure_similarities(similarity.DEFAULT, None, threshold, entry_scale, seed, transform)


def _error_above(estimate: sparse.csr_matrix, exact: sparse.csr_matrix, threshold: float) -> dict:
    """Off-diagonal pairs whose exact cosine is >= s: the share the estimate finds (non-zero)
    and the mean relative error on them (a pair not found counts as an error of 1)."""
    exact = sparse.triu(exact, k=1).tocsr()
    rows, cols = exact.nonzero()
    truth = np.asarray(exact[rows, cols]).ravel()
    above = truth >= max(threshold, 1e-12)
    if not above.any():
        return {"pairs_above_s": 0, "recall_above_s": 1.0, "mean_relative_error": 0.0}
    guess = np.asarray(estimate.tocsr()[rows[above], cols[above]]).ravel()
    return {
        "pairs_above_s": int(above.sum()),
        "recall_above_s": float(np.mean(guess > 0)),
        "mean_relative_error": float(np.mean(np.abs(guess - truth[above]) / truth[above])),
    }


def popularity(matrix: sparse.csr_matrix) -> np.ndarray:
    """Items by number of users, most popular first (ties: lower index)."""
    users_per_item = np.diff(matrix.tocsc().indptr)
    return np.lexsort((np.arange(len(users_per_item)), -users_per_item))


SimilarityBuilder = Callable[[Interactions, int], tuple[sparse.csr_matrix, dict]]


@dataclasses.dataclass(frozen=True)
class Method:
    """Similarity rows (None: popularity alone) and the knobs applied when scoring; with
    ``sessions``, session-kNN over the training sequences (blended with the rows' scores
    when its ``item_item`` weight is above 0)."""

    build: SimilarityBuilder | None
    knobs: QueryKnobs = QueryKnobs()
    sessions: SessionKnn | None = None


#: The popularity blend shown beside the plain measures (``tune`` searches the weight).
BLEND_WEIGHT = 0.1


def default_methods(ordered: bool = False) -> dict[str, Method]:
    """Popularity, every registry measure with its defaults, cosine of the raw scores, a
    popularity blend, and ``dimsum@s``: what ``refresh --threshold s`` computes by default
    (cosine of the default entries, sampled with M their ceiling). ``ordered``: the data has
    event order (directed co-occurrence and a recency-decay row)."""
    methods = {"popular": Method(None)}
    for name, m in similarity.REGISTRY.items():
        if m.sequences and not ordered:
            continue
        methods[name] = Method(measure_similarities(name))
    methods["cosine raw"] = Method(measure_similarities(similarity.DEFAULT, transform=entries.RAW))
    methods["cosine+popular"] = Method(methods["cosine"].build, QueryKnobs(popularity_blend=BLEND_WEIGHT))
    if ordered:
        methods["cosine+recency"] = Method(methods["cosine"].build, QueryKnobs(recency_decay=0.8))
    for s in (0.1, 0.5):
        methods[f"dimsum@{s:g}"] = Method(dimsum_similarities(s))
    if ordered:
        methods.update({name: Method(None, sessions=knn) for name, knn in SESSION_METHODS.items()})
    return methods


#: Session-kNN rows of the table: the presets, and VSTAN with its session-age decay. The files
#: carry no time, so an age counts the training sessions that came after (150,000: about 120
#: days of DIGINETICA's training traffic, near session-rec's tuned 100 days).
SESSION_METHODS = {**session_knn.PRESETS, "vstan+age": dataclasses.replace(session_knn.PRESETS["vstan"], snh=150_000)}


PLAIN = QueryKnobs()


@dataclasses.dataclass(frozen=True)
class Query:
    """One history to score: item positions in order (oldest first), their weights, the target."""

    items: np.ndarray
    weights: np.ndarray
    target: int  # -1: not in the catalogue (always a miss)
    #: Items a list must not hold unless repeats are allowed (a user's history, a session's prefix).
    own: np.ndarray


def user_queries(interactions: Interactions, held_out: list[tuple[str, str]]) -> list[Query]:
    """A held-out pair per query: the user's history, r_ui weights in the user's event order."""
    user_index, item_index = interactions.user_index, interactions.item_index
    matrix, queries, strangers = interactions.matrix, [], 0
    empty = np.empty(0, np.int64)
    for user, item in held_out:
        u = user_index.get(user)
        target = item_index.get(item, -1)
        if u is None:
            strangers += 1  # (a miss, as before: a shop cannot personalise for them)
            queries.append(Query(empty, np.empty(0), -1, empty))
            continue
        lo, hi = matrix.indptr[u], matrix.indptr[u + 1]
        items, weights = matrix.indices[lo:hi].astype(np.int64), matrix.data[lo:hi]
        if interactions.sequences is not None:
            # Oldest first by each item's last event, so recency decay weighs the newest most.
            seq = interactions.sequences[u]
            last = {int(i): k for k, i in enumerate(seq.tolist())}
            order = np.argsort([last.get(int(i), -1) for i in items], kind="stable")
            items, weights = items[order], weights[order]
        queries.append(Query(items, weights, target, items))
    if strangers:
        log.warning("%d of %d held-out users have no training history; they count as misses", strangers, len(held_out))
    return queries


def session_queries(interactions: Interactions, pairs: list[tuple[list[str], str]]) -> list[Query]:
    """A ``prefix -> target`` pair per query; prefix items unknown to training are dropped."""
    index = interactions.item_index
    queries = []
    for prefix, target in pairs:
        items = np.array([index[i] for i in prefix if i in index], dtype=np.int64)
        queries.append(Query(items, np.ones(len(items)), index.get(target, -1), items))
    return queries


def _history(query: Query, knobs: QueryKnobs) -> tuple[np.ndarray, np.ndarray]:
    """(distinct items, weights): the k-th newest occurrence weighs decay^k, repeats add up."""
    if not len(query.items):
        return query.items, query.weights
    weights = query.weights
    if knobs.recency_decay < 1.0:
        weights = weights * knobs.recency_decay ** np.arange(len(weights) - 1, -1, -1, dtype=np.float64)
    items, inverse = np.unique(query.items, return_inverse=True)
    return items, np.bincount(inverse, weights=weights, minlength=len(items))


def _item_item(scorer: Scorer, similarities: sparse.csr_matrix, history, weights, want: int, excluded):
    starts, ends = similarities.indptr[history], similarities.indptr[history + 1]
    offsets = np.concatenate(([0], np.cumsum(ends - starts))).astype(np.int64)
    take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]).astype(np.int64)
    return scorer.top_n(
        similarities.indices[take].astype(np.int32),
        similarities.data[take],
        offsets,
        weights,
        want,
        excluded=excluded.astype(np.int32),
    )


def _fill(picked: list[int], popular: np.ndarray, excluded: set[int], n: int) -> list[int]:
    """The server's popularity fill."""
    if len(picked) < n:
        taken = set(picked) | excluded
        picked = picked + [int(i) for i in popular[: n + len(taken)] if i not in taken][: n - len(picked)]
    return picked[:n]


def recommend(
    similarities: sparse.csr_matrix | None,
    queries: list[Query],
    popular: np.ndarray,
    counts: np.ndarray,
    knobs: QueryKnobs = PLAIN,
    n: int = LIST_LENGTH,
) -> np.ndarray:
    """Top-n item indices per query (rows of -1 where the catalogue runs out)."""
    scorer = Scorer()
    result = np.full((len(queries), n), -1, dtype=np.int64)
    head = popular[: BLEND_CANDIDATES + n]
    head_counts = counts[head]
    want = BLEND_CANDIDATES if knobs.popularity_blend > 0 else n
    for row, query in enumerate(queries):
        history, weights = _history(query, knobs)
        excluded = np.empty(0, np.int64) if knobs.allow_repeats else np.unique(query.own)
        excluded_set = set(excluded.tolist())
        picked: list[int] = []
        if similarities is not None and len(history):
            best = _item_item(scorer, similarities, history, weights, want, excluded)
            if knobs.popularity_blend > 0:
                blended = blend(
                    best.items.tolist(),
                    best.scores,
                    head.tolist(),
                    head_counts,
                    knobs.popularity_blend,
                    n,
                    excluded_set,
                )
                picked = [int(item) for item, _ in blended]
            else:
                picked = best.items.tolist()
        picked = _fill(picked, popular, excluded_set, n)
        result[row, : len(picked)] = picked
    return result


def recommend_sessions(
    index: SessionIndex,
    knn: SessionKnn,
    similarities: sparse.csr_matrix | None,
    queries: list[Query],
    popular: np.ndarray,
    knobs: QueryKnobs = PLAIN,
    n: int = LIST_LENGTH,
) -> np.ndarray:
    """Top-n per query by session-kNN (:mod:`serving.session_knn`, the server's code), blended
    with the item-item scores of ``similarities`` when ``knn.item_item`` > 0."""
    scorer = Scorer()
    result = np.full((len(queries), n), -1, dtype=np.int64)
    for row, query in enumerate(queries):
        excluded = np.empty(0, np.int64) if knobs.allow_repeats else np.unique(query.own)
        found = session_knn.neighbours(knn, query.items, index.sessions_of, index.lengths, index.ages)
        votes = session_knn.item_scores(knn, query.items, found, index.items_of, index.idf_of)
        if knn.item_item > 0 and similarities is not None and len(query.items):
            history, weights = _history(query, knobs)
            best = _item_item(scorer, similarities, history, weights, BLEND_CANDIDATES, excluded)
            votes = session_knn.with_item_item(knn, votes, best.items.astype(np.int64), best.scores)
        picked = _fill(session_knn.top(votes, n, excluded).tolist(), popular, set(excluded.tolist()), n)
        result[row, : len(picked)] = picked
    return result


def per_query_hits(recommended: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Each query's hr@10, hr@20, ndcg@10 and mrr@20 (their means are :func:`hit_metrics`);
    paired comparisons resample them. A target of -1 never hits."""
    hits = (recommended == targets[:, None]) & (targets[:, None] >= 0)
    rank = np.where(hits.any(axis=1), hits.argmax(axis=1), np.iinfo(np.int64).max)
    return {
        "hr@10": (rank < 10).astype(np.float64),
        "hr@20": (rank < 20).astype(np.float64),
        "ndcg@10": np.where(rank < 10, 1.0 / np.log2(np.minimum(rank, 10) + 2.0), 0.0),
        "mrr@20": np.where(rank < 20, 1.0 / (np.minimum(rank, 20) + 1.0), 0.0),
    }


def hit_metrics(recommended: np.ndarray, targets: np.ndarray, n_items: int) -> dict[str, float]:
    """hr@10, hr@20, ndcg@10, mrr@20 and top-10 coverage; a target of -1 never hits."""
    top10 = recommended[:, :10]
    return {
        **{name: float(np.mean(values)) for name, values in per_query_hits(recommended, targets).items()},
        "coverage": float(len(np.unique(top10[top10 >= 0])) / n_items) if n_items else 0.0,
    }


def score_queries(
    interactions: Interactions,
    queries: list[Query],
    methods: dict[str, Method],
    top_k: int = TOP_K,
    allow_repeats: bool | None = None,
    on_method: Callable[[str], None] | None = None,
    per_query: dict[str, dict[str, np.ndarray]] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per method, plus ``seconds`` (similarity build + scoring). ``allow_repeats``
    (if not None) overrides every method's knob: it is the protocol's, not the method's.
    ``per_query`` (if given) receives each method's :func:`per_query_hits`."""
    counts = np.diff(interactions.matrix.tocsc().indptr)
    popular = popularity(interactions.matrix)
    targets = np.array([q.target for q in queries], dtype=np.int64)
    built: dict[int, tuple[sparse.csr_matrix, dict]] = {}
    indexes: dict[int, SessionIndex] = {}
    results = {}
    for name, method in methods.items():
        start = time.perf_counter()
        if method.build is None:
            similarities, stats = None, {}
        else:
            # Methods that share a builder (a measure with different knobs) build once.
            if id(method.build) not in built:
                built[id(method.build)] = method.build(interactions, top_k)
            similarities, stats = built[id(method.build)]
        knobs = method.knobs
        if allow_repeats is not None:
            knobs = dataclasses.replace(knobs, allow_repeats=allow_repeats)
        if method.sessions is None:
            recs = recommend(similarities, queries, popular, counts, knobs)
        else:
            if interactions.sequences is None:
                raise ValueError(f"method {name!r} needs ordered events")
            keep = method.sessions.sample
            if keep not in indexes:
                indexes[keep] = SessionIndex(interactions.sequences, len(interactions.items), keep)
            recs = recommend_sessions(indexes[keep], method.sessions, similarities, queries, popular, knobs)
        results[name] = {**hit_metrics(recs, targets, len(interactions.items)), **stats}
        if per_query is not None:
            per_query[name] = per_query_hits(recs, targets)
        results[name]["seconds"] = round(time.perf_counter() - start, 3)
        log.info("%s: %s", name, results[name])
        if on_method is not None:
            on_method(name)
    return results


def evaluate(
    interactions: Interactions,
    held_out: list[tuple[str, str]],
    methods: dict[str, Method] | None = None,
    top_k: int = TOP_K,
) -> dict[str, dict[str, float]]:
    """The held-out protocol: metrics per method."""
    if methods is None:
        methods = default_methods(ordered=interactions.sequences is not None)
    return score_queries(interactions, user_queries(interactions, held_out), methods, top_k)


def format_table(results: dict[str, dict[str, float]]) -> str:
    columns = [
        "hr@10",
        "hr@20",
        "ndcg@10",
        "mrr@20",
        "coverage",
        "pairs_emitted",
        "pairs_exact",
        "recall_above_s",
        "mean_relative_error",
        "seconds",
    ]
    shown = {"pairs_emitted": "{:,}", "pairs_exact": "{:,}", "seconds": "{:.1f}"}
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, metrics in results.items():
        cells = [shown.get(c, "{:.4f}").format(metrics[c]) if c in metrics else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(results: dict[str, dict[str, float]], out_dir, *, title: str) -> list[str]:
    """``report.md`` and PNG plots in out_dir; returns the files written."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    dimsum = sorted(
        (
            (float(name.split("@", 1)[1]), metrics)
            for name, metrics in results.items()
            if name.startswith("dimsum@") and " " not in name
        ),
        key=lambda pair: pair[0],
    )
    plots = []
    if dimsum:
        thresholds = [s for s, _ in dimsum]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(thresholds, [m["hr@10"] for _, m in dimsum], marker="o", label="DIMSUM")
        for name, style in (("cosine", "--"), ("popular", ":")):
            if name in results:
                ax.axhline(results[name]["hr@10"], linestyle=style, color="grey", label=name)
        ax.set(xlabel="threshold s", ylabel="HR@10", title="HR@10 vs DIMSUM threshold")
        ax.legend()
        plots.append(("hr_vs_threshold.png", fig))
        if all("pairs_emitted" in m for _, m in dimsum):
            fig, ax = plt.subplots(figsize=(5, 3.2))
            ax.plot(thresholds, [m["pairs_emitted"] for _, m in dimsum], marker="o", label="pairs emitted")
            ax.set(xlabel="threshold s", ylabel="pairs emitted", yscale="log", title="Sampling vs threshold")
            if all("mean_relative_error" in m for _, m in dimsum):
                twin = ax.twinx()
                twin.plot(
                    thresholds,
                    [m["mean_relative_error"] for _, m in dimsum],
                    color="tab:red",
                    marker="s",
                    label="mean relative error",
                )
                twin.set_ylabel("mean relative error (pairs above s)")
            plots.append(("pairs_and_error_vs_threshold.png", fig))
    compared = {name: m for name, m in results.items() if not name.startswith("dimsum@")}
    if compared:
        metric = "hr@20" if all("mrr@20" in m for m in compared.values()) else "hr@10"
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(compared) + 1.2))
        names = list(compared)
        ax.barh(names, [compared[n][metric] for n in names], color="tab:blue", label=metric)
        ax.barh(names, [compared[n].get("mrr@20", 0.0) for n in names], color="tab:orange", label="mrr@20")
        ax.invert_yaxis()
        ax.set(xlabel="score", title="Methods (full ranking)")
        ax.legend()
        plots.append(("methods.png", fig))
    for name, fig in plots:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(str(out / name))
    lines = [f"# {title}", "", format_table(results), ""]
    lines += [f"![{name}]({name})" for name, _ in plots]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    written.insert(0, str(out / "report.md"))
    return written
