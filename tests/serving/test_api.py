"""The HTTP API on a real server on loopback, reading the Bigtable emulator.

State is seeded through ``schemas`` (``tests/bigtable_rows.py``), as the
stream and the refresh pass would write it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import socket
import threading
import time

import pytest
from aiohttp import web

from schemas.events import Weights
from serving import errors, params
from serving.app import CACHE, create_app
from serving.config import ServingConfig
from serving.openapi import ERROR_CODES, document
from serving.recommender import NoGeneration, UnknownItem
from serving.store import BackendUnavailable
from streamsim.app import localstack
from streamsim.runtime.provision import provision_bigtable
from streamsim.runtime.seeding import write_generation, write_scores
from streamsim.runtime.settings import Settings

G1 = 1_700_000_000_000
G2 = G1 + 60_000
NEIGHBOURS = {
    "a": [("b", 0.9), ("c", 0.5), ("d", 0.25)],
    "b": [("a", 0.9), ("c", 0.4), ("e", 0.3)],
    "c": [("a", 0.5), ("b", 0.4)],
}
POPULAR = [("p1", 100.0), ("c", 50.0), ("p2", 10.0)]


class LiveServer:
    """``create_app(config)`` on 127.0.0.1:<free port>, its loop in a thread."""

    def __init__(self, config: ServingConfig):
        self.app = create_app(config)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the server did not start")

    def _serve(self):
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            raw = response.read()
            kind = response.getheader("Content-Type", "")
            return response.status, (json.loads(raw) if kind.startswith("application/json") else raw.decode())
        finally:
            connection.close()

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, payload, content_type: str = "application/json"):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", path, body, {"Content-Type": content_type})

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


def serve(settings: Settings, **overrides) -> LiveServer:
    return LiveServer(ServingConfig(settings=settings, **{"poll_seconds": 0.2, **overrides}))


def wait_for(condition, timeout: float = 30.0):
    """Poll ``condition`` until it returns a truthy value (a hang guard, not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture
def seeded(fresh_stack) -> Settings:
    write_scores(fresh_stack, {"u1": {"a": 2.0, "b": 1.0}})
    write_generation(fresh_stack, G1, NEIGHBOURS, popular=POPULAR)
    return fresh_stack


@pytest.fixture
def server(seeded):
    live = serve(seeded)
    yield live
    live.stop()


def items(answer) -> list[str]:
    return [entry["item"] for entry in answer["items"]]


def test_user_recommendations_exclude_history_and_fill_from_popular(server):
    status, answer = server.get("/recommendations?user=u1&n=10")
    assert status == 200
    assert answer["generation"] == G1 and answer["user"] == "u1"
    # c = 2*.5 + 1*.4, d = 2*.25, e = 1*.3; a and b are the history.
    assert items(answer) == ["c", "d", "e", "p1", "p2"]
    assert [e["score"] for e in answer["items"][:3]] == pytest.approx([1.4, 0.5, 0.3])
    assert [e["source"] for e in answer["items"]] == ["similar"] * 3 + ["popular"] * 2
    assert answer["items"][3]["score"] == 100.0

    status, short = server.get("/recommendations?user=u%31&n=2")  # percent-encoded "u1"
    assert status == 200 and items(short) == ["c", "d"] and short["user"] == "u1"


def test_exclude_and_explain(server):
    status, answer = server.get("/recommendations?user=u1&n=3&exclude=d,p1&explain=true")
    assert status == 200
    assert items(answer) == ["c", "e", "p2"]
    assert answer["items"][0]["because"] == [
        {"item": "a", "contribution": pytest.approx(1.0)},
        {"item": "b", "contribution": pytest.approx(0.4)},
    ]
    assert answer["items"][1]["because"] == [{"item": "b", "contribution": pytest.approx(0.3)}]
    assert answer["items"][2]["because"] == []
    status, plain = server.get("/recommendations?user=u1&n=3")
    assert "because" not in plain["items"][0]


def test_unknown_user_gets_popular_items(server):
    status, answer = server.get("/recommendations?user=nobody&n=2")
    assert status == 200 and answer["generation"] == G1
    assert items(answer) == ["p1", "c"] and {e["source"] for e in answer["items"]} == {"popular"}


def test_session_form_uses_the_event_weights(server):
    # browse a (0.5), basket b (2.0): c = .5*.5 + 2*.4, e = 2*.3, d = .5*.25
    status, answer = server.get("/recommendations?browsed=a&basket=b&n=3")
    assert status == 200 and answer["generation"] == G1
    assert items(answer) == ["c", "e", "d"]
    assert [e["score"] for e in answer["items"]] == pytest.approx([1.05, 0.6, 0.125])

    status, posted = server.post(
        "/recommendations", {"items": [{"item": "a", "type": "browse"}, {"item": "b", "type": "basket"}], "n": 3}
    )
    assert status == 200 and posted["items"] == answer["items"]

    # The same item browsed and purchased counts both weights: a = .5 + 6.
    status, both = server.get("/recommendations?browsed=a&purchased=a&n=1&explain=true")
    assert items(both) == ["b"] and both["items"][0]["because"][0]["contribution"] == pytest.approx(6.5 * 0.9)


def test_similar_items(server):
    status, answer = server.get("/items/a/similar?n=2")
    assert status == 200 and answer == {
        "generation": G1,
        "item": "a",
        "items": [{"item": "b", "score": 0.9, "source": "similar"}, {"item": "c", "score": 0.5, "source": "similar"}],
    }
    status, answer = server.get("/items/a/similar?exclude=b")
    assert items(answer) == ["c", "d"]
    status, error = server.get("/items/zzz/similar")
    assert status == 404 and error["error"] == "unknown_item" and error["generation"] == G1


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/recommendations?user=u1&n=0", "n must be"),
        ("/recommendations?user=u1&n=1001", "n must be"),
        ("/recommendations?user=u1&n=ten", "n must be"),
        ("/recommendations?user=" + "u" * 129, "limit is 128"),
        ("/recommendations?browsed=", "non-empty"),
        ("/recommendations?browsed=a,,b", "non-empty"),
        ("/recommendations?browsed=" + ",".join(f"i{k}" for k in range(101)), "limit is 100"),
        ("/recommendations?browsed=" + "x" * 129, "limit is 128"),
        ("/recommendations?user=u1&exclude=" + "x" * 129, "limit is 128"),
        ("/recommendations?user=u1&explain=maybe", "explain"),
        ("/recommendations?user=u1&users=u2", "unknown parameter"),
        ("/recommendations?user=u1&n=1&n=2", "more than once"),
        ("/recommendations?user=u1&browsed=a", "not both"),
        ("/recommendations", "give user"),
        ("/items/a/similar?n=0", "n must be"),
        ("/items/" + "x" * 129 + "/similar", "limit is 128"),
    ],
)
def test_bad_parameters_are_400(server, path, fragment):
    status, error = server.get(path)
    assert status == 400, error
    assert error["error"] == "bad_parameter" and fragment in error["detail"]


