"""Catalogue updates on the stream: written beside the fold, malformed ones dead-lettered intact."""

from __future__ import annotations

import pytest

from schemas import layout
from schemas.events import CatalogUpdate, Event, EventType
from schemas.rows import decode_catalog, decode_catalog_log
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
