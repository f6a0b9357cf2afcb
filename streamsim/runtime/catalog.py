"""Catalogue writes through the ``schemas`` layout: the item's ``m:`` cells and the change log.

Both writers of the catalogue (``streamsim catalog FILE`` and catalogue updates on the
stream) come here. A change is written twice, with the same cells stamped with the
update's time: on the item's ``items`` row (what a server loads at start; the newest
stamp wins, so updates may land in any order) and as a row of the change log in
``meta`` (what a running server follows, keyed by the time of writing). Values are
absolute, so a retried or repeated write changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from schemas import codecs, layout
from schemas.events import CatalogUpdate
from streamsim.runtime.bigtable import Tables, entry, set_cell


def _cells(family: str, update: CatalogUpdate) -> list:
    micros = update.ts_ms * 1000
    cells = []
    if update.category is not None:
        cells.append(set_cell(family, layout.CATEGORY, codecs.encode_text(update.category), micros))
    if update.available is not None:
        cells.append(set_cell(family, layout.AVAILABLE, codecs.encode_available(update.available), micros))
    return cells


def write_catalog(tables: Tables, updates: Iterable[CatalogUpdate], *, written_ms: int | None = None) -> int:
    """Write ``updates`` (items rows, then the log); returns how many were written."""
    updates = list(updates)
    if not updates:
        return 0
    tables.items.mutate(entry(layout.item_row_key(u.item), _cells(layout.CATALOG, u)) for u in updates)
    # After the rows: a server that starts meanwhile loads the rows and then
    # reads the log from before its load began, so it misses nothing either way.
    # The log key's time is taken now, just before its write, so a follower that
    # re-reads a few seconds behind its position sees it however long the rows took.
    written_ms = int(time.time() * 1000) if written_ms is None else written_ms
    tables.meta.mutate(
        entry(layout.catalog_log_key(written_ms, u.item), _cells(layout.CATALOG_LOG, u)) for u in updates
    )
    return len(updates)
