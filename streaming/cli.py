"""`streamsim` subcommands of the streaming package: publish, stream and forget.

``streamsim stream`` runs the fold supervised; Beam options go after ``--``::

    streamsim stream --idle-exit 10                      # local runner, emulators
    streamsim stream --drain-exit 60                     # a scheduled run: fold the backlog, exit 0
    streamsim stream -- --runner DataflowRunner --project P --region R \\
        --setup_file ./setup.py --temp_location gs://B/tmp   # Dataflow
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from streamsim.runtime.cli import backend_error, command_name, os_error, settings_from_args
from streamsim.runtime.outage import Outage, serve_metrics
from streamsim.sources.formats import FORMATS


def register(subparsers, parent) -> None:
    publish = subparsers.add_parser(
        "publish", parents=[parent], help="replay a CSV/JSONL file of events onto the events topic"
    )
    publish.add_argument("file", help="events file (.gz read directly)")
    publish.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    publish.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    publish.add_argument("--limit", type=int, help="publish at most this many lines")
    publish.add_argument("--no-progress", action="store_true", help="no progress bar")
    publish.set_defaults(run=run_publish)

    stream = subparsers.add_parser(
        "stream", parents=[parent], help="run the streaming fold (Pub/Sub -> Bigtable), supervised"
    )
    add_stream_arguments(stream)
    stream.set_defaults(run=run_stream)

    forget = subparsers.add_parser(
        "forget", parents=[parent], help="erase users from every table and print the receipts (docs/forget.md)"
    )
    forget.add_argument("users", nargs="+", metavar="USER", help="user ids")
    forget.add_argument("--status", action="store_true", help="print the receipts only (erase nothing)")
    forget.set_defaults(run=run_forget)

    norms = subparsers.add_parser(
        "backfill-norms",
        parents=[parent],
        help="set every item's n:enorm2 from its contributions (once, after upgrading; safe while the fold runs)",
    )
    norms.add_argument("--no-progress", action="store_true", help="no progress bar")
    norms.set_defaults(run=run_backfill_norms)


def run_backfill_norms(args) -> int:
    from streaming import backfill

    what = command_name(args)
    settings = settings_from_args(args)
    problem = backend_error(settings)
    if problem:
        print(f"{what}: {problem}", file=sys.stderr)
        return 1
    bar = None
    if not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="item", desc="backfill n:enorm2")
    try:
        summary = backfill.entry_norm2(settings, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    print(
        f"backfilled n:enorm2 of {summary.items} items from {summary.contributions} contributions: "
        f"{summary.changed} changed, {summary.conflicts} rewritten after a concurrent fold"
    )
    return 0


def run_forget(args) -> int:
    import json

    from schemas.events import id_problem
    from streaming import forget

    what = command_name(args)
    for user in args.users:
        problem = id_problem(user)
        if problem:
            print(f"{what}: user {user[:80]!r} {problem}", file=sys.stderr)
            return 2
    settings = settings_from_args(args)
    problem = backend_error(settings)
    if problem:
        print(f"{what}: {problem}", file=sys.stderr)
        return 1
    for user in args.users:
        receipt = forget.receipt(settings, user) if args.status else forget.forget_user(settings, user)
        print(json.dumps({"user": user, "receipt": receipt}))
    return 0


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="local runner: stop once nothing was pulled for this long and all is written",
    )
    parser.add_argument(
        "--drain-exit",
        type=float,
        metavar="SECONDS",
        help="local runner: stop once the backlog is drained (for this long, nothing pulled was this old); "
        "for a run on a schedule while events keep arriving",
    )
    parser.add_argument("--max-seconds", type=float, metavar="SECONDS", help="local runner: stop after this long")
    parser.add_argument(
        "--max-restarts",
        type=int,
        help="crashes in a row, with the backends up, before giving up (default: never; an outage never counts)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="supervisor: serve its outage metrics for Prometheus on 127.0.0.1:PORT",
    )
    parser.add_argument("--no-supervise", action="store_true", help="run the pipeline in this process")
    parser.add_argument("--wait", action="store_true", help="Dataflow: wait for the job to finish")
    parser.add_argument(
        "beam_args",
        nargs=argparse.REMAINDER,
        help="Beam pipeline options after '--' (e.g. -- --runner DataflowRunner ...)",
    )


def _beam_args(args) -> list[str]:
    extra = list(args.beam_args)
    return extra[1:] if extra[:1] == ["--"] else extra


def _stream_problem(args) -> str | None:
    for flag, value in (
        ("--idle-exit", args.idle_exit),
        ("--drain-exit", args.drain_exit),
        ("--max-seconds", args.max_seconds),
    ):
        if value is not None and not (math.isfinite(value) and value > 0):
            return f"{flag} must be a positive number of seconds, not {value}"
    if args.metrics_port is not None and not 0 < args.metrics_port < 65536:
        return f"--metrics-port must be a TCP port, not {args.metrics_port}"
    if args.max_restarts is not None and args.max_restarts < 0:
        return f"--max-restarts must be 0 or more, not {args.max_restarts}"
    return None


def run_stream(args) -> int:
    from streaming import runner

    what = command_name(args)
    problem = _stream_problem(args)
    if problem:
        print(f"{what}: {problem}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    # A pipeline that cannot reach Pub/Sub or Bigtable fails only after its clients'
    # retries, with a traceback per attempt (and the supervisor would restart it):
    # say so once, now.
    problem = backend_error(settings, pubsub=True)
    if problem:
        print(f"{what}: {problem}", file=sys.stderr)
        return 1
    beam_args = _beam_args(args)
    if args.no_supervise:
        return runner.run_pipeline(
            settings,
            beam_args,
            idle_exit=args.idle_exit,
            drain_exit=args.drain_exit,
            max_seconds=args.max_seconds,
            wait=args.wait,
        )
    child = settings.to_argv() + ["-v"] * args.verbose
    if args.idle_exit is not None:
        child += ["--idle-exit", str(args.idle_exit)]
    if args.drain_exit is not None:
        child += ["--drain-exit", str(args.drain_exit)]
    if args.max_seconds is not None:
        child += ["--max-seconds", str(args.max_seconds)]
    if args.wait:
        child.append("--wait")
    if beam_args:
        child += ["--", *beam_args]
    outage = Outage("pipeline start")
    if args.metrics_port is not None:
        serve_metrics(args.metrics_port, {"stream": outage})
    check = lambda: backend_error(settings, pubsub=True)  # noqa: E731 - asked before each restart
    return runner.supervise(child, max_restarts=args.max_restarts, check=check, outage=outage)


def run_publish(args) -> int:
    from streaming.publish import PublishError, check_pacing, publish_records
    from streamsim.sources.formats import FormatError, read_records

    what = command_name(args)
    try:
        check_pacing(args.rate, args.limit)
    except ValueError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    # The file first: a file that cannot be read is an error whatever the stack's state.
    try:
        records = read_records(args.file, args.format)
    except FormatError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{what}: {os_error(exc)}", file=sys.stderr)
        return 2
    problem = backend_error(settings, bigtable=False, pubsub=True)
    if problem:
        records.close()
        print(f"{what}: {problem}", file=sys.stderr)
        return 1
    try:
        summary = publish_records(
            settings,
            records,
            rate=args.rate,
            limit=args.limit,
            progress=not args.no_progress and sys.stderr.isatty(),
            name=Path(args.file).name,
        )
    except PublishError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return 1
    rejected = sum(summary.rejected.values())
    print(f"published {summary.published} events in {summary.seconds:.1f}s ({summary.rate:.0f}/s); rejected {rejected}")
    for reason, count in summary.rejected.most_common():
        print(f"  {reason}: {count} (e.g. {summary.examples[reason]})")
    if summary.error:
        print(f"{what}: {summary.error}", file=sys.stderr)
        return 2
    if summary.lines == 0:
        print("  (--limit 0: nothing read)" if args.limit == 0 else f"  ({args.file} has a header and no data lines)")
    return 0
