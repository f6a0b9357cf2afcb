"""The small-shop profile (docs/cost.md) run as its Cloud Run jobs would run it.

Each job is the serving image's `streamsim` command configured by environment variables
only, as a container gets them: no flags, no `streamsim up` state directory (HOME is an
empty directory and stays empty). The emulators stand in for Pub/Sub and Bigtable (their
two host variables are the only ones production would not set). A backlog is published,
then a live stream keeps trickling in while the fold job runs: the job must fold the
backlog and exit 0 by itself (`--drain-exit`), leaving the trickle to its next run; the
refresh job (`local[*]` Spark inside the job) then publishes a generation that serving
answers from.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from batch.generations import Generations
from schemas import parse_event
from schemas.events import Event, EventType
from streaming import state
from streaming.publish import EventPublisher, publish_file
from streamsim.app.localstack import free_port
from streamsim.sources.formats import read_records
from tests.support.fold_oracle import fold_oracle

pytestmark = [pytest.mark.slow, pytest.mark.spark]
BACKLOG = Path(__file__).resolve().parents[1] / "data" / "tmall-head.csv.gz"
#: The fold job's --drain-exit here (production: 60 s); the backlog is older than this when
#: pulled. Long enough that a loaded emulator answering empty pulls for a few seconds while the
#: backlog waits does not end the run early (which would only leave the rest to the next run).
DRAIN_SECONDS = 10
TRICKLE_PER_SECOND = 20


def job_env(settings, home: Path) -> dict:
    """A container's environment: the STREAMSIM_* variables and nothing of the local stack."""
    inherited = ("STREAMSIM_", "BIGTABLE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "PYSPARK_", "SPARK_", "XDG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    return {
        **env,
        "HOME": str(home),
        "STREAMSIM_PROJECT": settings.project,
        "STREAMSIM_INSTANCE": settings.instance,
        "STREAMSIM_TABLE_PREFIX": settings.prefix,
        "BIGTABLE_EMULATOR_HOST": settings.bigtable_host,
        "PUBSUB_EMULATOR_HOST": settings.pubsub_host,
    }


def job(env: dict, cwd: Path, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamsim", *command], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


class Trickle(threading.Thread):
    """A live stream on users and items of its own, TRICKLE_PER_SECOND until stopped."""

    def __init__(self, settings):
        super().__init__(daemon=True)
        self.publisher = EventPublisher(settings)
        self.stop = threading.Event()
        self.sent = 0

    def run(self):
        while not self.stop.wait(1 / TRICKLE_PER_SECOND):
            n = self.sent
            event = Event(
                f"live-{n}", f"live-user-{n % 7}", f"live-item-{n % 5}", EventType.BROWSE, 1_700_000_000_000 + n
            )
            self.publisher.publish([event])
            self.sent += 1
        self.publisher.close()


def get_json(port: int, path: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_small_shop_jobs_fold_refresh_and_serve_from_the_environment_alone(fresh_stack, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = job_env(fresh_stack, home)
    assert publish_file(fresh_stack, BACKLOG).published == 2500
    time.sleep(DRAIN_SECONDS)  # the backlog is older than the drain window when the job starts

    trickle = Trickle(fresh_stack)
    trickle.start()
    try:
        # docs/cost.md's fold job, its drain window shortened.
        folded = job(env, tmp_path, "stream", "--drain-exit", str(DRAIN_SECONDS), "--max-seconds", "840")
        during = trickle.sent
        time.sleep(1)
        still_live = trickle.sent > during
    finally:
        trickle.stop.set()
        trickle.join(30)
    assert folded.returncode == 0, folded.stderr[-3000:]
    assert still_live and during > 0, "the fold job must exit while the live stream goes on"

    scores, _ = fold_oracle(parse_event(record.data) for record in read_records(BACKLOG))
    got = state.scan_users(fresh_stack)
    unfolded = [user for user, row in scores.items() if got.get(user) != pytest.approx(row, rel=1e-12)]
    assert not unfolded, (len(unfolded), folded.stderr[-3000:])

    refreshed = job({**env, "SPARK_DRIVER_MEMORY": "2g"}, tmp_path, "refresh")
    assert refreshed.returncode == 0, refreshed.stderr[-3000:]
    generation = Generations(fresh_stack).current()
    assert refreshed.stdout.startswith(f"generation {generation} (full")

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamsim", "serve", "--workers", "1"],
        env={**env, "STREAMSIM_SERVE_PORT": str(port)},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get_json(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr and server.stderr.read()[-3000:]
            time.sleep(0.3)
        user = max(scores, key=lambda u: len(scores[u]))
        item = max(scores[user], key=scores[user].get)
        status, similar = get_json(port, f"/items/{item}/similar?n=5")
        assert status == 200 and similar["generation"] == generation and similar["items"]
        status, recommended = get_json(port, f"/recommendations?user={user}&n=5")
        assert status == 200 and recommended["generation"] == generation and recommended["items"]
    finally:
        server.terminate()
        server.wait(30)
    # No job made (or needed) a local stack's state directory.
    assert not (home / ".local" / "state" / "streamsim").exists()
