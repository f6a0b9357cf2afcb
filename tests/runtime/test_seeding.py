"""The seeding helpers write what the layout says, read back with Google's own client
library (an oracle independent of streamsim's gateway)."""

from google.cloud import bigtable

from schemas import codecs, layout
from streamsim.runtime.seeding import write_generation, write_scores


def test_write_scores_and_generation_follow_the_layout(fresh_stack, monkeypatch):
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", fresh_stack.bigtable_host)
    write_scores(fresh_stack, {"u1": {"a": 2.0, "b": 0.5}, "u2": {"a": 6.0}})
    instance = bigtable.Client(project=fresh_stack.project).instance(fresh_stack.instance)
    pair = instance.table(fresh_stack.tables.users).read_row(layout.user_item_key("u1", "a"))
    assert codecs.decode_double(pair.cells[layout.SCORES][layout.SCORE][0].value) == 2.0
    assert codecs.decode_int64(pair.cells[layout.SCORES][layout.VERSION][0].value) == 1
    item = instance.table(fresh_stack.tables.items).read_row(layout.item_row_key("a"))
    assert codecs.decode_double(item.cells[layout.ITEM_STATS][layout.NORM2][0].value) == 40.0
    assert codecs.decode_int64(item.cells[layout.ITEM_STATS][layout.USERS][0].value) == 2
    holders = instance.table(fresh_stack.tables.contributions).read_rows(
        start_key=layout.item_prefix("a"), end_key=layout.item_prefix("a")[:-1] + b"\x01"
    )
    assert sorted(layout.ids_from_pair_key(row.row_key)[1] for row in holders) == ["u1", "u2"]

    write_generation(fresh_stack, 1_700_000_000_000, {"a": [("b", 0.5)]}, popular=[("a", 8.0)])
    row = instance.table(fresh_stack.tables.similarities).read_row(layout.item_row_key("a"))
    cell = row.cells[layout.NEIGHBOURS][layout.TOP][0]
    assert codecs.decode_neighbours(cell.value) == [("b", 0.5)]
    assert layout.generation_of_cell(int(cell.timestamp.timestamp() * 1e6)) == 1_700_000_000_000
    meta = instance.table(fresh_stack.tables.meta).read_row(layout.GENERATION_ROW)
    assert codecs.decode_int64(meta.cells[layout.GENERATION][layout.CURRENT][0].value) == 1_700_000_000_000
