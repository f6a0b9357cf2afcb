"""The local stack: the Bigtable and Pub/Sub emulators on loopback.

``up`` starts both emulators as their own process groups (so they outlive the
command that started them), waits until they answer, provisions the layout
and records hosts and pids in ``<state_dir>/stack.json``; later commands find
the stack from that file. ``down`` stops exactly the recorded processes.

``up`` on a recorded stack keeps each emulator that still runs and answers (its
Pub/Sub backlog, unacked messages and kept dead letters survive) and starts
only a dead one, on its old port when free so running clients reconnect; then
it provisions whatever is missing (a restarted Bigtable emulator is empty). A
``stack.json`` that cannot be parsed is reported, and ``up`` replaces it with a
new stack; no pid it names is signalled, since nothing in it can be trusted.

The emulators are launched directly rather than through ``gcloud beta
emulators ... start``: killing that wrapper leaves its java child running.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from streamsim.runtime import cli as runtime_cli
from streamsim.runtime import provision
from streamsim.runtime.clients import reachable
from streamsim.runtime.processes import Background
from streamsim.runtime.settings import (
    EMULATOR_NAMES,
    STATE_FILE,
    Settings,
    StackStateError,
    corrupt_state_error,
    read_stack_state,
)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: The ports ``gcloud beta emulators`` uses; taken when free, else any free port.
DEFAULT_PORTS = {"bigtable": 8086, "pubsub": 8085}
#: The Pub/Sub emulator is a JVM: about 1.5 s here, far more on a loaded machine.
START_TIMEOUT_SECONDS = 60
#: How long ``up`` waits for the port of a dead emulator to be free again, to restart it there.
OLD_PORT_WAIT_SECONDS = 3.0

INSTALL_HINT = (
    "install the Google Cloud CLI emulators: "
    "`apt-get install google-cloud-cli-bigtable-emulator google-cloud-cli-pubsub-emulator` "
    "(from Google's apt repository), or `gcloud components install bigtable pubsub-emulator`; "
    "set STREAMSIM_GCLOUD_SDK to the SDK root if it is elsewhere"
)


class StackError(RuntimeError):
    """The local stack cannot be started or reached; the message says why."""


def sdk_roots() -> list[Path]:
    roots = []
    if os.environ.get("STREAMSIM_GCLOUD_SDK"):
        roots.append(Path(os.environ["STREAMSIM_GCLOUD_SDK"]))
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(Path(os.path.realpath(gcloud)).parent.parent)
    roots += [Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"), Path.home() / "google-cloud-sdk"]
    return roots


def emulator_command(name: str, port: int) -> list[str]:
    """The command line that starts one emulator on loopback, or StackError."""
    for root in sdk_roots():
        platform = root / "platform"
        if name == "bigtable":
            binary = platform / "bigtable-emulator" / "cbtemulator"
            if binary.exists():
                return [str(binary), "-host", LOOPBACK, "-port", str(port)]
        else:
            jars = sorted(glob.glob(str(platform / "pubsub-emulator" / "lib" / "cloud-pubsub-emulator-*.jar")))
            if jars:
                java = shutil.which("java")
                if not java:
                    raise StackError("the Pub/Sub emulator needs Java: `apt-get install default-jre-headless`")
                return [java, "-jar", jars[-1], f"--host={LOOPBACK}", f"--port={port}"]
    raise StackError(f"the {name} emulator is not installed: {INSTALL_HINT}")


def free_port(preferred: int | None = None) -> int:
    if preferred:
        with contextlib.closing(socket.socket()) as sock:
            # As the emulators bind (Go and Java set SO_REUSEADDR): a port whose server
            # just died, with connections still in TIME_WAIT, is free for them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, preferred))
                return preferred
            except OSError:
                pass
    with contextlib.closing(socket.socket()) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Emulator(Background):
    """One running emulator: enough to find it and to stop exactly it."""

    name: str = ""
    host: str = ""
    log: str = ""

    def stop(self, timeout: float = 10.0) -> bool:
        try:
            return super().stop(timeout)
        except RuntimeError as exc:
            raise StackError(f"{self.name} emulator: {exc}") from None


def start_emulator(name: str, port: int, log_dir: Path, timeout: float = START_TIMEOUT_SECONDS) -> Emulator:
    command = emulator_command(name, port)
    log_path = log_dir / f"{name}-emulator.log"
    process = Background.start(command, log_path)
    emulator = Emulator(process.pid, process.started, name, f"{LOOPBACK}:{port}", str(log_path))
    deadline = time.monotonic() + timeout
    while not reachable(emulator.host, timeout=0.5):
        if not emulator.alive() or time.monotonic() > deadline:
            emulator.stop()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise StackError(f"the {name} emulator did not start on {emulator.host}:\n{tail}")
        time.sleep(0.1)
    log.info("%s emulator up on %s (pid %d)", name, emulator.host, emulator.pid)
    return emulator


def _port_of(host: str) -> int:
    return int(host.rpartition(":")[2])


@dataclasses.dataclass
class _Loaded:
    """The state file as the local stack reads it."""

    state: dict | None
    #: The recorded emulators whose process can be identified (pid and start time).
    emulators: dict[str, Emulator]
    #: Set when the file is corrupt (and so ignored): what is wrong with it.
    error: StackStateError | None = None

    def ignored(self, what_now: str) -> str:
        """A sentence for a corrupt file: what it was, what we did, which pids it seemed to name."""
        return f"{self.error.path} was corrupt ({self.error.reason}): {what_now}{_named_pids(self.error.path)}"


def _load(state_dir: Path) -> _Loaded:
    """The recorded stack; a corrupt file is set in ``error``, an unusable directory raises StackError."""
    try:
        state = read_stack_state(state_dir)
    except StackStateError as exc:
        if not exc.corrupt:
            raise StackError(str(exc)) from None
        return _Loaded(None, {}, exc)
    if not state:
        return _Loaded(None, {})
    emulators = {}
    for name in EMULATOR_NAMES:
        part = state.get(name)
        if part is None:
            continue
        absent = [k for k in ("pid", "started", "host") if k not in part]
        if absent:
            why = f"{name} lacks {', '.join(absent)}, so its process cannot be identified"
            return _Loaded(None, {}, corrupt_state_error(Path(state_dir) / STATE_FILE, why))
        emulators[name] = Emulator(part["pid"], part["started"], name, part["host"], part.get("log", ""))
    return _Loaded(state, emulators)


def _named_pids(path: Path) -> str:
    """For a corrupt file: any pids it seems to name, left running (best effort)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - it is corrupt: anything may fail
        return ""
    parts = {n: state.get(n) for n in EMULATOR_NAMES} if isinstance(state, dict) else {}
    pids = [f"{n} pid {p['pid']}" for n, p in parts.items() if isinstance(p, dict) and isinstance(p.get("pid"), int)]
    return f"; it names {', '.join(pids)}, left alone: stop them yourself if they are yours" if pids else ""