def test_bad_bodies(server):
    status, error = server.post("/recommendations", b"{not json")
    assert (status, error["error"]) == (400, "bad_parameter")
    status, error = server.post("/recommendations", {"items": []})
    assert (status, error["error"]) == (400, "bad_parameter")
    status, error = server.post("/recommendations", {"items": [{"item": "a", "type": "stolen"}]})
    assert status == 400 and "type must be" in error["detail"]
    status, error = server.post("/recommendations", {"items": [{"item": "a"}], "n": 5000})
    assert status == 400 and "n must be" in error["detail"]
    status, error = server.post("/recommendations", {"items": [{"item": "a"}]}, content_type="text/plain")
    assert (status, error["error"]) == (415, "unsupported_media_type")
    big = {"items": [{"item": "a", "type": "browse"}], "pad": "x" * 70_000}
    status, error = server.post("/recommendations", big)
    assert (status, error["error"]) == (413, "payload_too_large")


@pytest.mark.parametrize(
    "body",
    [
        # Lone surrogates spelled as JSON escapes: valid JSON, but not UTF-8
        # encodable, so they once passed the check and failed in key encoding.
        rb'{"items":[{"item":"\ud800","type":"browse"}]}',
        rb'{"items":[{"item":"\udc80","type":"basket"}]}',
        rb'{"items":[{"item":"a\ud800b"}]}',
        rb'{"items":[{"item":"a"}],"exclude":["\ud800"]}',
        # Raw bytes that are not UTF-8, one of them a UTF-8-shaped surrogate.
        b'{"items":[{"item":"\xed\xa0\x80","type":"browse"}]}',
        b'{"items":[{"item":"\xff"}]}',
        b'{"items":[{"item":"a\xc3("}]}',
    ],
)
def test_ids_utf8_cannot_encode_are_400_not_500(server, body):
    status, error = server.post("/recommendations", body)
    assert status == 400, error
    assert isinstance(error, dict) and error["error"] == "bad_parameter" and error["generation"] == G1
    assert server.post("/recommendations", {"items": [{"item": "a"}]})[0] == 200  # the server is fine


