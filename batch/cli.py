"""`streamsim` subcommands of the batch package."""


def register(subparsers, parent) -> None:
    """Add this package's subcommands (none yet)."""
