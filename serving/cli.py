"""``streamsim serve`` (and ``python -m serving``): run the recommendation API."""

from __future__ import annotations

import argparse
import sys

from schemas.events import Weights
from streamsim.runtime.cli import backend_error, settings_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("serving (default: STREAMSIM_SERVE_* variables, then built-in defaults)")
    group.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    group.add_argument("--port", type=int, help="TCP port (default 8080)")
    group.add_argument("--poll-seconds", type=float, help="how often the generation pointer is read (default 2)")
    group.add_argument("--workers", type=int, help="serving processes on the port (default: one per CPU available)")
    group.add_argument("--cache-rows", type=int, help="similarity rows kept in memory, per worker (default 200000)")
    group.add_argument("--rpc-deadline-seconds", type=float, help="deadline of one Bigtable read (default 0.4)")
    group.add_argument("--arm", help="the arm named in every answer's attribution token (default: default)")
    group.add_argument("--weights", help='event weights, e.g. "browse=0.5,basket=2,purchase=6" (STREAMSIM_WEIGHTS)')
    group.add_argument(
        "--config",
        dest="tuned_config",
        action="append",
        help="a tuned configuration (streamsim tune): popularity blend, recency decay, repeats "
        "(STREAMSIM_SERVE_TUNED_CONFIG); repeat it for A/B arms named after the files (docs/serving.md)",
    )
    group.add_argument(
        "--session-method",
        help="score session queries by their neighbour sessions in the stream's index: v-sknn "
        "(STREAMSIM_SERVE_SESSION_METHOD; default: item-item only)",
    )
    group.add_argument("--split", type=float, help="A/B: the first of two arms' share of visitors, in percent")
    group.add_argument(
        "--rules",
        metavar="FILE",
        help="merchandising rules (JSON: boost, pin, cap_per_category, exclude_categories; docs/serving.md), "
        "re-read when the file changes (STREAMSIM_SERVE_RULES)",
    )


def register(subparsers, parent) -> None:
    serve = subparsers.add_parser(
        "serve", parents=[parent], help="serve recommendations over HTTP (aiohttp; Ctrl-C or SIGTERM stops)"
    )
    add_arguments(serve)
    serve.set_defaults(run=run_serve)


def config_from_args(args: argparse.Namespace):
    import dataclasses

    from serving.config import ServingConfig

    config = ServingConfig.from_env(
        settings_from_args(args),
        host=args.host,
        port=args.port,
        poll_seconds=args.poll_seconds,
        workers=args.workers,
        cache_rows=args.cache_rows,
        rpc_deadline_seconds=args.rpc_deadline_seconds,
        tuned_config=args.tuned_config[0] if args.tuned_config and len(args.tuned_config) == 1 else None,
        session_method=args.session_method,
        arm=args.arm,
        arm_configs=tuple(args.tuned_config) if args.tuned_config and len(args.tuned_config) > 1 else None,
        split=args.split,
        rules=args.rules,
    )
    if args.weights:
        config = dataclasses.replace(config, weights=Weights.parse(args.weights))
    return config


def run_serve(args: argparse.Namespace) -> int:
    from serving.server import CannotListen, run
    from serving.workers import available_cpus, run_workers

    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"streamsim serve: {exc}", file=sys.stderr)
        return 2
    # Fail fast at start (a dead stack, no credentials); an outage later is a 503, not an exit.
    problem = backend_error(config.settings)
    if problem:
        print(f"streamsim serve: {problem}", file=sys.stderr)
        return 1
    where = config.settings.bigtable_host or "Cloud Bigtable"
    workers = config.workers or available_cpus()

    def listening() -> None:
        # Once bound, so the line is true when it is printed.
        print(
            f"serving on http://{config.host}:{config.port} from {where} "
            f"(tables {config.settings.prefix}*, {workers} worker{'s' if workers > 1 else ''}); "
            "SIGTERM or Ctrl-C stops",
            flush=True,
        )

    try:
        if workers == 1:
            run(config, on_listening=listening)
        else:
            run_workers(config, workers, on_listening=listening)
    except CannotListen as exc:  # a port in use, a host that is not ours or does not resolve
        print(f"streamsim serve: {exc}", file=sys.stderr)
        return 1
    return 0
