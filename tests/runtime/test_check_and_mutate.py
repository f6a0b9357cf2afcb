"""The gateway's CheckAndMutateRow against the Bigtable emulator."""

from __future__ import annotations

import grpc
import pytest

from schemas import codecs, layout
from streamsim.runtime.bigtable import entry, filters, open_tables, set_cell
from streamsim.runtime.bigtable import table as table_module
from streamsim.runtime.bigtable.messages import RowFilter
from streamsim.runtime.bigtable.table import Table, WriteError
from tests.support.flaky_calls import Failed

ROW = b"row"
COLUMN = (layout.GENERATION, layout.CURRENT)


def at_least(value: int) -> RowFilter:
    """The newest cell of the column, if its int64 value is >= ``value`` (non-negative values)."""
    value_range = RowFilter()
    value_range.value_range_filter.start_value_closed = codecs.encode_int64(value)
    value_range.value_range_filter.end_value_closed = codecs.encode_int64((1 << 63) - 1)
    return filters.chain(filters.column(*COLUMN), filters.newest(), value_range)


def value(table: Table) -> bytes | None:
    cell = table.read_row(ROW, filters.newest()).get(COLUMN[0], {}).get(COLUMN[1])
    return None if cell is None else cell.value


def put(number: int):
    return set_cell(*COLUMN, codecs.encode_int64(number))


def test_branches_follow_the_predicate(fresh_stack):
    table = open_tables(fresh_stack).meta
    # No row: nothing matches, the false branch applies.
    has_column = filters.column(*COLUMN)
    assert table.check_and_mutate(ROW, has_column, true_mutations=[put(1)], false_mutations=[put(2)]) is False
    assert value(table) == codecs.encode_int64(2)
    assert table.check_and_mutate(ROW, has_column, true_mutations=[put(3)], false_mutations=[put(4)]) is True
    assert value(table) == codecs.encode_int64(3)
    # Neither branch given for the outcome: nothing changes.
    assert table.check_and_mutate(ROW, filters.column(*COLUMN), false_mutations=[put(9)]) is True
    assert value(table) == codecs.encode_int64(3)


def test_a_value_range_on_the_newest_cell_compares_int64_numerically(fresh_stack):
    table = open_tables(fresh_stack).meta
    table.check_and_mutate(ROW, at_least(0), false_mutations=[put(1_796_160_147_753)])
    assert table.check_and_mutate(ROW, at_least(1_796_160_147_752), false_mutations=[put(5)]) is True
    assert table.check_and_mutate(ROW, at_least(1_796_160_147_753), false_mutations=[put(5)]) is True
    assert value(table) == codecs.encode_int64(1_796_160_147_753)
    # 2**41 has zero low bytes yet is larger: big-endian bytes compare like the (non-negative) numbers.
    assert table.check_and_mutate(ROW, at_least(1_796_160_147_754), false_mutations=[put(1 << 41)]) is False
    assert value(table) == codecs.encode_int64(1 << 41)
    # Older cells with larger values are still stored; only the newest one counts.
    table.mutate([entry(ROW, [put(7)])])
    assert table.check_and_mutate(ROW, at_least(8), false_mutations=[put(8)]) is False
    assert value(table) == codecs.encode_int64(8)


class _Failure(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return "injected by the test"


def test_transient_failures_are_retried_and_permanent_ones_raise(fresh_stack, monkeypatch):
    monkeypatch.setattr(table_module, "_backoff", lambda attempt: None)
    table = open_tables(fresh_stack).meta
    real_start, calls = Table._start_check_and_mutate, []

    def flaky(self, request):
        calls.append(1)
        if len(calls) == 1:
            return Failed(_Failure(grpc.StatusCode.UNAVAILABLE))
        return real_start(self, request)

    monkeypatch.setattr(Table, "_start_check_and_mutate", flaky)
    assert table.check_and_mutate(ROW, filters.column(*COLUMN), false_mutations=[put(1)]) is False
    assert len(calls) == 2 and value(table) == codecs.encode_int64(1)

    def denied(self, request):
        calls.append(1)
        return Failed(_Failure(grpc.StatusCode.PERMISSION_DENIED))

    monkeypatch.setattr(Table, "_start_check_and_mutate", denied)
    with pytest.raises(WriteError, match="PERMISSION_DENIED"):
        table.check_and_mutate(ROW, filters.column(*COLUMN), false_mutations=[put(2)])
    assert len(calls) == 3  # not retried
