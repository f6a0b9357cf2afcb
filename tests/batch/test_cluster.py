"""The refresh on a real Spark cluster whose executors do not have this project (as on Dataproc).

A master and a worker run in JVMs of their own on loopback; the executors' Python
(``PYSPARK_PYTHON``) has numpy, scipy, the Bigtable client and pyspark but not streamsim,
so every module they run comes from the job zip the refresh ships (the zip ``--dataproc``
submits). The generation it writes must equal a ``local[2]`` pass's on the same state.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import zipfile

import pytest

from batch import cli
from streamsim.runtime.seeding import write_scores
from tests.batch.test_refresh import clustered_scores, connection_flags, visible
from tests.support.spark_cluster import executor_python, standalone_cluster

log = logging.getLogger(__name__)


def _refresh(settings, master: str, executor: str, *flags: str) -> dict:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_"))},
        "PYSPARK_PYTHON": executor,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    command = [sys.executable, "-m", "streamsim", "refresh", "--master", master, "--json", *flags]
    done = subprocess.run([*command, *connection_flags(settings)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.spark
def test_a_pass_on_a_cluster_without_the_project_equals_a_local_pass(fresh_stack, tmp_path):
    python = str(executor_python(tmp_path))
    # The premise: the executors' Python cannot import the project by itself.
    probe = subprocess.run([python, "-c", "import streamsim"], capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode != 0 and "No module named 'streamsim'" in probe.stderr
    assert subprocess.run([python, "-c", "import numpy, scipy, pyspark, google.cloud.bigtable"]).returncode == 0

    # Unit scores over enough users that entries are sampled (p < 1), as in test_refresh.
    write_scores(fresh_stack, clustered_scores(5, users=2000, weights=(1.0,)))
    flags = ("--full", "--threshold", "0.2", "--seed", "3", "--partitions", "4")
    with standalone_cluster(tmp_path) as master:
        on_cluster = _refresh(fresh_stack, master, python, *flags)
    on_local = _refresh(fresh_stack, "local[2]", sys.executable, *flags)

    log.info(
        "refresh wall time: cluster %.1f s, local[2] %.1f s (%d users, %d items)",
        on_cluster["wall_seconds"],
        on_local["wall_seconds"],
        on_local["users"],
        on_local["items"],
    )
    print(f"cluster {on_cluster['wall_seconds']:.1f} s, local[2] {on_local['wall_seconds']:.1f} s")
    assert on_cluster["flipped"] and on_local["flipped"]
    assert on_cluster["generation"] != on_local["generation"]
    assert on_cluster["pairs_emitted"] == on_local["pairs_emitted"] < on_local["pairs_exact"]
    cluster_rows, local_rows = (
        visible(fresh_stack, on_cluster["generation"]),
        visible(fresh_stack, on_local["generation"]),
    )
    assert len(cluster_rows) == 40 and sum(len(r) for r in cluster_rows.values()) > 500
    assert cluster_rows == local_rows


def test_only_a_cluster_session_started_here_ships_the_job_zip(tmp_path):
    assert cli.ships_job("spark://head:7077", environ={})
    assert not cli.ships_job("local[*]", environ={}) and not cli.ships_job(None, environ={})
    # Under spark-submit (Dataproc), --py-files shipped the same zip already.
    assert not cli.ships_job("spark://head:7077", environ={"PYSPARK_GATEWAY_PORT": "1"})
    names = set(zipfile.ZipFile(cli.job_zip(tmp_path)).namelist())
    assert {"batch/engine.py", "schemas/codecs.py", "streamsim/runtime/bigtable/table.py"} <= names
    assert not any(n.startswith("serving/") or not n.endswith(".py") for n in names)
