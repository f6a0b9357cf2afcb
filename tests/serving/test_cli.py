"""``python -m serving`` as a process: it serves, SIGTERM stops it cleanly, and an
address it cannot have is one line on stderr, not a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from serving.cli import config_from_args
from streamsim.app import localstack
from streamsim.app.cli import build_parser
from streamsim.runtime.seeding import write_generation
from tests.serving.live import wait_for

G1 = 1_700_000_000_000


def test_flags_and_environment_build_the_config(monkeypatch):
    monkeypatch.setenv("STREAMSIM_SERVE_CACHE_ROWS", "123")
    monkeypatch.setenv("STREAMSIM_SERVE_POLL_SECONDS", "0.5")
    args = build_parser().parse_args(
        ["serve", "--port", "9999", "--poll-seconds", "3", "--weights", "browse=1", "--bigtable-host", "h:1"]
    )
    config = config_from_args(args)
    assert (config.port, config.poll_seconds, config.cache_rows) == (9999, 3.0, 123)
    assert (config.weights.browse, config.weights.purchase) == (1.0, 6.0)
    assert config.settings.bigtable_host == "h:1"
    monkeypatch.setenv("STREAMSIM_SERVE_CACHE_ROWS", "many")
    with pytest.raises(ValueError, match="STREAMSIM_SERVE_CACHE_ROWS"):
        config_from_args(args)


@pytest.mark.slow
def test_serves_then_stops_on_sigterm(fresh_stack, tmp_path):
    write_generation(fresh_stack, G1, {"a": [("b", 0.5)]}, popular=[("p", 1.0)])
    port = localstack.free_port()
    command = [
        sys.executable,
        "-m",
        "serving",
        "--port",
        str(port),
        "--workers",
        "1",
        "--bigtable-host",
        fresh_stack.bigtable_host,
        "--project",
        fresh_stack.project,
        "--instance",
        fresh_stack.instance,
        "--prefix",
        fresh_stack.prefix,
        "--state-dir",
        str(tmp_path),
        "-v",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        answer = None
        deadline = time.monotonic() + 60
        while answer is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/items/a/similar", timeout=5) as response:
                    answer = json.loads(response.read())
            except OSError:
                time.sleep(0.2)
        assert answer.pop("attribution") and answer.pop("arm") == "default"
        assert answer == {"generation": G1, "item": "a", "items": [{"item": "b", "score": 0.5, "source": "similar"}]}
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert f"serving on http://127.0.0.1:{port}" in output
    assert "Traceback" not in output


def _serve_command(settings, tmp_path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "serving",
        *flags,
        "--bigtable-host",
        settings.bigtable_host,
        "--project",
        settings.project,
        "--instance",
        settings.instance,
        "--prefix",
        settings.prefix,
        "--state-dir",
        str(tmp_path),
    ]


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (("--port", "{busy}"), "Address already in use"),
        (("--host", "999.1.1.1"), "no such host"),
        (("--host", "no.such.host.invalid"), "no such host"),
        (("--host", "192.0.2.1"), "Cannot assign requested address"),  # TEST-NET-1: never this machine's
    ],
)
def test_an_address_it_cannot_have_is_one_line_and_a_failure(fresh_stack, tmp_path, flags, reason):
    with _listening_socket() as busy:
        flags = tuple(flag.format(busy=busy.getsockname()[1]) for flag in flags)
        if "--port" not in flags:
            flags += ("--port", str(localstack.free_port()))
        started = time.monotonic()
        done = subprocess.run(_serve_command(fresh_stack, tmp_path, *flags), capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamsim serve: cannot listen on "), done.stderr
    assert reason in lines[0]
    assert "serving on" not in done.stdout  # it never did


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return {int(child) for child in listing.read().split()}


@pytest.mark.slow
def test_workers_share_the_port_and_all_drain_on_sigterm(fresh_stack, tmp_path):
    write_generation(fresh_stack, G1, {"a": [("b", 0.5)]}, popular=[("p", 1.0)])
    port = localstack.free_port()
    command = _serve_command(fresh_stack, tmp_path, "--port", str(port), "--workers", "2")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()  # printed once every worker listens
        assert f"serving on http://127.0.0.1:{port}" in line and "2 workers" in line, line
        children = _children(process.pid)  # the workers, and multiprocessing's resource tracker
        answered = set()
        for _ in range(40):  # new connections: the kernel spreads them over the workers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode()
            answered |= {int(pid) for pid in re.findall(r'streamsim_serving_worker\{pid="(\d+)"', text)}
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/items/a/similar", timeout=10) as response:
                assert json.loads(response.read())["items"] == [{"item": "b", "score": 0.5, "source": "similar"}]
        assert len(answered) == 2 and answered <= children
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    for pid in answered:  # the workers were waited for: gone before the parent exited
        assert not os.path.exists(f"/proc/{pid}")
    # multiprocessing's resource tracker leaves once the parent is gone
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in children))
    with pytest.raises(ConnectionRefusedError):  # nobody listens any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with socket.socket() as sock:  # and a new server can have the port (as servers bind: SO_REUSEADDR)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
