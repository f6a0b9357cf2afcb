"""`streamsim` subcommands of the streaming package: publish and stream.

``streamsim stream`` runs the fold supervised; Beam options go after ``--``::

    streamsim stream --idle-exit 10                      # local runner, emulators
    streamsim stream -- --runner DataflowRunner --project P --region R \\
        --setup_file ./setup.py --temp_location gs://B/tmp   # Dataflow
"""

from __future__ import annotations

import argparse
import sys

from streamsim.runtime.cli import settings_from_args
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


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="local runner: stop once nothing was pulled for this long and all is written",
    )
    parser.add_argument("--max-seconds", type=float, metavar="SECONDS", help="local runner: stop after this long")
    parser.add_argument("--max-restarts", type=int, default=5, help="restarts in a row before giving up")
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


def run_stream(args) -> int:
    from streaming import runner

    settings = settings_from_args(args)
    beam_args = _beam_args(args)
    if args.no_supervise:
        return runner.run_pipeline(
            settings, beam_args, idle_exit=args.idle_exit, max_seconds=args.max_seconds, wait=args.wait
        )
    child = settings.to_argv() + ["-v"] * args.verbose
    if args.idle_exit is not None:
        child += ["--idle-exit", str(args.idle_exit)]
    if args.max_seconds is not None:
        child += ["--max-seconds", str(args.max_seconds)]
    if args.wait:
        child.append("--wait")
    if beam_args:
        child += ["--", *beam_args]
    return runner.supervise(child, max_restarts=args.max_restarts)


def run_publish(args) -> int:
    from streaming.publish import publish_file
    from streamsim.sources.formats import FormatError

    try:
        summary = publish_file(
            settings_from_args(args),
            args.file,
            fmt=args.format,
            rate=args.rate,
            limit=args.limit,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    except (FormatError, ValueError, OSError) as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 2
    rejected = sum(summary.rejected.values())
    print(f"published {summary.published} events in {summary.seconds:.1f}s ({summary.rate:.0f}/s); rejected {rejected}")
    for reason, count in summary.rejected.most_common():
        print(f"  {reason}: {count} (e.g. {summary.examples[reason]})")
    return 0
