"""``streamsim demo``: run the whole loop locally (see :mod:`streamsim.app.demo`)."""

from __future__ import annotations

import json
import signal
import sys

from streamsim.app.demo import Demo, DemoOptions, format_report
from streamsim.runtime.cli import settings_from_args


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser(
        "demo",
        parents=[parent],
        help="run the whole loop locally: stream, refresh, serve, report",
        description="Start the emulators, the streaming fold and the API; replay a clickstream through "
        "Pub/Sub; refresh similarities; print what to try. Ctrl-C stops everything it started.",
    )
    parser.add_argument("--data", help="events file in a publisher format (default: synthetic clickstream)")
    parser.add_argument("--format", default="auto", help="format of --data (auto, seed, retailrocket, taobao, jsonl)")
    parser.add_argument("--limit", type=int, help="use at most this many events")
    parser.add_argument("--port", type=int, default=8080, help="API port (default 8080)")
    parser.add_argument("--threshold", type=float, default=0.1, help="DIMSUM threshold (default 0.1)")
    parser.add_argument(
        "--refresh-every",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="refresh period after the report (default 300)",
    )
    parser.add_argument("--exit-after-report", action="store_true", help="stop everything after the report")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object too")
    parser.set_defaults(run=run_demo)


def run_demo(args) -> int:
    options = DemoOptions(
        data=args.data,
        format=args.format,
        limit=args.limit,
        port=args.port,
        threshold=args.threshold,
        refresh_every=args.refresh_every,
        exit_after_report=args.exit_after_report,
    )
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    demo = Demo(settings_from_args(args), options, say=say)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        report = demo.run()
        say(format_report(report))
        if args.json:
            print(json.dumps(report))
        if not options.exit_after_report:
            say(f"\nrefreshing every {options.refresh_every:g} s; Ctrl-C stops everything")
            demo.loop()
        return 0
    except KeyboardInterrupt:
        say("stopping")
        return 130
    except RuntimeError as exc:
        print(f"streamsim demo: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