def test_raw_non_utf8_bytes_in_the_url_are_never_500(server):
    # aiohttp's C parser refuses them before the app; its pure-Python parser
    # passes them on surrogate-escaped ("\udcff"), which the id rule refuses.
    for target in (
        b"/recommendations?user=\xff",
        b"/recommendations?browsed=a,\xed\xa0\x80",
        b"/items/\xff/similar",
        b"/items/a/similar?exclude=\xff",
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.split()[1] == b"400", answer
        if b"application/json" in head:
            assert json.loads(payload)["error"] == "bad_parameter"


@pytest.mark.parametrize(
    "parse",
    [
        lambda: params.recommendation_query([("user", "\ud800")], Weights(), 10),
        lambda: params.recommendation_query([("browsed", "a,\udc80")], Weights(), 10),
        lambda: params.recommendation_query([("user", "u1"), ("exclude", "b,a\ud800b")], Weights(), 10),
        lambda: params.session_body({"items": [{"item": "a"}], "exclude": ["\ud800"]}, Weights(), 10),
        lambda: params.similar_query("\udcff", [], 10),
        lambda: params.similar_query("a", [("exclude", "\ud800")], 10),
    ],
)
def test_every_id_the_server_takes_follows_the_event_rule(parse):
    with pytest.raises(params.BadRequest, match="surrogate"):
        parse()


def test_the_error_table_maps_exceptions_and_feeds_openapi():
    assert errors.error_answer(params.BadRequest("n must be"), 7) == (
        400,
        {"error": "bad_parameter", "detail": "n must be", "generation": 7},
        None,
    )
    for exc, status, code in [
        (UnknownItem("zzz"), 404, "unknown_item"),
        (BackendUnavailable("down"), 503, "backend_unavailable"),
        (NoGeneration("none"), 503, "no_generation"),
        (web.HTTPNotFound(), 404, "not_found"),
        (web.HTTPMethodNotAllowed("DELETE", ["GET"]), 405, "method_not_allowed"),
        (web.HTTPBadRequest(), 400, "bad_parameter"),  # aiohttp's others keep their status
        (web.HTTPBadGateway(), 502, "internal"),
    ]:
        answered_status, body, _ = errors.error_answer(exc, None)
        assert (answered_status, body["error"]) == (status, code), exc
    assert errors.error_answer(web.HTTPMethodNotAllowed("DELETE", ["GET"]), None)[2] == {"Allow": "GET"}
    # An unexpected exception is a logged 500 whose detail never carries its message.
    assert errors.error_answer(KeyError("secret"), None)[:2] == (
        500,
        {"error": "internal", "detail": "unexpected server error (logged)", "generation": None},
    )
    assert errors.unexpected(KeyError("secret")) and not errors.unexpected(web.HTTPBadGateway())
    # /openapi.json describes each status with the table's codes.
    assert ERROR_CODES == {e.code: e.status for e in errors.ERRORS.values()}
    responses = document()["paths"]["/items/{item}/similar"]["get"]["responses"]
    assert "unknown_item" in responses["404"]["description"] and "not_found" in responses["404"]["description"]


def test_unknown_routes_and_methods_are_json(server):
    status, error = server.get("/nope")
    assert (status, error["error"]) == (404, "not_found")
    status, error = server.request("DELETE", "/recommendations?user=u1")
    assert (status, error["error"]) == (405, "method_not_allowed")


def test_probes_metrics_and_openapi(server):
    assert server.get("/healthz") == (200, {"status": "ok", "generation": G1})
    assert server.get("/readyz") == (200, {"status": "ready", "generation": G1})
    server.get("/recommendations?user=u1")
    server.get("/recommendations?user=u1")  # the second one hits the cache
    server.get("/recommendations?n=0&user=u1")
    status, text = server.get("/metrics")
    assert status == 200
    assert 'streamsim_serving_requests_total{method="GET",route="/recommendations",status="200"} 2.0' in text
    assert 'streamsim_serving_requests_total{method="GET",route="/recommendations",status="400"} 1.0' in text
    assert 'streamsim_serving_request_seconds_count{route="/recommendations"} 3.0' in text
    assert "streamsim_serving_cache_hits_total 2.0" in text
    assert "streamsim_serving_cache_misses_total 2.0" in text
    assert "streamsim_serving_cache_hit_ratio 0.5" in text
    assert f"streamsim_serving_generation {float(G1)}" in text or "streamsim_serving_generation 1.7e+12" in text
    assert "streamsim_serving_generation_age_seconds" in text

    status, spec = server.get("/openapi.json")
    assert status == 200 and spec == json.loads(json.dumps(document()))
    routes = {(r.method, r.resource.canonical) for r in server.app.router.routes() if r.method != "HEAD"}
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == described
    assert set(spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"]) == set(ERROR_CODES)


def test_generation_flip_is_seen_without_restart(server, seeded):
    # Rows of a generation whose pointer is not flipped stay invisible.
    write_generation(seeded, G2, {"a": [("z", 1.0)]}, popular=[("q", 1.0)], flip=False)
    status, answer = server.get("/items/a/similar?n=1")
    assert answer["generation"] == G1 and items(answer) == ["b"]

    write_generation(seeded, G2, {"a": [("z", 1.0)]}, popular=[("q", 1.0)], flip=True)
    flipped = wait_for(lambda: server.get("/items/a/similar?n=1")[1]["generation"] == G2)
    assert flipped
    status, answer = server.get("/items/a/similar?n=1")
    assert (status, answer["generation"], items(answer)) == (200, G2, ["z"])
    # b has no G2 cell (an incremental pass left it): its G1 cell is the newest <= G2.
    status, answer = server.get("/items/b/similar?n=1")
    assert (answer["generation"], items(answer)) == (G2, ["a"])
    assert items(server.get("/recommendations?user=nobody&n=1")[1]) == ["q"]
    # The cache holds rows of both generations under their own keys.
    assert len(server.app[CACHE]) >= 2


def test_answers_stay_right_when_the_vocabulary_is_renewed(seeded):
    live = serve(seeded, vocabulary_limit=2)  # every request renews it
    try:
        for _ in range(3):
            assert items(live.get("/recommendations?user=u1&n=3")[1]) == ["c", "d", "e"]
            assert items(live.get("/items/b/similar")[1]) == ["a", "c", "e"]
    finally:
        live.stop()


def test_no_generation_yet_is_503(fresh_stack):
    live = serve(fresh_stack)
    try:
        status, error = live.get("/recommendations?user=u1")
        assert (status, error["error"], error["generation"]) == (503, "no_generation", None)
        status, error = live.get("/readyz")
        assert (status, error["error"]) == (503, "not_ready")
        assert live.get("/healthz") == (200, {"status": "ok", "generation": None})
    finally:
        live.stop()


@pytest.mark.slow
def test_backend_stopped_is_503_then_recovers(stack, tmp_path):
    """Our own emulator (never the session's): stop it, get 503s, restart it, get 200s."""
    port = localstack.free_port()
    emulator = localstack.start_emulator("bigtable", port, tmp_path)
    settings = dataclasses.replace(stack, bigtable_host=emulator.host, prefix="own-")
    live = None

    def seed():
        provision_bigtable(settings)
        write_scores(settings, {"u1": {"a": 2.0, "b": 1.0}})
        write_generation(settings, G1, NEIGHBOURS, popular=POPULAR)

    try:
        seed()
        live = serve(settings)
        assert live.get("/recommendations?user=u1&n=1")[0] == 200
        emulator.stop()
        for path in ("/recommendations?user=u1&n=1", "/readyz"):
            status, error = live.get(path)
            assert (status, error["error"]) == (503, "backend_unavailable"), error
            assert error["generation"] == G1
        assert live.get("/healthz")[0] == 200

        emulator = localstack.start_emulator("bigtable", port, tmp_path)
        seed()  # the emulator keeps its data in memory only
        recovered = wait_for(lambda: live.get("/recommendations?user=u1&n=1")[0] == 200)
        assert recovered
        status, answer = live.get("/recommendations?user=u1&n=1")
        assert items(answer) == ["c"] and live.get("/readyz")[0] == 200
    finally:
        if live:
            live.stop()
        emulator.stop()
