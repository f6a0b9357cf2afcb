"""Catalogue updates on the stream: written beside the fold, malformed ones dead-lettered intact."""

from __future__ import annotations

import time

import pytest

from schemas import layout
from schemas.events import MAX_CLOCK_SKEW_MS, CatalogUpdate, Event, EventType
from schemas.rows import decode_catalog, decode_catalog_log
from streaming import state
from streamsim.app.cli import main as streamsim_main
from streamsim.runtime.bigtable import open_tables
from tests.streaming.test_dead_letters import _publish_raw, _stream_until_idle
from tests.support.pubsub import drain


@pytest.mark.slow
def test_catalog_updates_are_written_and_malformed_ones_dead_lettered(fresh_stack):
    malformed = b'{"kind": "catalog", "item": "sku-9", "available": "soon", "ts": 5}'
    _publish_raw(
        fresh_stack,
        [
            (CatalogUpdate("sku-1", "shoes", True, 2_000).to_json(), {}),
            (CatalogUpdate("sku-1", None, False, 3_000).to_json(), {}),
            (CatalogUpdate("sku-1", "hats", None, 1_000).to_json(), {}),  # older: loses wherever it lands
            (malformed, {"origin": "stock-system"}),
            (Event("e1", "u1", "sku-1", EventType.BASKET, 1_000).to_json(), {}),
        ],
    )

    _stream_until_idle(fresh_stack)

    tables = open_tables(fresh_stack)
    stored = decode_catalog(tables.items.read_row(layout.item_row_key("sku-1")))
    assert (stored.category, stored.available) == ("shoes", False)
    logged = [
        item
        for _, row in tables.meta.read_rows(prefix=layout.CATALOG_LOG_PREFIX)
        for item, _ in decode_catalog_log(row)
    ]
    assert logged and set(logged) == {"sku-1"}
    # The event beside them was folded as usual.
    assert tables.users.read_row(layout.user_item_key("u1", "sku-1"))
    [letter] = drain(fresh_stack, fresh_stack.pubsub.dead_letter_subscription)
    assert letter.data == malformed
    assert letter.attributes["error"] == "bad_catalog" and letter.attributes["origin"] == "stock-system"
    assert drain(fresh_stack, fresh_stack.pubsub.events_subscription) == []


@pytest.mark.slow
def test_a_far_future_time_is_dead_lettered_and_pins_nothing(fresh_stack, tmp_path):
    """Year 9999 once made an item's availability final (a later file "succeeded" and
    changed nothing), and an event of that time would stay the newest in its user's
    ``recent`` row for good. Beyond MAX_CLOCK_SKEW_MS ahead, both are dead-lettered."""
    now = int(time.time() * 1000)
    year_9999 = CatalogUpdate("sku-2", None, True, 253402214400000).to_json()
    ahead = Event("e-ahead", "u9", "sku-3", EventType.BROWSE, now + MAX_CLOCK_SKEW_MS + 60_000).to_json()
    _publish_raw(
        fresh_stack,
        [
            (year_9999, {}),
            (ahead, {}),
            (Event("e-now", "u9", "sku-4", EventType.BROWSE, now).to_json(), {}),
            (CatalogUpdate("sku-5", "hats", False, now + MAX_CLOCK_SKEW_MS - 60_000).to_json(), {}),  # within
        ],
    )

    _stream_until_idle(fresh_stack)

    letters = {
        letter.data: letter.attributes["error"]
        for letter in drain(fresh_stack, fresh_stack.pubsub.dead_letter_subscription)
    }
    assert letters == {year_9999: "future_timestamp", ahead: "future_timestamp"}
    assert state.scan_recent(fresh_stack) == {"u9": ["sku-4"]}
    tables = open_tables(fresh_stack)
    assert decode_catalog(tables.items.read_row(layout.item_row_key("sku-5"))).available is False
    # A file hides sku-2 now: nothing pinned it.
    path = tmp_path / "hide.csv"
    path.write_text("item,category,available\nsku-2,c1,false\n")
    assert streamsim_main(["catalog", str(path), "--no-progress", *fresh_stack.to_argv()]) == 0
    assert decode_catalog(tables.items.read_row(layout.item_row_key("sku-2"))).available is False
