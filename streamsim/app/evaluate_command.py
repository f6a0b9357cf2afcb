"""``streamsim evaluate``: offline hit rate of DIMSUM, exact cosine and popularity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from streamsim.runtime.cli import os_error
from streamsim.sources.formats import FORMATS, FormatError, read_records


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        parents=[parent],
        help="offline evaluation on held-out interactions (HR@10/20, NDCG@10, coverage)",
        description="Train on one file of events, test on held-out 'user,item' pairs; writes "
        "report.md and plots, prints the table.",
    )
    parser.add_argument("--train", required=True, help="training events, any publisher format (.gz ok)")
    parser.add_argument("--test", required=True, help="held-out pairs: CSV with header 'user,item'")
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    parser.add_argument("--top-k", type=int, help="neighbours kept per item (default: the refresh's 50)")
    parser.add_argument("--out", default="report", help="directory for report.md and PNG plots")
    parser.add_argument("--json", action="store_true", help="print one JSON object {method: metrics}")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from schemas import Weights, parse_event
    from streamsim.app import evaluate

    what = "streamsim evaluate"
    top_k = evaluate.TOP_K if args.top_k is None else args.top_k
    if top_k < 1:
        print(f"{what}: --top-k must be at least 1, not {args.top_k}", file=sys.stderr)
        return 2
    try:
        records = read_records(Path(args.train), args.format)
        events = (parse_event(r.data) for r in records if r.data is not None)
        interactions = evaluate.build_interactions(events, Weights.from_env())
    except FormatError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{what}: {os_error(exc)}", file=sys.stderr)
        return 2
    try:
        held_out = evaluate.read_held_out(args.test)
    except OSError as exc:
        print(f"{what}: {os_error(exc)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"{what}: {args.test} is not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        print(
            f"{len(interactions.users):,} users, {len(interactions.items):,} items, "
            f"{interactions.matrix.nnz:,} (user, item) scores; {len(held_out):,} held-out pairs"
        )
    results = evaluate.evaluate(interactions, held_out, top_k=top_k)
    written = evaluate.write_report(results, args.out, title=f"streamsim evaluation: {Path(args.train).name}")
    if args.json:
        print(json.dumps(results))
    else:
        print(evaluate.format_table(results))
        print("wrote " + ", ".join(written))
    return 0
