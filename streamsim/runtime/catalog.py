"""Catalogue writes through the ``schemas`` layout: the items' ``m:`` cells and the change log.

Both writers of the catalogue (``streamsim catalog FILE`` and catalogue updates on the
stream) come here. A change is written twice, with the same values and the update's
time: as cells of the item's ``items`` row, stamped with that time (what a server
loads at start; the newest stamp wins, so updates may land in any order), and inside
a row of the change log in ``meta`` (what a running server follows, keyed by the time
of writing, one row per :data:`schemas.layout.CATALOG_LOG_BATCH` changes, so a
follower reads a big file's changes in a thousandth of the rows). Values are
absolute, so a retried or repeated write changes nothing: a retried batch rewrites
its row, or writes a second one with the same changes, which apply as once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable

from schemas import codecs, layout
from schemas.events import CatalogUpdate
from streamsim.runtime.bigtable import Tables, entry, set_cell


def _cells(update: CatalogUpdate) -> list:
    micros = update.ts_ms * 1000
    cells = []
    if update.category is not None:
        cells.append(set_cell(layout.CATALOG, layout.CATEGORY, codecs.encode_text(update.category), micros))
    if update.available is not None:
        cells.append(set_cell(layout.CATALOG, layout.AVAILABLE, codecs.encode_available(update.available), micros))
    return cells


def _log_row(written_ms: int, updates: list[CatalogUpdate]):
    value = codecs.encode_catalog_changes((u.item, u.category, u.available, u.ts_ms * 1000) for u in updates)
    batch = hashlib.blake2b(value, digest_size=8).hexdigest()
    # Stamped with the write time: the log's max_age counts from when it was
    # written, so an old update is still there for followers to read.
    return entry(
        layout.catalog_log_key(written_ms, batch),
        [set_cell(layout.CATALOG_LOG, layout.CATALOG_CHANGES, value, written_ms * 1000)],
    )


def write_catalog(tables: Tables, updates: Iterable[CatalogUpdate], *, written_ms: int | None = None) -> int:
    """Write ``updates`` (items rows, then the log); returns how many were written."""
    updates = list(updates)
    if not updates:
        return 0
    tables.items.mutate(entry(layout.item_row_key(u.item), _cells(u)) for u in updates)
    # After the rows: a server that starts meanwhile loads the rows and then
    # reads the log from before its load began, so it misses nothing either way.
    # The log key's time is taken now, just before its write, so a follower that
    # re-reads a few seconds behind its position sees it however long the rows took.
    written_ms = int(time.time() * 1000) if written_ms is None else written_ms
    step = layout.CATALOG_LOG_BATCH
    tables.meta.mutate(_log_row(written_ms, updates[k : k + step]) for k in range(0, len(updates), step))
    return len(updates)
