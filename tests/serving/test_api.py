"""The HTTP API on a real server on loopback, reading the Bigtable emulator.

State is seeded through ``schemas`` (``streamsim.runtime.seeding``), as the
stream and the refresh pass would write it; the server and the fixtures are
in ``tests/serving/live.py`` and ``conftest.py``.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from aiohttp import web

from schemas import attribution, codecs, layout
from schemas.events import Weights
from serving import errors, params
from serving.app import CACHE
from serving.openapi import ERROR_CODES, document
from serving.recommender import NoGeneration, UnknownItem
from serving.store import BackendUnavailable
from streamsim.app import localstack
from streamsim.runtime.bigtable import delete_cells, entry, open_tables, set_cell
from streamsim.runtime.provision import provision_bigtable
from streamsim.runtime.seeding import write_generation, write_scores
from tests.serving.live import G1, G2, NEIGHBOURS, POPULAR, exchange, items, serve, wait_for


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
    token = attribution.decode(answer.pop("attribution"))
    assert (token.route, token.generation, token.arm, token.config) == ("similar", G1, "default", "default")
    assert status == 200 and answer == {
        "generation": G1,
        "item": "a",
        "arm": "default",
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
    # aiohttp's C parser refuses them before the app (the server answers that
    # as bad_request); its pure-Python parser passes them on surrogate-escaped
    # ("\udcff"), which the id rule refuses (bad_parameter). JSON either way.
    for target in (
        b"/recommendations?user=\xff",
        b"/recommendations?browsed=a,\xed\xa0\x80",
        b"/items/\xff/similar",
        b"/items/a/similar?exclude=\xff",
    ):
        status, headers, payload = exchange(
            server.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status == 400 and headers["content-type"] == "application/json", payload
        assert json.loads(payload)["error"] in ("bad_request", "bad_parameter")


@pytest.mark.parametrize(
    "path",
    [
        "/recommendations?user=%ED%A0%80",  # a UTF-8-shaped surrogate
        "/recommendations?user=%FF",
        "/recommendations?user=u%80",
        "/recommendations?browsed=a,%ED%A0%80",
        "/recommendations?user=u1&exclude=%C0%AF",  # an overlong "/"
        "/recommendations?%FF=1",
        "/items/%ED%A0%80/similar",
        "/items/%FF/similar",
        "/items/a/similar?exclude=%FF%FE",
    ],
)
def test_percent_encoded_bytes_that_are_not_utf8_are_400(server, path):
    # Once decoded leniently as U+FFFD (query) or kept as the literal
    # "%ED%A0%80" (path): a 200 or a 404 about an id nobody sent.
    status, error = server.get(path)
    assert (status, error["error"]) == (400, "bad_parameter"), error
    assert "not valid UTF-8" in error["detail"]


def test_path_ids_are_decoded_as_sent(seeded):
    # %2F is a slash inside the id, %25 a percent sign, + a plus sign.
    decoded = [("a%2Fb", "a/b"), ("%25", "%"), ("a+b", "a+b"), ("%E5%95%86", "商"), ("%zz", "%zz"), ("%61", "a")]
    write_generation(seeded, G2, {**NEIGHBOURS, **{item: [("c", 0.5)] for _, item in decoded}}, popular=POPULAR)
    live = serve(seeded)
    try:
        for raw, item in decoded:
            status, answer = live.get(f"/items/{raw}/similar")
            assert status == 200 and answer["item"] == item, raw
        status, error = live.get("/items/a%2Fc/similar")
        assert (status, error["error"]) == (404, "unknown_item")
    finally:
        live.stop()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"exclude": "b"}, "exclude must be a list"),
        ({"exclude": None}, "exclude must be a list"),
        ({"exclude": ["b", 1]}, "exclude must be a list"),
        ({"n": "3"}, "n must be"),
        ({"n": None}, "n must be"),
        ({"n": 3.5}, "n must be"),
        ({"n": 1e400}, "n must be"),  # inf, as json.dumps writes it: Infinity
        ({"explain": "true"}, "explain must be"),
        ({"explain": 1}, "explain must be"),
    ],
)
def test_json_bodies_are_strict_about_types(server, body, fragment):
    status, error = server.post("/recommendations", {"items": [{"item": "a"}], **body})
    assert (status, error["error"]) == (400, "bad_parameter"), error
    assert fragment in error["detail"]


def test_n_in_json_is_an_integer_as_json_schema_says(server):
    # 2.0 is an integer to JSON Schema (no fraction), so to the server too.
    status, answer = server.post("/recommendations", {"items": [{"item": "a"}], "n": 2.0})
    assert status == 200 and items(answer) == ["b", "c"]


def test_an_empty_exclude_list_excludes_nothing(server):
    status, posted = server.post("/recommendations", {"items": [{"item": "a"}], "n": 2, "exclude": []})
    assert status == 200 and items(posted) == ["b", "c"]
    status, got = server.get("/recommendations?browsed=a&n=2&exclude=")
    assert status == 200 and items(got) == ["b", "c"]
    assert items(server.get("/items/a/similar?n=2&exclude=")[1]) == ["b", "c"]
    # Digits only ASCII ones: int() would take U+0663 ARABIC-INDIC DIGIT THREE.
    assert server.get("/recommendations?user=u1&n=%D9%A3")[0] == 400


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


def _flip_pointer_only(settings, generation: int) -> None:
    """What a pass's last step writes, without the rows before it."""
    tables = open_tables(settings)
    tables.meta.mutate(
        [entry(layout.GENERATION_ROW, [set_cell(layout.GENERATION, layout.CURRENT, codecs.encode_int64(generation))])]
    )


