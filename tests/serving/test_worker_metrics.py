"""``--workers N``: one scrape of the shared port holds every worker's series, labelled by worker."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamsim.app import localstack
from streamsim.runtime.seeding import write_generation
from tests.serving.test_cli import _serve_command

pytestmark = pytest.mark.slow
G1 = 1_700_000_000_000
REQUESTS = 40


def samples(text: str, name: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def test_one_scrape_counts_the_requests_of_every_worker(fresh_stack, tmp_path):
    write_generation(fresh_stack, G1, {"a": [("b", 0.5)]}, popular=[("p", 1.0)])
    port = localstack.free_port()
    command = _serve_command(fresh_stack, tmp_path, "--port", str(port), "--workers", "2")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "serving on" in process.stdout.readline()
        for _ in range(REQUESTS):  # a new connection each: the kernel spreads them over both workers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/items/a/similar", timeout=10) as response:
                assert json.loads(response.read())["items"][0]["item"] == "b"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    answered = [
        s
        for s in samples(text, "streamsim_serving_requests_total")
        if s.labels["route"] == "/items/{item}/similar" and s.labels["status"] == "200"
    ]
    assert {s.labels["worker"] for s in answered} == {"0", "1"}  # both took some (2^-39 odds otherwise)
    assert sum(s.value for s in answered) == REQUESTS
    assert [s.value for s in samples(text, "streamsim_serving_workers_scraped")] == [2]
    assert len({s.labels["pid"] for s in samples(text, "streamsim_serving_worker")}) == 2
    assert process.returncode == 0, output
