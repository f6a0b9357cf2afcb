"""Background processes that outlive the command that started them.

Each one leads its own process group (``start_new_session``), so stopping the
group also stops its children, and is identified by pid plus the kernel's
start time of that pid, so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path


@dataclasses.dataclass
class Background:
    pid: int
    #: /proc start time of the pid when it was started.
    started: int

    @classmethod
    def start(cls, command: list[str], log_path: Path, env: dict | None = None) -> Background:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        return cls(process.pid, start_time(process.pid) or 0)

    def alive(self) -> bool:
        return start_time(self.pid) == self.started

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM the group, SIGKILL it after ``timeout``; False if it was not running."""
        if not self.alive():
            return False
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(self.pid, os.WNOHANG)  # reap it if it is our child
                if not self.alive():
                    return True
                time.sleep(0.05)
        raise RuntimeError(f"process {self.pid} did not stop")


def process_running(pid: int) -> bool:
    """True for a live process; False once it exited, even before it is reaped."""
    return start_time(pid) is not None


def start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait is missing
        return None
    return int(fields[19])
