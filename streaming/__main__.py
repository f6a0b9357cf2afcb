"""``python -m streaming``: the streaming fold on its own (same flags as ``streamsim stream``)."""
from __future__ import annotations

import argparse
import logging
import sys

from streaming.cli import add_stream_arguments, run_stream
from streamsim.cli import connection_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streaming", parents=[connection_parser()],
        description="Fold clickstream events from Pub/Sub into Bigtable (Beam).",
    )
    add_stream_arguments(parser)
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_stream(args)


if __name__ == "__main__":
    sys.exit(main())
