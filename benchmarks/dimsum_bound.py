"""DIMSUM's error bound under shop weights: raw r_ui scaled by some M vs bounded entries.

Zadeh-Carlsson's guarantee assumes entries in [0, 1]; shop weights (0.5 / 2 / 6) put r_ui
far above 1, so sampling from raw entries keeps fewer of them than the analysis needs.
Per data set and threshold s this prints, for raw scores with M = 1 (the textbook sampler),
M = the largest event weight and M = the largest r_ui (the refresh's old default, which
samples nothing), and for the default entry transform with M its ceiling (what a refresh
does now, ``schemas.entries``): pairs emitted, the mean relative error on pairs whose exact
cosine is above s, and HR@10 against the exact pass (same scoring as ``streamsim evaluate``).

    .venv/bin/python -m benchmarks.dimsum_bound --dataset tmall [--data PATH --test PATH]
    .venv/bin/python -m benchmarks.dimsum_bound --dataset dense

``dense`` is the seeded synthetic stream (``streamsim.sources.synthetic``) with few items
and many events per user, held out by ``--split-by-time 0.9``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from schemas import Weights, entries, parse_event
from streamsim.app import evaluate
from streamsim.sources.formats import read_records
from streamsim.sources.synthetic import ClickstreamShape, clickstream

DENSE = ClickstreamShape(users=3_000, items=400, events=300_000, categories=8, malformed_rate=0.0, seed=11)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tmall-multibehavior"


def load(args):
    weights = Weights.from_env()
    if args.dataset == "tmall":
        records = read_records(Path(args.data), "auto")
        events = [parse_event(r.data) for r in records if r.data is not None]
        return evaluate.build_interactions(events, weights), evaluate.read_held_out(args.test)
    events = [parse_event(m) for m in clickstream(DENSE)]
    train, held = evaluate.split_by_time(events, 0.9)
    return evaluate.build_interactions(train, weights), held


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("tmall", "dense"), default="dense")
    parser.add_argument("--data", default=str(SHARED / "train_interactions.csv.gz"))
    parser.add_argument("--test", default=str(SHARED / "test_buy.csv"))
    parser.add_argument("--thresholds", default="0.1,0.5")
    args = parser.parse_args(argv)
    interactions, held = load(args)
    weights = Weights.from_env()
    top = max(weights.browse, weights.basket, weights.purchase)
    methods = {"exact": evaluate.Method(evaluate.measure_similarities("cosine", transform="raw"))}
    largest = float(interactions.matrix.data.max())
    for s in (float(t) for t in args.thresholds.split(",")):
        for scale in (1.0, top, largest):
            methods[f"s={s:g} raw M={scale:g}"] = evaluate.Method(
                evaluate.dimsum_similarities(s, entry_scale=scale, transform="raw")
            )
        methods[f"s={s:g} {entries.DEFAULT.spec} M={entries.DEFAULT.ceiling:g}"] = evaluate.Method(
            evaluate.dimsum_similarities(s)
        )
    results = evaluate.evaluate(interactions, held, methods)
    exact = results["exact"]["hr@10"]
    print(
        f"{args.dataset}: {len(interactions.users):,} users, {len(interactions.items):,} items, "
        f"{interactions.matrix.nnz:,} scores, {interactions.matrix.nnz / len(interactions.users):.1f} per user; "
        f"{len(held):,} held-out pairs"
    )
    print("| sampler | pairs emitted | mean rel. error (pairs above s) | HR@10 | HR@10 / exact |")
    print("|---|---|---|---|---|")
    for name, m in results.items():
        error = m.get("mean_relative_error")
        print(
            f"| {name} | {m.get('pairs_emitted', 0):,} | {'-' if error is None else f'{error:.4f}'} | "
            f"{m['hr@10']:.4f} | {m['hr@10'] / exact if exact else float('nan'):.3f} |"
        )
    print(
        json.dumps(
            {
                name: {k: m.get(k) for k in ("hr@10", "pairs_emitted", "mean_relative_error")}
                for name, m in results.items()
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
