"""A small shop with a catalogue (two categories, popular items per category): the ``shop``
and ``shop_server`` fixtures (``conftest.py``) build it for the tests of every route's filters."""

from __future__ import annotations

from schemas.events import CatalogUpdate
from streamsim.runtime.bigtable import open_tables
from streamsim.runtime.catalog import write_catalog
from streamsim.runtime.seeding import write_generation, write_scores
from streamsim.runtime.settings import Settings
from tests.serving.live import G1

SHOES, HATS = "shoes", "hats"
CATEGORIES = {"a": SHOES, "b": SHOES, "d": SHOES, "p2": SHOES, "s2": SHOES, "c": HATS, "e": HATS, "p1": HATS}
NEIGHBOURS = {
    "a": [("b", 0.9), ("c", 0.8), ("d", 0.7), ("e", 0.6)],
    "b": [("a", 0.9), ("c", 0.5), ("f", 0.4)],
}
POPULAR = [("p1", 100.0), ("c", 50.0), ("p2", 10.0), ("f", 5.0)]
#: Users per item (the per-category fill ranks by them): p2 and s2 are the popular shoes.
HOLDERS = {"p2": 3, "s2": 2, "b": 1, "p1": 4, "e": 1}


def write_catalogue(settings: Settings, changes: dict, ts_ms: int = 1_000) -> None:
    """``{item: (category, available)}`` written as the catalogue's writers write it."""
    updates = [CatalogUpdate(item, category, available, ts_ms) for item, (category, available) in changes.items()]
    write_catalog(open_tables(settings), updates)


def build_shop(settings: Settings) -> Settings:
    scores: dict[str, dict[str, float]] = {"u1": {"a": 2.0}}
    for item, count in HOLDERS.items():
        for k in range(count):
            scores.setdefault(f"h{item}{k}", {})[item] = 1.0
    write_scores(settings, scores)
    write_generation(settings, G1, NEIGHBOURS, popular=POPULAR)
    write_catalogue(settings, {item: (category, True) for item, category in CATEGORIES.items()})
    return settings
