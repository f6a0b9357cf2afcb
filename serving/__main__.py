"""``python -m serving``: the same as ``streamsim serve``."""
import argparse
import logging
import sys

from serving.cli import add_arguments, run_serve
from streamsim.cli import connection_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving", parents=[connection_parser()], description="Serve recommendations over HTTP."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_serve(args)


if __name__ == "__main__":
    sys.exit(main())
