"""Our DIMSUM pass vs exact vs Spark MLlib's ``RowMatrix.columnSimilarities``, in one Spark session.

All three run with the real pass's parameters (``PassOptions``' defaults: measure, entry
transform, M its ceiling, seed, K) from the same in-memory user rows (cached RDDs, so Bigtable
I/O is not in the timings) on the same cores; MLlib gets the same entries, divided by M. Per
data set and threshold s it prints: compute seconds and the ratios ours / exact and ours /
MLlib; pairs emitted vs the exact pair products; top-K recall against the exact top-K (what
serving uses); of the exact top-K pairs whose similarity is >= s, the share found and the
mean relative error on them; on Tmall, HR@10 of each (scored as ``streamsim evaluate``).
``--growth`` counts emitted pairs as the synthetic users grow (the sampler alone, no Gram),
with the old pass (raw scores, M = the largest r_ui) beside it.

    .venv/bin/python -m benchmarks.dimsum --dataset tmall [--data PATH]
    .venv/bin/python -m benchmarks.dimsum --dataset synthetic --scale 1 --skip-mllib-exact
    .venv/bin/python -m benchmarks.dimsum --dataset none --growth 0.25,0.5,1

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

from batch import dimsum, engine, similarity
from batch.refresh import PassOptions, run_pass
from batch.source import blocks_from_csr
from schemas import Weights, layout, parse_event
from streamsim.app import evaluate, localstack
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
    user_ids, u = _named(users, "")
    item_ids, i = _named(items, "p")
    matrix = sparse.csr_matrix((weights, (u, i)), shape=(len(user_ids), len(item_ids)))
    matrix.sum_duplicates()
    return user_ids, item_ids, matrix


def _named(codes: np.ndarray, prefix: str) -> tuple[list[str], np.ndarray]:
    """What ``np.unique`` of the ids ``prefix + str(code)`` gives (sorted names, each code's
    position), without building ten million strings: names only for the distinct codes."""
    distinct, inverse = np.unique(codes, return_inverse=True)
    names = np.array([f"{prefix}{c}" for c in distinct.tolist()])
    order = np.argsort(names, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return names[order].tolist(), rank[inverse]


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


def pass_measure(options: PassOptions, matrix: sparse.csr_matrix) -> similarity.Applied:
    """The measure as the real pass applies it (``PassOptions``' measure, entry transform and
    M), with the norms the stream folds for those entries (``batch.refresh._compute``)."""
    f = similarity.effective_transform(similarity.measure(options.similarity), options.transform)
    entries_matrix = matrix.copy()
    entries_matrix.data = f.apply(entries_matrix.data)
    stats = similarity.stats_of(entries_matrix)
    return similarity.apply(options.similarity, dict(options.similarity_params), stats, options.params, None, f)


def ours(sc, blocks_rdd, measure, item_hash, params, **kw):
    return timed(
        lambda: engine.similarity_rows(sc, blocks_rdd, measure.stats.norm2, item_hash, params, similarity=measure, **kw)
    )


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


def quality(top, exact_top, s, k):
    """Against the exact top-K lists: top-K recall; of the exact top-K pairs whose similarity
    is >= s, the share this top-K holds and the mean relative error of its estimates of them."""
    recalls, found, errors, above = [], 0, [], 0
    for i, (cols, vals) in exact_top.items():
        want = dict(zip(cols[:k].tolist(), vals[:k].tolist()))
        got_cols, got_vals = top.get(i, (np.empty(0), np.empty(0)))
        got = dict(zip(got_cols[:k].tolist(), got_vals[:k].tolist()))
        recalls.append(len(want.keys() & got.keys()) / len(want))
        for j, v in want.items():
            if v >= max(s, 1e-12):
                above += 1
                if j in got:
                    found += 1
                    errors.append(abs(got[j] - v) / v)
    return {
        "recall_at_k": float(np.mean(recalls)) if recalls else None,
        "pairs_above_s": above,
        "recall_above_s": found / above if above else None,
        "mean_rel_error_above_s": float(np.mean(errors)) if errors else None,
    }


def as_rows(top: dict, n: int) -> sparse.csr_matrix:
    """Top-K lists as the items x items CSR ``streamsim evaluate`` scores with."""
    rows = [top.get(i, (np.empty(0, np.int32), np.empty(0))) for i in range(n)]
    indptr = np.concatenate(([0], np.cumsum([len(c) for c, _ in rows])))
    indices = np.concatenate([np.asarray(c, dtype=np.int32) for c, _ in rows])
    data = np.concatenate([np.asarray(v, dtype=np.float64) for _, v in rows])
    return sparse.csr_matrix((data, indices, indptr), shape=(n, n))


def hit_rate(top: dict, scoring) -> float:
    """HR@10 of the lists on held-out pairs, scored as ``streamsim evaluate`` scores."""
    interactions, queries = scoring
    n = len(interactions.items)
    method = evaluate.Method(lambda _interactions, _k: (as_rows(top, n), {}))
    return evaluate.score_queries(interactions, queries, {"m": method})["m"]["hr@10"]


def run(spark, name, users, item_ids, matrix, thresholds, options, partitions, skip_mllib_exact, scoring=None):
    sc = spark.sparkContext
    n, k = len(item_ids), options.params.top_k
    measure = pass_measure(options, matrix)
    item_hash = dimsum.id_hashes(item_ids)
    # What MLlib gets: the same entries over M, in [0, 1] as its sampler assumes too.
    scale = measure.entry_scale if np.isfinite(measure.entry_scale) else 1.0
    entries_matrix = matrix.copy()
    entries_matrix.data = measure.transform.apply(entries_matrix.data) / scale
    print(
        f"\n== {name}: {len(users):,} users, {n:,} items, {matrix.nnz:,} non-zero r_ui; "
        f"entries {measure.transform.spec}, M = {measure.entry_scale:g} (largest r_ui {matrix.data.max():g})",
        flush=True,
    )

    blocks, prep = timed(lambda: blocks_from_csr(users, matrix, options.buckets))
    blocks_rdd = sc.parallelize(blocks, partitions).cache()
    blocks_rdd.count()
    rows_rdd = (
        sc.parallelize(
            [
                (n, row.indices.tolist(), row.data.tolist())
                for row in (entries_matrix[r] for r in range(entries_matrix.shape[0]))
            ],
            partitions,
        )
        .map(lambda t: __import__("pyspark.mllib.linalg", fromlist=["Vectors"]).Vectors.sparse(*t))
        .cache()
    )
    rows_rdd.count()
    print(f"(blocks built in {prep:.1f} s; both inputs cached before timing)", flush=True)

    def params_at(s):
        return dataclasses.replace(options.params, threshold=s)

    exact, exact_seconds = ours(sc, blocks_rdd, measure, item_hash, params_at(0.0))
    results = []
    for s in thresholds:
        mine, mine_seconds = (
            (exact, exact_seconds) if s == 0 else ours(sc, blocks_rdd, measure, item_hash, params_at(s))
        )
        row = {
            "dataset": name,
            "entries": measure.transform.spec,
            "M": measure.entry_scale,
            "s": s,
            "ours_s": round(mine_seconds, 2),
            "exact_s": round(exact_seconds, 2),
            "ours_over_exact_time": round(mine_seconds / exact_seconds, 3),
            "pairs_emitted": mine.pairs_emitted,
            "pairs_exact": mine.pairs_exact,
            "exact_over_emitted": round(mine.pairs_exact / max(mine.pairs_emitted, 1), 2),
        }
        row.update({f"ours_{key}": v for key, v in quality(mine.top, exact.top, s, k).items()})
        if scoring is not None:
            row["ours_hr@10"] = hit_rate(mine.top, scoring)
        if not (s == 0 and skip_mllib_exact):
            theirs, mllib_pairs, mllib_seconds = mllib(sc, rows_rdd, s, k)
            row.update(
                {
                    "mllib_s": round(mllib_seconds, 2),
                    "mllib_pairs_out": mllib_pairs,
                    "ours_over_mllib_time": round(mine_seconds / mllib_seconds, 3),
                }
            )
            row.update({f"mllib_{key}": v for key, v in quality(theirs, exact.top, s, k).items()})
            if scoring is not None:
                row["mllib_hr@10"] = hit_rate(theirs, scoring)
        results.append(row)
        print(json.dumps(row), flush=True)
    blocks_rdd.unpersist()
    rows_rdd.unpersist()
    return results


def local_pass(blocks, measure, item_hash, params):
    """The pass's numeric core on one node, without Spark (``--local``): each bucket's block
    sampled and its Gram added in bucket order, finished, cut to top K, as the Spark stages do."""
    n = len(item_hash)
    p, q = dimsum.sampling_probabilities(measure.n**2, params.gamma(n), measure.entry_scale)
    total, emitted, exact = None, 0, 0
    for block in blocks:  # (in bucket order: the sum is the Spark pass's, bit for bit)
        sampled = dimsum.sample_block(measure.weighted(block), n, p, q, item_hash, params.seed)
        gram = dimsum.block_gram(sampled.matrix)
        total = gram if total is None else total + gram
        emitted, exact = emitted + sampled.pairs_emitted, exact + sampled.pairs_exact
    rows = dimsum.top_k_rows(measure.finish(total, np.arange(n)), np.arange(n), params.top_k, params.min_similarity)
    top = {i: row for i, row in enumerate(rows) if len(row[0])}
    return engine.GramResult(np.arange(n), top, (), emitted, exact, sum(b.users for b in blocks))


def run_local(name, users, item_ids, matrix, thresholds, options, scoring=None):
    """Ours at each s vs ours exact, on one node (no Spark, no MLlib): where the machine cannot
    give a Spark job of this size its share of the cores."""
    k = options.params.top_k
    measure = pass_measure(options, matrix)
    item_hash = dimsum.id_hashes(item_ids)
    blocks, prep = timed(lambda: blocks_from_csr(users, matrix, options.buckets))
    print(f"\n== {name} (one node): {len(users):,} users, {len(item_ids):,} items; blocks in {prep:.1f} s", flush=True)
    cpu = time.process_time()
    exact, exact_seconds = timed(
        lambda: local_pass(blocks, measure, item_hash, dataclasses.replace(options.params, threshold=0.0))
    )
    exact_cpu = time.process_time() - cpu
    results = []
    for s in thresholds:
        params = dataclasses.replace(options.params, threshold=s)
        cpu = time.process_time()
        mine, seconds = (
            (exact, exact_seconds) if s == 0 else timed(lambda: local_pass(blocks, measure, item_hash, params))
        )
        cpu = exact_cpu if s == 0 else time.process_time() - cpu
        row = {
            "dataset": name,
            "engine": "one node",
            "entries": measure.transform.spec,
            "M": measure.entry_scale,
            "s": s,
            "ours_s": round(seconds, 2),
            "exact_s": round(exact_seconds, 2),
            "ours_over_exact_time": round(seconds / exact_seconds, 3),
            # CPU seconds of this one process: what the load of other jobs does not move.
            "ours_cpu_s": round(cpu, 2),
            "ours_over_exact_cpu": round(cpu / exact_cpu, 3),
            "pairs_emitted": mine.pairs_emitted,
            "pairs_exact": mine.pairs_exact,
            "exact_over_emitted": round(mine.pairs_exact / max(mine.pairs_emitted, 1), 2),
            "load_average": os.getloadavg()[0],
        }
        row.update({f"ours_{key}": v for key, v in quality(mine.top, exact.top, s, k).items()})
        if scoring is not None:
            row["ours_hr@10"] = hit_rate(mine.top, scoring)
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def emitted_pairs(blocks, item_ids, matrix, s, options, entry_scale=None):
    """(pairs emitted, exact pair products) of a pass at ``s``, from the sampler alone (no Gram):
    how the work grows with the users. ``entry_scale`` overrides M (the old pass: max r)."""
    params = dataclasses.replace(options.params, threshold=s, entry_scale=entry_scale)
    measure = pass_measure(dataclasses.replace(options, params=params), matrix)
    p, q = dimsum.sampling_probabilities(measure.n**2, params.gamma(len(item_ids)), measure.entry_scale)
    hashes = dimsum.id_hashes(item_ids)
    emitted = exact = 0
    for block in blocks:
        sampled = dimsum.sample_block(measure.weighted(block), len(item_ids), p, q, hashes, params.seed)
        emitted, exact = emitted + sampled.pairs_emitted, exact + sampled.pairs_exact
    return emitted, exact


def growth(scales, items, options, thresholds, loaded=None):
    """Pairs emitted vs exact as the users grow (same item catalogue and events per user);
    ``loaded``: {scale: data} already built."""
    rows = []
    for scale in scales:
        users, item_ids, matrix = (loaded or {}).get(scale) or synthetic(scale, n_items=items)
        row = {"users": len(users), "r_ui": matrix.nnz, "largest_r": float(matrix.data.max())}
        blocks = blocks_from_csr(users, matrix, options.buckets)
        for s in thresholds:
            row[f"emitted@{s:g}"], row["exact"] = emitted_pairs(blocks, item_ids, matrix, s, options)
        old = dataclasses.replace(options, entry_transform="raw")
        row["old_max_r_emitted@0.1"], _ = emitted_pairs(blocks, item_ids, matrix, 0.1, old, float(matrix.data.max()))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


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
    parser.add_argument("--dataset", choices=["tmall", "synthetic", "both", "none"], default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="synthetic size (1 = 1M users, 10M events)")
    parser.add_argument("--items", type=int, default=50_000, help="synthetic item count")
    parser.add_argument("--thresholds", default="0,0.1,0.5")
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--entry-transform", default=None, help="entries (default: the pass's, schemas.entries)")
    parser.add_argument(
        "--growth", default="", help="synthetic scales to count emitted pairs at (e.g. 0.25,0.5,1), sampler only"
    )
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--buckets", type=int, default=64)
    parser.add_argument("--skip-mllib-exact", action="store_true", help="MLlib at s=0 is the slowest run")
    parser.add_argument("--local", action="store_true", help="ours vs exact on one node, without Spark or MLlib")
    parser.add_argument("--out", help="append result rows as JSON lines here")
    parser.add_argument(
        "--bigtable",
        action="store_true",
        help="also run the real pass on a Bigtable emulator (full vs incremental, I/O phases)",
    )
    parser.add_argument("--only-bigtable", action="store_true", help="skip the in-memory comparison")
    parser.add_argument("--data", type=Path, default=DEFAULT_TMALL, help="Tmall interactions (taobao format)")
    parser.add_argument("--test", type=Path, help="Tmall held-out buys (default: test_buy.csv beside --data)")
    args = parser.parse_args(argv)
    # The real pass's parameters (``refresh``'s defaults), but for the flags above.
    options = PassOptions(
        params=dimsum.DimsumParams(top_k=args.top_k),
        buckets=args.buckets,
        **({"entry_transform": args.entry_transform} if args.entry_transform else {}),
    )
    thresholds = [float(t) for t in args.thresholds.split(",")]
    results, loaded = [], {}
    if args.dataset in ("synthetic", "both"):
        data, seconds = timed(lambda: synthetic(args.scale, n_items=args.items))
        print(f"(synthetic x{args.scale} built in {seconds:.1f} s)", flush=True)
        loaded[args.scale] = data
    if args.growth:
        scales = [float(x) for x in args.growth.split(",")]
        results += growth(scales, args.items, options, thresholds[1:] or [0.1], loaded)
        if args.dataset == "none":
            return _write(args.out, results)
    if args.local:
        for name, data in loaded.items():
            results += run_local(f"synthetic x{name}", *data, thresholds, options)
        return _write(args.out, results)
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
    try:
        sets = []
        if args.dataset in ("tmall", "both"):
            sets.append(("tmall", lambda: load_tmall(args.data)))
        if args.dataset in ("synthetic", "both"):
            sets.append((f"synthetic x{args.scale}", lambda: loaded[args.scale]))
        for name, load in sets:
            data, seconds = timed(load)
            print(f"({name} loaded in {seconds:.1f} s)")
            scoring = None
            if name == "tmall":
                interactions = evaluate.Interactions(*data)
                test = args.test or args.data.parent / "test_buy.csv"
                scoring = (interactions, evaluate.user_queries(interactions, evaluate.read_held_out(str(test))))
            if not args.only_bigtable:
                results += run(spark, name, *data, thresholds, options, args.partitions, args.skip_mllib_exact, scoring)
            if args.bigtable or args.only_bigtable:
                results += bigtable_passes(spark, name, *data, 0.1, args.top_k, args.partitions)
    finally:
        spark.stop()
    return _write(args.out, results)


def _write(out, results):
    if out:
        with open(out, "a") as handle:
            for row in results:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
