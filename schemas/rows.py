"""Stored rows, decoded: the one place that turns ``users`` and ``items`` cells into state.

A row arrives from the Bigtable gateway as ``{family: {qualifier: Cell}}`` holding the
newest cell of each column (missing row: ``{}``). The decoders below are total: a column
that is absent reads as its default, so a pair or item never seen decodes to empty state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from schemas import codecs, layout, trending


class Cell:
    """One stored cell; ``timestamp_micros`` is Bigtable's (ms granularity, in µs)."""

    __slots__ = ("family", "qualifier", "timestamp_micros", "value")

    def __init__(self, family: str, qualifier: bytes, timestamp_micros: int, value: bytes):
        self.family = family
        self.qualifier = qualifier
        self.timestamp_micros = timestamp_micros
        self.value = value

    def __repr__(self) -> str:
        return f"Cell({self.family}:{self.qualifier!r}@{self.timestamp_micros}={self.value!r})"


#: ``{family: {qualifier: newest cell}}``.
Row = Mapping[str, Mapping[bytes, Cell]]


@dataclasses.dataclass(frozen=True)
class PairRow:
    """A ``users`` row: one (user, item) pair (missing row: the defaults, version 0)."""

    r: float = 0.0
    events: int = 0
    version: int = 0
    #: Folded event id -> cell time (µs), newest last after :func:`decode_pair`.
    folded: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Attributed events folded: ``attribution.counter_key(arm, route, type)`` -> count.
    attributed: Mapping[bytes, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ItemRow:
    """An ``items`` row (missing row: the defaults, version 0)."""

    norm2: float = 0.0
    users: int = 0
    events: int = 0
    version: int = 0
    #: Σ_u f(r_ui)² for ``entries.FOLDED`` (``n:enorm2``).
    entry_norm2: float = 0.0
    #: Cell time (µs) of the dirty mark, 0 if unmarked.
    dirty_micros: int = 0
    #: Item folds in flight: token -> the (user, r_ui, stamp) they committed to write.
    intents: Mapping[str, list[tuple[str, float, int]]] = dataclasses.field(default_factory=dict)
    #: Erasure marks: user token -> the epoch below which the stats hold none of the user.
    erased: Mapping[bytes, int] = dataclasses.field(default_factory=dict)
    #: Trending counters read (``schemas.trending``): (family, bucket) -> events.
    counters: Mapping[tuple[str, int], int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CatalogCells:
    """An item's catalogue cells (``items`` m:, or one change of the change log); None where absent.

    ``*_micros`` are the cells' timestamps: the time of the update that set them.
    """

    category: str | None = None
    available: bool | None = None
    category_micros: int = 0
    available_micros: int = 0


def _number(cells: Mapping[bytes, Cell], qualifier: bytes, decode, default):
    cell = cells.get(qualifier)
    return decode(cell.value) if cell is not None else default


def decode_pair(row: Row) -> PairRow:
    scores = row.get(layout.SCORES, {})
    folded = sorted(row.get(layout.FOLDED, {}).values(), key=lambda c: (c.timestamp_micros, c.qualifier))
    return PairRow(
        r=_number(scores, layout.SCORE, codecs.decode_double, 0.0),
        events=_number(scores, layout.COUNT, codecs.decode_int64, 0),
        version=_number(scores, layout.VERSION, codecs.decode_int64, 0),
        folded={cell.qualifier.decode("utf-8"): cell.timestamp_micros for cell in folded},
        attributed={q: codecs.decode_int64(c.value) for q, c in row.get(layout.ATTRIBUTED, {}).items()},
    )


def decode_item(row: Row) -> ItemRow:
    stats = row.get(layout.ITEM_STATS, {})
    mark = row.get(layout.DIRTY, {}).get(layout.DIRTY_MARK)
    return ItemRow(
        norm2=_number(stats, layout.NORM2, codecs.decode_double, 0.0),
        users=_number(stats, layout.USERS, codecs.decode_int64, 0),
        events=_number(stats, layout.EVENTS, codecs.decode_int64, 0),
        version=_number(stats, layout.ITEM_VERSION, codecs.decode_int64, 0),
        entry_norm2=_number(stats, layout.ENTRY_NORM2, codecs.decode_double, 0.0),
        dirty_micros=mark.timestamp_micros if mark is not None else 0,
        intents={q.decode("utf-8"): codecs.decode_intent(c.value) for q, c in row.get(layout.INTENTS, {}).items()},
        erased={q: codecs.decode_int64(c.value) for q, c in row.get(layout.ERASED, {}).items()},
        counters={
            (r.family, r.parse(q)): codecs.decode_int64(c.value)
            for r in trending.RESOLUTIONS
            for q, c in row.get(r.family, {}).items()
        },
    )


def decode_catalog(row: Row) -> CatalogCells:
    """The catalogue cells of an ``items`` row."""
    cells = row.get(layout.CATALOG, {})
    category, available = cells.get(layout.CATEGORY), cells.get(layout.AVAILABLE)
    return CatalogCells(
        category=codecs.decode_text(category.value) if category is not None else None,
        available=codecs.decode_available(available.value) if available is not None else None,
        category_micros=category.timestamp_micros if category is not None else 0,
        available_micros=available.timestamp_micros if available is not None else 0,
    )


def decode_catalog_log(row: Row) -> list[tuple[str, CatalogCells]]:
    """The changes of a catalogue change-log row: ``(item, cells)`` in the order written."""
    cell = row.get(layout.CATALOG_LOG, {}).get(layout.CATALOG_CHANGES)
    if cell is None:
        return []
    return [
        (item, CatalogCells(category, available, micros if category is not None else 0, micros))
        for item, category, available, micros in codecs.decode_catalog_changes(cell.value)
    ]


def decode_contribution(row: Row) -> tuple[float, int]:
    """A ``contributions`` row's (r_ui, stamp) (``layout.contribution_stamp``); (0.0, 0) if absent."""
    cell = row.get(layout.CONTRIBUTIONS, {}).get(layout.CONTRIBUTION)
    return codecs.decode_contribution(cell.value) if cell is not None else (0.0, 0)


def neighbours_cell(row: Row) -> Cell | None:
    """The packed top-K cell of a ``similarities`` row (or of ``meta popular``), if any."""
    return row.get(layout.NEIGHBOURS, {}).get(layout.TOP)


def decode_recent(cells: list[Cell], limit: int = layout.RECENT_EVENTS) -> list[str]:
    """A user's ``recent`` cells (or a session's, ``limit`` SESSION_EVENTS; every version, any
    order) -> the items, oldest event first.

    The cell timestamps order the events (``layout.recent_cell_micros``); only the newest
    ``limit`` count, whatever the reader was sent (GC runs lazily).
    """
    ordered = sorted(
        (c for c in cells if c.family == layout.ORDER and c.qualifier == layout.RECENT),
        key=lambda c: c.timestamp_micros,
    )
    return [c.value.decode("utf-8") for c in ordered[-limit:]]


def decode_purchases(cells: list[Cell]) -> list[tuple[str, int]]:
    """A user's purchase-index cells (``recent`` p:e; every version, any order) ->
    ``(item, event ms)`` of the newest PURCHASES_KEPT purchases, oldest first."""
    ordered = sorted(
        (c for c in cells if c.family == layout.PURCHASES and c.qualifier == layout.RECENT),
        key=lambda c: c.timestamp_micros,
    )[-layout.PURCHASES_KEPT :]
    return [(c.value.decode("utf-8"), layout.recent_event_ms(c.timestamp_micros)) for c in ordered]


def decode_holders(cells: list[Cell], limit: int = layout.SESSIONS_PER_ITEM) -> list[tuple[str, int]]:
    """An item's ``sessions`` holder cells -> ``(session key, cell timestamp)`` of its newest
    ``limit`` clicks, newest first (a session clicking it twice is listed twice)."""
    ordered = sorted(
        (c for c in cells if c.family == layout.HOLDERS and c.qualifier == layout.HOLDER),
        key=lambda c: -c.timestamp_micros,
    )
    return [(c.value.decode("utf-8"), c.timestamp_micros) for c in ordered[:limit]]
