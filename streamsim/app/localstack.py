"""The local stack: the Bigtable and Pub/Sub emulators on loopback.

``up`` starts both emulators as their own process groups (so they outlive the
command that started them), waits until they answer, provisions the layout
and records hosts and pids in ``<state_dir>/stack.json``; later commands find
the stack from that file. ``down`` stops exactly the recorded processes.

The emulators are launched directly rather than through ``gcloud beta
emulators ... start``: killing that wrapper leaves its java child running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from streamsim.runtime import provision
from streamsim.runtime.clients import reachable
from streamsim.runtime.processes import Background
from streamsim.runtime.settings import STATE_FILE, Settings, read_stack_state

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: The ports ``gcloud beta emulators`` uses; taken when free, else any free port.
DEFAULT_PORTS = {"bigtable": 8086, "pubsub": 8085}
#: The Pub/Sub emulator is a JVM: about 1.5 s here, far more on a loaded machine.
START_TIMEOUT_SECONDS = 60

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


def _recorded(state: dict | None) -> list[Emulator]:
    if not state:
        return []
    return [Emulator(**{**state[name], "name": name}) for name in ("bigtable", "pubsub") if name in state]


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


def up(settings: Settings, *, bigtable_port: int | None = None, pubsub_port: int | None = None) -> dict:
    """Start (or find running) emulators, provision them, record them; the state."""
    state_path = settings.state_dir / STATE_FILE
    state = read_stack_state(settings.state_dir)
    running = {e.name: e for e in _recorded(state) if e.alive() and reachable(e.host)}
    if len(running) == 2:
        log.info("stack already up: %s", ", ".join(e.host for e in running.values()))
    else:
        for emulator in running.values():  # half a stack: start both afresh
            emulator.stop()
        ports = {"bigtable": bigtable_port, "pubsub": pubsub_port}
        started = []
        try:
            for name in ("bigtable", "pubsub"):
                port = ports[name] or free_port(DEFAULT_PORTS[name])
                started.append(start_emulator(name, port, settings.state_dir))
        except BaseException:
            for emulator in started:
                emulator.stop()
            raise
        running = {e.name: e for e in started}
        state = {
            "project": settings.project,
            "instance": settings.instance,
            "prefix": settings.prefix,
            **{e.name: {k: v for k, v in dataclasses.asdict(e).items() if k != "name"} for e in started},
        }
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(state, indent=2))
    stack_settings = dataclasses.replace(
        settings,
        project=state["project"],
        instance=state["instance"],
        bigtable_host=running["bigtable"].host,
        pubsub_host=running["pubsub"].host,
    )
    state["created"] = _provision_with_retry(stack_settings)
    return state


def down(settings: Settings) -> list[str]:
    """Stop the processes ``up`` recorded; returns what was stopped."""
    stopped = []
    for emulator in _recorded(read_stack_state(settings.state_dir)):
        if emulator.alive():
            emulator.stop()
            stopped.append(f"{emulator.name} emulator (pid {emulator.pid}, {emulator.host})")
    with contextlib.suppress(FileNotFoundError):
        (settings.state_dir / STATE_FILE).unlink()
    return stopped


def status(settings: Settings) -> dict:
    """A report of the stack; the keys are relied on by scripts (see README)."""
    report = {
        "project": settings.project,
        "instance": settings.instance,
        "bigtable": {"host": settings.bigtable_host, "reachable": reachable(settings.bigtable_host)},
        "pubsub": {"host": settings.pubsub_host, "reachable": reachable(settings.pubsub_host)},
        "tables": settings.tables.as_dict(),
        "topics": settings.pubsub.topics(),
        "subscriptions": {k: sub for k, (sub, _) in settings.pubsub.subscriptions().items()},
    }
    recorded = _recorded(read_stack_state(settings.state_dir))
    report["managed"] = {e.name: {"pid": e.pid, "alive": e.alive()} for e in recorded}
    if report["bigtable"]["reachable"] and report["pubsub"]["reachable"]:
        try:
            report["missing"] = provision.missing_resources(settings)
        except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
            report["missing"] = None
            report["error"] = str(exc)
    else:
        report["missing"] = None
    return report
