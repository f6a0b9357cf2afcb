"""``streamsim demo``: run the whole loop locally (see :mod:`streamsim.app.demo`)."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import socket
import sys

from streamsim.runtime.cli import os_error, settings_from_args
from streamsim.sources.formats import FORMATS, FormatError, read_records


def register(subparsers, parent) -> None:
    parser = subparsers.add_parser(
        "demo",
        parents=[parent],
        help="run the whole loop locally: stream, refresh, serve, report",
        description="Start the emulators, the streaming fold and the API; replay a clickstream through "
        "Pub/Sub; refresh similarities; print what to try. Ctrl-C stops everything it started.",
    )
    parser.add_argument("--data", help="events file in a publisher format (default: synthetic clickstream)")
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS), help="format of --data (default auto)")
    parser.add_argument("--limit", type=int, help="use at most this many events")
    parser.add_argument("--port", type=int, default=8080, help="API port (default 8080)")
    parser.add_argument("--threshold", type=float, default=0.1, help="DIMSUM threshold (default 0.1)")
    parser.add_argument(
        "--refresh-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="least seconds between two passes of the continuous refresh (default 30)",
    )
    parser.add_argument("--exit-after-report", action="store_true", help="stop everything after the report")
    parser.add_argument(
        "--ab",
        action="store_true",
        help="serve two arms (control, popular-blend) and attribute the held-back tail to their answers",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object too")
    parser.set_defaults(run=run_demo)


def _problem(args) -> str | None:
    """Why these arguments cannot make a demo: checked before anything is started."""
    if args.limit is not None and args.limit < 1:
        return f"--limit must be at least 1, not {args.limit}"
    if not 1 <= args.port <= 65535:
        return f"port {args.port} is not a TCP port"
    if not (math.isfinite(args.threshold) and 0 <= args.threshold <= 1):
        return f"threshold {args.threshold} must be within [0, 1] (0 = exact)"
    if not (math.isfinite(args.refresh_every) and args.refresh_every > 0):
        return f"--refresh-every must be a positive number of seconds, not {args.refresh_every}"
    if args.data:
        try:
            read_records(args.data, args.format).close()
        except FormatError as exc:
            return str(exc)
        except OSError as exc:
            return os_error(exc)
    with contextlib.closing(socket.socket()) as sock:
        try:
            sock.bind(("127.0.0.1", args.port))
        except OSError as exc:
            return f"port {args.port} on 127.0.0.1 cannot be used for the API ({os_error(exc)}); pass --port"
    return None


def run_demo(args) -> int:
    problem = _problem(args)
    if problem:
        print(f"streamsim demo: {problem}", file=sys.stderr)
        return 2
    from streamsim.app.demo import Demo, DemoOptions, format_report

    options = DemoOptions(
        data=args.data,
        format=args.format,
        limit=args.limit,
        port=args.port,
        threshold=args.threshold,
        refresh_every=args.refresh_every,
        exit_after_report=args.exit_after_report,
        ab=args.ab,
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
            say(f"\nrefreshing continuously (at most every {options.refresh_every:g} s); Ctrl-C stops everything")
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
