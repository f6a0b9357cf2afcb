"""The raw protobuf messages of the Bigtable data API, and builders for mutations.

Why raw messages: the handwritten client spends most of its CPU in proto-plus
wrappers and row objects (docs/design.md: raw stubs were 9x faster for writes and
3x for reads). ``Message.pb()`` is proto-plus's public way to the underlying
protobuf class; :func:`check_compatible` fails loudly if a library upgrade ever
moves a field this package relies on, instead of letting a read return nothing.
"""

from __future__ import annotations

from google.cloud.bigtable_v2.types import bigtable as _bigtable
from google.cloud.bigtable_v2.types import data as _data

ReadRowsRequest = _bigtable.ReadRowsRequest.pb()
ReadRowsResponse = _bigtable.ReadRowsResponse.pb()
MutateRowsRequest = _bigtable.MutateRowsRequest.pb()
MutateRowsResponse = _bigtable.MutateRowsResponse.pb()
SampleRowKeysRequest = _bigtable.SampleRowKeysRequest.pb()
SampleRowKeysResponse = _bigtable.SampleRowKeysResponse.pb()
CheckAndMutateRowRequest = _bigtable.CheckAndMutateRowRequest.pb()
CheckAndMutateRowResponse = _bigtable.CheckAndMutateRowResponse.pb()
RowFilter = _data.RowFilter.pb()
Mutation = _data.Mutation.pb()

#: gRPC method paths of the data API (google/bigtable/v2/bigtable.proto).
READ_ROWS = "/google.bigtable.v2.Bigtable/ReadRows"
MUTATE_ROWS = "/google.bigtable.v2.Bigtable/MutateRows"
SAMPLE_ROW_KEYS = "/google.bigtable.v2.Bigtable/SampleRowKeys"
CHECK_AND_MUTATE_ROW = "/google.bigtable.v2.Bigtable/CheckAndMutateRow"

#: Fields the gateway reads or sets, per message: what an upgrade must keep.
_USED_FIELDS = {
    ReadRowsRequest: ("table_name", "app_profile_id", "rows", "filter", "rows_limit"),
    ReadRowsResponse.CellChunk: (
        "row_key",
        "family_name",
        "qualifier",
        "timestamp_micros",
        "value",
        "value_size",
        "reset_row",
        "commit_row",
    ),
    MutateRowsRequest: ("table_name", "app_profile_id", "entries"),
    MutateRowsResponse.Entry: ("index", "status"),
    RowFilter: (
        "chain",
        "interleave",
        "cells_per_column_limit_filter",
        "column_range_filter",
        "timestamp_range_filter",
        "family_name_regex_filter",
        "column_qualifier_regex_filter",
        "strip_value_transformer",
        "cells_per_row_limit_filter",
        "value_range_filter",
    ),
    Mutation: ("set_cell", "delete_from_column", "delete_from_family", "delete_from_row"),
    CheckAndMutateRowRequest: (
        "table_name",
        "app_profile_id",
        "row_key",
        "predicate_filter",
        "true_mutations",
        "false_mutations",
    ),
    CheckAndMutateRowResponse: ("predicate_matched",),
}


def check_compatible() -> None:
    """Raise ``RuntimeError`` if an installed google-cloud-bigtable lacks a field used here."""
    for message, fields in _USED_FIELDS.items():
        missing = [f for f in fields if f not in message.DESCRIPTOR.fields_by_name]
        if missing:
            raise RuntimeError(
                f"google-cloud-bigtable changed {message.DESCRIPTOR.full_name}: no field(s) {missing}; "
                "streamsim's Bigtable gateway needs updating"
            )


def set_cell(family: str, qualifier: bytes, value: bytes, timestamp_micros: int = -1):
    """A SetCell mutation; -1 lets the server stamp the cell."""
    mutation = Mutation()
    cell = mutation.set_cell
    cell.family_name, cell.column_qualifier, cell.value, cell.timestamp_micros = (
        family,
        qualifier,
        value,
        timestamp_micros,
    )
    return mutation


def delete_cells(family: str, qualifier: bytes, *, before_micros: int | None = None, after_micros: int = 0):
    """Delete a column's cells (only those in [``after_micros``, ``before_micros``) if given)."""
    mutation = Mutation()
    delete = mutation.delete_from_column
    delete.family_name, delete.column_qualifier = family, qualifier
    if before_micros is not None:
        delete.time_range.start_timestamp_micros = after_micros
        delete.time_range.end_timestamp_micros = before_micros
    return mutation


def delete_family(family: str):
    """Delete every cell of a family in the row."""
    mutation = Mutation()
    mutation.delete_from_family.family_name = family
    return mutation


def delete_row():
    """Delete the whole row."""
    mutation = Mutation()
    mutation.delete_from_row.SetInParent()
    return mutation


def entry(row_key: bytes, mutations: list):
    """One row of a MutateRows call: its mutations apply atomically."""
    item = MutateRowsRequest.Entry(row_key=row_key)
    item.mutations.extend(mutations)
    return item


check_compatible()
