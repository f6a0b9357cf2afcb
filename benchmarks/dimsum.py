"""Our DIMSUM pass vs Spark MLlib's ``RowMatrix.columnSimilarities`` in one Spark session.

Both run from the same in-memory user rows (cached RDDs, so Bigtable I/O is not in the
timings) on the same cores. Per data set and threshold s it prints: compute seconds and
the ratio ours / MLlib; pairs emitted vs the exact pair count; top-K recall against the
exact top-K (what serving uses); the mean relative error and the fraction within 20% on
a seeded sample of each method's returned top-K pairs whose exact cosine is >= s. It
also times an incremental pass (1% of the items dirty) against a full one.

    .venv/bin/python -m benchmarks.dimsum --dataset tmall [--data PATH]
    .venv/bin/python -m benchmarks.dimsum --dataset synthetic --scale 0.2

(from the repository root). Data: Tmall from ``--data`` (default
../shared/data/tmall-multibehavior/train_interactions.csv.gz), read as the ``taobao``
source format and weighted as the stream weighs events (``schemas.Weights``: browse
(fav) 0.5, basket (cart) 2, purchase (buy) 6); the synthetic set is seeded power-law
(Zipf items, log-normal user activity): ``--scale 1`` is 1M users, 50k items, 10M events.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import sparse

from batch import dimsum, engine, incremental
from batch.refresh import PassOptions, run_pass
from batch.source import blocks_from_csr
from schemas import Weights, layout, parse_event
from streamsim.app import localstack
from streamsim.runtime.bigtable import entry, open_tables, set_cell
from streamsim.runtime.provision import provision_bigtable
from streamsim.runtime.seeding import write_scores
from streamsim.runtime.settings import Settings
from streamsim.sources.formats import read_records

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TMALL = ROOT.parent / "shared" / "data" / "tmall-multibehavior" / "train_interactions.csv.gz"


def load_tmall(path: Path):
    weights = Weights()
    users, items, values = [], [], []
    for record in read_records(path, "taobao"):
        if record.data is None:
            continue
        event = parse_event(record.data)
        users.append(event.user)
        items.append(event.item)
        values.append(weights.of(event.type))
    return aggregate(np.array(users), np.array(items), np.array(values))


def synthetic(scale: float, seed: int = 7, n_items: int = 50_000):
    rng = np.random.default_rng(seed)
    n_users, n_events = int(1_000_000 * scale), int(10_000_000 * scale)
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** 1.0
    activity = rng.lognormal(0.0, 1.2, n_users)
    users = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    items = rng.choice(n_items, size=n_events, p=popularity / popularity.sum())
    weights = rng.choice([0.5, 2.0, 6.0], size=n_events, p=[0.75, 0.18, 0.07])
    return aggregate(users.astype(str), np.char.add("p", items.astype(str)), weights)


def aggregate(users: np.ndarray, items: np.ndarray, weights: np.ndarray):
    """r_ui = sum of event weights; items sorted by id (the pass's item positions)."""
    user_ids, u = np.unique(users, return_inverse=True)
    item_ids, i = np.unique(items, return_inverse=True)
    matrix = sparse.csr_matrix((weights, (u, i)), shape=(len(user_ids), len(item_ids)))
    matrix.sum_duplicates()
    return user_ids.tolist(), item_ids.tolist(), matrix


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def ours(sc, blocks_rdd, norm2, item_hash, s, k, **kw):
    params = dimsum.DimsumParams(threshold=s, top_k=k)
    return timed(lambda: engine.similarity_rows(sc, blocks_rdd, norm2, item_hash, params, **kw))


def mllib(sc, rows_rdd, s, k):
    """MLlib's pairs (timed: computed and counted), then its top K per item in Spark SQL."""
    from pyspark.mllib.common import callMLlibFunc
    from pyspark.mllib.linalg.distributed import RowMatrix
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    similarities = RowMatrix(rows_rdd).columnSimilarities(s)
    # The entries as a JVM DataFrame (what CoordinateMatrix.entries wraps): ranking them in
    # Python would cost more than the computation being measured.
    entries = callMLlibFunc("getMatrixEntries", similarities._java_matrix_wrapper._java_model).cache()
    pairs, seconds = timed(entries.count)
    both = entries.select("i", "j", "value").unionByName(
        entries.select(F.col("j").alias("i"), F.col("i").alias("j"), "value")
    )
    rank = F.row_number().over(Window.partitionBy("i").orderBy(F.desc("value"), F.asc("j")))
    top = both.withColumn("rank", rank).where(F.col("rank") <= k).orderBy("i", "rank").collect()
    entries.unpersist()
    out = {}
    for row in top:
        cols, vals = out.setdefault(int(row["i"]), ([], []))
        cols.append(int(row["j"]))
        vals.append(float(row["value"]))
    return {i: (np.array(c), np.array(v)) for i, (c, v) in out.items()}, pairs, seconds


def exact_pairs(x_normed_csc, left, right):
    out = np.empty(len(left))
    for start in range(0, len(left), 20_000):
        a, b = left[start : start + 20_000], right[start : start + 20_000]
        out[start : start + 20_000] = np.asarray(x_normed_csc[:, a].multiply(x_normed_csc[:, b]).sum(axis=0)).ravel()
    return out


def quality(top, exact_top, x_normed_csc, s, k, rng, sample=20_000):
    recalls = []
    for i, (cols, _) in exact_top.items():
        want = set(cols[:k].tolist())
        got = set(top.get(i, (np.empty(0),))[0][:k].tolist())
        recalls.append(len(want & got) / len(want))
    pairs = [(i, j, v) for i, (cols, vals) in top.items() for j, v in zip(cols.tolist(), vals.tolist())]
    chosen = rng.choice(len(pairs), size=min(sample, len(pairs)), replace=False) if pairs else []
    left = np.array([pairs[c][0] for c in chosen], dtype=np.int64)
    right = np.array([pairs[c][1] for c in chosen], dtype=np.int64)
    est = np.array([pairs[c][2] for c in chosen])
    exact = exact_pairs(x_normed_csc, left, right) if len(left) else np.empty(0)
    above = exact >= max(s, 1e-12)
    rel = np.abs(est[above] - exact[above]) / exact[above]
    return {
        "recall_at_k": float(np.mean(recalls)) if recalls else None,
        "mean_rel_error": float(rel.mean()) if len(rel) else None,
        "within_20pct": float((rel <= 0.2).mean()) if len(rel) else None,
    }


def run(spark, name, users, item_ids, matrix, thresholds, k, partitions, buckets, skip_mllib_exact):
    sc = spark.sparkContext
    n = len(item_ids)
    norm2 = np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel()
    norms = np.sqrt(norm2)
    normed = (matrix @ sparse.diags(1.0 / np.where(norms > 0, norms, 1.0))).tocsc()
    item_hash = dimsum.id_hashes(item_ids)
    print(f"\n== {name}: {len(users):,} users, {n:,} items, {matrix.nnz:,} non-zero r_ui", flush=True)

    blocks, prep = timed(lambda: blocks_from_csr(users, matrix, buckets))
    blocks_rdd = sc.parallelize(blocks, partitions).cache()
    blocks_rdd.count()
    rows_rdd = (
        sc.parallelize(
            [(n, row.indices.tolist(), row.data.tolist()) for row in (matrix[r] for r in range(matrix.shape[0]))],
            partitions,
        )
        .map(lambda t: __import__("pyspark.mllib.linalg", fromlist=["Vectors"]).Vectors.sparse(*t))
        .cache()
    )
    rows_rdd.count()
    print(f"(blocks built in {prep:.1f} s; both inputs cached before timing)", flush=True)

    exact, exact_seconds = ours(sc, blocks_rdd, norm2, item_hash, 0.0, k)
    rng = np.random.default_rng(0)
    results = []
    for s in thresholds:
        mine, mine_seconds = (exact, exact_seconds) if s == 0 else ours(sc, blocks_rdd, norm2, item_hash, s, k)
        row = {
            "dataset": name,
            "s": s,
            "ours_s": round(mine_seconds, 2),
            "pairs_emitted": mine.pairs_emitted,
            "pairs_exact": mine.pairs_exact,
            "emitted_ratio": round(mine.pairs_exact / max(mine.pairs_emitted, 1), 2),
        }
        row.update({f"ours_{key}": v for key, v in quality(mine.top, exact.top, normed, s, k, rng).items()})
        if not (s == 0 and skip_mllib_exact):
            theirs, mllib_pairs, mllib_seconds = mllib(sc, rows_rdd, s, k)
            row.update(
                {
                    "mllib_s": round(mllib_seconds, 2),
                    "mllib_pairs_out": mllib_pairs,
                    "time_ratio": round(mine_seconds / mllib_seconds, 3),
                }
            )
            row.update({f"mllib_{key}": v for key, v in quality(theirs, exact.top, normed, s, k, rng).items()})
        results.append(row)
        print(json.dumps(row), flush=True)

    # Incremental: 1% of the items dirty (uniformly drawn). Stage 1 recomputes their rows and
    # merges the clean rows; stage 2 recomputes clean rows the merge cannot settle.
    s = 0.1 if 0.1 in thresholds else thresholds[-1]
    params = dimsum.DimsumParams(threshold=s, top_k=k)
    full, full_seconds = ours(sc, blocks_rdd, norm2, item_hash, s, k)
    affected = np.zeros(n, dtype=bool)
    affected[rng.choice(n, size=max(1, n // 100), replace=False)] = True
    old = {i: row for i, row in full.top.items() if not affected[i]}

    def incremental_pass():
        first = engine.similarity_rows(
            sc,
            blocks_rdd,
            norm2,
            item_hash,
            params,
            rows=np.flatnonzero(affected),
            source_rows=affected,
            bar=incremental.candidate_bars(old, affected, k),
        )
        merges, again = incremental.merge_rows(old, affected, first.candidates, k)
        if len(again):
            engine.similarity_rows(sc, blocks_rdd, norm2, item_hash, params, rows=again)
        return merges, again

    (merges, again), inc_seconds = timed(incremental_pass)
    row = {
        "dataset": name,
        "incremental_1pct_s": round(inc_seconds, 2),
        "full_s": round(full_seconds, 2),
        "incremental_ratio": round(inc_seconds / full_seconds, 3),
        "affected": int(affected.sum()),
        "rows_merged": len(merges),
        "clean_rows_recomputed": int(len(again)),
    }
    print(json.dumps(row), flush=True)
    results.append(row)
    blocks_rdd.unpersist()
    rows_rdd.unpersist()
    return results


def bigtable_passes(spark, name, users, item_ids, matrix, s, k, partitions):
    """The real pass on a Bigtable emulator of our own: full, then incremental after 1% dirty."""
    log_dir = Path(tempfile.mkdtemp(prefix="dimsum-bench-"))
    emulator = localstack.start_emulator("bigtable", localstack.free_port(), log_dir)
    try:
        settings = Settings(
            project="bench", instance="bench", bigtable_host=emulator.host, prefix="b-", state_dir=log_dir
        )
        provision_bigtable(settings)

        start = time.perf_counter()
        # Pair rows (r_ui), contributions rows and item stats, all items dirty: the state the stream leaves.
        write_scores(
            settings,
            {
                user: dict(zip([item_ids[i] for i in matrix.indices[lo:hi].tolist()], matrix.data[lo:hi].tolist()))
                for user, lo, hi in zip(users, matrix.indptr[:-1].tolist(), matrix.indptr[1:].tolist())
            },
            mark_dirty=True,
        )
        print(f"(loaded {len(users):,} users into the emulator in {time.perf_counter() - start:.1f} s)")

        def mark_dirty(positions):
            open_tables(settings).items.mutate(
                entry(layout.item_row_key(item_ids[i]), [set_cell(layout.DIRTY, layout.DIRTY_MARK, b"")])
                for i in positions
            )

        options = PassOptions(params=dimsum.DimsumParams(threshold=s, top_k=k), partitions=partitions)
        full = run_pass(spark, settings, options)
        rng = np.random.default_rng(1)
        mark_dirty(rng.choice(len(item_ids), size=max(1, len(item_ids) // 100), replace=False).tolist())
        inc = run_pass(spark, settings, options)
        full_again = run_pass(spark, settings, dataclasses.replace(options, full=True))
        row = {
            "dataset": name,
            "bigtable_full_s": full["wall_seconds"],
            "bigtable_incremental_s": inc["wall_seconds"],
            "bigtable_full_again_s": full_again["wall_seconds"],
            "bigtable_incremental_ratio": round(inc["wall_seconds"] / full_again["wall_seconds"], 3),
            "full_phases": full_again["phases_seconds"],
            "incremental_phases": inc["phases_seconds"],
            "incremental_rows_recomputed": inc["items_recomputed"],
            "incremental_rows_merged": inc["rows_merged"],
            "incremental_user_selection": inc["user_selection"],
            "incremental_users_read": inc["users_read"],
            "full_users_read": full_again["users_read"],
            "incremental_similarity_rows_read": inc["similarity_rows_read"],
            "spot_check": full_again["spot_check"],
        }
        print(json.dumps(row), flush=True)
        return [row]
    finally:
        emulator.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dimsum", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["tmall", "synthetic", "both"], default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="synthetic size (1 = 1M users, 10M events)")
    parser.add_argument("--items", type=int, default=50_000, help="synthetic item count")
    parser.add_argument("--thresholds", default="0,0.1,0.5")
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--buckets", type=int, default=64)
    parser.add_argument("--skip-mllib-exact", action="store_true", help="MLlib at s=0 is the slowest run")
    parser.add_argument("--out", help="append result rows as JSON lines here")
    parser.add_argument(
        "--bigtable",
        action="store_true",
        help="also run the real pass on a Bigtable emulator (full vs incremental, I/O phases)",
    )
    parser.add_argument("--only-bigtable", action="store_true", help="skip the in-memory comparison")
    parser.add_argument("--data", type=Path, default=DEFAULT_TMALL, help="Tmall interactions (taobao format)")
    args = parser.parse_args(argv)
    if args.dataset in ("tmall", "both") and not args.data.is_file():
        sys.exit(f"benchmarks.dimsum: Tmall data not found at {args.data}; pass --data PATH (or --dataset synthetic)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(args.master)
        .appName("streamsim-dimsum-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "6g")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    results = []
    try:
        sets = []
        if args.dataset in ("tmall", "both"):
            sets.append(("tmall", lambda: load_tmall(args.data)))
        if args.dataset in ("synthetic", "both"):
            sets.append((f"synthetic x{args.scale}", lambda: synthetic(args.scale, n_items=args.items)))
        for name, load in sets:
            data, seconds = timed(load)
            print(f"({name} loaded in {seconds:.1f} s)")
            if not args.only_bigtable:
                results += run(
                    spark, name, *data, thresholds, args.top_k, args.partitions, args.buckets, args.skip_mllib_exact
                )
            if args.bigtable or args.only_bigtable:
                results += bigtable_passes(spark, name, *data, 0.1, args.top_k, args.partitions)
    finally:
        spark.stop()
    if args.out:
        with open(args.out, "a") as out:
            for row in results:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
