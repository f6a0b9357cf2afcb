"""Catalogue filters on every route, against a real server over the Bigtable emulator.

The catalogue is written as both of its writers write it (``streamsim.runtime.catalog``);
hiding is checked on a running server, with no refresh in between.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from schemas.rows import CatalogCells
from schemas.tuned import QueryKnobs, TunedConfig
from serving.catalog import Catalogue, ItemFacts
from serving.generation import Generation
from serving.neighbours import NeighbourCache, NeighbourRow
from serving.recommender import Recommender
from serving.scoring import MAX_N
from tests.serving.live import G1, items, serve, wait_for
from tests.serving.shop import SHOES
from tests.serving.shop import write_catalogue as _catalogue


def test_hidden_items_are_never_returned_from_any_route(shop):
    _catalogue(shop, {"c": (None, False), "p1": (None, False)}, ts_ms=2_000)
    live = serve(shop)
    try:
        session = live.get("/recommendations?browsed=a&n=6")[1]
        assert items(session) == ["b", "d", "e", "p2", "f"]  # c hidden; fill skips p1, c
        post = live.post("/recommendations", {"items": [{"item": "a"}], "n": 6})[1]
        assert items(post) == items(session)
        user = live.get("/recommendations?user=u1&n=6")[1]
        assert items(user) == items(session)
        assert items(live.get("/items/a/similar")[1]) == ["b", "d", "e"]
        assert items(live.get("/recommendations?user=nobody&n=3")[1]) == ["p2", "f"]
        assert "streamsim_serving_catalog_hidden_items 2.0" in live.metrics()
    finally:
        live.stop()


def test_hiding_takes_effect_without_a_refresh(shop_server, shop):
    assert items(shop_server.get("/items/a/similar")[1]) == ["b", "c", "d", "e"]
    _catalogue(shop, {"d": (None, False)}, ts_ms=2_000)
    assert wait_for(lambda: "d" not in items(shop_server.get("/items/a/similar")[1]))
    answer = shop_server.get("/items/a/similar")[1]
    assert answer["generation"] == G1 and items(answer) == ["b", "c", "e"]
    # An older update arriving late changes nothing; a newer one shows it again.
    _catalogue(shop, {"d": (None, True)}, ts_ms=1_500)
    _catalogue(shop, {"x": (SHOES, True)}, ts_ms=1_500)  # something later in the log to wait for
    assert wait_for(lambda: "streamsim_serving_catalog_items 9.0" in shop_server.metrics())
    assert items(shop_server.get("/items/a/similar")[1]) == ["b", "c", "e"]
    _catalogue(shop, {"d": (None, True)}, ts_ms=3_000)
    assert wait_for(lambda: "d" in items(shop_server.get("/items/a/similar")[1]))


def test_category_restricts_every_recommendation_route_and_fills_from_the_category(shop_server):
    session = shop_server.get("/recommendations?browsed=a&category=shoes&n=4")[1]
    assert [(e["item"], e["source"]) for e in session["items"]] == [
        ("b", "similar"),
        ("d", "similar"),
        ("p2", "popular"),  # the most popular shoes, not the global list's p1
        ("s2", "popular"),
    ]
    post = shop_server.post("/recommendations", {"items": [{"item": "a"}], "category": ["shoes"], "n": 4})[1]
    assert post["items"] == session["items"]
    user = shop_server.get("/recommendations?user=u1&category=shoes&n=4")[1]
    assert items(user) == items(session)
    both = shop_server.get("/recommendations?browsed=a&category=shoes,hats&n=5")[1]
    assert items(both) == ["b", "c", "d", "e", "p1"]
    assert shop_server.get("/recommendations?browsed=a&category=nothing&n=3")[1]["items"] == []
    assert shop_server.get("/recommendations?browsed=a&category=")[0] == 400
    text = shop_server.metrics()
    assert 'streamsim_serving_filter_requests_total{filter="category"} 5.0' in text


def test_similar_in_the_same_category(shop_server, shop):
    assert items(shop_server.get("/items/a/similar?same_category=true")[1]) == ["b", "d"]
    assert items(shop_server.get("/items/a/similar?same_category=false")[1]) == ["b", "c", "d", "e"]
    # b's neighbour f has no category: b is shoes, so only a qualifies.
    assert items(shop_server.get("/items/b/similar?same_category=1")[1]) == ["a"]
    assert shop_server.get("/items/a/similar?same_category=maybe")[0] == 400
    assert 'streamsim_serving_filter_requests_total{filter="same_category"} 2.0' in shop_server.metrics()


# --- the filters against a brute-force oracle -----------------------------------


class _Watcher:
    def __init__(self, generation):
        self.current = generation


def test_filtered_answers_match_a_brute_force_oracle():
    rng = random.Random(3)
    universe = [f"i{k}" for k in range(300)]
    catalogue = Catalogue()
    categories = [f"c{k}" for k in range(6)]
    for item in universe:
        catalogue.apply(item, CatalogCells(rng.choice(categories), rng.random() > 0.3, 1, 1))
    catalogue.loaded = True
    generation = Generation(G1, [], np.empty(0))
    recommender = Recommender(
        None, _Watcher(generation), NeighbourCache(10), catalogue, None, max_history=9, vocabulary_limit=10**6
    )
    for trial in range(60):
        history = rng.sample(universe, rng.randint(1, 8))
        lists = {j: rng.sample(universe, rng.randint(0, 60)) for j in history}
        weights = np.array([rng.uniform(0.1, 5) for _ in history])
        sims = {j: np.round(np.array([rng.random() for _ in lists[j]]), 2) for j in history}
        rows = [NeighbourRow(generation.vocabulary.indices(lists[j]), sims[j]) for j in history]
        wanted = rng.sample(categories, rng.randint(1, 2)) if trial % 2 else None
        codes = None if wanted is None else catalogue.codes(wanted)
        n = rng.choice([1, 5, 20, 100])
        if trial % 7 == 0:  # the catalogue changes between requests
            catalogue.apply(rng.choice(universe), CatalogCells(None, rng.random() > 0.5, 0, 2 + trial))
        got = recommender._score(generation, history, weights, rows, n, set(history), False, codes)

        scores: dict[str, float] = {}
        for j, w in zip(history, weights):
            for item, s in zip(lists[j], sims[j]):
                scores[item] = scores.get(item, 0.0) + w * s
        index = generation.vocabulary.get
        ranked = sorted(
            (i for i in scores if i not in history and i not in catalogue.hidden),
            key=lambda i: (-scores[i], index(i)),
        )
        if wanted is not None:
            ranked = [i for i in ranked if catalogue.category_code(i) in set(codes.tolist())]
        assert [e["item"] for e in got] == ranked[:n][:MAX_N]
        assert np.allclose([e["score"] for e in got], [scores[i] for i in ranked[:n]])


def test_item_facts_follow_the_catalogue_and_the_vocabulary():
    catalogue = Catalogue()
    catalogue.apply("x", CatalogCells("c1", True, 1, 1))
    generation = Generation(G1, [], np.empty(0))
    facts: ItemFacts = generation.facts
    generation.vocabulary.indices(["x", "y"])
    category, hidden = facts.arrays(generation.vocabulary, catalogue)
    assert category[:2].tolist() == [0, -1] and hidden[:2].tolist() == [False, False]
    assert catalogue.apply("x", CatalogCells(None, False, 0, 5))
    assert not catalogue.apply("x", CatalogCells(None, True, 0, 4))  # older: ignored
    catalogue.apply("y", CatalogCells("c2", None, 6, 0))
    category, hidden = facts.arrays(generation.vocabulary, catalogue)
    assert category[:2].tolist() == [0, 1] and hidden[:2].tolist() == [True, False]
    fresh = Catalogue()
    fresh.apply("y", CatalogCells(None, False, 0, 9))
    catalogue.replace(fresh)  # a reload: the arrays are rebuilt
    category, hidden = facts.arrays(generation.vocabulary, catalogue)
    assert category[:2].tolist() == [-1, -1] and hidden[:2].tolist() == [False, True]


def test_a_popularity_blend_keeps_to_the_filters(shop, tmp_path):
    """A tuned blend mixes popular items into the ranking: never hidden ones, and with a
    category only that category's (its own popularity head, not the global list)."""
    _catalogue(shop, {"c": (None, False), "p1": (None, False)}, ts_ms=2_000)
    config = tmp_path / "tuned.json"
    config.write_text(TunedConfig("cosine", {}, QueryKnobs(popularity_blend=0.5)).to_json())
    live = serve(shop, tuned_config=str(config))
    try:
        # Neighbours b .9, d .7, e .6 (c hidden) over .9; visible popular p2 10, f 5 over 10 (p1 hidden).
        # Half each: b .5, p2 .5 (a tie keeps neighbours first), d .39, e .33, f .25.
        answer = live.get("/recommendations?browsed=a&n=6")[1]
        assert items(answer) == ["b", "p2", "d", "e", "f"]
        # Shoes: neighbours b, d; the shoes' head by users p2 3, s2 2, b 1 (a is the session's own).
        shoes = live.get("/recommendations?browsed=a&category=shoes&n=6")[1]
        assert items(shoes) == ["b", "p2", "d", "s2"]
        assert shoes["items"][0]["score"] == pytest.approx(0.5 + 0.5 / 3)
    finally:
        live.stop()
