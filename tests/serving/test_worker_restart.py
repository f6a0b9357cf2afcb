"""A worker restarted beside others takes connections only once it is ready.

``streamsim serve --workers 2`` reaches the Bigtable emulator through a relay the test can
cut. With the relay cut, one worker is killed; its replacement cannot read the catalogue
at start. Once the relay is restored, every answer on the shared port comes from a worker
that has its catalogue: none is ``503`` "the catalogue has not been read yet" (a replacement
that listened at once took about half the port's connections and answered them so until
its next poll had read the whole catalogue).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import CatalogUpdate
from streamsim.app import localstack
from streamsim.runtime.bigtable import open_tables
from streamsim.runtime.catalog import write_catalog
from streamsim.runtime.seeding import write_generation
from tests.serving.live import G1, wait_for
from tests.serving.test_cli import _children, _serve_command
from tests.support.proxy import Relay

#: Enough items that reading them takes a few polls' time.
ITEMS = 30_000
NOT_READ = "catalogue has not been read yet"


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _scrape(port: int) -> dict[int, float]:
    """Catalogue items per worker pid, from one scrape of the shared port.

    A scrape holds the series of every worker that listens (``serving.peers``), each labelled
    with its worker index; a worker that does not listen yet is in none of them.
    """
    families = {f.name: f for f in text_string_to_metric_families(_get(port, "/metrics")[1])}
    pids = {s.labels["worker"]: int(s.labels["pid"]) for s in families["streamsim_serving_worker"].samples}
    items = {s.labels["worker"]: s.value for s in families["streamsim_serving_catalog_items"].samples}
    return {pid: items[worker] for worker, pid in pids.items()}


@pytest.mark.slow
def test_a_restarted_worker_listens_only_once_ready(fresh_stack, tmp_path):
    write_generation(fresh_stack, G1, {"a": [("b", 0.5)]}, popular=[("p", 1.0)])
    tables = open_tables(fresh_stack)
    updates = [CatalogUpdate(f"i{k}", f"c{k % 50}", True, 1_000) for k in range(ITEMS)]
    for start in range(0, ITEMS, 1000):
        write_catalog(tables, updates[start : start + 1000])
    relay = Relay(fresh_stack.bigtable_host)
    settings = dataclasses.replace(fresh_stack, bigtable_host=relay.address)
    port = localstack.free_port()
    command = _serve_command(settings, tmp_path, "--port", str(port), "--workers", "2", "--poll-seconds", "0.5")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        line = process.stdout.readline()
        assert "serving on" in line, line
        threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
        first = _children(process.pid)  # the workers and multiprocessing's resource tracker
        # Both workers of the first start hold the whole catalogue (a scrape holds every worker).
        assert wait_for(lambda: list(_scrape(port).values()) == [ITEMS, ITEMS], timeout=120)
        relay.cut()
        victim = min(_scrape(port))
        os.kill(victim, signal.SIGKILL)
        # Its replacement starts (after a pause), and its first catalogue read fails.
        assert wait_for(lambda: any("not reachable at start" in line for line in output), timeout=60), output
        replacement = (_children(process.pid) - first).pop()
        relay.restore()
        first_answer, not_read = None, 0
        deadline = time.monotonic() + 90
        while first_answer is None and time.monotonic() < deadline:
            status, body = _get(port, "/readyz")
            not_read += status == 503 and NOT_READ in body
            first_answer = _scrape(port).get(replacement)
        assert first_answer == ITEMS, output  # it serves, and from its first answer on with its catalogue
        assert not_read == 0
        assert _get(port, "/items/a/similar")[0] == 200
        assert json.loads(_get(port, "/readyz")[1])["generation"] == G1
    finally:
        relay.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
