"""A standalone Spark cluster on loopback whose executors lack this project, as on Dataproc.

:func:`executor_python` makes a virtual environment with the refresh's libraries at the
versions the tests run (numpy, scipy, the Bigtable client, pyspark and what they pull in)
and nothing of streamsim. With uv it links the wheels from uv's cache (filled by ``make
install``) in about a second; without uv it falls back to venv and pip, slower but the same.

:func:`standalone_cluster` starts a master and one worker, each a JVM of its own from
pyspark's ``bin/spark-class``, on free loopback ports (web UIs included: the defaults, 8080
and 8081, may be taken), and stops exactly those two process groups.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from streamsim.app.localstack import free_port
from streamsim.runtime.processes import Background

#: Distributions executors need (with their dependencies); the driver's versions are pinned.
EXECUTOR_PACKAGES = ("pyspark", "numpy", "scipy", "google-cloud-bigtable")
LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 120


def _constraints(path: Path) -> Path:
    """Every distribution of the running environment at its version, except this project."""
    pins = sorted(
        f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"] != "streamsim"
    )
    path.write_text("\n".join(pins) + "\n")
    return path


def executor_python(directory: Path) -> Path:
    """A Python with the refresh's libraries and without this project; its interpreter path."""
    venv = directory / "executor-venv"
    python = venv / "bin" / "python"
    constraints = _constraints(directory / "constraints.txt")
    uv = shutil.which("uv")
    wanted = ["-c", str(constraints), *EXECUTOR_PACKAGES]
    if uv:
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        install = [uv, "pip", "install", "--quiet", "--link-mode", "hardlink", "--python", str(python), *wanted]
        # Offline, every wheel comes from the cache by hard link (about a second); online
        # only if the cache lacks one.
        if subprocess.run([*install, "--offline"]).returncode != 0:
            subprocess.run(install, check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted], check=True
        )
    return python


def spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def _wait_for(log_path: Path, text: str, process: Background, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while text not in (log_path.read_text(errors="replace") if log_path.exists() else ""):
        if not process.alive() or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
            raise RuntimeError(f"the Spark {what} did not start:\n{tail}")
        time.sleep(0.2)


@contextlib.contextmanager
def standalone_cluster(directory: Path, *, cores: int = 2, memory: str = "1g"):
    """Yield the master URL of a running master + worker; stop both after."""
    env = {**os.environ, "SPARK_LOCAL_IP": LOOPBACK, "SPARK_NO_DAEMONIZE": "1"}
    port = free_port()
    master_log, worker_log = directory / "spark-master.log", directory / "spark-worker.log"
    started: list[Background] = []
    try:
        master = Background.start(
            [str(spark_class()), "org.apache.spark.deploy.master.Master", "--host", LOOPBACK, "--port", str(port)]
            + ["--webui-port", str(free_port())],
            master_log,
            env=env,
        )
        started.append(master)
        _wait_for(master_log, "I have been elected leader", master, "master")
        url = f"spark://{LOOPBACK}:{port}"
        worker = Background.start(
            [str(spark_class()), "org.apache.spark.deploy.worker.Worker", url, "--host", LOOPBACK]
            + ["--cores", str(cores), "--memory", memory, "--webui-port", str(free_port())]
            + ["--work-dir", str(directory / "spark-work")],
            worker_log,
            env=env,
        )
        started.append(worker)
        _wait_for(worker_log, "Successfully registered with master", worker, "worker")
        yield url
    finally:
        for process in reversed(started):
            process.stop()
