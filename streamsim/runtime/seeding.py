"""Write state straight into Bigtable through the ``schemas`` layout.

For tests and benchmarks of the readers (refresh, serving) that should not depend on
the stream or a refresh pass to set up their input, and for seeding large state fast.
Values are absolute, as the fold writes them, so seeding twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas import codecs, layout
from streamsim.runtime.bigtable import entry, open_tables, set_cell
from streamsim.runtime.settings import Settings


def write_scores(
    settings: Settings, scores: Mapping[str, Mapping[str, float]], *, mark_dirty: bool = True, index: bool = True
) -> None:
    """Users' r_ui, user norm², and item norm²/users from them.

    With ``index`` (as the stream does) each item row also gets ``c:<user>`` =
    ``encode_contribution(r_ui, 1)`` for its users; without, the items look like state
    written before the inverted index existed.
    """
    tables = open_tables(settings)
    user_rows, norms, counts, holders = [], {}, {}, {}
    for user, row in scores.items():
        cells = [
            set_cell(layout.SCORES, layout.score_qualifier(item), codecs.encode_double(r)) for item, r in row.items()
        ]
        for item, r in row.items():
            norms[item] = norms.get(item, 0.0) + r * r
            counts[item] = counts.get(item, 0) + 1
            holders.setdefault(item, []).append((user, r))
        cells.append(set_cell(layout.USER_STATS, layout.NORM2, codecs.encode_double(sum(r * r for r in row.values()))))
        user_rows.append(entry(layout.user_row_key(user), cells))
    tables.users.mutate(user_rows)
    item_rows = []
    for item, norm2 in norms.items():
        cells = [
            set_cell(layout.ITEM_STATS, layout.NORM2, codecs.encode_double(norm2)),
            set_cell(layout.ITEM_STATS, layout.USERS, codecs.encode_int64(counts[item])),
        ]
        if index:
            cells += [
                set_cell(layout.CONTRIBUTIONS, layout.contribution_qualifier(user), codecs.encode_contribution(r, 1))
                for user, r in holders[item]
            ]
        if mark_dirty:
            cells.append(set_cell(layout.DIRTY, layout.DIRTY_MARK, b""))
        item_rows.append(entry(layout.item_row_key(item), cells))
    tables.items.mutate(item_rows)


def write_generation(
    settings: Settings,
    generation: int,
    neighbours: Mapping[str, list[tuple[str, float]]],
    *,
    popular: list[tuple[str, float]] = (),
    flip: bool = True,
) -> None:
    """Similarity rows and the popularity list of one generation, then (``flip``) the pointer."""
    when = layout.generation_cell_micros(generation)
    tables = open_tables(settings)
    tables.similarities.mutate(
        entry(
            layout.item_row_key(item), [set_cell(layout.NEIGHBOURS, layout.TOP, codecs.encode_neighbours(pairs), when)]
        )
        for item, pairs in neighbours.items()
    )
    tables.meta.mutate(
        [entry(layout.POPULAR_ROW, [set_cell(layout.NEIGHBOURS, layout.TOP, codecs.encode_neighbours(popular), when)])]
    )
    if flip:
        tables.meta.mutate(
            [
                entry(
                    layout.GENERATION_ROW,
                    [set_cell(layout.GENERATION, layout.CURRENT, codecs.encode_int64(generation))],
                )
            ]
        )
