"""Command-line plumbing every entry point shares: connection flags, logging, exit codes.

Components build their own parsers on these (``python -m streaming`` and
``streamsim stream`` are the same parser), and the umbrella command in
:mod:`streamsim.app.cli` only gathers them; nothing here knows any component.

Every command ends in one of three ways: it succeeds (0), it prints one line
``<command>: <what went wrong>`` on stderr and exits non-zero (2 for bad
arguments or input, 1 for everything else), or it is interrupted (130).
:func:`run_parsed` is the last resort that keeps it so: an exception no command
caught becomes one line (the traceback only with ``-v``), and
:func:`backend_error` lets a command find out in a second that a backend cannot
be reached, before any RPC that would retry until its deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import logging
import os
import sys
import traceback
import zlib
from collections.abc import Callable

from streamsim.runtime.settings import Settings

#: Exit status of a command given bad arguments or bad input (argparse's own).
USAGE = 2
#: Exit status of a command that failed otherwise.
FAILED = 1
#: One error line is cut here: a message is a sentence, not a dump.
MAX_MESSAGE_CHARS = 600


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (argparse prints the usage block too)."""

    def error(self, message: str):
        self.exit(USAGE, one_line(f"{self.prog}: error: {message} (see `{self.prog} --help`)") + "\n")


def connection_parser() -> argparse.ArgumentParser:
    """Flags every subcommand shares; unset ones fall back as :meth:`Settings.resolve` says."""
    parent = Parser(add_help=False)
    group = parent.add_argument_group("connection (default: STREAMSIM_* variables, then the running local stack)")
    group.add_argument("--project", help="GCP project id (STREAMSIM_PROJECT)")
    group.add_argument("--instance", help="Bigtable instance id (STREAMSIM_INSTANCE)")
    group.add_argument("--bigtable-host", help="Bigtable emulator host:port (BIGTABLE_EMULATOR_HOST)")
    group.add_argument("--pubsub-host", help="Pub/Sub emulator host:port (PUBSUB_EMULATOR_HOST)")
    group.add_argument("--prefix", help="table/topic id prefix (STREAMSIM_TABLE_PREFIX, default 'streamsim-')")
    group.add_argument("--state-dir", help="where `up` records the stack (STREAMSIM_STATE_DIR)")
    group.add_argument(
        "--app-profile-id",
        help="Bigtable app profile of every request (STREAMSIM_APP_PROFILE_ID; default: the instance's)",
    )
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
        app_profile_id=args.app_profile_id,
    )


def command_name(args: argparse.Namespace) -> str:
    """``streamsim publish`` (or a component's prog): how an error line starts."""
    name = getattr(args, "command_name", None)
    if name:
        return name
    command = getattr(args, "command", None)
    return f"streamsim {command}" if command else "streamsim"


def name_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Let every subcommand's errors start with its own prog (``streamsim inspect``)."""
    for parser in subparsers.choices.values():
        parser.set_defaults(command_name=parser.prog)


def run_parsed(args: argparse.Namespace) -> int:
    """Set logging from ``-v`` and run the chosen command (``args.run``); exit status.

    Nothing escapes as a traceback: an exception the command did not handle is
    printed as one line (:func:`describe_error`) and exits 1; ``-v`` prints the
    traceback above it.
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    name = command_name(args)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `streamsim inspect ... | head`: the reader left; say nothing more, and keep
        # the interpreter's exit flush from failing on the closed pipe again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
    except Exception as exc:  # noqa: BLE001 - the last resort: one line instead of a traceback
        if args.verbose:
            traceback.print_exc()
        print(one_line(f"{name}: {describe_error(exc)}"), file=sys.stderr)
        return FAILED


def component_main(
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
) -> int:
    """``python -m <component>``: one command with the connection flags, run like ``streamsim``'s."""
    parser = Parser(prog=prog, description=description, parents=[connection_parser()])
    add_arguments(parser)
    parser.set_defaults(run=run, command_name=prog)
    return run_parsed(parser.parse_args(argv))


# --- errors as sentences -------------------------------------------------------

NO_CREDENTIALS = (
    "no emulator host is set and no Google Cloud credentials were found; run `streamsim up`, "
    "or set STREAMSIM_BIGTABLE_HOST / STREAMSIM_PUBSUB_HOST (--bigtable-host / --pubsub-host) to running "
    "emulators, or GOOGLE_APPLICATION_CREDENTIALS for Google Cloud"
)

