"""A seeded synthetic clickstream that looks like a shop's.

- Items have power-law popularity (Zipf-like weights within each category) and
  belong to categories, so that co-occurrence carries signal, as in a shop
  where people browse within a few departments.
- User activity is lognormal: most users have a handful of events, a few have
  hundreds.
- Each browse may lead to a basket and a basket to a purchase of the same item
  (a funnel), giving roughly 85 : 11 : 4 browse : basket : purchase.
- A small share of messages break the contract on purpose (not JSON, missing
  field, unknown type, bad timestamp) so the dead-letter path has work to show.

The same arguments always give the same messages.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import numpy as np

from schemas import Event, EventType

#: 2026-01-01T00:00:00Z: synthetic events start here, a few seconds apart.
START_MS = 1_767_225_600_000


@dataclasses.dataclass(frozen=True)
class ClickstreamShape:
    users: int = 2_000
    items: int = 1_000
    events: int = 20_000
    categories: int = 25
    #: Zipf exponent of item popularity inside a category.
    popularity_exponent: float = 1.1
    basket_rate: float = 0.13
    purchase_rate: float = 0.35
    malformed_rate: float = 0.002
    #: Share of events on one item, ``item-hot`` (a flash sale; 0: none).
    hot_item_share: float = 0.0
    seed: int = 7


#: A shop at scale: a million users, a long tail of items, and one item that about a
#: third of the traffic goes to (205k distinct users after a million events; at 0.3 it
#: was 183k, short of the 200k the fold must be shown to handle).
SHOP_AT_SCALE = ClickstreamShape(users=1_000_000, items=200_000, events=1_000_000, categories=200, hot_item_share=0.35)


def clickstream(shape: ClickstreamShape = ClickstreamShape()) -> Iterator[bytes]:
    """Message bodies, in event-time order: ``shape.events`` of them in all."""
    rng = np.random.default_rng(shape.seed)
    category_of = rng.integers(0, shape.categories, size=shape.items)
    members = [np.flatnonzero(category_of == c) for c in range(shape.categories)]
    members = [m for m in members if len(m)]
    # Cumulative weights + searchsorted: one O(log n) draw per event.
    item_cdf = [np.cumsum(1.0 / np.arange(1, len(m) + 1) ** shape.popularity_exponent) for m in members]
    user_cdf = np.cumsum(rng.lognormal(mean=0.0, sigma=1.2, size=shape.users))
    favourite = rng.integers(0, len(members), size=(shape.users, 3))

    emitted = 0
    ts = START_MS
    while emitted < shape.events:
        user = int(np.searchsorted(user_cdf, rng.random() * user_cdf[-1], side="right"))
        category = int(favourite[user, rng.integers(0, 3)])
        cdf = item_cdf[category]
        item = int(members[category][np.searchsorted(cdf, rng.random() * cdf[-1], side="right")])
        name = "item-hot" if shape.hot_item_share and rng.random() < shape.hot_item_share else f"item-{item}"
        funnel = [EventType.BROWSE]
        if rng.random() < shape.basket_rate:
            funnel.append(EventType.BASKET)
            if rng.random() < shape.purchase_rate:
                funnel.append(EventType.PURCHASE)
        for event_type in funnel:
            if emitted >= shape.events:
                break
            ts += int(rng.integers(1, 5000))
            event = Event(f"syn-{shape.seed}-{emitted}", f"user-{user}", name, event_type, ts)
            if rng.random() < shape.malformed_rate:
                yield _break(event, int(rng.integers(0, 4)))
            else:
                yield event.to_json()
            emitted += 1


def _break(event: Event, how: int) -> bytes:
    body = json.loads(event.to_json())
    if how == 0:
        return event.to_json()[:-7]  # truncated: not JSON
    if how == 1:
        del body["item"]
    elif how == 2:
        body["type"] = "wishlist"
    else:
        body["ts"] = "last tuesday"
    return json.dumps(body).encode()


def write_jsonl(path: str, shape: ClickstreamShape = ClickstreamShape()) -> int:
    """Write the clickstream as JSON lines (``streamsim publish --format jsonl``)."""
    count = 0
    with open(path, "wb") as out:
        for message in clickstream(shape):
            out.write(message.replace(b"\n", b" ") + b"\n")
            count += 1
    return count