def stack_settings(args: argparse.Namespace) -> Settings:
    """Settings for ``up``, ``status`` and ``down``, from their parsed flags.

    Like :func:`streamsim.runtime.cli.settings_from_args`, except that a corrupt
    ``stack.json`` is not raised here: these commands report it themselves (and
    ``up`` replaces it), so they resolve as if no stack were recorded. An unusable
    state directory raises :class:`StackError`.
    """
    try:
        return runtime_cli.settings_from_args(args)
    except StackStateError as exc:
        if not exc.corrupt:
            raise StackError(str(exc)) from None
        with tempfile.TemporaryDirectory() as empty:
            settings = runtime_cli.settings_from_args(argparse.Namespace(**{**vars(args), "state_dir": empty}))
        return dataclasses.replace(settings, state_dir=exc.path.parent)


def _write_state(state_dir: Path, state: dict) -> None:
    """Replace ``stack.json`` atomically: a crash never leaves half a file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    partial = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(state, indent=2))
    os.replace(partial, path)


def _provision_with_retry(settings: Settings, timeout: float = 30.0) -> dict:
    # The JVM opens its port a moment before its API answers.
    deadline = time.monotonic() + timeout
    while True:
        try:
            return provision.provision(settings)
        except Exception as exc:  # noqa: BLE001 - any startup error is retried until the deadline
            if time.monotonic() > deadline:
                raise StackError(f"could not provision the emulators: {exc}") from exc
            time.sleep(0.5)


def _port_for(name: str, requested: int | None, old: Emulator | None, notes: list[str]) -> int:
    """The port to start ``name`` on: as asked, else its old one (running clients reconnect), else the default."""
    if requested:
        return requested
    if old is not None:
        port = _port_of(old.host)
        # Another process's short-lived socket may hold it for a moment (an ephemeral port).
        deadline = time.monotonic() + OLD_PORT_WAIT_SECONDS
        while True:
            if free_port(port) == port:
                return port
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        notes.append(
            f"port {port} of the old {name} emulator is taken by another process: started it elsewhere; "
            "restart the clients that used the old port"
        )
    return free_port(DEFAULT_PORTS[name])


def up(settings: Settings, *, bigtable_port: int | None = None, pubsub_port: int | None = None) -> dict:
    """Start what is not running, keep what is, provision what is missing, record it; the state.

    The state has the recorded keys (``project``, ``instance``, ``prefix``, ``bigtable``
    and ``pubsub`` with ``host``, ``pid``, ``started``, ``log``) plus ``created`` (what
    provisioning made, by kind), ``actions`` (per emulator, ``"kept"`` or ``"started"``)
    and ``notes`` (sentences on anything a user should know: a dead emulator replaced,
    a corrupt state file ignored, a port flag that could not apply).
    """
    loaded = _load(settings.state_dir)
    notes: list[str] = []
    if loaded.error:
        notes.append(loaded.ignored("replaced it with a new stack"))
        log.warning("%s", notes[-1])
    requested = {"bigtable": bigtable_port, "pubsub": pubsub_port}
    emulators: dict[str, Emulator] = {}
    actions: dict[str, str] = {}
    started: list[Emulator] = []
    try:
        for name in EMULATOR_NAMES:
            old = loaded.emulators.get(name)
            if old is not None and old.alive():
                if reachable(old.host):
                    emulators[name], actions[name] = old, "kept"
                    if requested[name] and requested[name] != _port_of(old.host):
                        notes.append(
                            f"the {name} emulator already runs on {old.host}: --{name}-port {requested[name]} "
                            "ignored (`streamsim down` first to move it)"
                        )
                    continue
                notes.append(f"the {name} emulator (pid {old.pid}) runs but does not answer on {old.host}: restarted")
                old.stop()
            elif old is not None:
                notes.append(f"the {name} emulator (pid {old.pid}, {old.host}) had died: started a new one")
            emulator = start_emulator(name, _port_for(name, requested[name], old, notes), settings.state_dir)
            started.append(emulator)
            emulators[name], actions[name] = emulator, "started"
    except BaseException:
        for emulator in started:
            emulator.stop()
        raise
    # Names of resources live in the emulators: keep the recorded ones while one is kept.
    recorded = loaded.state if loaded.state and "kept" in actions.values() else {}
    state = {
        "project": recorded.get("project", settings.project),
        "instance": recorded.get("instance", settings.instance),
        "prefix": recorded.get("prefix", settings.prefix),
        **{e.name: {k: v for k, v in dataclasses.asdict(e).items() if k != "name"} for e in emulators.values()},
    }
    if started or loaded.error:
        _write_state(settings.state_dir, state)
    for name in EMULATOR_NAMES:
        log.info("%s emulator %s (pid %d, %s)", name, actions[name], emulators[name].pid, emulators[name].host)
    stack = dataclasses.replace(
        settings,
        project=state["project"],
        instance=state["instance"],
        bigtable_host=emulators["bigtable"].host,
        pubsub_host=emulators["pubsub"].host,
    )
    return {**state, "created": _provision_with_retry(stack), "actions": actions, "notes": notes}


def down(settings: Settings) -> list[str]:
    """Stop the processes ``up`` recorded; returns what was stopped.

    A corrupt state file is removed after a warning, and no process is stopped for it.
    """
    loaded = _load(settings.state_dir)
    if loaded.error:
        log.warning("%s", loaded.ignored("removed it and stopped nothing"))
    stopped = []
    for emulator in loaded.emulators.values():
        if emulator.alive():
            emulator.stop()
            stopped.append(f"{emulator.name} emulator (pid {emulator.pid}, {emulator.host})")
    with contextlib.suppress(FileNotFoundError):
        (settings.state_dir / STATE_FILE).unlink()
    return stopped


def status(settings: Settings) -> dict:
    """A report of the stack; the keys are relied on by scripts (see docs/local-stack.md)."""
    report = {
        "project": settings.project,
        "instance": settings.instance,
        "bigtable": {"host": settings.bigtable_host, "reachable": reachable(settings.bigtable_host)},
        "pubsub": {"host": settings.pubsub_host, "reachable": reachable(settings.pubsub_host)},
        "tables": settings.tables.as_dict(),
        "topics": settings.pubsub.topics(),
        "subscriptions": {k: sub for k, (sub, _) in settings.pubsub.subscriptions().items()},
    }
    try:
        loaded = _load(settings.state_dir)
        if loaded.error:
            report["state_error"] = str(loaded.error)
    except StackError as exc:
        loaded = _Loaded(None, {})
        report["state_error"] = str(exc)
    report["managed"] = {e.name: {"pid": e.pid, "alive": e.alive()} for e in loaded.emulators.values()}
    if report["bigtable"]["reachable"] and report["pubsub"]["reachable"]:
        try:
            report["missing"] = provision.missing_resources(settings)
        except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
            report["missing"] = None
            report["error"] = str(exc)
    else:
        report["missing"] = None
    return report
