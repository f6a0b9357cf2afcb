"""Catalogue files the reader must refuse or read exactly: no id turned into another, no row
invented from part of a line, every refusal counted with its reason."""

from __future__ import annotations

import pytest

from schemas.events import CatalogUpdate
from streamsim.sources.catalog import MAX_LINE_CHARS, REASONS, read_catalog
from streamsim.sources.formats import FormatError


def _read(tmp_path, data: bytes) -> list[tuple[int, CatalogUpdate | str]]:
    path = tmp_path / "catalog.csv"
    path.write_bytes(data)
    rows = [(row.line_number, row.update or row.reason) for row in read_catalog(path, 7)]
    assert all(isinstance(what, CatalogUpdate) or what in REASONS for _, what in rows)
    return rows


def test_bytes_that_are_not_utf8_are_refused_and_never_merge_two_ids(tmp_path):
    # Latin-1 sku-é and sku-è: read as U+FFFD they would be one item, and the second row's hide its.
    data = b"item,category,available\nsku-\xe9,caf\xe9,true\nsku-\xe8,caf\xe8,false\nok,c,true\n"
    assert _read(tmp_path, data) == [(2, "not_utf8"), (3, "not_utf8"), (4, CatalogUpdate("ok", "c", True, 7))]


def test_utf8_ids_read_as_they_are(tmp_path):
    data = "item,category\nsku-é,café\nsku-è,café\n".encode()
    assert [u.item for _, u in _read(tmp_path, data)] == ["sku-é", "sku-è"]


def test_an_over_long_first_line_is_one_refused_row_not_two(tmp_path):
    # Its first MAX_LINE_CHARS characters must not be a row, nor its tail another (which hid evilfirst).
    data = ("z" * MAX_LINE_CHARS + "evilfirst,cat9,false\nok3,c3,true\n").encode()
    assert _read(tmp_path, data) == [(1, "too_large"), (2, CatalogUpdate("ok3", "c3", True, 7))]


def test_a_bom_before_the_header_is_skipped(tmp_path):
    data = "\ufeffitem,category,available\r\na,c,false\r\n".encode()
    assert _read(tmp_path, data) == [(2, CatalogUpdate("a", "c", False, 7))]


def test_cr_only_lines_keep_every_row_after_an_over_long_one(tmp_path):
    data = ("item,category,available\rx," + "y" * 5000 + ",true\rok1,c,true\rok2,c,false\r").encode()
    assert _read(tmp_path, data) == [
        (2, "too_large"),
        (3, CatalogUpdate("ok1", "c", True, 7)),
        (4, CatalogUpdate("ok2", "c", False, 7)),
    ]


def test_a_quoted_field_over_two_lines_is_one_refused_record(tmp_path):
    # Read line by line, its second half was the item 'line"', and hidden.
    data = b'item,category,available\na,"multi\nline",false\nb,c,true\n"q,c,true\nc,"d""e",0\n'
    assert _read(tmp_path, data) == [
        (2, "multiline"),
        (4, CatalogUpdate("b", "c", True, 7)),
        (5, "multiline"),  # never closed: the record runs to the end of the file
    ]
    data = b'item,category\n"a"b,c\n"x",y\n'
    assert _read(tmp_path, data) == [(2, "bad_quoting"), (3, CatalogUpdate("x", "y", None, 7))]


def test_a_never_closed_quote_swallows_at_most_the_line_bound(tmp_path):
    lines = ['"open,c,true'] + [f"i{k},c,true" for k in range(2000)]
    rows = _read(tmp_path, ("item,category,available\n" + "\n".join(lines) + "\n").encode())
    assert rows[0] == (2, "multiline")
    assert len(rows) > 1500 and all(isinstance(u, CatalogUpdate) for _, u in rows[1:])


def test_a_column_named_twice_is_refused(tmp_path):
    with pytest.raises(FormatError, match="category column more than once"):
        _read(tmp_path, b"item,category,category\na,b,c\n")


@pytest.mark.parametrize("header", ["itemId;categoryId\n", "item,category,available\n", ""])
def test_an_absent_or_empty_available_leaves_the_availability_as_it_is(tmp_path, header):
    # On the stream an absent "available" leaves it as it is: a file means the same.
    separator = ";" if ";" in header else ","
    body = f"110{separator}c1\n" if "available" not in header else "110,c1,\n"
    assert _read(tmp_path, (header + body).encode()) == [(1 + bool(header), CatalogUpdate("110", "c1", None, 7))]
