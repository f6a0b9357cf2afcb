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


def read_stack_state(state_dir: Path) -> dict | None:
    """What ``streamsim up`` recorded, or None if no stack was started."""
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None


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
        )
