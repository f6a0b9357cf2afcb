"""SIGTERM drains ``streamsim serve``: every request whose headers arrived is answered, with
``Connection: close``, within the drain deadline; idle keep-alive connections are closed cleanly.

A real server process (one worker and two), raw sockets: a request whose body is still
arriving when the signal comes (its body sent 1.5 s later), one whose body never comes
(503 ``shutting_down`` before the deadline), and an idle keep-alive connection.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import pytest

from serving.config import ServingConfig
from streamsim.app import localstack
from streamsim.runtime.seeding import write_generation
from tests.serving.test_cli import _serve_command

pytestmark = pytest.mark.slow
G1 = 1_700_000_000_000
#: A session whose item x is in no cache: its answer needs a Bigtable read after the slow body.
BODY = json.dumps({"items": [{"item": "a"}, {"item": "x"}], "n": 2}).encode()
#: The deadline a stopping server gives requests (ServingConfig.shutdown_timeout_seconds).
DRAIN_SECONDS = ServingConfig.shutdown_timeout_seconds


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one HTTP answer with a Content-Length; b"" head if the server hung up first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DRAIN_SECONDS + 20)
    return sock


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_answers_a_request_whose_body_is_still_arriving(fresh_stack, tmp_path, workers):
    write_generation(fresh_stack, G1, {"a": [("b", 0.5)]}, popular=[("p", 1.0)])
    port = localstack.free_port()
    command = _serve_command(fresh_stack, tmp_path, "--port", str(port), "--workers", workers)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "serving on" in process.stdout.readline()
        idle = connect(port)  # a keep-alive connection with one answer behind it
        idle.sendall(b"GET /items/a/similar HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = read_answer(idle)
        assert head.startswith(b"HTTP/1.1 200")
        slow, never = connect(port), connect(port)
        for sock in (slow, never):
            sock.sendall(
                b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(BODY)
            )
        time.sleep(1.0)  # the headers reach the server (a wait, not a timing assertion)
        process.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        slow.sendall(BODY)
        head, body = read_answer(slow)
        assert head.startswith(b"HTTP/1.1 200"), (head, body)
        assert b"connection: close" in head.lower()
        # b after a (browse: 0.5 x 0.5), then the popular fill: the read budget started with the body, not the headers.
        assert [(e["item"], e["source"]) for e in json.loads(body)["items"]] == [("b", "similar"), ("p", "popular")]
        assert slow.recv(1) == b""  # then closed
        assert idle.recv(1) == b""  # the idle keep-alive connection was closed, not left to time out
        head, body = read_answer(never)  # a body that never comes: answered before the deadline
        assert head.startswith(b"HTTP/1.1 503") and b"connection: close" in head.lower(), (head, body)
        assert json.loads(body)["error"] == "shutting_down"
        output, _ = process.communicate(timeout=DRAIN_SECONDS + 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "Traceback" not in output
