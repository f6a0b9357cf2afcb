"""``streamsim evaluate``: offline hit rates of every similarity measure, popularity and a tuned config.

Protocols (one per run):

- ``--train EVENTS --test PAIRS``: held-out ``user,item`` pairs (e.g. Tmall's ``test_buy``);
- ``--train EVENTS --split-by-time 0.9``: the first 90% of the file's time trains, each
  user's new items after it are held out (for shops without a prepared test set);
- ``--sessions TRAIN --test-pairs PAIRS``: next-item pairs of sessions, repeats allowed
  by default (``--no-allow-repeats`` excludes the prefix, as the server does by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from streamsim.runtime.cli import describe_error
from streamsim.sources.formats import FORMATS, FormatError, read_records


class UsageError(ValueError):
    """A flag mistake: one line, exit 2."""


def add_data_arguments(parser) -> None:
    """The data flags ``evaluate`` and ``tune`` share."""
    parser.add_argument("--train", help="training events, any publisher format (.gz ok)")
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    parser.add_argument(
        "--sessions", help="training sessions: one per line, space-separated item ids in click order (.gz ok)"
    )
    parser.add_argument(
        "--allow-repeats",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="items already in the history may be recommended (default: yes for sessions, no otherwise)",
    )
    parser.add_argument("--top-k", type=int, help="neighbours kept per item (default: the refresh's 50)")


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        parents=[parent],
        help="offline evaluation: every similarity measure, popularity and a tuned config (HR, NDCG, MRR)",
        description="Train on events or sessions, test on held-out pairs; writes report.md and plots, prints "
        "the table. Protocols: --train F --test PAIRS | --train F --split-by-time 0.9 | "
        "--sessions F --test-pairs PAIRS.",
    )
    add_data_arguments(parser)
    parser.add_argument("--test", help="held-out pairs: CSV with header 'user,item'")
    parser.add_argument(
        "--split-by-time",
        type=float,
        metavar="FRACTION",
        help="hold out what follows this quantile of --train's event time (e.g. 0.9)",
    )
    parser.add_argument("--test-pairs", help="with --sessions: 'prefix<TAB>target' lines after a header (.gz ok)")
    parser.add_argument("--config", help="a tuned configuration (streamsim tune): adds the method 'tuned'")
    parser.add_argument("--methods", help="comma-separated methods to run (default: all)")
    parser.add_argument("--out", default="report", help="directory for report.md and PNG plots")
    parser.add_argument("--json", action="store_true", help="print one JSON object {method: metrics}")
    parser.set_defaults(run=run_evaluate)


@dataclasses.dataclass
class Data:
    """Training interactions, the queries to score, and how they were made."""

    interactions: object
    queries: list
    protocol: str
    allow_repeats: bool
    description: str


def _top_k(args) -> int:
    from streamsim.app import evaluate

    top_k = evaluate.TOP_K if args.top_k is None else args.top_k
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, not {args.top_k}")
    return top_k


def read_events(args) -> list:
    from schemas import parse_event

    try:
        records = read_records(Path(args.train), args.format)
        return [parse_event(r.data) for r in records if r.data is not None]
    except FormatError as exc:
        raise UsageError(str(exc)) from None


def load_training(args):
    """(interactions, sessions?) from --train or --sessions, without a test set (``tune``)."""
    from schemas import Weights
    from streamsim.app import evaluate

    if bool(args.train) == bool(args.sessions):
        raise UsageError("give exactly one of --train EVENTS or --sessions SESSIONS")
    if args.sessions:
        return evaluate.session_interactions(evaluate.read_sessions(args.sessions)), True
    return evaluate.build_interactions(read_events(args), Weights.from_env()), False


def load_data(args) -> Data:
    """The protocol the flags name, loaded; UsageError for a wrong combination."""
    from schemas import Weights
    from streamsim.app import evaluate

    if args.sessions:
        if args.train or args.test or args.split_by_time is not None:
            raise UsageError("--sessions goes with --test-pairs only (not --train, --test or --split-by-time)")
        if not args.test_pairs:
            raise UsageError("--sessions needs --test-pairs PAIRS")
        interactions = evaluate.session_interactions(evaluate.read_sessions(args.sessions))
        queries = evaluate.session_queries(interactions, evaluate.read_test_pairs(args.test_pairs))
        repeats = True if args.allow_repeats is None else args.allow_repeats
        return Data(interactions, queries, "sessions", repeats, f"{len(interactions.users):,} sessions")
    if not args.train:
        raise UsageError("give --train EVENTS (with --test or --split-by-time) or --sessions with --test-pairs")
    if args.test_pairs:
        raise UsageError("--test-pairs goes with --sessions")
    if (args.test is None) == (args.split_by_time is None):
        raise UsageError("--train needs exactly one of --test PAIRS or --split-by-time FRACTION")
    events = read_events(args)
    if args.split_by_time is not None:
        events, held_out = evaluate.split_by_time(events, args.split_by_time)
        protocol = f"split-by-time {args.split_by_time:g}"
    else:
        held_out, protocol = evaluate.read_held_out(args.test), "held-out pairs"
    interactions = evaluate.build_interactions(events, Weights.from_env())
    repeats = False if args.allow_repeats is None else args.allow_repeats
    queries = evaluate.user_queries(interactions, held_out)
    return Data(interactions, queries, protocol, repeats, f"{len(interactions.users):,} users")


def methods_for(args, data: Data) -> dict:
    from schemas.tuned import read_tuned
    from streamsim.app import evaluate

    methods = evaluate.default_methods(ordered=data.interactions.sequences is not None)
    if args.config:
        tuned = read_tuned(args.config)
        build = evaluate.measure_similarities(tuned.similarity, tuned.params, transform=tuned.entries)
        methods["tuned"] = evaluate.Method(build, tuned.serving)
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in methods]
        if unknown:
            raise UsageError(f"unknown method {unknown[0]!r} (choose from {', '.join(methods)})")
        methods = {name: methods[name] for name in wanted}
    return methods


def guarded(what: str, body) -> int:
    """Run ``body()``; a bad flag or input is one line on stderr and exit 2."""
    from schemas.tuned import TunedConfigError

    try:
        return body()
    except (UsageError, TunedConfigError) as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, EOFError) as exc:
        print(f"{what}: {describe_error(exc)}", file=sys.stderr)
        return 2


def run_evaluate(args) -> int:
    return guarded("streamsim evaluate", lambda: _evaluate(args))


def _evaluate(args) -> int:
    from streamsim.app import evaluate

    top_k = _top_k(args)
    data = load_data(args)
    methods = methods_for(args, data)
    if not args.json:
        print(
            f"{data.protocol}: {data.description}, {len(data.interactions.items):,} items, "
            f"{data.interactions.matrix.nnz:,} scores; {len(data.queries):,} test pairs; "
            f"repeats {'allowed' if data.allow_repeats else 'excluded'}"
        )
    results = evaluate.score_queries(data.interactions, data.queries, methods, top_k, allow_repeats=data.allow_repeats)
    source = Path(args.sessions or args.train).name
    written = evaluate.write_report(results, args.out, title=f"streamsim evaluation: {source} ({data.protocol})")
    if args.json:
        print(json.dumps(results))
    else:
        print(evaluate.format_table(results))
        print("wrote " + ", ".join(written))
    return 0
