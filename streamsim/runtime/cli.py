"""Command-line plumbing every entry point shares: connection flags, logging, exit codes.

Components build their own parsers on these (``python -m streaming`` and
``streamsim stream`` are the same parser), and the umbrella command in
:mod:`streamsim.app.cli` only gathers them; nothing here knows any component.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from streamsim.runtime.settings import Settings


def connection_parser() -> argparse.ArgumentParser:
    """Flags every subcommand shares; unset ones fall back as :meth:`Settings.resolve` says."""
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


def run_parsed(args: argparse.Namespace) -> int:
    """Set logging from ``-v`` and run the chosen command (``args.run``); exit status."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def component_main(
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """``python -m <component>``: one command with the connection flags, run like ``streamsim``'s."""
    parser = argparse.ArgumentParser(prog=prog, description=description, parents=[connection_parser()])
    add_arguments(parser)
    parser.set_defaults(run=run)
    return run_parsed(parser.parse_args(argv))


def backend_error(settings: Settings, *, pubsub: bool = False) -> str | None:
    """A sentence if an emulator named in the settings does not answer, else None.

    Checked once, before any RPC: gRPC against a dead port retries until its
    deadline, which would make a command hang instead of failing.
    """
    from streamsim.runtime.clients import reachable

    if settings.bigtable_host and not reachable(settings.bigtable_host):
        return f"the Bigtable emulator at {settings.bigtable_host} is not reachable (is `streamsim up` running?)"
    if pubsub and settings.pubsub_host and not reachable(settings.pubsub_host):
        return f"the Pub/Sub emulator at {settings.pubsub_host} is not reachable (is `streamsim up` running?)"
    return None
