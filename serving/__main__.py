"""``python -m serving``: the same as ``streamsim serve``."""
import argparse
import sys

from serving.cli import add_arguments, run_serve
from streamsim.cli import connection_parser, run_parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving", parents=[connection_parser()], description="Serve recommendations over HTTP."
    )
    add_arguments(parser)
    parser.set_defaults(run=run_serve)
    return run_parsed(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
