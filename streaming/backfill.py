"""Backfill ``items n:enorm2`` (Σ_u f(r_ui)² for ``schemas.entries.FOLDED``) from the contributions.

Item rows written before the stream folded the transformed entries' norm have no ``n:enorm2``
cell: it reads as 0, and the fold only ever adds f(r_new)² - f(r_old)² to it, so a default
refresh would divide by norms that leave out every older contribution. ``streamsim backfill-norms``
sets each item's value once from its contributions, while the fold keeps running.

Why that is exact with any number of fold writers (the rule of ``streaming.store``, step 2: an
item's stats move only by a commit that checks the row's version). For each item:

1. read the stats row (version v) and complete the intents in it, as a fold would: then the
   ``contributions`` rows hold every change committed up to v (a later commit changes the version);
2. read the item's contributions and sum f(r)² over them, leaving out those an erasure mark makes
   stale (the stats hold none of them; ``streaming.forget``);
3. write the sum with version v + 1, only if the version is still v.

If a fold committed in between, the write misses and the item is read again. A fold that read v
before the write misses its own commit, re-reads, and adds its delta to the backfilled value. So
the value written is exactly that of version v, and every later delta lands on it. Running it
again writes the same sums; a crash leaves each item done or not done. It reads every
contribution of an item once: a one-off maintenance pass, like the refresh's inverted index.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from schemas import entries, layout
from schemas.codecs import encode_double, encode_int64
from schemas.rows import decode_contribution, decode_item
from streaming.store import MAX_CONFLICT_ROUNDS, FoldStore, _applied, _versioned  # the fold's own write
from streamsim.runtime.bigtable import WriteError, filters, set_cell
from streamsim.runtime.settings import Settings

#: Items per round of reads and conditional writes.
PAGE = 500
_STATS = filters.chain(
    filters.families(layout.ITEM_STATS, layout.INTENTS, layout.ERASED),
    filters.newest(),
)
_VERSION = filters.column(layout.ITEM_STATS, layout.ITEM_VERSION)


@dataclasses.dataclass
class BackfillSummary:
    items: int = 0
    #: Items whose stored value differed from the sum (by more than rounding).
    changed: int = 0
    contributions: int = 0
    #: Writes that found the item changed by a fold meanwhile (then read again).
    conflicts: int = 0


def entry_norm2(settings: Settings, *, progress: Callable[[int], None] | None = None) -> BackfillSummary:
    """Set every item's ``n:enorm2`` from its contributions (module docstring)."""
    store = FoldStore(settings)
    summary = BackfillSummary()
    for page in _pages(store):
        _backfill(store, page, summary)
        summary.items += len(page)
        if progress is not None:
            progress(len(page))
    return summary


def _pages(store: FoldStore) -> Iterator[list[str]]:
    """Every item with a stats row, PAGE at a time, range by range (``layout.salted_ranges``)."""
    page: list[str] = []
    only_keys = filters.chain(filters.column(layout.ITEM_STATS, layout.ITEM_VERSION), filters.strip_values())
    for start, end in layout.salted_ranges(16):
        for key, _ in store.items.read_rows(start=start, end=end, row_filter=only_keys):
            page.append(layout.id_from_row_key(key))
            if len(page) == PAGE:
                yield page
                page = []
    if page:
        yield page


def _backfill(store: FoldStore, items: list[str], summary: BackfillSummary) -> None:
    todo = items
    for _ in range(MAX_CONFLICT_ROUNDS):
        rows = {
            layout.id_from_row_key(key): decode_item(row)
            for key, row in store.items.read_rows([layout.item_row_key(i) for i in todo], row_filter=_STATS)
        }
        if store._complete_intents(rows):
            continue  # read again: the versions still stand, the intents are gone
        sums = dict.fromkeys(rows, 0.0)
        prefixes = {layout.item_prefix(item): item for item in rows}
        for key, row in store.contributions.read_rows(prefixes=prefixes, row_filter=filters.newest()):
            item, user = layout.ids_from_pair_key(key)
            r, stamp = decode_contribution(row)
            if rows[item].erased.get(layout.user_token(user), 0) > layout.stamp_epoch(stamp):
                continue  # erased: the stats hold none of it
            sums[item] += entries.FOLDED.square(r)
            summary.contributions += 1
        conditionals = [
            _versioned(
                layout.item_row_key(item),
                _VERSION,
                row.version,
                [
                    set_cell(layout.ITEM_STATS, layout.ENTRY_NORM2, encode_double(sums[item])),
                    set_cell(layout.ITEM_STATS, layout.ITEM_VERSION, encode_int64(row.version + 1)),
                ],
            )
            for item, row in rows.items()
        ]
        matched = store.items.check_and_mutate_many(conditionals)
        conflicted = []
        for (item, row), conditional, ok in zip(rows.items(), conditionals, matched):
            if not _applied(conditional, ok):
                conflicted.append(item)
            elif abs(row.entry_norm2 - sums[item]) > 1e-9 * max(1.0, sums[item]):
                summary.changed += 1
        if not conflicted:
            return
        summary.conflicts += len(conflicted)
        todo = conflicted
    raise WriteError(f"{len(todo)} items kept changing during {MAX_CONFLICT_ROUNDS} rounds, e.g. {todo[0]}")
