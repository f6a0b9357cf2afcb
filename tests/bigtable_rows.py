"""Write state straight into the emulator through the ``schemas`` layout.

For tests of the readers (refresh, serving) that should not depend on the
stream or a refresh pass to set up their input.
"""
from __future__ import annotations

from google.cloud.bigtable.row import DirectRow

from schemas import codecs, layout
from streamsim.clients import bigtable_instance
from streamsim.settings import Settings


def _commit(table, rows: list[DirectRow]) -> None:
    for start in range(0, len(rows), 1000):
        for status in table.mutate_rows(rows[start : start + 1000]):
            assert status.code == 0, status


def write_scores(settings: Settings, scores: dict[str, dict[str, float]], *, mark_dirty: bool = True,
                 index: bool = True) -> None:
    """Users' r_ui, user norm², and item norm²/users from them (absolute values).

    With ``index`` (as the stream does) each item row also gets ``c:<user>`` =
    ``encode_contribution(r_ui, 1)`` for its users; without, the items look like state
    written before the inverted index existed.
    """
    instance = bigtable_instance(settings)
    users, items = instance.table(settings.tables.users), instance.table(settings.tables.items)
    user_rows, norms, counts, holders = [], {}, {}, {}
    for user, row in scores.items():
        mutation = DirectRow(layout.user_row_key(user), users)
        for item, r in row.items():
            mutation.set_cell(layout.SCORES, layout.score_qualifier(item), codecs.encode_double(r))
            norms[item] = norms.get(item, 0.0) + r * r
            counts[item] = counts.get(item, 0) + 1
            holders.setdefault(item, []).append((user, r))
        mutation.set_cell(layout.USER_STATS, layout.NORM2, codecs.encode_double(sum(r * r for r in row.values())))
        user_rows.append(mutation)
    _commit(users, user_rows)
    item_rows = []
    for item, norm2 in norms.items():
        mutation = DirectRow(layout.item_row_key(item), items)
        mutation.set_cell(layout.ITEM_STATS, layout.NORM2, codecs.encode_double(norm2))
        mutation.set_cell(layout.ITEM_STATS, layout.USERS, codecs.encode_int64(counts[item]))
        if index:
            for user, r in holders[item]:
                mutation.set_cell(layout.CONTRIBUTIONS, layout.contribution_qualifier(user),
                                  codecs.encode_contribution(r, 1))
        if mark_dirty:
            mutation.set_cell(layout.DIRTY, layout.DIRTY_MARK, b"")
        item_rows.append(mutation)
    _commit(items, item_rows)


def write_generation(
    settings: Settings,
    generation: int,
    neighbours: dict[str, list[tuple[str, float]]],
    *,
    popular: list[tuple[str, float]] = (),
    flip: bool = True,
) -> None:
    """Similarity rows and the popularity list of one generation, then the pointer."""
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(layout.generation_cell_micros(generation) / 1e6, tz=timezone.utc)
    instance = bigtable_instance(settings)
    similarities, meta = instance.table(settings.tables.similarities), instance.table(settings.tables.meta)
    rows = []
    for item, pairs in neighbours.items():
        mutation = DirectRow(layout.item_row_key(item), similarities)
        mutation.set_cell(layout.NEIGHBOURS, layout.TOP, codecs.encode_neighbours(pairs), timestamp=when)
        rows.append(mutation)
    _commit(similarities, rows)
    popular_row = DirectRow(layout.POPULAR_ROW, meta)
    popular_row.set_cell(layout.NEIGHBOURS, layout.TOP, codecs.encode_neighbours(popular), timestamp=when)
    _commit(meta, [popular_row])
    if flip:
        pointer = DirectRow(layout.GENERATION_ROW, meta)
        pointer.set_cell(layout.GENERATION, layout.CURRENT, codecs.encode_int64(generation))
        _commit(meta, [pointer])
