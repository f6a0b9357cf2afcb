"""Connection settings: project, instance, emulator hosts, table prefix.

Each value is taken from, in order: an explicit argument (a CLI flag), a
``STREAMSIM_*`` environment variable, the emulator variables the Google
clients honour (``BIGTABLE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``), the
state file of a running ``streamsim up``, then the default. With no emulator
host from any of these, the clients talk to Google Cloud itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

from schemas.layout import DEFAULT_PREFIX, PubSubNames, TableIds

DEFAULT_PROJECT = "streamsim-local"
DEFAULT_INSTANCE = "streamsim"
STATE_FILE = "stack.json"


def default_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("STREAMSIM_STATE_DIR"):
        return Path(environ["STREAMSIM_STATE_DIR"])
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "streamsim"


class StackStateError(ValueError):
    """The state file of ``streamsim up`` cannot be used; the message (one line) says why and what to do.

    ``corrupt`` is True when the file exists but its contents are not a stack record
    (``up`` may then start a new stack after saying so; ``reason`` says what is wrong
    with it), False when the state directory itself is unusable (not a directory, not
    readable).
    """

    def __init__(self, message: str, *, path: Path, corrupt: bool, reason: str = ""):
        super().__init__(message)
        self.path = path
        self.corrupt = corrupt
        self.reason = reason or message


#: Per-emulator fields of the state file and their types (all optional here; ``up``
#: writes them all, and the local stack needs pid and started to manage a process).
_EMULATOR_FIELDS = {"host": str, "pid": int, "started": int, "log": str}
_TOP_FIELDS = {"project": str, "instance": str, "prefix": str}
EMULATOR_NAMES = ("bigtable", "pubsub")
_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    type(None): "null",
}


def _shape_problem(state) -> str | None:
    """Why ``state`` is not a stack record, or None. Keys not listed here are allowed."""
    if not isinstance(state, dict):
        return f"expected a JSON object, found {_JSON_KINDS.get(type(state), type(state).__name__)}"
    for key, kind in _TOP_FIELDS.items():
        if key in state and not (isinstance(state[key], kind) and state[key]):
            return f"{key!r} must be a non-empty string"
    for name in EMULATOR_NAMES:
        if name not in state:
            continue
        part = state[name]
        if not isinstance(part, dict):
            return f"{name!r} must be an object"
        for key, kind in _EMULATOR_FIELDS.items():
            value = part.get(key)
            # bool is an int subclass: a pid of true is not a pid.
            if key in part and (not isinstance(value, kind) or isinstance(value, bool)):
                return f"{name}.{key} must be {'an integer' if kind is int else 'a string'}"
        if ("pid" in part and part["pid"] <= 0) or ("started" in part and part["started"] < 0):
            return f"{name}.pid must be positive and {name}.started not negative"
        if "host" in part:
            name_part, _, port = part["host"].rpartition(":")
            if not name_part or not port.isdigit() or not 0 < int(port) < 65536:
                return f"{name}.host {part['host']!r} is not host:port"
    return None


def read_stack_state(state_dir: Path) -> dict | None:
    """What ``streamsim up`` recorded, or None if no stack was started.

    Raises :class:`StackStateError` (one line, naming the file and the remedy) if the
    state directory is unusable or the file is not valid JSON of the expected shape.
    """
    path = Path(state_dir) / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise StackStateError(
            f"the state directory {state_dir} is not a directory (--state-dir, STREAMSIM_STATE_DIR)",
            path=path,
            corrupt=False,
        ) from None
    except IsADirectoryError:
        raise StackStateError(f"{path} is a directory, not a state file; remove it", path=path, corrupt=False) from None
    except UnicodeDecodeError as exc:
        raise corrupt_state_error(path, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise StackStateError(f"cannot read {path}: {exc.strerror or exc}", path=path, corrupt=False) from None
    try:
        state = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; absurd nesting
        raise corrupt_state_error(path, f"not JSON ({exc})") from None
    problem = _shape_problem(state)
    if problem:
        raise corrupt_state_error(path, problem)
    return state


def corrupt_state_error(path: Path, why: str) -> StackStateError:
    """The error for a state file whose contents are not a stack record."""
    return StackStateError(
        f"{path} is corrupt: {why}; delete it or run `streamsim down`", path=path, corrupt=True, reason=why
    )


@dataclasses.dataclass(frozen=True)
class Settings:
    project: str = DEFAULT_PROJECT
    instance: str = DEFAULT_INSTANCE
    #: "host:port" of the Bigtable emulator, or None for Cloud Bigtable.
    bigtable_host: str | None = None
    #: "host:port" of the Pub/Sub emulator, or None for Cloud Pub/Sub.
    pubsub_host: str | None = None
    prefix: str = DEFAULT_PREFIX
    state_dir: Path = dataclasses.field(default_factory=default_state_dir)
    #: The Bigtable app profile every request names ("": the instance's default profile).
    #: Production's (Terraform's ``streamsim``) routes to one cluster with transactional
    #: writes, which the fold's CheckAndMutateRow needs once the instance has two clusters.
    app_profile_id: str = ""

    @property
    def tables(self) -> TableIds:
        return TableIds.for_prefix(self.prefix)

    @property
    def pubsub(self) -> PubSubNames:
        return PubSubNames.for_prefix(self.prefix)

    def emulator_env(self) -> dict[str, str]:
        """The variables that point the Google clients (and Beam) at emulators."""
        env = {}
        if self.bigtable_host:
            env["BIGTABLE_EMULATOR_HOST"] = self.bigtable_host
        if self.pubsub_host:
            env["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        return env

    def to_argv(self, *, remote: bool = False) -> list[str]:
        """The connection flags that resolve back to these settings in a child process.

        ``remote``: for a job that runs elsewhere (Dataproc), without the emulator hosts
        and the state directory, which mean nothing there.
        """
        argv = ["--project", self.project, "--instance", self.instance, "--prefix", self.prefix]
        if self.app_profile_id:
            argv += ["--app-profile-id", self.app_profile_id]
        if remote:
            return argv
        argv += ["--state-dir", str(self.state_dir)]
        if self.bigtable_host:
            argv += ["--bigtable-host", self.bigtable_host]
        if self.pubsub_host:
            argv += ["--pubsub-host", self.pubsub_host]
        return argv

    @classmethod
    def resolve(
        cls,
        *,
        project: str | None = None,
        instance: str | None = None,
        bigtable_host: str | None = None,
        pubsub_host: str | None = None,
        prefix: str | None = None,
        state_dir: Path | str | None = None,
        app_profile_id: str | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Settings:
        state_dir = Path(state_dir) if state_dir else default_state_dir(environ)
        stack = read_stack_state(state_dir) or {}

        def pick(explicit, *names, recorded=None, default=None):
            if explicit is not None:
                return explicit
            for name in names:
                if environ.get(name):
                    return environ[name]
            return recorded if recorded is not None else default

        return cls(
            project=pick(project, "STREAMSIM_PROJECT", recorded=stack.get("project"), default=DEFAULT_PROJECT),
            instance=pick(instance, "STREAMSIM_INSTANCE", recorded=stack.get("instance"), default=DEFAULT_INSTANCE),
            bigtable_host=pick(
                bigtable_host,
                "STREAMSIM_BIGTABLE_HOST",
                "BIGTABLE_EMULATOR_HOST",
                recorded=stack.get("bigtable", {}).get("host"),
            ),
            pubsub_host=pick(
                pubsub_host,
                "STREAMSIM_PUBSUB_HOST",
                "PUBSUB_EMULATOR_HOST",
                recorded=stack.get("pubsub", {}).get("host"),
            ),
            prefix=pick(prefix, "STREAMSIM_TABLE_PREFIX", recorded=stack.get("prefix"), default=DEFAULT_PREFIX),
            state_dir=state_dir,
            app_profile_id=pick(app_profile_id, "STREAMSIM_APP_PROFILE_ID", default=""),
        )
