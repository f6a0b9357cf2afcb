"""Merchandising rules: parsing refuses every mistake with one line, the rule arrays follow
the catalogue and the vocabulary, and each rule changes a known answer on a real server
(the catalogue filters of tests/serving/test_catalog.py's shop) without a restart."""

from __future__ import annotations

import json
import os
import random
import time

import numpy as np
import pytest

from schemas import Event, EventType, Weights
from schemas.rows import CatalogCells
from schemas.tuned import QueryKnobs
from serving.catalog import Catalogue
from serving.config import ServingConfig
from serving.generation import Generation
from serving.rules import MAX_RULES_BYTES, NO_RULES, PINNED, RulesError, RulesFile, apply, parse_rules, read_rules
from serving.session_knn import SessionKnn
from streaming.store import FoldStore, fold_batch
from streamsim.runtime.seeding import write_generation, write_purchases
from tests.serving.live import G1, items, serve, wait_for
from tests.serving.shop import NEIGHBOURS, POPULAR
from tests.serving.shop import write_catalogue as _catalogue

# --- parsing ------------------------------------------------------------------------

GOOD = {
    "boost": [{"category": "shoes", "factor": 2.0}, {"items": ["a", "b"], "factor": 0.5}],
    "pin": [{"route": "similar", "item": "x", "position": 1}, {"route": "*", "item": "y", "position": 3}],
    "cap_per_category": {"*": 3, "similar": 2},
    "exclude_categories": ["adult"],
}


def test_a_good_file_reads_as_written(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(GOOD))
    rules = read_rules(path)
    assert rules.category_factors == {"shoes": 2.0} and rules.item_factors == {"a": 0.5, "b": 0.5}
    assert rules.factor("a", "shoes") == 1.0 and rules.factor("z", None) == 1.0
    assert (rules.cap("similar"), rules.cap("user"), rules.cap("trending")) == (2, 3, 3)
    assert [(p.item, p.position) for p in rules.pins_for("similar")] == [("x", 1), ("y", 3)]
    assert [p.item for p in rules.pins_for("user")] == ["y"]
    assert rules.excludes("adult") and not rules.excludes(None)
    assert parse_rules(b"{}") == NO_RULES


