"""Stored rows, decoded: the one place that turns ``users`` and ``items`` cells into state.

A row arrives from the Bigtable gateway as ``{family: {qualifier: Cell}}`` holding the
newest cell of each column (missing row: ``{}``). The decoders below are total: a column
that is absent reads as its default, so a user or item never seen decodes to empty state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from schemas import codecs, layout


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
class UserRow:
    """What a ``users`` row holds (missing row: the defaults)."""

    scores: Mapping[str, float] = dataclasses.field(default_factory=dict)
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    folded: frozenset[str] = frozenset()
    norm2: float = 0.0
    events: int = 0


@dataclasses.dataclass(frozen=True)
class ItemRow:
    """What an ``items`` row holds (missing row: the defaults)."""

    norm2: float = 0.0
    users: int = 0
    events: int = 0
    #: user -> (r_ui, events), the inverted index (only when its family was read).
    contributions: Mapping[str, tuple[float, int]] = dataclasses.field(default_factory=dict)
    #: Cell time (µs) of the dirty mark, 0 if unmarked.
    dirty_micros: int = 0


def _number(cells: Mapping[bytes, Cell], qualifier: bytes, decode, default):
    cell = cells.get(qualifier)
    return decode(cell.value) if cell is not None else default


def _ids(cells: Mapping[bytes, Cell]) -> list[str]:
    return [qualifier.decode("utf-8") for qualifier in cells]


def decode_user(row: Row) -> UserRow:
    stats = row.get(layout.USER_STATS, {})
    scores = row.get(layout.SCORES, {})
    counts = row.get(layout.ITEM_COUNTS, {})
    return UserRow(
        scores={q.decode("utf-8"): codecs.decode_double(c.value) for q, c in scores.items()},
        counts={q.decode("utf-8"): codecs.decode_int64(c.value) for q, c in counts.items()},
        folded=frozenset(_ids(row.get(layout.FOLDED, {}))),
        norm2=_number(stats, layout.NORM2, codecs.decode_double, 0.0),
        events=_number(stats, layout.EVENTS, codecs.decode_int64, 0),
    )


def decode_item(row: Row) -> ItemRow:
    stats = row.get(layout.ITEM_STATS, {})
    mark = row.get(layout.DIRTY, {}).get(layout.DIRTY_MARK)
    return ItemRow(
        norm2=_number(stats, layout.NORM2, codecs.decode_double, 0.0),
        users=_number(stats, layout.USERS, codecs.decode_int64, 0),
        events=_number(stats, layout.EVENTS, codecs.decode_int64, 0),
        contributions={
            q.decode("utf-8"): codecs.decode_contribution(c.value) for q, c in row.get(layout.CONTRIBUTIONS, {}).items()
        },
        dirty_micros=mark.timestamp_micros if mark is not None else 0,
    )


def neighbours_cell(row: Row) -> Cell | None:
    """The packed top-K cell of a ``similarities`` row (or of ``meta popular``), if any."""
    return row.get(layout.NEIGHBOURS, {}).get(layout.TOP)
