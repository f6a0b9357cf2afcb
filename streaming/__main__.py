"""``python -m streaming``: the streaming fold on its own (same flags as ``streamsim stream``)."""
from __future__ import annotations

import argparse
import sys

from streaming.cli import add_stream_arguments, run_stream
from streamsim.cli import connection_parser, run_parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streaming", parents=[connection_parser()],
        description="Fold clickstream events from Pub/Sub into Bigtable (Beam).",
    )
    add_stream_arguments(parser)
    parser.set_defaults(run=run_stream)
    return run_parsed(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