@pytest.mark.parametrize(
    "text, where",
    [
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        (b"{not json", "not valid UTF-8 JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"boosts": []}', "boosts: unknown key"),
        (b'{"boost": {}}', "boost: must be a list"),
        (b'{"boost": [{"category": "s", "factor": 0}]}', "boost[0].factor: must be a finite number > 0"),
        (b'{"boost": [{"category": "s", "factor": -1}]}', "boost[0].factor"),
        (b'{"boost": [{"category": "s", "factor": NaN}]}', "boost[0].factor"),
        (b'{"boost": [{"category": "s", "factor": Infinity}]}', "boost[0].factor"),
        (b'{"boost": [{"category": "s", "factor": "2"}]}', "boost[0].factor"),
        (b'{"boost": [{"category": "s", "factor": true}]}', "boost[0].factor"),
        (b'{"boost": [{"category": "s"}]}', "boost[0].factor: missing"),
        (b'{"boost": [{"factor": 2}]}', "boost[0]: give one of category or items"),
        (b'{"boost": [{"category": "s", "items": ["a"], "factor": 2}]}', "boost[0]: give one of"),
        (b'{"boost": [{"items": "a", "factor": 2}]}', "boost[0].items: must be a list"),
        (b'{"boost": [{"items": [1], "factor": 2}]}', "boost[0].items[0]: must be a non-empty string"),
        (b'{"boost": [{"category": "s", "factor": 2, "why": 1}]}', "boost[0].why: unknown key"),
        (b'{"pin": [{"route": "similar", "item": "x", "position": 0}]}', "pin[0].position: must be an integer"),
        (b'{"pin": [{"route": "similar", "item": "x", "position": 1001}]}', "pin[0].position"),
        (b'{"pin": [{"route": "similar", "item": "x", "position": 1.5}]}', "pin[0].position"),
        (b'{"pin": [{"route": "home", "item": "x", "position": 1}]}', "pin[0].route: 'home' is not a route"),
        (b'{"pin": [{"route": "similar", "item": "", "position": 1}]}', "pin[0].item"),
        (
            b'{"pin": [{"route": "user", "item": "x", "position": 1}, {"route": "user", "item": "y", "position": 1}]}',
            "pin[1]: position 1 of route 'user' is pinned twice",
        ),
        (b'{"cap_per_category": [3]}', "cap_per_category: must be an object"),
        (b'{"cap_per_category": {"home": 3}}', "cap_per_category.home: 'home' is not a route"),
        (b'{"cap_per_category": {"*": 0}}', "cap_per_category.*: must be an integer in 1.."),
        (b'{"exclude_categories": "adult"}', "exclude_categories: must be a list"),
        (b'{"exclude_categories": [null]}', "exclude_categories[0]"),
        (
            b'{"boost": [{"category": "adult", "factor": 2}], "exclude_categories": ["adult"]}',
            "boost: category 'adult' is also in exclude_categories",
        ),
    ],
)
def test_each_mistake_is_one_error_naming_the_file_and_the_key(tmp_path, text, where):
    path = tmp_path / "bad.json"
    path.write_bytes(text)
    with pytest.raises(RulesError) as caught:
        read_rules(path)
    message = str(caught.value)
    assert message.startswith(f"rules file {path}: ") and where in message and "\n" not in message


def test_a_file_too_large_or_missing_is_refused(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b'{"exclude_categories": [' + b'"x",' * (MAX_RULES_BYTES // 4) + b'"x"]}')
    with pytest.raises(RulesError, match="larger than"):
        read_rules(path)
    with pytest.raises(RulesError, match="No such file"):
        read_rules(tmp_path / "nope.json")


def test_the_config_refuses_a_bad_file_at_load(seeded, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"boost": [{"category": "s", "factor": 0}]}')
    with pytest.raises(ValueError, match="boost\\[0\\].factor"):
        ServingConfig(settings=seeded, rules=str(path))
    path.write_text(json.dumps(GOOD))
    assert ServingConfig.from_env(seeded, {"STREAMSIM_SERVE_RULES": str(path)}).start_rules.cap("similar") == 2


# --- the pass over a ranked list, for the routes that rank in Python ----------------


def test_apply_multiplies_excludes_caps_and_pins_in_the_documented_order():
    rules = parse_rules(
        json.dumps(
            {
                "boost": [{"category": "hats", "factor": 3}, {"items": ["s1"], "factor": 0.1}],
                "pin": [{"route": "trending", "item": "p", "position": 2}],
                "cap_per_category": {"trending": 2},
                "exclude_categories": ["adult"],
            }
        ).encode()
    )
    category = {"s1": "shoes", "s2": "shoes", "s3": "shoes", "h1": "hats", "x": "adult", "p": "shoes"}.get
    ranked = [
        {"item": item, "score": score, "source": "trending"}
        for item, score in (("s1", 9.0), ("x", 8.0), ("s2", 5.0), ("s3", 4.0), ("h1", 2.0), ("n", 1.0))
    ]
    got = apply(rules, "trending", ranked, 5, category)
    # h1 6.0, s2 5.0, s3 4.0, n 1.0, s1 0.9 (x excluded); the pin p (shoes) takes a shoes slot of the cap.
    assert [(e["item"], e["source"]) for e in got] == [
        ("h1", "trending"),
        ("p", PINNED),
        ("s2", "trending"),
        ("n", "trending"),
    ]
    assert got[0]["score"] == 6.0 and ranked[4]["score"] == 2.0  # the caller's entries are not changed
    # A pin that fails the route's filters is not shown; other routes are untouched by route rules.
    assert "p" not in items({"items": apply(rules, "trending", ranked, 5, category, lambda item: item != "p")})
    assert [e["item"] for e in apply(rules, "recent", ranked, 3, category)] == ["h1", "s2", "s3"]
    assert apply(NO_RULES, "recent", ranked, 2, category) == ranked[:2]
    # A route's pin and a "*" pin at one position: the route's first; pins beyond a short list at its end.
    both = parse_rules(
        b'{"pin": [{"route": "*", "item": "x1", "position": 1}, {"route": "recent", "item": "x2", "position": 1},'
        b' {"route": "recent", "item": "x3", "position": 8}]}'
    )
    short = [{"item": "r", "score": 1.0, "source": "recent"}]
    assert [e["item"] for e in apply(both, "recent", short, 9, lambda item: None)] == ["x2", "x1", "r", "x3"]


# --- the rule arrays beside the catalogue's ----------------------------------------


def test_rule_arrays_follow_the_catalogue_the_vocabulary_and_new_rules():
    rng = random.Random(7)
    catalogue = Catalogue()
    names = ["c0", "c1", "c2", "c3"]
    universe = [f"i{k}" for k in range(200)]
    for item in universe[:150]:
        catalogue.apply(item, CatalogCells(rng.choice(names), rng.random() > 0.2, 1, 1))
    generation = Generation(G1, [], np.empty(0))
    vocabulary = generation.vocabulary
    rules = parse_rules(
        b'{"boost": [{"category": "c1", "factor": 2}, {"category": "c9", "factor": 5},'
        b' {"items": ["i3", "i160"], "factor": 0.5}], "exclude_categories": ["c2"]}'
    )
    for step in range(40):
        vocabulary.indices(rng.sample(universe, 8))  # the vocabulary grows
        if step % 3 == 0:  # the catalogue changes, sometimes with a category new to it
            catalogue.apply(
                rng.choice(universe), CatalogCells(rng.choice(names + ["c9"]), rng.random() > 0.3, 2 + step, 2 + step)
            )
        if step % 2:  # a request without the rule arrays sees the change first: they must not miss it
            generation.facts.arrays(vocabulary, catalogue)
        if step == 20:
            rules = parse_rules(b'{"boost": [{"category": "c2", "factor": 3}], "exclude_categories": ["c1"]}')
        category, blocked, factor = generation.facts.ruled(vocabulary, catalogue, rules)
        for index, item in enumerate(vocabulary.ids):
            name = catalogue.category_of(item)
            assert blocked[index] == (item in catalogue.hidden or rules.excludes(name)), (step, item)
            assert factor[index] == rules.factor(item, name), (step, item)
            assert category[index] == catalogue.category_code(item)


# --- a real server ------------------------------------------------------------------


class RulesOnDisk:
    """A rules file a live server follows; each write waits until the server has read it."""

    def __init__(self, path, live=None):
        self.path, self.live, self.writes = path, live, 0

    def write(self, rules, *, refused: bool = False) -> None:
        fresh = self.path.with_suffix(".tmp")
        fresh.write_bytes(rules if isinstance(rules, bytes) else json.dumps(rules).encode())
        os.replace(fresh, self.path)  # atomic, as a deployment should
        if self.live is None:
            return
        if refused:
            failures = f"streamsim_serving_rules_load_failures_total {float(self._failures + 1)}"
            self._failures += 1
            assert wait_for(lambda: failures in self.live.metrics())
        else:
            self.writes += 1
            loads = f"streamsim_serving_rules_loads_total {float(self.writes)}"
            assert wait_for(lambda: loads in self.live.metrics())

    _failures = 0


@pytest.fixture
def ruled(shop, tmp_path):
    rules = RulesOnDisk(tmp_path / "rules.json")
    rules.write({})
    live = serve(shop, rules=str(rules.path))
    rules.live = live
    yield live, rules
    live.stop()


def _pairs(answer) -> list[tuple[str, str]]:
    return [(entry["item"], entry["source"]) for entry in answer["items"]]


def test_each_rule_changes_a_known_answer_without_a_restart(ruled):
    live, rules = ruled
    # The shop: a's neighbours b .9 (shoes), c .8 (hats), d .7 (shoes), e .6 (hats); the popular
    # fill p1 (hats), c, p2 (shoes), f (no category). u1's history is a alone.
    similar, session, user = "/items/a/similar", "/recommendations?browsed=a&n={n}", "/recommendations?user=u1&n={n}"
    assert items(live.get(similar)[1]) == ["b", "c", "d", "e"]
    assert items(live.get(session.format(n=6))[1]) == ["b", "c", "d", "e", "p1", "p2"]

    rules.write({"boost": [{"category": "hats", "factor": 2.0}]})  # boost reorders
    answer = live.get(similar)[1]
    assert items(answer) == ["c", "e", "b", "d"]
    assert [e["score"] for e in answer["items"]] == pytest.approx([1.6, 1.2, 0.9, 0.7])
    for path in (session, user):
        assert items(live.get(path.format(n=4))[1]) == ["c", "e", "b", "d"]

    rules.write({"boost": [{"items": ["b"], "factor": 0.5}]})  # bury sinks
    assert items(live.get(similar)[1]) == ["c", "d", "e", "b"]
    for path in (session, user):
        assert items(live.get(path.format(n=4))[1]) == ["c", "d", "e", "b"]

    rules.write({"cap_per_category": {"*": 1}})  # at most one of a category; f has none
    assert items(live.get(similar)[1]) == ["b", "c"]  # /similar has no fill
    for path in (session, user):
        assert items(live.get(path.format(n=6))[1]) == ["b", "c", "f"]
    rules.write({"cap_per_category": {"*": 1, "similar": 2}})  # a route's own cap
    assert items(live.get(similar)[1]) == ["b", "c", "d", "e"]
    assert items(live.get(session.format(n=6))[1]) == ["b", "c", "f"]

    rules.write({"exclude_categories": ["hats"]})  # never shown, fill included
    assert items(live.get(similar)[1]) == ["b", "d"]
    for path in (session, user):
        assert items(live.get(path.format(n=6))[1]) == ["b", "d", "p2", "f"]
    assert items(live.post("/recommendations", {"items": [{"item": "a"}], "n": 6})[1]) == ["b", "d", "p2", "f"]

    rules.write(
        {
            "pin": [
                {"route": "similar", "item": "p2", "position": 1},
                {"route": "session", "item": "e", "position": 1},
                {"route": "user", "item": "f", "position": 2},
                {"route": "user", "item": "z", "position": 9},  # beyond n: not shown
            ]
        }
    )
    assert _pairs(live.get(similar + "?n=3")[1]) == [("p2", "pinned"), ("b", "similar"), ("c", "similar")]
    pinned = live.get(session.format(n=3))[1]
    assert _pairs(pinned) == [("e", "pinned"), ("b", "similar"), ("c", "similar")]
    assert pinned["items"][0]["score"] == pytest.approx(0.5 * 0.6)  # a ranked item keeps its score (browse 0.5)
    assert _pairs(live.get(user.format(n=3))[1]) == [("b", "similar"), ("f", "pinned"), ("c", "similar")]
    # A pin passes the answer's filters: not the query item, not an excluded item, in the category asked.
    assert "p2" not in items(live.get(similar + "?exclude=p2")[1])
    assert "e" not in items(live.get(session.format(n=3) + "&category=shoes")[1])
    assert items(live.get("/items/a/similar?same_category=true")[1]) == ["p2", "b", "d"]  # p2 is shoes
    explained = live.get(session.format(n=3) + "&explain=true")[1]
    assert explained["items"][0]["source"] == "pinned" and explained["items"][0]["because"][0]["item"] == "a"


def test_a_hidden_item_is_never_brought_back_by_a_pin_or_a_boost(ruled, shop):
    live, rules = ruled
    _catalogue(shop, {"d": (None, False), "p2": (None, False)}, ts_ms=2_000)
    assert wait_for(lambda: "d" not in items(live.get("/items/a/similar")[1]))
    rules.write(
        {
            "boost": [{"items": ["d", "p2"], "factor": 100.0}],
            "pin": [{"route": "*", "item": "d", "position": 1}, {"route": "*", "item": "p2", "position": 2}],
            "cap_per_category": {"*": 5},
        }
    )
    for path in ("/items/a/similar", "/recommendations?browsed=a&n=8", "/recommendations?user=u1&n=8"):
        shown = items(live.get(path)[1])
        assert "d" not in shown and "p2" not in shown and shown[0] == "b", path
    # Shown again by the catalogue, the same rules pin it.
    _catalogue(shop, {"d": (None, True)}, ts_ms=3_000)
    assert wait_for(lambda: items(live.get("/items/a/similar")[1])[:1] == ["d"])


def test_a_bad_change_keeps_the_rules_in_force_and_is_counted(ruled):
    live, rules = ruled
    rules.write({"exclude_categories": ["hats"]})
    assert items(live.get("/items/a/similar")[1]) == ["b", "d"]
    rules.write(b'{"exclude_categories": ["hats"], "boost": [{"category": "shoes", "factor": 0}]}', refused=True)
    assert items(live.get("/items/a/similar")[1]) == ["b", "d"]
    rules.write(b"{half a file", refused=True)
    rules.path.unlink()
    assert wait_for(lambda: "streamsim_serving_rules_load_failures_total 3.0" in live.metrics())
    assert items(live.get("/items/a/similar")[1]) == ["b", "d"]
    rules.write({})  # a good file again takes effect
    assert items(live.get("/items/a/similar")[1]) == ["b", "c", "d", "e"]


def test_a_popularity_blend_obeys_the_rules(shop, tmp_path):
    rules = RulesOnDisk(tmp_path / "rules.json")
    rules.write({"exclude_categories": ["hats"], "boost": [{"items": ["f"], "factor": 4.0}]})
    live = serve(shop, rules=str(rules.path), knobs=QueryKnobs(popularity_blend=0.5))
    try:
        # Neighbours b .9, d .7 (c, e are hats) over .9; popular p2 10, f 5 over 10 (p1, c are hats):
        # b .5, p2 .5, d .39, f .25 -> f 1.0 with its boost.
        answer = live.get("/recommendations?browsed=a&n=4")[1]
        assert items(answer) == ["f", "b", "p2", "d"]
        assert [e["score"] for e in answer["items"]] == pytest.approx([1.0, 0.5, 0.5, 0.5 * 0.7 / 0.9])
        # f ranked 4th before its boost: the multiplier comes before the n best are taken.
        assert items(live.get("/recommendations?browsed=a&n=2")[1]) == ["f", "b"]
    finally:
        live.stop()


def test_session_knn_answers_obey_the_rules(seeded, tmp_path):
    store = FoldStore(seeded)
    sessions = {"s1": ["q", "x1", "x2"], "s2": ["q", "x1", "x3"], "s3": ["q", "x1"], "s4": ["q", "x2"]}
    events, clock = [], G1
    for session, clicks in sessions.items():
        for item in clicks:
            clock += 1000
            events.append(Event(f"{session}-{clock}", f"user-{session}", item, EventType.BROWSE, clock, session))
    store.append_sessions(events)
    _catalogue(seeded, {"x1": ("adult", True), "x2": ("shoes", True), "x3": ("shoes", True)})
    rules = RulesOnDisk(tmp_path / "rules.json")
    rules.write({})
    live = serve(seeded, session_knn=SessionKnn(k=6, sample=12), session_cache_seconds=0.0, rules=str(rules.path))
    rules.live = live
    try:
        plain = live.get("/recommendations?browsed=q&n=3")[1]
        votes = {e["item"]: e["score"] for e in plain["items"] if e["source"] == "sessions"}
        assert list(votes)[:1] == ["x1"] and {"x2", "x3"} <= set(votes)
        rules.write({"exclude_categories": ["adult"], "boost": [{"items": ["x3"], "factor": 10.0}]})
        answer = live.get("/recommendations?browsed=q&n=3")[1]
        voted = [(e["item"], e["score"]) for e in answer["items"] if e["source"] == "sessions"]
        assert voted == [("x3", pytest.approx(votes["x3"] * 10)), ("x2", pytest.approx(votes["x2"]))]
        assert "x1" not in items(answer)
        rules.write({"cap_per_category": {"session": 1}, "pin": [{"route": "session", "item": "x1", "position": 1}]})
        assert _pairs(live.get("/recommendations?browsed=q&n=2")[1])[:2] == [("x1", "pinned"), ("x2", "sessions")]
    finally:
        live.stop()


def test_a_rules_file_follower_reads_a_change_once(tmp_path, caplog):
    path = tmp_path / "rules.json"
    path.write_text("{}")
    follower = RulesFile(str(path), NO_RULES)
    assert not follower.poll()  # read again at the first poll: the same rules
    assert not follower.poll() and follower.loads == 0
    path.write_text('{"cap_per_category": {"*": 2}}')
    os.utime(path, ns=(1, 1))
    assert follower.poll() and follower.current.cap("user") == 2
    path.write_text('{"cap_per_category": {"*": 0}}')
    os.utime(path, ns=(2, 2))
    assert not follower.poll() and not follower.poll()
    assert follower.failures == 1 and follower.current.cap("user") == 2
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"rules file {path}: cap_per_category.*: must be an integer in 1..1000, got 0; the rules in force are kept"
    ]


@pytest.mark.slow
def test_every_worker_of_a_served_process_follows_the_file(shop, tmp_path):
    """``python -m serving --workers 2 --rules FILE``: the flag reaches each worker, and a change
    reaches both (each re-reads the file; /metrics gathers every worker's counts)."""
    import subprocess
    import sys
    import urllib.request

    from streamsim.app import localstack

    path = tmp_path / "rules.json"
    path.write_text('{"exclude_categories": ["hats"]}')
    port = localstack.free_port()
    command = [sys.executable, "-m", "serving", "--port", str(port), "--workers", "2", "--poll-seconds", "0.2"]
    command += ["--rules", str(path), "--bigtable-host", shop.bigtable_host, "--project", shop.project]
    command += ["--instance", shop.instance, "--prefix", shop.prefix, "--state-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def get(route: str):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{route}", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    try:
        assert wait_for(lambda: get("/readyz"), timeout=60)
        # Many connections: both workers answer some of them.
        assert all(items(json.loads(get("/items/a/similar"))) == ["b", "d"] for _ in range(20))
        fresh = tmp_path / "rules.tmp"
        fresh.write_text('{"exclude_categories": ["shoes"]}')
        os.replace(fresh, path)
        read = [f'streamsim_serving_rules_loads_total{{worker="{k}"}} 1.0' for k in (0, 1)]
        assert wait_for(lambda: all(line in (get("/metrics") or "") for line in read), timeout=30)
        assert all(items(json.loads(get("/items/a/similar"))) == ["c", "e"] for _ in range(20))
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert "Traceback" not in errors


def test_the_scenario_routes_follow_the_rules(ruled, shop):
    """Recently viewed keeps its order (exclusion and cap only); trending takes every rule."""
    live, rules = ruled
    clicks = ["a", "c", "b", "e", "d"]  # shoes, hats, shoes, hats, shoes: newest first d e b c a
    FoldStore(shop).append_recent(
        [Event(f"v{k}", "u1", item, EventType.BROWSE, 1_000 * (k + 1)) for k, item in enumerate(clicks)]
    )
    now = int(time.time() * 1000)
    burst = [
        Event(f"t{item}{k}", f"t{item}u{k}", item, EventType.BROWSE, now - k)
        for item, size in (("b", 30), ("c", 20))
        for k in range(size)
    ]
    fold_batch(FoldStore(shop), burst, Weights())
    assert items(live.get("/users/u1/recent")[1]) == ["d", "e", "b", "c", "a"]
    assert items(live.get("/trending")[1]) == ["b", "c"]  # (30 + 5) / 5 = 7 against 5

    rules.write({"boost": [{"category": "hats", "factor": 3.0}], "cap_per_category": {"recent": 1}})
    assert items(live.get("/users/u1/recent")[1]) == ["d", "e"]  # one per category, order kept
    assert items(live.get("/trending")[1]) == ["c", "b"]  # 15 against 7
    rules.write({"exclude_categories": ["hats"], "pin": [{"route": "trending", "item": "d", "position": 1}]})
    assert items(live.get("/users/u1/recent")[1]) == ["d", "b", "a"]
    assert _pairs(live.get("/trending")[1]) == [("d", PINNED), ("b", "trending")]


def test_bought_together_and_buy_again_follow_the_rules(ruled, shop):
    live, rules = ruled
    day = 86_400_000
    now = int(time.time() * 1000)
    # a's bought-together list: b .9 (shoes), c .8 (hats), d .7 (shoes), e .6 (hats); u1 bought d
    # (rebought by half its buyers, every day) a day ago and e (the same) a day and a half ago.
    write_generation(
        shop,
        G1,
        NEIGHBOURS,
        popular=POPULAR,
        bought={"a": [("b", 0.9), ("c", 0.8), ("d", 0.7), ("e", 0.6)]},
        repurchase={"d": (10, 5, day), "e": (10, 5, day)},
    )
    write_purchases(shop, {"u1": [("d", now - day), ("e", now - 3 * day // 2)]})
    assert items(live.get("/items/a/bought-together?n=4")[1]) == ["b", "c", "d", "e"]
    assert items(live.get("/users/u1/buy-again")[1]) == ["d", "e"]  # due now, then overdue
    rules.write({"boost": [{"category": "hats", "factor": 2.0}], "cap_per_category": {"bought-together": 1}})
    assert items(live.get("/items/a/bought-together?n=2")[1]) == ["c", "b"]  # 1.6 (hats), .9; one of each
    assert items(live.get("/users/u1/buy-again")[1]) == ["e", "d"]
    rules.write({"exclude_categories": ["hats"], "pin": [{"route": "buy-again", "item": "e", "position": 1}]})
    assert "c" not in items(live.get("/items/a/bought-together?n=4")[1])
    assert items(live.get("/users/u1/buy-again")[1]) == ["d"]  # e's category is excluded: no pin
    rules.write({"pin": [{"route": "buy-again", "item": "e", "position": 1}]})
    assert _pairs(live.get("/users/u1/buy-again")[1]) == [("e", PINNED), ("d", "buy-again")]
