"""Offline evaluation: how often the recommender finds a held-out interaction.

For every held-out ``(user, item)`` pair the user's training history is scored
with the server's kernel (:class:`serving.scoring.Scorer`) against each
method's similarity rows, items already in the history are excluded, short
lists are filled from popularity as the server fills them, and we record:

- ``hr@k``: the fraction of held-out pairs whose item is in the top k;
- ``ndcg@10``: 1 / log2(rank + 2) for a hit at 0-based rank < 10, else 0, averaged;
- ``coverage``: distinct items in all top-10 lists / items in the catalogue.

Methods are functions ``(interactions, top_k) -> (similarity rows, stats)``
in the :data:`METHODS` registry (items x items top-k CSR out). DIMSUM uses the
refresh pass's numeric core (``batch.dimsum``) on one node.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable

import numpy as np
from scipy import sparse

from batch import dimsum
from schemas import Event, Weights
from serving.scoring import Scorer

log = logging.getLogger(__name__)

#: Neighbours kept per item, as the refresh keeps them by default.
TOP_K = 50
#: Longest list scored per user; hr@20 needs 20.
LIST_LENGTH = 20


@dataclasses.dataclass(frozen=True)
class Interactions:
    """Users x items matrix of r_ui, with the ids of its rows and columns."""

    users: list[str]
    items: list[str]
    matrix: sparse.csr_matrix

    @property
    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.users)}

    @property
    def item_index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.items)}


def build_interactions(events: Iterable[Event], weights: Weights) -> Interactions:
    """r_ui = sum of weights of u's events on i (duplicate event ids count once)."""
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    rows, cols, values, seen = [], [], [], set()
    for event in events:
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        rows.append(users.setdefault(event.user, len(users)))
        cols.append(items.setdefault(event.item, len(items)))
        values.append(weights.of(event.type))
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=(len(users), len(items)), dtype=np.float64)
    matrix.sum_duplicates()
    return Interactions(list(users), list(items), matrix)


def read_held_out(path: str) -> list[tuple[str, str]]:
    """A ``user,item`` CSV with a header (e.g. Tmall's ``test_buy.csv``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["user", "item"]:
            raise ValueError(f"{path}: expected a header 'user,item', got {header}")
        return [(row[0], row[1]) for row in reader if row]


def _as_rows(rows: list[tuple[np.ndarray, np.ndarray]], n_items: int) -> sparse.csr_matrix:
    indptr = np.concatenate(([0], np.cumsum([len(cols) for cols, _ in rows])))
    indices = np.concatenate([cols for cols, _ in rows] or [np.empty(0, np.int32)])
    data = np.concatenate([vals for _, vals in rows] or [np.empty(0)])
    return sparse.csr_matrix((data, indices, indptr), shape=(n_items, n_items))


def exact_cosine(interactions: Interactions, top_k: int = TOP_K) -> tuple[sparse.csr_matrix, dict]:
    """Cosine of item columns, top-k per item: the reference DIMSUM estimates."""
    n = len(interactions.items)
    gram = dimsum.exact_cosines(interactions.matrix)
    return _as_rows(dimsum.top_k_rows(gram, np.arange(n), top_k, 0.0), n), {}


def dimsum_similarities(threshold: float, seed: int = 0):
    """DIMSUM at ``threshold`` with the refresh pass's own numeric core, on one node."""

    def method(interactions: Interactions, top_k: int = TOP_K) -> tuple[sparse.csr_matrix, dict]:
        matrix, n = interactions.matrix, len(interactions.items)
        params = dimsum.DimsumParams(threshold=threshold, seed=seed, top_k=top_k)
        norm2 = np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel()
        p, q = dimsum.sampling_probabilities(norm2, params.gamma(n))
        block = dimsum.UserBlock(
            0,
            dimsum.id_hashes(interactions.users),
            matrix.indptr.astype(np.int64),
            matrix.indices.astype(np.int32),
            matrix.data,
        )
        sampled = dimsum.sample_block(block, n, p, q, dimsum.id_hashes(interactions.items), seed)
        gram = dimsum.block_gram(sampled.matrix)
        stats = {
            "pairs_emitted": sampled.pairs_emitted,
            "pairs_exact": sampled.pairs_exact,
            **_error_above(gram, dimsum.exact_cosines(matrix), threshold),
        }
        return _as_rows(dimsum.top_k_rows(gram, np.arange(n), top_k, 0.0), n), stats

    return method


def _error_above(estimate: sparse.csr_matrix, exact: sparse.csr_matrix, threshold: float) -> dict:
    """Mean relative error of the estimate on off-diagonal pairs whose cosine is above s."""
    exact = sparse.triu(exact, k=1).tocsr()
    rows, cols = exact.nonzero()
    truth = np.asarray(exact[rows, cols]).ravel()
    above = truth > threshold
    if not above.any():
        return {"mean_relative_error": 0.0}
    guess = np.asarray(estimate.tocsr()[rows[above], cols[above]]).ravel()
    return {"mean_relative_error": float(np.mean(np.abs(guess - truth[above]) / truth[above]))}


