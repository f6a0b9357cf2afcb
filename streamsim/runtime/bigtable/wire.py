"""Bigtable's ReadRows wire format, merged into rows: ``{family: {qualifier: Cell}}``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from schemas.rows import Cell


def merge_chunks(chunks: Iterable) -> Iterator[tuple[bytes, list[Cell]]]:
    """Rows ``(key, cells)`` from ``ReadRows`` cell chunks, per the RPC's contract.

    A chunk carries the row key, family and qualifier only when they change;
    a large value is split over chunks that announce ``value_size``;
    ``reset_row`` drops the row read so far and ``commit_row`` completes it.
    """
    key = family = qualifier = None
    timestamp = 0
    cells: list[Cell] = []
    parts: list[bytes] = []
    for chunk in chunks:
        if chunk.reset_row:
            key = family = qualifier = None
            cells, parts = [], []
            continue
        if chunk.row_key:
            key = chunk.row_key
        if chunk.HasField("family_name"):
            family = chunk.family_name.value
        if chunk.HasField("qualifier"):
            qualifier = chunk.qualifier.value
        if not parts:  # the first chunk of a cell carries its timestamp
            timestamp = chunk.timestamp_micros
        parts.append(chunk.value)
        if chunk.value_size == 0:
            cells.append(Cell(family, qualifier, timestamp, b"".join(parts) if len(parts) > 1 else parts[0]))
            parts = []
        if chunk.commit_row:
            yield key, cells
            key = family = qualifier = None
            cells = []


def newest_by_column(cells: Iterable[Cell]) -> dict[str, dict[bytes, Cell]]:
    """``{family: {qualifier: cell}}``, keeping the newest cell of each column
    (ReadRows sends a column's cells newest first)."""
    columns: dict[str, dict[bytes, Cell]] = {}
    for cell in cells:
        columns.setdefault(cell.family, {}).setdefault(cell.qualifier, cell)
    return columns


def rows_from_responses(responses: Iterable) -> Iterator[tuple[bytes, dict[str, dict[bytes, Cell]]]]:
    """``(key, row)`` for each row of a stream of ``ReadRowsResponse`` messages."""
    chunks = (chunk for response in responses for chunk in response.chunks)
    for key, cells in merge_chunks(chunks):
        yield key, newest_by_column(cells)
