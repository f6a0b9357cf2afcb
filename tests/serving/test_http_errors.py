"""One error path for HTTP: what aiohttp refuses before the app is answered like the app's errors.

Every message here is one no client library would send, so they go over raw
sockets to a real server (``tests/serving/live.py``). The contract: a 4xx in
JSON ``{"error", "detail", "generation"}`` that quotes none of the request's
bytes, one short log line at most and no traceback, no version banner, and
``/metrics`` counting each answer as what it was.

The messages are refused by aiohttp's C parser, the one its wheels ship. Its
pure-Python fallback (``AIOHTTP_NO_EXTENSIONS=1``) takes some of them
(``get``, raw bytes, which the id rule then refuses) or waits for more (a TLS
hello), but answers none with a 500 or in text.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from serving import errors
from serving.store import BackendUnavailable
from streamsim.runtime.settings import Settings
from tests.serving.live import G1, exchange, serve, wait_for

#: A marker in every malformed message: it must never come back, nor reach the log.
SECRET = b"s3cr3t"


def _get(target: bytes, *headers: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


MALFORMED = {
    "request line of garbage": b"garbage " + SECRET + b"\r\n\r\n",
    "lower-case method": b"get /healthz?" + SECRET + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "TLS on the HTTP port": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + SECRET + b"\x00" * 40,
    "raw UTF-8 in the path": _get("/items/商品/similar?".encode() + SECRET),
    "raw 0xff in the query": _get(b"/recommendations?user=\xff" + SECRET),
    "request line over 8190 bytes": _get(b"/recommendations?exclude=" + b",".join([SECRET] * 1500)),
    "header line over 8190 bytes": _get(b"/healthz", b"X-Big: " + SECRET * 1500),
    "space in a header name": _get(b"/healthz", b"Bad " + SECRET + b": 1"),
    "NUL in a header": _get(b"/healthz", b"X-A: a\x00" + SECRET),
    "obs-fold": _get(b"/healthz", b"X-A: a", b" " + SECRET),
    "no Host in HTTP/1.1": b"GET /healthz?" + SECRET + b" HTTP/1.1\r\n\r\n",
    "negative Content-Length": b"POST /recommendations?"
    + SECRET
    + b" HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "Content-Length and chunked": b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\nX-S: " + SECRET + b"\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz" + SECRET + b"\r\nabc\r\n0\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SECRET,
}


@pytest.fixture
def logs(caplog):
    """Everything logged while the test runs, from every thread (the server has its own)."""
    caplog.set_level(logging.DEBUG)
    return caplog


def _tracebacks(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


@pytest.mark.parametrize("message", MALFORMED.values(), ids=MALFORMED.keys())
def test_what_the_parser_refuses_is_a_json_400_that_quotes_nothing(server, logs, message):
    status, headers, body = exchange(server.port, message)
    assert status == 400 and headers["content-type"] == "application/json", body
    answer = json.loads(body)
    assert answer["error"] == "bad_request" and set(answer) == {"error", "detail", "generation"}
    assert answer["generation"] == G1 and answer["detail"].startswith("the ")
    assert SECRET not in body and "商品".encode() not in body and b"\\x" not in body
    assert headers["server"] == "streamsim"
    # One short line in the log, without the bytes either.
    lines = [r for r in logs.records if r.levelno >= logging.INFO and r.name.startswith(("serving", "aiohttp"))]
    assert len(lines) == 1 and lines[0].name == "serving.server", [r.getMessage() for r in lines]
    assert "\n" not in lines[0].getMessage() and "s3cr3t" not in lines[0].getMessage()
    assert not _tracebacks(logs)
    assert 'requests_total{method="OTHER",route="malformed",status="400"} 1.0' in server.metrics()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_body_whose_content_encoding_lies_is_400_not_500(server, logs, encoding):
    body = json.dumps({"items": [{"item": "a"}]}).encode()
    status, answer = server.request(
        "POST", "/recommendations", body, {"Content-Type": "application/json", "Content-Encoding": encoding}
    )
    assert status == 400 and answer["error"] == "bad_request", answer
    assert "Content-Encoding" in answer["detail"]
    assert server.post("/recommendations", {"items": [{"item": "a"}]})[0] == 200
    assert not _tracebacks(logs)
    assert 'status="500"' not in server.metrics()


def test_no_version_banner_on_any_answer(server):
    for method, path in [("GET", "/healthz"), ("GET", "/nope"), ("GET", "/recommendations"), ("DELETE", "/readyz")]:
        status, headers, _ = server.request_with_headers(method, path)
        assert headers["Server"] == "streamsim", (method, path, status)
    assert exchange(server.port, b"garbage\r\n\r\n")[1]["server"] == "streamsim"
    _, headers, _ = server.request_with_headers("GET", "/metrics")
    assert headers["Server"] == "streamsim"


def test_backend_errors_name_the_grpc_status_never_an_address():
    # The gateway's text today is "Bigtable UNAVAILABLE"; gRPC's own would
    # name the channel's target, which is none of a client's business.
    leaky = BackendUnavailable(
        "Bigtable UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: "
        "ipv4:10.1.2.3:8086: Failed to connect to remote host: Connection refused"
    )
    status, body, _ = errors.error_answer(leaky, 7)
    assert (status, body["error"]) == (503, "backend_unavailable")
    assert "10.1.2.3" not in body["detail"] and "ipv4" not in body["detail"] and "UNAVAILABLE" in body["detail"]
    assert "budget" not in errors.error_answer(BackendUnavailable("the request's time budget is spent"), 7)[1]["detail"]


def test_a_dead_backend_is_a_503_without_its_address():
    live = serve(Settings(project="p", instance="i", prefix="x-", bigtable_host="127.0.0.1:1"))
    try:
        status, answer = live.get("/recommendations?user=u1")
        assert (status, answer["error"]) == (503, "backend_unavailable")
        assert "127.0.0.1" not in json.dumps(answer) and ":1" not in answer["detail"]
    finally:
        live.stop()


def test_a_client_gone_mid_body_is_a_disconnect_not_a_500(server, logs):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 5000\r\n\r\n{"items": ['
        )
        time.sleep(0.2)  # the handler is waiting for the rest of the body
    counted = 'client_disconnects_total{method="POST",route="/recommendations"} 1.0'
    assert wait_for(lambda: counted in server.metrics(), timeout=10)
    assert 'status="500"' not in server.metrics()
    assert not _tracebacks(logs)
    assert not [r for r in logs.records if r.levelno >= logging.WARNING and r.name.startswith(("serving", "aiohttp"))]
    assert server.get("/healthz")[0] == 200


def test_a_declared_body_over_the_limit_is_413_at_once(server):
    # Without reading (or waiting for) a byte of it; the client gives up on
    # sending the rest, and the answer is there before it does.
    started = time.monotonic()
    status, headers, body = exchange(
        server.port,
        b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000000\r\nConnection: close\r\n\r\n",
        timeout=5,
    )
    assert time.monotonic() - started < 5
    assert (status, json.loads(body)["error"]) == (413, "payload_too_large")
    # With Expect: 100-continue, before the client is told to send it.
    status, headers, body = exchange(
        server.port,
        b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        timeout=5,
    )
    assert (status, headers["content-type"]) == (413, "application/json")
    assert json.loads(body)["error"] == "payload_too_large"


def test_expect_is_answered_in_json_too(server):
    status, headers, body = exchange(
        server.port,
        b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nExpect: teapot\r\nConnection: close\r\n\r\n{}",
    )
    assert (status, headers["content-type"], headers["server"]) == (417, "application/json", "streamsim")
    assert "teapot" not in body.decode()
    # A small body with 100-continue: told to go on, then answered.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        payload = b'{"items":[{"item":"a"}]}'
        sock.sendall(
            b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(payload)
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(payload)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"generation":%d' % G1 in answer


#: Where a client's own values reach the parameter checks; each carries a marker.
MARKER = "zq<b>"
VALUE_ERRORS = {
    "n": ("GET", f"/recommendations?user=u1&n={MARKER}", None),
    "flag": ("GET", f"/recommendations?browsed=a&explain={MARKER}", None),
    "unknown parameter": ("GET", f"/recommendations?user=u1&{MARKER}=1", None),
    "repeated unknown parameter": ("GET", f"/items/a/similar?{MARKER}=1&{MARKER}=2", None),
    "type": ("POST", "/recommendations", {"items": [{"item": "a", "type": MARKER}]}),
    "n in a body": ("POST", "/recommendations", {"items": [{"item": "a"}], "n": MARKER}),
    "flag in a body": ("POST", "/recommendations", {"items": [{"item": "a"}], "explain": MARKER}),
    "unknown item": ("GET", f"/items/{MARKER}/similar", None),
}


@pytest.mark.parametrize("case", VALUE_ERRORS)
def test_error_details_never_quote_a_value_the_client_sent(server, case):
    method, path, body = VALUE_ERRORS[case]
    status, answer = server.get(path) if method == "GET" else server.post(path, body)
    assert status in (400, 404) and answer["error"] in ("bad_parameter", "unknown_item"), answer
    assert "zq" not in answer["detail"] and answer["detail"], answer
