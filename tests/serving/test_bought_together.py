"""Bought together and buy again on a real server: events through the fold, a real refresh
pass (Spark ``local[2]``), then the routes against brute-force oracles; hidden items never
come back; bad input is a 400."""

from __future__ import annotations

import math
import time

import pytest

from batch import bought
from batch.refresh import PassOptions, run_pass
from schemas import Event, EventType, Weights
from schemas.events import CatalogUpdate
from serving import buy_again
from streaming.store import FoldStore, fold_batch
from streamsim.runtime.bigtable import open_tables
from streamsim.runtime.catalog import write_catalog
from streamsim.runtime.seeding import write_generation
from tests.serving.live import G1, NEIGHBOURS, POPULAR, items, serve
from tests.support.bought_oracles import bought_together_oracle, crafted_stream

DAY = 86_400_000


def _fold(settings, events):
    store = FoldStore(settings)
    for offset in range(0, len(events), 40):
        fold_batch(store, events[offset : offset + 40], Weights())


def _hide(settings, item: str) -> None:
    write_catalog(open_tables(settings), [CatalogUpdate(item, None, False, 1_000)])


@pytest.fixture
def refreshed(spark, fresh_stack):
    """The crafted stream folded, one full pass published; (settings, oracle lists, pass stats)."""
    events, purchases = crafted_stream(seed=11)
    _fold(fresh_stack, events)
    options = PassOptions(full=True)
    stats = run_pass(spark, fresh_stack, options)
    assert stats["flipped"]
    return fresh_stack, bought_together_oracle(purchases, bought.WINDOW_MS, 2, options.params.top_k), stats


def _split(answer: dict) -> tuple[dict[str, float], list[dict]]:
    together = {e["item"]: e["score"] for e in answer["items"] if e["source"] == "bought-together"}
    return together, [e for e in answer["items"] if e["source"] != "bought-together"]


def test_bought_together_equals_the_co_purchase_oracle_and_never_browsed_together(refreshed):
    settings, oracle, stats = refreshed
    listed = sorted(i for i, v in oracle.items() if v)
    hidden = oracle[listed[0]][0][0]  # the best partner of one item: on at least one list
    _hide(settings, hidden)
    live = serve(settings)
    try:
        for item in listed:
            status, answer = live.get(f"/items/{item}/bought-together?n=50")
            assert status == 200 and answer["generation"] == stats["generation"] and answer["item"] == item
            together, fill = _split(answer)
            expected = {j: s for j, s in oracle[item] if j != hidden}
            assert together == pytest.approx(expected, rel=1e-12)
            scores = [e["score"] for e in answer["items"] if e["source"] == "bought-together"]
            assert scores == sorted(scores, reverse=True)
            assert {e["source"] for e in fill} <= {"popular"}
            assert hidden not in items(answer) and item not in items(answer)
        # Browsed together by every user, bought by some, never together: only the fill.
        for item in ("x1", "x2"):
            status, answer = live.get(f"/items/{item}/bought-together?n=5")
            assert status == 200 and _split(answer)[0] == {} and len(answer["items"]) == 5
        for answer in (live.get(f"/items/{i}/bought-together?n=50")[1] for i in listed):
            assert not {"x1", "x2"} & set(_split(answer)[0])

        # A basket: the sum of its items' lists, its own items and hidden ones left out.
        basket = listed[:3]
        expected: dict[str, float] = {}
        for item in basket:
            for j, s in oracle[item]:
                if j not in basket and j != hidden:
                    expected[j] = expected.get(j, 0.0) + s
        status, answer = live.post("/bought-together", {"items": basket, "n": 50})
        assert status == 200 and answer["generation"] == stats["generation"] and answer["arm"] == "default"
        assert _split(answer)[0] == pytest.approx(expected, rel=1e-12)
        assert not set(basket) & set(items(answer)) and hidden not in items(answer)
        status, short = live.post("/bought-together", {"items": basket, "n": 2, "exclude": [items(answer)[0]]})
        assert status == 200 and items(short) == items(answer)[1:3]

        # Unknown items: as /similar (404); in a basket they add nothing.
        status, error = live.get("/items/zzz/bought-together")
        assert status == 404 and error["error"] == "unknown_item"
        status, answer = live.post("/bought-together", {"items": ["zzz"], "n": 3})
        assert status == 200 and {e["source"] for e in answer["items"]} == {"popular"}
    finally:
        live.stop()


