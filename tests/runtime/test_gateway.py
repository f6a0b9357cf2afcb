"""The Bigtable gateway's contract, on the real emulator: one row shape, key order,
filters, chunked writes, and retries that resume where a failed stream stopped."""

from __future__ import annotations

import grpc
import pytest

from schemas import layout
from streamsim.runtime.bigtable import ReadError, Table, entry, filters, messages, open_tables, set_cell, table_path
from streamsim.runtime.bigtable import table as table_module
from streamsim.runtime.clients import bigtable_channel


def _rows(n: int, family: str = layout.SCORES):
    return [entry(b"k%05d" % i, [set_cell(family, b"q", b"%d" % i)]) for i in range(n)]


def test_reads_by_key_and_range_share_one_shape(fresh_stack):
    users = open_tables(fresh_stack).users
    assert users.mutate(_rows(2500)) == 2500  # more than one MutateRows chunk
    got = list(users.read_rows([b"k00007", b"k00002", b"k00002", b"missing"]))
    assert [key for key, _ in got] == [b"k00002", b"k00007"]
    cell = got[0][1][layout.SCORES][b"q"]
    assert (cell.family, cell.qualifier, cell.value) == (layout.SCORES, b"q", b"2") and cell.timestamp_micros > 0
    assert [k for k, _ in users.read_rows(start=b"k00010", end=b"k00013")] == [b"k00010", b"k00011", b"k00012"]
    assert sum(1 for _ in users.read_rows()) == 2500
    assert len(list(users.read_rows([b"k%05d" % i for i in range(2500)]))) == 2500  # several key batches
    assert users.read_row(b"missing") == {}


def test_the_tables_count_what_bigtable_nodes_are_sized_on(fresh_stack):
    """Rows looked up (a key costs a lookup, found or not), rows written, conditional writes."""
    users = open_tables(fresh_stack).users
    users.mutate(_rows(5))
    assert (users.rows_read, users.rows_written, users.rows_checked) == (0, 5, 0)
    assert len(list(users.read_rows([b"k00001", b"k00002", b"missing"]))) == 2
    assert users.rows_read == 3
    assert len(list(users.read_rows(start=b"k00001", end=b"k00004"))) == 3
    assert users.rows_read == 6
    users.check_and_mutate(b"k00001", filters.newest(), true_mutations=[set_cell(layout.SCORES, b"q", b"x")])
    assert (users.rows_read, users.rows_written, users.rows_checked) == (6, 5, 1)


def test_filters_newest_and_visible_at(fresh_stack):
    tables = open_tables(fresh_stack)
    key = layout.item_row_key("a")
    tables.similarities.mutate(
        [
            entry(key, [set_cell(layout.NEIGHBOURS, layout.TOP, b"g%d" % g, layout.generation_cell_micros(g))])
            for g in (10, 20, 30)
        ]
    )
    for generation, expected in ((10, b"g10"), (25, b"g20"), (30, b"g30"), (99, b"g30")):
        row = tables.similarities.read_row(key, filters.visible_at(generation))
        assert row[layout.NEIGHBOURS][layout.TOP].value == expected
    assert tables.similarities.read_row(key, filters.visible_at(9)) == {}
    tables.users.mutate([entry(b"u", [set_cell(layout.SCORES, b"x", b"1"), set_cell(layout.FOLDED, b"n", b"2")])])
    assert set(tables.users.read_row(b"u", filters.newest_in(layout.SCORES))) == {layout.SCORES}
    assert set(tables.users.read_row(b"u", filters.families(layout.SCORES, layout.FOLDED))) == {
        layout.SCORES,
        layout.FOLDED,
    }


class _Flaky(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return "injected"


class _FlakyChannel:
    """The real channel, except that the first ``failures`` ReadRows streams break after one response."""

    def __init__(self, channel, failures: int, code=grpc.StatusCode.UNAVAILABLE):
        self._channel, self.failures, self.code, self.requests = channel, failures, code, []

    def unary_unary(self, method, **kwargs):
        return self._channel.unary_unary(method, **kwargs)

    def unary_stream(self, method, **kwargs):
        call = self._channel.unary_stream(method, **kwargs)
        if method != messages.READ_ROWS:
            return call

        def flaky(request, **call_kwargs):
            self.requests.append(request)
            responses = call(request, **call_kwargs)
            if self.failures:
                self.failures -= 1
                yield next(responses)
                raise _Flaky(self.code)
            yield from responses

        return flaky


@pytest.mark.parametrize("by_key", [True, False])
def test_a_broken_read_stream_resumes_without_repeating_rows(fresh_stack, monkeypatch, by_key):
    monkeypatch.setattr(table_module, "_backoff", lambda attempt: None)
    # A response holds many rows: make them large enough that a stream needs several responses.
    big = [entry(b"k%05d" % i, [set_cell(layout.SCORES, b"q", bytes(20_000))]) for i in range(300)]
    open_tables(fresh_stack).users.mutate(big)
    channel = _FlakyChannel(bigtable_channel(fresh_stack), failures=2)
    users = Table(channel, table_path(fresh_stack, fresh_stack.tables.users))
    keys = [b"k%05d" % i for i in range(300)]
    got = [k for k, _ in (users.read_rows(keys) if by_key else users.read_rows())]
    assert got == keys and len(channel.requests) == 3


def test_a_permanent_error_is_not_retried(fresh_stack, monkeypatch):
    monkeypatch.setattr(table_module, "_backoff", lambda attempt: None)
    open_tables(fresh_stack).users.mutate(_rows(3))
    channel = _FlakyChannel(bigtable_channel(fresh_stack), failures=1, code=grpc.StatusCode.PERMISSION_DENIED)
    users = Table(channel, table_path(fresh_stack, fresh_stack.tables.users))
    with pytest.raises(ReadError, match="PERMISSION_DENIED"):
        list(users.read_rows())
    assert len(channel.requests) == 1


def test_compatibility_guard_names_a_missing_field(monkeypatch):
    messages.check_compatible()
    monkeypatch.setitem(messages._USED_FIELDS, messages.RowFilter, ("chain", "no_such_field"))
    with pytest.raises(RuntimeError, match="no_such_field"):
        messages.check_compatible()
