"""`streamsim` subcommands of the serving package."""


def register(subparsers, parent) -> None:
    """Add this package's subcommands (none yet)."""