@pytest.fixture
def server_with_purchases(fresh_stack):
    """One user's purchases through the fold, and a generation with repurchase statistics."""
    now = int(time.time() * 1000)
    history = [
        ("milk", now - 10 * DAY),
        ("milk", now - 3 * DAY),  # due: 3 days ago, a 3-day habit
        ("soap", now - DAY),  # just bought, a 30-day habit
        ("eggs", now - 12 * DAY),  # overdue: 12 days, a 3-day habit
        ("tv", now - 100 * DAY),  # nobody buys a tv twice
        ("bread", now - 2 * DAY),  # hidden
    ]
    events = [Event(f"p{k}", "me", item, EventType.PURCHASE, ts) for k, (item, ts) in enumerate(history)]
    _fold(fresh_stack, events + [Event("b0", "me", "jam", EventType.BROWSE, now - DAY)])
    stats = {
        "milk": (10, 8, 3 * DAY),
        "soap": (10, 8, 30 * DAY),
        "eggs": (5, 3, 3 * DAY),
        "tv": (20, 0, 0),
        "bread": (10, 9, 2 * DAY),
        "jam": (10, 9, DAY),
    }
    write_generation(fresh_stack, G1, NEIGHBOURS, popular=POPULAR, repurchase=stats)
    _hide(fresh_stack, "bread")
    live = serve(fresh_stack)
    yield live, now
    live.stop()


def test_buy_again_ranks_by_repurchase_rate_and_timing(server_with_purchases):
    live, now = server_with_purchases
    status, answer = live.get("/users/me/buy-again?n=10")
    assert status == 200 and answer["generation"] == G1 and answer["user"] == "me"
    # milk: others 9 buyers, 7 repeat -> 7/10, due (x = 1); eggs: 3/5, x = 4 -> 4^-1/2;
    # soap: 8/10, x = 1/30 -> (1/30)e^(29/30). tv: no repeat buyer; bread: hidden; jam: browsed.
    expected = {"milk": 0.7, "eggs": 0.6 * 0.5, "soap": 0.8 * (1 / 30) * math.exp(29 / 30)}
    assert items(answer) == ["milk", "eggs", "soap"]
    assert {e["item"]: e["score"] for e in answer["items"]} == pytest.approx(expected, rel=1e-3)
    assert {e["source"] for e in answer["items"]} == {"buy-again"}
    assert answer["items"][0]["last_purchase_ms"] == now - 3 * DAY
    assert items(live.get("/users/me/buy-again?n=1")[1]) == ["milk"]
    assert items(live.get("/users/me/buy-again?exclude=milk")[1]) == ["eggs", "soap"]
    status, nobody = live.get("/users/nobody/buy-again")
    assert status == 200 and nobody["items"] == []


def test_the_timing_factor_peaks_at_the_typical_interval():
    assert buy_again.timing(1.0) == 1.0 and buy_again.timing(0.0) == 0.0
    assert buy_again.timing(0.5) < buy_again.timing(0.9) < 1.0 > buy_again.timing(2.0) > buy_again.timing(8.0)


@pytest.mark.parametrize(
    ("method", "path", "body", "fragment"),
    [
        ("GET", "/items/a/bought-together?n=0", None, "n must be"),
        ("GET", "/items/a/bought-together?top=3", None, "unknown parameter"),
        ("POST", "/bought-together", {"items": []}, "non-empty"),
        ("POST", "/bought-together", {"items": ["a"], "n": "3"}, "n must be"),
        ("POST", "/bought-together", {"items": ["a"], "explain": True}, "unknown parameter"),
        ("POST", "/bought-together", [1], "JSON object"),
        ("GET", "/users/me/buy-again?n=abc", None, "n must be"),
        ("GET", "/users/" + "u" * 129 + "/buy-again", None, "limit is 128"),
    ],
)
def test_bad_input_is_a_400(server, method, path, body, fragment):
    status, error = server.post(path, body) if method == "POST" else server.get(path)
    assert status == 400 and error["error"] == "bad_parameter" and fragment in error["detail"], error
