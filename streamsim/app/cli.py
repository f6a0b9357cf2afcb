"""``streamsim``: one command line for the local stack and every component.

Each component contributes its subcommands through a ``register(subparsers,
parent)`` function in its own ``cli`` module, so the packages stay runnable
on their own and this file only wires them together.
"""

from __future__ import annotations

import argparse
import sys

from batch import cli as batch_cli
from serving import cli as serving_cli
from streaming import cli as streaming_cli
from streamsim.app import (
    catalog_command,
    demo_command,
    evaluate_command,
    inspect_command,
    report_command,
    stack_command,
    tune_command,
)
from streamsim.runtime.cli import Parser, connection_parser, name_subcommands, run_parsed

#: Modules whose ``register`` adds subcommands, in help order.
COMMAND_MODULES = [
    stack_command,
    streaming_cli,
    batch_cli,
    serving_cli,
    catalog_command,
    inspect_command,
    report_command,
    evaluate_command,
    tune_command,
    demo_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="streamsim",
        description="Streaming item-to-item recommender: Pub/Sub -> Beam -> Bigtable -> DIMSUM -> HTTP.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = connection_parser()
    for module in COMMAND_MODULES:
        module.register(subparsers, parent)
    name_subcommands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_parsed(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
