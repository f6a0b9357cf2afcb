"""A tuned configuration's query knobs on the real server: recency decay, repeats, popularity blend."""

from __future__ import annotations

import pytest

from schemas.tuned import QueryKnobs, TunedConfig
from serving.blend import blend
from serving.config import ServingConfig
from streamsim.app.cli import main
from tests.serving.live import items, serve


def tuned(tmp_path, **knobs) -> str:
    path = tmp_path / "tuned.json"
    path.write_text(TunedConfig("cosine", {}, QueryKnobs(**knobs)).to_json())
    return str(path)


def test_recency_decay_and_repeats(seeded, tmp_path):
    live = serve(seeded, tuned_config=tuned(tmp_path, recency_decay=0.5, allow_repeats=True))
    try:
        # browsed a then b (0.5 each); a, the older, weighs 0.25: a = .9*.5, c = .5*.25 + .4*.5,
        # b = .9*.25, e = .3*.5, d = .25*.25; the session's own a and b may come back.
        status, answer = live.get("/recommendations?browsed=a,b&n=5")
        assert status == 200 and items(answer) == ["a", "c", "b", "e", "d"]
        assert [e["score"] for e in answer["items"]] == pytest.approx([0.45, 0.325, 0.225, 0.15, 0.0625])
        status, strict = live.get("/recommendations?browsed=a,b&n=5&allow_repeats=false")
        assert status == 200 and items(strict) == ["c", "e", "d", "p1", "p2"]
        status, posted = live.post(
            "/recommendations", {"items": [{"item": "a"}, {"item": "b"}], "n": 5, "allow_repeats": False}
        )
        assert status == 200 and posted["items"] == strict["items"]
        status, error = live.get("/recommendations?user=u1&allow_repeats=true")
        assert status == 400 and "sessions" in error["detail"]
    finally:
        live.stop()


def test_popularity_blend(seeded, tmp_path):
    live = serve(seeded, tuned_config=tuned(tmp_path, popularity_blend=0.5))
    try:
        # a's neighbours b .9, c .5, d .25 (over .9) blended with p1 100, c 50, p2 10 (over 100).
        status, answer = live.get("/recommendations?browsed=a&n=5")
        assert status == 200 and items(answer) == ["c", "b", "p1", "d", "p2"]
        assert answer["items"][0]["score"] == pytest.approx(0.5 * 0.25 / 0.45 + 0.5 * 0.5)
        assert [e["source"] for e in answer["items"]] == ["similar", "similar", "popular", "similar", "popular"]
    finally:
        live.stop()


def test_blend_by_hand():
    ranked = blend(["x", "y"], [2.0, 1.0], ["y", "z"], [10.0, 5.0], 0.5, 3, excluded={"z"})
    assert ranked == [("y", pytest.approx(0.75)), ("x", pytest.approx(0.5))]
    assert [item for item, _ in blend(["x"], [1.0], ["y", "z"], [10.0, 5.0], 1.0, 3)] == ["y", "z", "x"]


def test_a_bad_config_is_one_line(stack, tmp_path, capsys):
    with pytest.raises(ValueError, match="no such file"):
        ServingConfig(settings=stack, tuned_config=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"similarity": "cosine", "serving": {"popularity_blend": 3}}')
    assert main(["serve", "--config", str(bad), "--bigtable-host", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "popularity_blend must be within [0, 1]" in err


def test_user_histories_follow_their_click_order(seeded, tmp_path):
    """``?user=`` with a tuned recency decay reads the user's ``recent`` sequence."""
    from schemas import Event, EventType
    from streaming.store import FoldStore

    live = serve(seeded, tuned_config=tuned(tmp_path, recency_decay=0.5))
    try:
        # u1 holds a (r 2) and b (r 1).
        store = FoldStore(seeded)
        store.append_recent(
            [Event("r1", "u1", "b", EventType.BROWSE, 1_000), Event("r2", "u1", "a", EventType.BROWSE, 2_000)]
        )
        # a clicked last: a 2, b .5 -> c 1.2, d .5, e .15.
        status, answer = live.get("/recommendations?user=u1&n=3")
        assert status == 200 and items(answer) == ["c", "d", "e"]
        assert [e["score"] for e in answer["items"]] == pytest.approx([1.2, 0.5, 0.15])
        # Then b again: b weighs 1, a 2 * .5 -> c .9, e .3, d .25.
        store.append_recent([Event("r3", "u1", "b", EventType.BROWSE, 3_000)])
        status, answer = live.get("/recommendations?user=u1&n=3")
        assert status == 200 and items(answer) == ["c", "e", "d"]
        assert [e["score"] for e in answer["items"]] == pytest.approx([0.9, 0.3, 0.25])
    finally:
        live.stop()
