"""``streamsim``: one command line for the local stack and every component.

Each component contributes its subcommands through a ``register(subparsers,
parent)`` function in its own ``cli`` module, so the packages stay runnable
on their own and this file only wires them together.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from streamsim.settings import Settings

#: Modules whose ``register`` adds subcommands, in help order.
COMMAND_MODULES = [
    "streamsim.stack_commands", "streaming.cli", "batch.cli", "serving.cli", "streamsim.evaluate_command",
    "streamsim.demo_command",
]


def connection_parser() -> argparse.ArgumentParser:
    """Flags every subcommand shares; unset ones fall back as Settings.resolve says."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection (default: STREAMSIM_* variables, then the running local stack)")
    group.add_argument("--project", help="GCP project id (STREAMSIM_PROJECT)")
    group.add_argument("--instance", help="Bigtable instance id (STREAMSIM_INSTANCE)")
    group.add_argument("--bigtable-host", help="Bigtable emulator host:port (BIGTABLE_EMULATOR_HOST)")
    group.add_argument("--pubsub-host", help="Pub/Sub emulator host:port (PUBSUB_EMULATOR_HOST)")
    group.add_argument("--prefix", help="table/topic id prefix (STREAMSIM_TABLE_PREFIX, default 'streamsim-')")
    group.add_argument("--state-dir", help="where `up` records the stack (STREAMSIM_STATE_DIR)")
    parent.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    return parent


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings.resolve(
        project=args.project,
        instance=args.instance,
        bigtable_host=args.bigtable_host,
        pubsub_host=args.pubsub_host,
        prefix=args.prefix,
        state_dir=args.state_dir,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamsim",
        description="Streaming item-to-item recommender: Pub/Sub -> Beam -> Bigtable -> DIMSUM -> HTTP.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = connection_parser()
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers, parent)
    return parser


def run_parsed(args: argparse.Namespace) -> int:
    """Set logging from ``-v`` and run the chosen command (``args.run``); exit status."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run_parsed(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