def _not_served(live) -> bool:
    ready, readiness = live.get("/readyz")
    answered, answer = live.get("/recommendations?user=u1&n=1")
    return (ready, readiness["error"], answered, answer["error"]) == (503, "not_ready", 503, "no_generation")


def test_a_pointer_to_a_generation_without_rows_is_not_ready(fresh_stack):
    # The pointer names G1, but the store holds none of its rows (collected,
    # or lost while the pointer was restored): nothing to serve from.
    _flip_pointer_only(fresh_stack, G1)
    live = serve(fresh_stack)
    try:
        assert _not_served(live)
        status, error = live.get("/readyz")
        assert str(G1) in error["detail"] and "no rows" in error["detail"] and error["generation"] is None
        write_generation(fresh_stack, G1, NEIGHBOURS, popular=POPULAR)
        assert wait_for(lambda: live.get("/readyz") == (200, {"status": "ready", "generation": G1}))
        assert items(live.get("/items/a/similar?n=1")[1]) == ["b"]
    finally:
        live.stop()


def test_a_served_generation_whose_pointer_moves_to_nothing_is_not_served(seeded):
    live = serve(seeded)
    try:
        assert live.get("/readyz")[0] == 200 and live.get("/items/a/similar")[0] == 200  # now cached
        _flip_pointer_only(seeded, G1 - 60_000)  # a generation before any rows
        assert wait_for(lambda: _not_served(live))
        status, error = live.get("/items/a/similar")  # not from the cache of a generation gone
        assert (status, error["error"], error["generation"]) == (503, "no_generation", None)
        assert "streamsim_serving_generation_losses_total 1.0" in live.metrics()
        _flip_pointer_only(seeded, G1)
        assert wait_for(lambda: live.get("/readyz") == (200, {"status": "ready", "generation": G1}))
    finally:
        live.stop()


def test_a_served_generation_whose_rows_vanish_is_not_served(seeded):
    # The pointer stays; the generation's rows go (its popularity cell is the
    # marker every pass writes).
    live = serve(seeded)
    try:
        assert live.get("/readyz")[0] == 200
        open_tables(seeded).meta.mutate([entry(layout.POPULAR_ROW, [delete_cells(layout.NEIGHBOURS, layout.TOP)])])
        assert wait_for(lambda: _not_served(live))
        assert f"generation {G1} is gone from the store" in live.get("/readyz")[1]["detail"]
        write_generation(seeded, G1, NEIGHBOURS, popular=POPULAR)  # written again: served again
        assert wait_for(lambda: live.get("/readyz") == (200, {"status": "ready", "generation": G1}))
        assert items(live.get("/recommendations?user=u1&n=1")[1]) == ["c"]
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
        for path in ("/recommendations?user=u1&n=1", "/readyz", "/items/a/bought-together", "/users/u1/buy-again"):
            status, error = live.get(path)
            assert (status, error["error"]) == (503, "backend_unavailable"), error
            assert error["generation"] == G1
        status, error = live.post("/bought-together", {"items": ["b"]})
        assert (status, error["error"]) == (503, "backend_unavailable"), error
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


