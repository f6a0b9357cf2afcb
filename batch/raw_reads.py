"""ReadRows on raw protobuf messages, for the pass's driver-side reads of many small rows.

The Bigtable client's row objects cost most of the CPU of a read (DESIGN.md: raw stubs
were 3x faster for reads); ``streaming.bigtable_raw`` does the same for the fold but
drops cell timestamps, which a pass needs (dirty marks). This sends the RPC over the
client's own channel (so emulator settings and credentials are the client's) and merges
the chunks itself.

Contract: :func:`read_rows` yields ``(row_key, {family: {qualifier: (value, micros)}})``
in key order, keeping the first (newest) cell of each column. It does not retry: a failed
call raises ``grpc.RpcError`` and fails the pass (which a rerun repeats safely).
"""
from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from google.cloud.bigtable_v2.types import bigtable as _bigtable
from google.cloud.bigtable_v2.types import data as _data

from streamsim.bigtable_wire import merge_chunks, newest_by_column

_ReadRowsRequest = _bigtable.ReadRowsRequest.pb()
_ReadRowsResponse = _bigtable.ReadRowsResponse.pb()

#: Row keys per request when reading by key (well under the request-size limit).
KEYS_PER_READ = 1000
CALL_TIMEOUT_SECONDS = 300

Row = dict[str, dict[bytes, tuple[bytes, int]]]


def _filter_pb(row_filter):
    """A ``google.cloud.bigtable.row_filters`` filter as the raw RowFilter message."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # to_pb is the only public path
        message = row_filter.to_pb()
    return _data.RowFilter.pb(message)


def _call(table):
    channel = table._instance._client.table_data_client.transport.grpc_channel
    read = channel.unary_stream(
        "/google.bigtable.v2.Bigtable/ReadRows",
        request_serializer=_ReadRowsRequest.SerializeToString,
        response_deserializer=_ReadRowsResponse.FromString,
    )
    metadata = (("x-goog-request-params", f"table_name={quote(table.name, safe='')}"),)
    return lambda request: read(request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata)


def _merge(responses) -> Iterator[tuple[bytes, Row]]:
    chunks = (chunk for response in responses for chunk in response.chunks)
    for key, cells in merge_chunks(chunks):
        yield key, {family: {q: (cell.value, cell.timestamp_micros) for q, cell in columns.items()}
                    for family, columns in newest_by_column(cells).items()}


def read_rows(table, row_filter, *, keys: list[bytes] | None = None, start_key: bytes | None = None,
              end_key: bytes | None = None) -> Iterator[tuple[bytes, Row]]:
    """Rows of ``keys`` (sorted, batched) or of the range [start_key, end_key) (all if both None)."""
    call, filter_pb = _call(table), _filter_pb(row_filter)

    def request():
        message = _ReadRowsRequest(table_name=table.name)
        message.filter.CopyFrom(filter_pb)
        return message

    if keys is not None:
        for start in range(0, len(keys), KEYS_PER_READ):
            message = request()
            message.rows.row_keys.extend(keys[start : start + KEYS_PER_READ])
            yield from _merge(call(message))
        return
    message = request()
    if start_key is not None or end_key is not None:
        row_range = message.rows.row_ranges.add()
        if start_key is not None:
            row_range.start_key_closed = start_key
        if end_key is not None:
            row_range.end_key_open = end_key
    yield from _merge(call(message))
