"""Write state straight into Bigtable through the ``schemas`` layout.

For tests and benchmarks of the readers (refresh, serving) that should not depend on
the stream or a refresh pass to set up their input, and for seeding large state fast.
Values are absolute, as the fold writes them, so seeding twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas import codecs, entries, layout
from streamsim.runtime.bigtable import entry, open_tables, set_cell
from streamsim.runtime.settings import Settings


def write_scores(settings: Settings, scores: Mapping[str, Mapping[str, float]], *, mark_dirty: bool = True) -> None:
    """Pairs' r_ui (one event each), their contributions rows, and item stats from them.

    As the fold writes them (version 1, contributions stamped with their event count),
    so a fold on top of seeded state continues it.
    """
    tables = open_tables(settings)
    one = codecs.encode_int64(1)
    pairs, contributions, norms, entry_norms, counts = [], [], {}, {}, {}
    for user, row in scores.items():
        for item, r in row.items():
            pairs.append(
                entry(
                    layout.user_item_key(user, item),
                    [
                        set_cell(layout.SCORES, layout.SCORE, codecs.encode_double(r)),
                        set_cell(layout.SCORES, layout.COUNT, one),
                        set_cell(layout.SCORES, layout.VERSION, one),
                    ],
                )
            )
            contributions.append(
                entry(
                    layout.item_user_key(item, user),
                    [set_cell(layout.CONTRIBUTIONS, layout.CONTRIBUTION, codecs.encode_contribution(r, 1), 1000)],
                )
            )
            norms[item] = norms.get(item, 0.0) + r * r
            entry_norms[item] = entry_norms.get(item, 0.0) + entries.FOLDED.square(r)
            counts[item] = counts.get(item, 0) + 1
    tables.users.mutate(pairs)
    tables.contributions.mutate(contributions)
    items = []
    for item, norm2 in norms.items():
        cells = [
            set_cell(layout.ITEM_STATS, layout.NORM2, codecs.encode_double(norm2)),
            set_cell(layout.ITEM_STATS, layout.ENTRY_NORM2, codecs.encode_double(entry_norms[item])),
            set_cell(layout.ITEM_STATS, layout.USERS, codecs.encode_int64(counts[item])),
            set_cell(layout.ITEM_STATS, layout.EVENTS, codecs.encode_int64(counts[item])),
            set_cell(layout.ITEM_STATS, layout.ITEM_VERSION, one),
        ]
        if mark_dirty:
            cells.append(set_cell(layout.DIRTY, layout.DIRTY_MARK, b""))
        items.append(entry(layout.item_row_key(item), cells))
    tables.items.mutate(items)


def write_generation(
    settings: Settings,
    generation: int,
    neighbours: Mapping[str, list[tuple[str, float]]],
    *,
    popular: list[tuple[str, float]] = (),
    flip: bool = True,
    bought: Mapping[str, list[tuple[str, float]]] | None = None,
    repurchase: Mapping[str, tuple[int, int, int]] | None = None,
) -> None:
    """Similarity rows and the popularity list of one generation, then (``flip``) the pointer;
    ``bought``/``repurchase``: its bought-together lists and (buyers, repeat buyers, interval ms)."""
    when = layout.generation_cell_micros(generation)
    tables = open_tables(settings)
    tables.similarities.mutate(
        entry(
            layout.item_row_key(item), [set_cell(layout.NEIGHBOURS, layout.TOP, codecs.encode_neighbours(pairs), when)]
        )
        for item, pairs in neighbours.items()
    )
    bought_cells = [
        (item, set_cell(layout.BOUGHT, layout.TOP, codecs.encode_neighbours(pairs), when))
        for item, pairs in (bought or {}).items()
    ] + [
        (item, set_cell(layout.BOUGHT, layout.REPURCHASE, codecs.encode_repurchase(*stats), when))
        for item, stats in (repurchase or {}).items()
    ]
    if bought_cells:
        tables.similarities.mutate(entry(layout.item_row_key(item), [cell]) for item, cell in bought_cells)
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


def write_purchases(settings: Settings, purchases: Mapping[str, list[tuple[str, int]]]) -> None:
    """Users' purchase indexes (``recent`` p:e) from ``(item, event ms)``, as the fold writes them
    (the event id of a seeded purchase is ``<user>/<k>``)."""
    open_tables(settings).recent.mutate(
        entry(
            layout.recent_row_key(user),
            [
                set_cell(
                    layout.PURCHASES,
                    layout.RECENT,
                    item.encode("utf-8"),
                    layout.recent_cell_micros(ms, f"{user}/{k}"),
                )
                for k, (item, ms) in enumerate(bought)
            ],
        )
        for user, bought in purchases.items()
    )