@pytest.mark.slow
def test_data_lost_while_serving_is_not_ready_then_recovers(stack, tmp_path):
    """The emulator restarts empty under a running server (F4): no ghost generation.

    Once, /readyz stayed ready with the vanished generation, users got
    popular-only answers and cached rows were served on.
    """
    port = localstack.free_port()
    emulator = localstack.start_emulator("bigtable", port, tmp_path)
    settings = dataclasses.replace(stack, bigtable_host=emulator.host, prefix="own-")
    live = None
    try:
        provision_bigtable(settings)
        write_scores(settings, {"u1": {"a": 2.0, "b": 1.0}})
        write_generation(settings, G1, NEIGHBOURS, popular=POPULAR)
        live = serve(settings)
        assert live.get("/readyz") == (200, {"status": "ready", "generation": G1})
        assert live.get("/items/a/similar")[0] == 200  # cached from now on

        emulator.stop()
        emulator = localstack.start_emulator("bigtable", port, tmp_path)
        provision_bigtable(settings)  # the tables are back, empty: every row is lost
        assert wait_for(lambda: _not_served(live)), live.get("/readyz")
        status, error = live.get("/items/a/similar")
        assert (status, error["error"]) == (503, "no_generation")
        assert f"generation {G1} is gone" in error["detail"]
        assert "streamsim_serving_generation_losses_total 1.0" in live.metrics()

        # A pass writes a generation again: served with no restart.
        write_scores(settings, {"u1": {"a": 2.0}})
        write_generation(settings, G2, {"a": [("z", 1.0)]}, popular=[("q", 1.0)])
        assert wait_for(lambda: live.get("/readyz") == (200, {"status": "ready", "generation": G2}))
        status, answer = live.get("/recommendations?user=u1&n=2")
        assert (status, answer["generation"], items(answer)) == (200, G2, ["z", "q"])
    finally:
        if live:
            live.stop()
        emulator.stop()


def test_every_recommendation_answer_names_its_arm_and_attribution(seeded):
    live = serve(seeded, arm="B")
    try:
        assert wait_for(lambda: live.get("/readyz")[0] == 200)
        answers = [
            ("user", live.get("/recommendations?user=u1")[1]),
            ("session", live.get("/recommendations?browsed=a")[1]),
            ("session", live.post("/recommendations", {"items": [{"item": "a", "type": "browse"}]})[1]),
            ("similar", live.get("/items/a/similar")[1]),
            ("bought-together", live.get("/items/a/bought-together")[1]),
            ("bought-together", live.post("/bought-together", {"items": ["a", "b"]})[1]),
            ("recent", live.get("/users/u1/recent")[1]),
            ("buy-again", live.get("/users/u1/buy-again")[1]),
            ("trending", live.get("/trending")[1]),
        ]
        tokens = [attribution.decode(answer["attribution"]) for _, answer in answers]
        assert [t.route for t in tokens] == [route for route, _ in answers]
        assert {t.route for t in tokens} == set(attribution.ROUTES)  # every route a token can name
        assert {(t.arm, answer["arm"]) for t, (_, answer) in zip(tokens, answers)} == {("B", "B")}
        assert {t.generation for t in tokens} == {G1} and len({t.request_id for t in tokens}) == len(answers)
        text = live.metrics()
        assert 'streamsim_serving_answers_total{arm="B",route="session"} 2.0' in text
        assert 'streamsim_serving_answers_total{arm="B",route="user"} 1.0' in text
    finally:
        live.stop()