_IS_IT_UP = "(is the backend up? `streamsim status` checks the local stack)"
#: What reading a corrupt or truncated .gz raises.
_COMPRESSION_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def one_line(text: str) -> str:
    """``text`` with its line breaks folded into spaces, cut to :data:`MAX_MESSAGE_CHARS`."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def describe_error(exc: BaseException) -> str:
    """What went wrong, as the rest of an error line, for the exception families a command meets.

    Library exception classes are looked up only if their module is loaded: an
    exception of a library that was never imported cannot have been raised.
    """
    auth = sys.modules.get("google.auth.exceptions")
    if auth is not None:
        if isinstance(exc, auth.DefaultCredentialsError):
            return NO_CREDENTIALS
        if isinstance(exc, auth.GoogleAuthError):
            return f"Google Cloud authentication failed: {_first_line(exc)}"
    grpc = sys.modules.get("grpc")
    if grpc is not None and isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return f"a backend call failed: {exc.code().name} {exc.details()} {_IS_IT_UP}"
    api_core = sys.modules.get("google.api_core.exceptions")
    if api_core is not None and isinstance(exc, api_core.GoogleAPIError):
        return f"a backend call failed: {_first_line(exc)} {_IS_IT_UP}"
    if isinstance(exc, UnicodeEncodeError):
        bad = exc.object[exc.start : exc.end]
        return (
            f"text {bad!r} cannot be encoded as {exc.encoding} ({exc.reason}): "
            "an argument or a file holds bytes that are not valid UTF-8"
        )
    if isinstance(exc, UnicodeDecodeError):
        return f"input is not valid {exc.encoding} ({exc.reason} at byte {exc.start})"
    if isinstance(exc, _COMPRESSION_ERRORS):
        return f"a compressed input is corrupt or truncated ({_first_line(exc) or type(exc).__name__})"
    if isinstance(exc, OSError):
        return os_error(exc)
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, ValueError | RuntimeError) and _first_line(exc):
        # The project's own errors (a corrupt state file, a failed read) are of these
        # kinds and say what is wrong in their message.
        return _first_line(exc)
    return f"unexpected {type(exc).__name__}: {_first_line(exc)} (run with -v for the traceback)"


def os_error(exc: OSError) -> str:
    """``No such file or directory: 'x'`` rather than ``[Errno 2] ...``."""
    if isinstance(exc, TimeoutError) and not exc.args:
        return "timed out"
    if exc.strerror and exc.filename is not None:
        where = repr(os.fsdecode(exc.filename))
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)!r}"
        return f"{exc.strerror}: {where}"
    return _first_line(exc) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# --- backends ------------------------------------------------------------------


@functools.cache
def cloud_credentials_problem() -> str | None:
    """Why Google Cloud cannot be used from here (no application-default credentials), or None.

    Looked up once per process: ``google.auth.default()`` reads files and may
    probe the GCE metadata server (a few seconds at most), and credentials do
    not come and go while a command runs.
    """
    try:
        import google.auth
        import google.auth.exceptions
    except ImportError:  # pragma: no cover - google-auth comes with every Google client
        return "the google-auth library is not installed"
    try:
        google.auth.default()
    except google.auth.exceptions.DefaultCredentialsError:
        return "no Google Cloud credentials were found"
    except Exception as exc:  # noqa: BLE001 - any failure here means the clients would fail too
        return f"the Google Cloud credentials cannot be used: {_first_line(exc)}"
    return None


_BACKENDS = {
    "bigtable": ("Bigtable", "STREAMSIM_BIGTABLE_HOST", "--bigtable-host"),
    "pubsub": ("Pub/Sub", "STREAMSIM_PUBSUB_HOST", "--pubsub-host"),
}


def backend_error(settings: Settings, *, bigtable: bool = True, pubsub: bool = False) -> str | None:
    """A sentence if a backend the command needs cannot be used, else None.

    Checked once, before any RPC: gRPC against a dead port retries until its
    deadline, which would make a command hang instead of failing; and with no
    emulator host the clients go to Google Cloud, which needs credentials.
    An emulator is probed with one TCP connect (at most a second each).
    """
    from streamsim.runtime.clients import reachable

    wanted = [("bigtable", settings.bigtable_host)] if bigtable else []
    if pubsub:
        wanted.append(("pubsub", settings.pubsub_host))
    for backend, host in wanted:
        name, variable, flag = _BACKENDS[backend]
        if host:
            if not reachable(host):
                return f"the {name} emulator at {host} is not reachable (is `streamsim up` running?)"
            continue
        problem = cloud_credentials_problem()
        if problem:
            return (
                f"no {name} emulator host is set and {problem}; run `streamsim up`, or set {variable} "
                f"({flag}) to a running emulator, or GOOGLE_APPLICATION_CREDENTIALS for Google Cloud"
            )
    return None
