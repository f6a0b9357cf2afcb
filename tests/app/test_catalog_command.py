"""``streamsim catalog FILE`` on the Bigtable emulator: the DIGINETICA cut, bad rows counted."""

from __future__ import annotations

import time
from pathlib import Path

from schemas import layout
from schemas.events import CatalogUpdate
from schemas.rows import decode_catalog, decode_catalog_log
from streamsim.app.cli import main as streamsim_main
from streamsim.runtime.bigtable import open_tables
from streamsim.runtime.catalog import write_catalog

DIGINETICA = Path(__file__).resolve().parents[1] / "data" / "diginetica-product-categories-head.csv"


def _catalogue(settings) -> dict:
    rows = open_tables(settings).items.read_rows()
    return {layout.id_from_row_key(key): decode_catalog(row) for key, row in rows}


def _log_items(settings) -> list[str]:
    rows = open_tables(settings).meta.read_rows(prefix=layout.CATALOG_LOG_PREFIX)
    return [item for _, row in rows for item, _ in decode_catalog_log(row)]


def test_the_diginetica_file_loads_as_it_is(fresh_stack, capsys):
    assert streamsim_main(["catalog", str(DIGINETICA), "--no-progress", *fresh_stack.to_argv()]) == 0
    out = capsys.readouterr().out
    assert "catalogue: 3000 items in 7 categories (0 hidden)" in out and "rejected 0" in out
    stored = _catalogue(fresh_stack)
    assert len(stored) == 3000
    assert stored["139578"].category == "1096" and stored["139578"].available is None  # no column: shown
    assert len(_log_items(fresh_stack)) == 3000


def test_bad_rows_are_counted_with_their_reason_and_the_rest_is_written(fresh_stack, tmp_path, capsys):
    path = tmp_path / "catalog.csv"
    path.write_text(
        "item,category,available\n"
        "a,shoes,true\n"
        "b,shoes,0\n"
        "c,,1\n"  # no category
        "d,hats,maybe\n"
        "e,hats,1,extra\n"
        "\x01bad,hats,1\n" + "f," + "x" * 5000 + ",1\n"  # a line over the limit
        "b,hats,no\n"  # b again: the last line wins
        "g,hats\n"  # available absent: left as it is
    )
    assert streamsim_main(["catalog", str(path), "--no-progress", *fresh_stack.to_argv()]) == 0
    out = capsys.readouterr().out
    assert "catalogue: 3 items in 2 categories (1 hidden)" in out and "rejected 5" in out
    for reason in ("bad_category: 1", "bad_available: 1", "columns: 1", "bad_item: 1", "too_large: 1"):
        assert reason in out
    stored = _catalogue(fresh_stack)
    assert {item: (c.category, c.available) for item, c in stored.items()} == {
        "a": ("shoes", True),
        "b": ("hats", False),
        "g": ("hats", None),
    }


def test_a_file_without_available_leaves_hidden_items_hidden(fresh_stack, tmp_path, capsys):
    """DIGINETICA's categories file (no ``available``) once made every hidden item it lists shown."""
    hide, categories = tmp_path / "hide.csv", tmp_path / "categories.csv"
    hide.write_text("item,category,available\n110,c1,false\n7750,c1,true\n")
    categories.write_text("itemId;categoryId\n110;c2\n7750;c2\n42;c3\n")
    for path in (hide, categories):
        assert streamsim_main(["catalog", str(path), "--no-progress", *fresh_stack.to_argv()]) == 0
    assert "catalogue: 3 items in 2 categories (0 hidden)" in capsys.readouterr().out
    stored = {item: (c.category, c.available) for item, c in _catalogue(fresh_stack).items()}
    assert stored == {"110": ("c2", False), "7750": ("c2", True), "42": ("c3", None)}


def test_a_latin1_file_merges_no_ids(fresh_stack, tmp_path, capsys):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"item,category,available\nsku-\xe9,caf\xe9,true\nsku-\xe8,caf\xe8,false\nok,c,true\n")
    assert streamsim_main(["catalog", str(path), "--no-progress", *fresh_stack.to_argv()]) == 0
    out = capsys.readouterr().out
    assert "catalogue: 1 items in 1 categories (0 hidden)" in out and "not_utf8: 2 (first at line 2)" in out
    assert set(_catalogue(fresh_stack)) == {"ok"}


def test_a_file_and_stream_updates_are_ordered_by_time_not_by_arrival(fresh_stack, tmp_path, capsys):
    """A file load is stamped with the time it runs; a stream update with its own ``ts`` (at most
    MAX_CLOCK_SKEW_MS ahead of the pipeline's clock). Per item and column the newest time wins,
    whichever was written last."""
    tables = open_tables(fresh_stack)
    now = int(time.time() * 1000)
    # Stream first, file after: the file outranks an older update, not one stamped after its time.
    write_catalog(
        tables, [CatalogUpdate("older", "c", False, now - 60_000), CatalogUpdate("ahead", "c", False, now + 120_000)]
    )
    path = tmp_path / "show.csv"
    path.write_text("item,category,available\nolder,c,true\nahead,c,true\nlate,c,true\nnewer,c,true\n")
    before = int(time.time() * 1000)
    assert streamsim_main(["catalog", str(path), "--no-progress", *fresh_stack.to_argv()]) == 0
    after = int(time.time() * 1000)
    # File first, stream after: an update stamped after the file wins; a late one stamped before it loses.
    write_catalog(
        tables, [CatalogUpdate("late", None, False, before - 1_000), CatalogUpdate("newer", None, False, after + 1_000)]
    )
    stored = {item: cells.available for item, cells in _catalogue(fresh_stack).items()}
    assert stored == {"older": True, "ahead": False, "late": True, "newer": False}