def popularity(matrix: sparse.csr_matrix) -> np.ndarray:
    """Items by number of users, most popular first (ties: lower index)."""
    users_per_item = np.diff(matrix.tocsc().indptr)
    return np.lexsort((np.arange(len(users_per_item)), -users_per_item))


SimilarityMethod = Callable[[Interactions, int], tuple[sparse.csr_matrix, dict]]
#: Method name -> similarity rows builder; None is the popularity list alone.
METHODS: dict[str, SimilarityMethod | None] = {
    "dimsum@0": dimsum_similarities(0.0),
    "dimsum@0.1": dimsum_similarities(0.1),
    "dimsum@0.5": dimsum_similarities(0.5),
    "exact": exact_cosine,
    "popular": None,
}


def recommend(
    interactions: Interactions,
    similarities: sparse.csr_matrix | None,
    users: list[int],
    popular: np.ndarray,
    n: int = LIST_LENGTH,
) -> np.ndarray:
    """Top-n item indices per user (rows of -1 where the catalogue runs out)."""
    matrix = interactions.matrix
    scorer = Scorer()
    result = np.full((len(users), n), -1, dtype=np.int64)
    for row, user in enumerate(users):
        lo, hi = matrix.indptr[user], matrix.indptr[user + 1]
        history, weights = matrix.indices[lo:hi], matrix.data[lo:hi]
        picked: list[int] = []
        if similarities is not None and len(history):
            starts, ends = similarities.indptr[history], similarities.indptr[history + 1]
            offsets = np.concatenate(([0], np.cumsum(ends - starts))).astype(np.int64)
            take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]).astype(np.int64)
            best = scorer.top_n(
                similarities.indices[take].astype(np.int32),
                similarities.data[take],
                offsets,
                weights,
                n,
                excluded=history.astype(np.int32),
            )
            picked = best.items.tolist()
        if len(picked) < n:  # the server's popularity fill
            taken = set(picked) | set(history.tolist())
            picked += [int(i) for i in popular[: n + len(taken)] if i not in taken][: n - len(picked)]
        result[row, : len(picked)] = picked
    return result


def hit_metrics(recommended: np.ndarray, targets: np.ndarray, n_items: int) -> dict[str, float]:
    """hr@10, hr@20, ndcg@10 and top-10 coverage; a target of -1 never hits."""
    hits = (recommended == targets[:, None]) & (targets[:, None] >= 0)
    rank = np.where(hits.any(axis=1), hits.argmax(axis=1), np.iinfo(np.int64).max)
    top10 = recommended[:, :10]
    return {
        "hr@10": float(np.mean(rank < 10)),
        "hr@20": float(np.mean(rank < 20)),
        "ndcg@10": float(np.mean(np.where(rank < 10, 1.0 / np.log2(np.minimum(rank, 10) + 2.0), 0.0))),
        "coverage": float(len(np.unique(top10[top10 >= 0])) / n_items) if n_items else 0.0,
    }


def evaluate(
    interactions: Interactions,
    held_out: list[tuple[str, str]],
    methods: dict[str, SimilarityMethod | None] = METHODS,
    top_k: int = TOP_K,
) -> dict[str, dict[str, float]]:
    """Metrics per method, plus ``seconds`` (similarity build + scoring)."""
    user_index, item_index = interactions.user_index, interactions.item_index
    known = [(user_index[u], item_index.get(i, -1)) for u, i in held_out if u in user_index]
    if len(known) < len(held_out):
        log.warning(
            "%d of %d held-out users have no training history; they count as misses",
            len(held_out) - len(known),
            len(held_out),
        )
    users = [u for u, _ in known]
    targets = np.array([i for _, i in known] + [-1] * (len(held_out) - len(known)), dtype=np.int64)
    popular = popularity(interactions.matrix)
    results = {}
    for name, method in methods.items():
        start = time.perf_counter()
        similarities, stats = method(interactions, top_k) if method else (None, {})
        recs = recommend(interactions, similarities, users, popular)
        recs = np.vstack([recs, np.full((len(held_out) - len(known), recs.shape[1]), -1)])
        results[name] = {**hit_metrics(recs, targets, len(interactions.items)), **stats}
        results[name]["seconds"] = round(time.perf_counter() - start, 3)
        log.info("%s: %s", name, results[name])
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    columns = ["hr@10", "hr@20", "ndcg@10", "coverage", "pairs_emitted", "mean_relative_error", "seconds"]
    shown = {"pairs_emitted": "{:,}", "seconds": "{:.1f}"}
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
        ((float(name.split("@", 1)[1]), metrics) for name, metrics in results.items() if name.startswith("dimsum@")),
        key=lambda pair: pair[0],
    )
    plots = []
    if dimsum:
        thresholds = [s for s, _ in dimsum]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(thresholds, [m["hr@10"] for _, m in dimsum], marker="o", label="DIMSUM")
        for name, style in (("exact", "--"), ("popular", ":")):
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
