"""Catalogue files: ``item,category,available`` rows as :class:`schemas.events.CatalogUpdate`.

A header is optional; it names the columns (``item``/``itemId``, ``category``/
``categoryId``, ``available``, any case, once each), so DIGINETICA's
``product-categories.csv`` (``itemId;categoryId``) reads as it is. Without one the
columns are ``item,category[,available]``. The separator is ``;`` if the first line
has one and no comma, else ``,``. ``available`` is true/false, 1/0 or yes/no; empty
or absent leaves the item's availability as it is, as an absent ``available`` does
on the stream (a new item is shown). ``.gz`` files are read directly; a UTF-8 BOM
before the header is skipped; lines end with LF, CRLF or CR.

Each row becomes an update or a rejection with a reason code (:data:`REASONS`);
no row stops the reading, so one bad line costs one line. What could turn one id
into another is refused, never repaired: bytes that are not UTF-8 (read as U+FFFD,
Latin-1 ``sku-\xe9`` and ``sku-\xe8`` would be one id), a line over
:data:`MAX_LINE_CHARS` (the first one too, header or not), a quoted field that
spans lines (ids hold no line break, and its second half is no row of its own).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import re
from collections.abc import Iterator

from schemas.events import CatalogUpdate, id_problem
from streamsim.sources.formats import FormatError, Source, bounded_lines, open_text, source_name

REASONS = {
    "columns": "the row does not have the header's columns",
    "bad_item": "item is not a 1-128 character id",
    "bad_category": "category is not a 1-128 character id",
    "bad_available": "available is not true/false, 1/0 or yes/no",
    "too_large": "the line is longer than MAX_LINE_CHARS",
    "not_utf8": "the line holds bytes that are not UTF-8",
    "bad_quoting": "the row's quotes are not CSV quoting",
    "multiline": "a quoted field spans lines (counted once, from its first line)",
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
#: ``None``: leave the availability as it is.
_AVAILABLE = {"": None, "true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
#: Longer lines are not catalogue rows (two ids and a flag are under 300 characters).
MAX_LINE_CHARS = 4096
#: What bytes that are not UTF-8 decode to under ``surrogateescape``.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_BOM = "\ufeff"


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
    header has no item or category column, or names one twice.
    """
    text = open_text(source, errors="surrogateescape")
    try:
        lines = enumerate(bounded_lines(text, source_name(source), MAX_LINE_CHARS), 1)
        _, first = next(lines, (1, ""))
        if first is not None and not first.strip():
            raise FormatError("the catalogue file is empty")
        names, delimiter = _header(first)
        if names is None:
            names, lines = ["item", "category", "available"], itertools.chain([(1, first)], lines)
        yield from _rows(names, delimiter, lines, ts_ms)
    finally:
        text.close()


def _header(first: str | None) -> tuple[list[str] | None, str]:
    """The column names the first line gives (None: it is a data line) and the separator."""
    if first is None:  # over-long: not a header, and a row refused as too_large
        return None, ","
    line = first.rstrip("\r\n").removeprefix(_BOM)
    delimiter = ";" if ";" in line and "," not in line else ","
    names = [_HEADER_NAMES.get(c.strip().lower()) for c in line.split(delimiter)]
    if not any(names):
        return None, delimiter
    if "item" not in names or "category" not in names:
        raise FormatError("the header needs an item and a category column (item,category,available)")
    twice = sorted({name for name in names if name is not None and names.count(name) > 1})
    if twice:
        raise FormatError(f"the header names the {' and '.join(twice)} column more than once")
    return names, delimiter


def _rows(names, delimiter, lines, ts_ms) -> Iterator[CatalogRow]:
    for number, line in lines:
        if line is None:
            yield CatalogRow(number, reason="too_large")
            continue
        stripped = line.rstrip("\r\n")
        if not stripped.strip():
            continue
        if _NOT_UTF8.search(stripped):
            shown = stripped.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            yield CatalogRow(number, reason="not_utf8", text=shown)
            continue
        fields = _fields(stripped, delimiter)
        if fields is None:
            reason = "multiline" if _open_quote(stripped, delimiter) else "bad_quoting"
            if reason == "multiline":
                _skip_record(stripped, delimiter, lines)
            yield CatalogRow(number, reason=reason, text=stripped)
            continue
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


def _fields(text: str, delimiter: str) -> list[str] | None:
    """The CSV fields of ``text``; None if it is not one well-quoted record."""
    try:
        return next(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error:
        return None


def _open_quote(text: str, delimiter: str) -> bool:
    """True if ``text`` is a CSV record cut inside a quoted field (a closing quote completes it)."""
    return _fields(text, delimiter) is None and _fields(text + '"', delimiter) is not None


def _skip_record(text: str, delimiter: str, lines) -> None:
    """Consume the lines of a record whose quoted field is open after ``text``, up to
    MAX_LINE_CHARS in all: its rest is one rejection, not rows of their own."""
    for _, line in lines:
        if line is None:
            return
        text += "\n" + line.rstrip("\r\n")
        if not _open_quote(text, delimiter) or len(text) > MAX_LINE_CHARS:
            return


def _problem(values: dict) -> str | None:
    if id_problem(values.get("item")):
        return "bad_item"
    if id_problem(values.get("category")):
        return "bad_category"
    if values.get("available", "").lower() not in _AVAILABLE:
        return "bad_available"
    return None
