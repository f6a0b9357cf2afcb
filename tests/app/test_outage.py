"""A Bigtable outage longer than any give-up time: the fold and the continuous refresh come back.

The Bigtable emulator of a local stack of the test's own is killed (``kill -9``) while
``streamsim stream`` (supervised) and ``streamsim refresh --continuous`` run, stays down for
``OUTAGE_SECONDS`` (beyond the point where both used to give up: the supervisor after
``--max-restarts 2`` restarts, the refresh after three failed passes, about 20 s), and
``streamsim up`` starts it again on the same port, empty, and provisions it. Events published
during the outage must reach a new generation with neither process restarted by hand, and the
outage must show in their logs, in their Prometheus metrics (``--metrics-port``) and in the
statistics of the first pass after it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batch.generations import SimilarityReader
from schemas import Event, EventType
from streaming.publish import EventPublisher
from streamsim.app import localstack
from streamsim.runtime.settings import Settings

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = 40
#: Bound on each wait (a loop that never resumes fails the test instead of hanging it).
PATIENCE = 240


def co_browsing(users: int, x: str, y: str, tag: str) -> list[Event]:
    now = int(time.time() * 1000)
    return [
        Event(f"{tag}-{u}-{item}", f"{tag}-user-{u}", item, EventType.BROWSE, now)
        for u in range(users)
        for item in (x, y)
    ]


def lists(settings, x: str, y: str) -> bool:
    try:
        row = SimilarityReader(settings).neighbours(x)
    except Exception:  # noqa: BLE001 - the backend may be down or not yet provisioned
        return False
    return row is not None and y in dict(row.neighbours)


def wait_until(condition, what: str, patience: float = PATIENCE) -> None:
    deadline = time.monotonic() + patience
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.5)


def loop_metric(port: int, name: str, loop: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels == {"loop": loop}
    ]
    assert len(found) == 1, (name, text)
    return found[0]


class Lines:
    """A child's stdout, collected by a thread (a pipe nobody reads would block the child)."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self._thread.start()


@pytest.fixture
def own_stack(tmp_path):
    """A local stack of the test's own (``streamsim up`` in its own state directory), to break."""
    base = Settings(project="outage", instance="outage", prefix="outage-", state_dir=tmp_path / "stack")
    state = localstack.up(base, bigtable_port=localstack.free_port(), pubsub_port=localstack.free_port())
    yield dataclasses.replace(base, bigtable_host=state["bigtable"]["host"], pubsub_host=state["pubsub"]["host"])
    localstack.down(base)


def test_both_loops_outlive_an_outage_and_fold_what_arrived_meanwhile(own_stack, tmp_path):
    settings = own_stack
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    streamsim = [sys.executable, "-m", "streamsim"]
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("stream", "refresh")}  # noqa: SIM115
    ports = {"stream": localstack.free_port(), "refresh": localstack.free_port()}
    stream = subprocess.Popen(
        [*streamsim, "stream", "--max-restarts", "2", "--metrics-port", str(ports["stream"]), *settings.to_argv()],
        stderr=logs["stream"],
        env=env,
    )
    refresh = subprocess.Popen(
        [*streamsim, "refresh", "--continuous", "--min-interval", "1s", "--json", "--threshold", "0"]
        + ["--top-k", "5", "--master", "local[1]", "--metrics-port", str(ports["refresh"]), *settings.to_argv()],
        stdout=subprocess.PIPE,
        stderr=logs["refresh"],
        text=True,
        env=env,
    )
    passes = Lines(refresh.stdout)
    try:
        with EventPublisher(settings) as publisher:
            publisher.publish(co_browsing(4, "early-x", "early-y", "early"))
        wait_until(lambda: lists(settings, "early-x", "early-y"), "the first generation")

        bigtable_pid = json.loads((settings.state_dir / localstack.STATE_FILE).read_text())["bigtable"]["pid"]
        os.kill(bigtable_pid, signal.SIGKILL)
        down = time.monotonic()
        with EventPublisher(settings) as publisher:  # Pub/Sub is up: the fold cannot write them yet
            publisher.publish(co_browsing(4, "late-x", "late-y", "late"))
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
        assert stream.poll() is None and refresh.poll() is None, "a loop gave up during the outage"
        for loop, port in ports.items():  # the outage, as Prometheus sees it (the pipeline may take a while to die)
            wait_until(lambda: loop_metric(port, "streamsim_loop_failures_in_a_row", loop) >= 1, f"{loop} failures")
            assert loop_metric(port, "streamsim_loop_outage_seconds", loop) > 0

        up = subprocess.run(
            [*streamsim, "up", *settings.to_argv(remote=True), "--state-dir", str(settings.state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert up.returncode == 0, up.stderr
        assert "had died: started a new one" in up.stdout + up.stderr  # on its old port, empty, provisioned
        wait_until(lambda: lists(settings, "late-x", "late-y"), "a generation with the events of the outage")
        assert stream.poll() is None and refresh.poll() is None
        for loop, port in ports.items():
            assert loop_metric(port, "streamsim_loop_outages_recovered_total", loop) == 1
            assert loop_metric(port, "streamsim_loop_failures_in_a_row", loop) == 0
    finally:
        for process in (stream, refresh):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=PATIENCE) for process in (stream, refresh)]
        for handle in logs.values():
            handle.close()
    assert codes == [0, 0]
    stats = [json.loads(line) for line in passes.lines if line.startswith("{")]
    after = [s for s in stats if "outage" in s]
    assert after and after[0]["outage"]["failed_attempts"] >= 3 and after[0]["outage"]["seconds"] >= 20, stats
    refresh_log = Path(tmp_path / "refresh.log").read_text()
    assert "refresh pass failed" in refresh_log and "refresh pass succeeded again after" in refresh_log
    stream_log = Path(tmp_path / "stream.log").read_text()
    assert "not starting the pipeline: the Bigtable emulator" in stream_log
    assert "pipeline start succeeded again after" in stream_log
