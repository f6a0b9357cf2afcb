"""``GET /users/{user}/recent``: the user's recently viewed items, against a real server.

The ``recent`` row is written as the stream writes it (``FoldStore.append_recent``), so the
answer is checked against the order the events were published in, catalogue filters applied.
"""

from __future__ import annotations

import pytest

from schemas import Event, EventType
from schemas.attribution import decode
from streaming.store import FoldStore
from tests.serving.live import items, wait_for
from tests.serving.shop import HATS, SHOES
from tests.serving.shop import write_catalogue as _catalogue

#: Published in this order (event times rising): the user's distinct items, newest first,
#: are e, a, c, b (b, a and c were clicked again later, d never by u1).
CLICKS = ["b", "a", "c", "b", "a", "e", "a"]


@pytest.fixture
def clicked(shop):
    events = [Event(f"r{k}", "u1", item, EventType.BROWSE, 1_000 * (k + 1)) for k, item in enumerate(CLICKS)]
    # Published out of order, as a redelivery or a second writer would: the row orders them.
    FoldStore(shop).append_recent(events[3:] + events[:3] + events[2:4])
    return shop


def _oracle(clicks: list[str]) -> list[str]:
    return list(dict.fromkeys(reversed(clicks)))


def test_recent_items_follow_the_published_order(clicked, shop_server):
    status, answer = shop_server.get("/users/u1/recent")
    assert status == 200 and items(answer) == _oracle(CLICKS) == ["a", "e", "b", "c"]
    assert answer["user"] == "u1" and {e["source"] for e in answer["items"]} == {"recent"}
    # score: the last click's time (s), falling down the list.
    assert [e["score"] for e in answer["items"]] == [7.0, 6.0, 4.0, 3.0]
    assert decode(answer["attribution"]).route == "recent"
    assert items(shop_server.get("/users/u1/recent?n=2")[1]) == ["a", "e"]
    assert items(shop_server.get("/users/u1/recent?exclude=e,b")[1]) == ["a", "c"]
    assert items(shop_server.get(f"/users/u1/recent?category={HATS}")[1]) == ["e", "c"]
    assert items(shop_server.get(f"/users/u1/recent?category={SHOES}")[1]) == ["a", "b"]


def test_an_unknown_user_has_an_empty_list(clicked, shop_server):
    status, answer = shop_server.get("/users/nobody/recent")
    assert status == 200 and answer["items"] == []


def test_a_hidden_item_never_comes_back(clicked, shop_server):
    _catalogue(clicked, {"e": (HATS, False)}, ts_ms=2_000)
    assert wait_for(lambda: items(shop_server.get("/users/u1/recent")[1]) == ["a", "b", "c"])


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/users/u1/recent?n=0", "n must be"),
        ("/users/u1/recent?users=u2", "unknown parameter"),
        ("/users/%FF/recent", "not valid UTF-8"),
        ("/users/" + "x" * 129 + "/recent", "limit is 128"),
    ],
)
def test_bad_requests_are_json_400(shop_server, path, detail):
    status, error = shop_server.get(path)
    assert status == 400 and error["error"] == "bad_parameter" and detail in error["detail"]
