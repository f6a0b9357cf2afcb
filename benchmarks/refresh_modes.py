"""Incremental vs full refresh passes on a Bigtable emulator, and what the cost model picks.

    .venv/bin/python -m benchmarks.refresh_modes [--dataset tmall|synthetic] [--scale 0.05]
        [--fractions 0.01,0.1,0.5] [--threshold 0.1]

(from the repository root). Starts its own Bigtable emulator, loads the data as the stream
leaves it (pair rows, contributions, item stats) and runs, in one Spark ``local[2]`` session:

1. **1% dirty, warm and cold**: a full pass through a warm loop state (what
   ``refresh --continuous`` keeps), then new events on 1% of the items (each gets a few
   extra events from its existing users, so norms and scores really change); the warm
   incremental pass, a cold incremental pass (a fresh process's view) and a full pass,
   each after new events on the same items. Ratios incremental / full, same run (target <= 0.2).
2. **never more than 1.1x the cheaper mode**: for each ``--fractions`` share of items
   changed, the pass as the cost model chooses, then forced incremental and forced full,
   each after new events on the same items. Prints chosen / min(both).

Every line carries the 1-minute load average (``uptime``): the machine is shared.
Data: Tmall as ``benchmarks.dimsum`` reads it, or its seeded synthetic set.
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

from batch import dimsum
from batch.continuous import WarmState
from batch.refresh import PassOptions, run_pass
from benchmarks.dimsum import DEFAULT_TMALL, load_tmall, synthetic
from schemas import codecs, layout
from streamsim.app import localstack
from streamsim.runtime.bigtable import entry, open_tables, set_cell
from streamsim.runtime.provision import provision_bigtable
from streamsim.runtime.seeding import write_scores
from streamsim.runtime.settings import Settings


def load() -> float:
    return os.getloadavg()[0]


def seed_state(settings, users, item_ids, matrix) -> None:
    write_scores(
        settings,
        {
            user: dict(zip([item_ids[i] for i in matrix.indices[lo:hi].tolist()], matrix.data[lo:hi].tolist()))
            for user, lo, hi in zip(users, matrix.indptr[:-1].tolist(), matrix.indptr[1:].tolist())
        },
        mark_dirty=True,
    )


class Changes:
    """New events on chosen items, written as the fold writes them (absolute values, marks)."""

    def __init__(self, settings, users, item_ids, matrix):
        self.settings, self.users, self.item_ids = settings, users, item_ids
        self.csc = matrix.tocsc()
        self.rng = np.random.default_rng(5)

    def apply(self, positions: list[int], per_item: int = 3) -> None:
        tables = open_tables(self.settings)
        pairs, items = [], []
        for i in positions:
            lo, hi = self.csc.indptr[i], self.csc.indptr[i + 1]
            if hi == lo:
                continue
            chosen = self.rng.choice(np.arange(lo, hi), size=min(per_item, hi - lo), replace=False)
            self.csc.data[chosen] += 2.0  # a basket event each
            for k in chosen.tolist():
                user = self.users[self.csc.indices[k]]
                pairs.append(
                    entry(
                        layout.user_item_key(user, self.item_ids[i]),
                        [set_cell(layout.SCORES, layout.SCORE, codecs.encode_double(float(self.csc.data[k])))],
                    )
                )
            norm2 = float((self.csc.data[lo:hi] ** 2).sum())
            items.append(
                entry(
                    layout.item_row_key(self.item_ids[i]),
                    [
                        set_cell(layout.ITEM_STATS, layout.NORM2, codecs.encode_double(norm2)),
                        set_cell(layout.DIRTY, layout.DIRTY_MARK, b""),
                    ],
                )
            )
        tables.users.mutate(pairs)
        tables.items.mutate(items)


def summary(stats: dict) -> dict:
    return {
        "mode": stats["mode"],
        "seconds": stats["wall_seconds"],
        "phases": stats["phases_seconds"],
        "items_read": stats["items_read"],
        "users_read": stats["users_read"],
        "similarity_rows_read": stats["similarity_rows_read"],
        "rows_written": stats["rows_written"],
        "clean_rows_recomputed": stats["clean_rows_recomputed"],
        "estimated_cost": {
            k: (v or {}).get("cost") for k, v in (stats["cost_model"] or {}).items() if k in ("full", "incremental")
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.refresh_modes", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["tmall", "synthetic"], default="tmall")
    parser.add_argument("--data", type=Path, default=DEFAULT_TMALL)
    parser.add_argument("--scale", type=float, default=0.05, help="synthetic size (1 = 1M users, 10M events)")
    parser.add_argument("--fractions", default="0.01,0.1,0.5")
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--top-k", type=int, default=50)
    args = parser.parse_args(argv)
    if args.dataset == "tmall" and not args.data.is_file():
        sys.exit(f"benchmarks.refresh_modes: Tmall data not found at {args.data}; pass --data or --dataset synthetic")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    users, item_ids, matrix = load_tmall(args.data) if args.dataset == "tmall" else synthetic(args.scale)
    print(f"({args.dataset}: {len(users):,} users, {len(item_ids):,} items, {matrix.nnz:,} pairs)", flush=True)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("streamsim-refresh-modes")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    log_dir = Path(tempfile.mkdtemp(prefix="refresh-modes-"))
    emulator = localstack.start_emulator("bigtable", localstack.free_port(), log_dir)
    try:
        settings = Settings(
            project="bench", instance="bench", bigtable_host=emulator.host, prefix="m-", state_dir=log_dir
        )
        provision_bigtable(settings)
        start = time.perf_counter()
        seed_state(settings, users, item_ids, matrix)
        print(f"(loaded into the emulator in {time.perf_counter() - start:.1f} s)", flush=True)
        options = PassOptions(params=dimsum.DimsumParams(threshold=args.threshold, top_k=args.top_k))
        changes = Changes(settings, users, item_ids, matrix)
        rng = np.random.default_rng(1)
        n = len(item_ids)

        # 1. 1% dirty: warm incremental, cold incremental, full on the same state.
        warm = WarmState()
        run_pass(spark, settings, options, warm=warm)  # the loop's first pass (full: no base)
        dirty = rng.choice(n, size=max(1, n // 100), replace=False).tolist()
        changes.apply(dirty)
        load_before = load()
        warm_inc = run_pass(spark, settings, dataclasses.replace(options, incremental=True), warm=warm)
        changes.apply(dirty)
        cold_inc = run_pass(spark, settings, dataclasses.replace(options, incremental=True))
        changes.apply(dirty)
        full = run_pass(spark, settings, dataclasses.replace(options, full=True))
        row = {
            "figure": "1% of items changed",
            "load_1min": [round(load_before, 2), round(load(), 2)],
            "warm_incremental": summary(warm_inc),
            "cold_incremental": summary(cold_inc),
            "full": summary(full),
            "warm_ratio": round(warm_inc["wall_seconds"] / full["wall_seconds"], 3),
            "cold_ratio": round(cold_inc["wall_seconds"] / full["wall_seconds"], 3),
        }
        print(json.dumps(row), flush=True)
        print(
            f"1% dirty: warm incremental {warm_inc['wall_seconds']:.2f} s, cold incremental "
            f"{cold_inc['wall_seconds']:.2f} s, full {full['wall_seconds']:.2f} s -> warm {row['warm_ratio']:.3f}x, "
            f"cold {row['cold_ratio']:.3f}x (target <= 0.2x; load {row['load_1min']})",
            flush=True,
        )

        # 2. The chosen mode against both forced modes, per share of items changed.
        for fraction in [float(f) for f in args.fractions.split(",")]:
            positions = rng.choice(n, size=max(1, int(n * fraction)), replace=False).tolist()
            changes.apply(positions)
            load_before = load()
            chosen = run_pass(spark, settings, options)
            changes.apply(positions)
            inc = run_pass(spark, settings, dataclasses.replace(options, incremental=True))
            changes.apply(positions)
            fll = run_pass(spark, settings, dataclasses.replace(options, full=True))
            cheaper = min(inc["wall_seconds"], fll["wall_seconds"])
            row = {
                "figure": f"{fraction:.0%} of items changed",
                "load_1min": [round(load_before, 2), round(load(), 2)],
                "chosen": summary(chosen),
                "incremental": summary(inc),
                "full": summary(fll),
                "chosen_over_cheaper": round(chosen["wall_seconds"] / cheaper, 3),
            }
            print(json.dumps(row), flush=True)
            print(
                f"{fraction:.0%} dirty: chose {chosen['mode']} {chosen['wall_seconds']:.2f} s; incremental "
                f"{inc['wall_seconds']:.2f} s, full {fll['wall_seconds']:.2f} s -> {row['chosen_over_cheaper']:.2f}x "
                f"the cheaper (target <= 1.1x; load {row['load_1min']})",
                flush=True,
            )
    finally:
        emulator.stop()
        spark.stop()


if __name__ == "__main__":
    main()
