"""Every row filter streamsim sends, built in one place as raw ``RowFilter`` messages.

Columns are selected with column ranges rather than regexes where possible: the
emulator evaluates a regex filter per cell, slowly (Tmall items, 31k rows: 11.3 s
with a family regex vs 4.3 s with ranges), and Cloud Bigtable is no slower with ranges.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas import layout, trending
from streamsim.runtime.bigtable.messages import RowFilter


def chain(*filters) -> RowFilter:
    """Cells that pass every filter, in order."""
    row_filter = RowFilter()
    row_filter.chain.filters.extend(filters)
    return row_filter


def union(*filters) -> RowFilter:
    """Cells that pass any of the filters."""
    row_filter = RowFilter()
    row_filter.interleave.filters.extend(filters)
    return row_filter


def newest() -> RowFilter:
    """The newest cell of each column only.

    GC rules keep one version of most columns, but the emulator applies them
    late (and Cloud Bigtable within about a week): every read asks explicitly.
    """
    return RowFilter(cells_per_column_limit_filter=1)


def recent_events() -> RowFilter:
    """A user's ``recent`` sequence: its newest RECENT_EVENTS cells (GC may not have run yet)."""
    return chain(column(layout.ORDER, layout.RECENT), RowFilter(cells_per_column_limit_filter=layout.RECENT_EVENTS))


def purchases() -> RowFilter:
    """A user's purchase index: its newest PURCHASES_KEPT cells."""
    return chain(
        column(layout.PURCHASES, layout.RECENT), RowFilter(cells_per_column_limit_filter=layout.PURCHASES_KEPT)
    )


def session_events() -> RowFilter:
    """A session's items: its newest SESSION_EVENTS cells."""
    return chain(column(layout.ORDER, layout.RECENT), RowFilter(cells_per_column_limit_filter=layout.SESSION_EVENTS))


def session_holders(limit: int = layout.SESSIONS_PER_ITEM) -> RowFilter:
    """An item's newest ``limit`` holder cells (at most SESSIONS_PER_ITEM: GC may lag)."""
    limit = min(limit, layout.SESSIONS_PER_ITEM)
    return chain(column(layout.HOLDERS, layout.HOLDER), RowFilter(cells_per_column_limit_filter=limit))


def family(name: str) -> RowFilter:
    """Every column of one family (a column range, not a regex)."""
    row_filter = RowFilter()
    row_filter.column_range_filter.family_name = name
    return row_filter


def families(*names: str) -> RowFilter:
    return family(names[0]) if len(names) == 1 else union(*(family(n) for n in names))


def column(family_name: str, qualifier: bytes) -> RowFilter:
    """One column."""
    row_filter = RowFilter()
    column_range = row_filter.column_range_filter
    column_range.family_name = family_name
    column_range.start_qualifier_closed = qualifier
    column_range.end_qualifier_closed = qualifier
    return row_filter


def qualifiers_between(family_name: str, first: bytes, last: bytes) -> RowFilter:
    """The columns of one family whose qualifiers lie in [first, last] (a bounded column range)."""
    row_filter = RowFilter()
    column_range = row_filter.column_range_filter
    column_range.family_name = family_name
    column_range.start_qualifier_closed = first
    column_range.end_qualifier_closed = last
    return row_filter


def item_fold_row(now_ms: int) -> RowFilter:
    """What an item fold reads of an ``items`` row: every family but the trending counters,
    and of those only the buckets a fold at ``now_ms`` may use (``schemas.trending``)."""
    others = [f for f in layout.FAMILIES["items"] if f not in {r.family for r in trending.RESOLUTIONS}]
    counters = [
        qualifiers_between(r.family, r.qualifier(r.first(now_ms)), r.qualifier(r.bucket(now_ms)))
        for r in trending.RESOLUTIONS
    ]
    return chain(union(*(family(f) for f in others), *counters), newest())


def board(window: trending.Window, now_ms: int) -> RowFilter:
    """A trending board's live cells: each item's newest cell stamped within the window,
    at most BOARD_READ_CELLS per row."""
    fresh = RowFilter()
    fresh.timestamp_range_filter.start_timestamp_micros = (now_ms - window.width_ms) * 1000
    return chain(
        family(window.board_family),
        fresh,
        newest(),
        RowFilter(cells_per_row_limit_filter=trending.BOARD_READ_CELLS),
    )


def value_equals(value: bytes) -> RowFilter:
    """Cells whose value is exactly ``value`` (a range of one, not a regex: no escaping)."""
    row_filter = RowFilter()
    row_filter.value_range_filter.start_value_closed = value
    row_filter.value_range_filter.end_value_closed = value
    return row_filter


def strip_values() -> RowFilter:
    """Cells with empty values: for reads that need only qualifiers or keys."""
    return RowFilter(strip_value_transformer=True)


def first_cell_of_row() -> RowFilter:
    return RowFilter(cells_per_row_limit_filter=1)


def before(end_micros: int) -> RowFilter:
    """Cells stamped strictly before ``end_micros``."""
    row_filter = RowFilter()
    row_filter.timestamp_range_filter.start_timestamp_micros = 0
    row_filter.timestamp_range_filter.end_timestamp_micros = end_micros
    return row_filter


def newest_in(family_name: str) -> RowFilter:
    """The newest cell of every column of one family."""
    return chain(family(family_name), newest())


def visible_at(generation: int, family_name: str = layout.NEIGHBOURS, qualifier: bytes = layout.TOP) -> RowFilter:
    """The packed top-K cell (or another generation-stamped column, e.g. ``b:top``) a reader at
    ``generation`` sees: the newest not newer than it.

    This is the generation protocol (``schemas.layout``): rows a pass did not rewrite
    resolve to older cells; cells of a pass still being written are newer, so invisible.
    The end of a timestamp range is exclusive, hence the next generation's first µs.
    """
    return chain(column(family_name, qualifier), before(layout.generation_cell_micros(generation + 1)), newest())


def _re2_literal(raw: bytes) -> bytes:
    """Escape a byte string for Bigtable's RE2 filters (ids may hold any punctuation)."""
    return b"".join(bytes([c]) if c >= 0x80 or chr(c).isalnum() else b"\\" + bytes([c]) for c in raw)


def any_qualifier_of(family_name: str, qualifiers: Iterable[bytes]) -> RowFilter:
    """One stripped cell per row that has any of ``qualifiers`` in ``family_name``.

    A regex that grows with the list: callers bound the list (see ``batch.refresh``).
    """
    pattern = b"^(" + b"|".join(_re2_literal(q) for q in qualifiers) + b")$"
    return chain(
        RowFilter(family_name_regex_filter=f"^{family_name}$"),
        RowFilter(column_qualifier_regex_filter=pattern),
        strip_values(),
        first_cell_of_row(),
    )
