"""`streamsim` subcommands of the streaming package."""


def register(subparsers, parent) -> None:
    """Add this package's subcommands (none yet)."""
