"""Catalogue files: ``item,category,available`` rows as :class:`schemas.events.CatalogUpdate`.

A header is optional; it names the columns (``item``/``itemId``, ``category``/
``categoryId``, ``available``, any case), so DIGINETICA's ``product-categories.csv``
(``itemId;categoryId``) reads as it is. Without one the columns are
``item,category[,available]``. The separator is ``;`` if the first line has one and no
comma, else ``,``. ``available`` is true/false, 1/0 or yes/no; empty or absent means
available. ``.gz`` files are read directly.

Each row becomes an update or a rejection with a reason code (:data:`REASONS`);
no row stops the reading, so one bad line costs one line.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator

from schemas.events import CatalogUpdate, id_problem
from streamsim.sources.formats import FormatError, Source, open_text

REASONS = {
    "columns": "the row does not have the header's columns",
    "bad_item": "item is not a 1-128 character id",
    "bad_category": "category is not a 1-128 character id",
    "bad_available": "available is not true/false, 1/0 or yes/no",
    "too_large": "the line is longer than MAX_LINE_CHARS",
}
_HEADER_NAMES = {
    "item": "item",
    "itemid": "item",
    "item_id": "item",
    "category": "category",
    "categoryid": "category",
    "category_id": "category",
    "available": "available",
}
_AVAILABLE = {"": True, "true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
#: Longer lines are not catalogue rows (two ids and a flag are under 300 characters).
MAX_LINE_CHARS = 4096


@dataclasses.dataclass(frozen=True)
class CatalogRow:
    """One data row: ``update``, or ``reason`` (a :data:`REASONS` code) and the line."""

    line_number: int
    update: CatalogUpdate | None = None
    reason: str | None = None
    text: str = ""


def read_catalog(source: Source, ts_ms: int) -> Iterator[CatalogRow]:
    """The rows of a catalogue file, every update stamped ``ts_ms``.

    Raises :class:`FormatError` (before any row) if the file is empty or its
    header has no item or category column.
    """
    text = open_text(source)
    try:
        first = text.readline(MAX_LINE_CHARS)
        if not first.strip():
            raise FormatError("the catalogue file is empty")
        delimiter = ";" if ";" in first and "," not in first else ","
        names = [_HEADER_NAMES.get(c.strip().lower()) for c in first.rstrip("\r\n").split(delimiter)]
        if any(names):
            if "item" not in names or "category" not in names:
                raise FormatError("the header needs an item and a category column (item,category,available)")
            start, lines = 2, []
        else:
            names, start, lines = ["item", "category", "available"], 1, [first]
        yield from _rows(names, delimiter, start, _chain(lines, text), ts_ms)
    finally:
        text.close()


def _chain(first: list[str], text) -> Iterator[str | None]:
    """The lines; None for one over MAX_LINE_CHARS (skipped unread, in bounded pieces)."""
    yield from first
    while line := text.readline(MAX_LINE_CHARS):
        if len(line) == MAX_LINE_CHARS and not line.endswith("\n"):
            while (rest := text.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                pass
            yield None
            continue
        yield line


def _rows(names, delimiter, start, lines, ts_ms) -> Iterator[CatalogRow]:
    for number, line in enumerate(lines, start):
        if line is None:
            yield CatalogRow(number, reason="too_large")
            continue
        stripped = line.rstrip("\r\n")
        if not stripped.strip():
            continue
        fields = next(csv.reader([stripped], delimiter=delimiter))
        if len(fields) > len(names) or len(fields) < 2:
            yield CatalogRow(number, reason="columns", text=stripped)
            continue
        values = dict(zip(names, (f.strip() for f in fields)))
        reason = _problem(values)
        if reason:
            yield CatalogRow(number, reason=reason, text=stripped)
            continue
        available = _AVAILABLE[values.get("available", "").lower()]
        yield CatalogRow(number, CatalogUpdate(values["item"], values["category"], available, ts_ms))


def _problem(values: dict) -> str | None:
    if id_problem(values.get("item")):
        return "bad_item"
    if id_problem(values.get("category")):
        return "bad_category"
    if values.get("available", "").lower() not in _AVAILABLE:
        return "bad_available"
    return None
