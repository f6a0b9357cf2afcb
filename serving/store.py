"""Read-only Bigtable access for serving, over raw gRPC (``grpc.aio``).

Why not ``google.cloud.bigtable``: its row objects and proto-plus wrappers
cost most of a request's CPU (DESIGN.md measured the raw stubs 3x faster for
reads). This module speaks the ``ReadRows`` RPC with the plain protobuf
messages and merges cell chunks itself; only what serving reads is here.

Every call carries a deadline and is not retried: a request that cannot be
answered in time fails fast with :class:`BackendUnavailable` (HTTP 503), and
the channel reconnects quickly on its own once Bigtable is back.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import re

import grpc
import numpy as np
from google.cloud.bigtable_v2.types import ReadRowsRequest, ReadRowsResponse

from schemas import codecs, layout
from streamsim.bigtable_wire import Cell, merge_chunks
from streamsim.settings import Settings

log = logging.getLogger(__name__)

_READ_ROWS = "/google.bigtable.v2.Bigtable/ReadRows"
_Request = ReadRowsRequest.pb()
_Response = ReadRowsResponse.pb()
_Filter = _Request.DESCRIPTOR.fields_by_name["filter"].message_type._concrete_class

_CLOUD_ENDPOINT = "bigtable.googleapis.com:443"
_SCOPE = "https://www.googleapis.com/auth/bigtable.data.readonly"
_CHANNEL_OPTIONS = [
    # gRPC's default reconnect backoff grows to 2 minutes; serving should be
    # back within a second or two of Bigtable.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A long user row or a wide batch of similarity rows exceeds gRPC's 4 MB default.
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
]


class BackendUnavailable(RuntimeError):
    """Bigtable did not answer in time or refused the call."""


#: Loop time by which the current request must be answered (None: no budget).
#: Set per request by the app; each RPC gets the smaller of its own deadline
#: and what is left, so a request that needs several reads still fails in time.
#: A context variable rather than asyncio.timeout: that costs a timer per
#: request even when the cache answers without any RPC.
request_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_deadline", default=None)


def _exact(value: bytes) -> bytes:
    # Bigtable filters take RE2 patterns that must match the whole name.
    return re.escape(value)


def _chain(*filters) -> object:
    row_filter = _Filter()
    row_filter.chain.filters.extend(filters)
    return row_filter


def _family(name: str):
    return _Filter(family_name_regex_filter=_exact(name.encode()).decode())


def _column(qualifier: bytes):
    return _Filter(column_qualifier_regex_filter=_exact(qualifier))


#: Scores and pointer columns keep one live version, but the emulator applies
#: GC lazily: always ask for the newest cell only.
_NEWEST = _Filter(cells_per_column_limit_filter=1)


def _as_of(generation: int):
    """Cells of ``generation`` or older (the end of a timestamp range is exclusive)."""
    end = layout.generation_cell_micros(generation + 1)
    return _Filter(timestamp_range_filter={"start_timestamp_micros": 0, "end_timestamp_micros": end})


class BigtableStore:
    """The serving reads: user histories, similarity rows, the pointer, popularity.

    Create it inside the event loop that uses it (``grpc.aio`` channels bind
    to the running loop) and :meth:`close` it once.
    """

    def __init__(self, settings: Settings, *, deadline_seconds: float = 0.5, app_profile_id: str = ""):
        self._deadline = deadline_seconds
        self._app_profile_id = app_profile_id
        base = f"projects/{settings.project}/instances/{settings.instance}/tables/"
        tables = settings.tables
        self._users = base + tables.users
        self._similarities = base + tables.similarities
        self._meta = base + tables.meta
        self._channel = _open_channel(settings.bigtable_host)
        self._read_rows = self._channel.unary_stream(
            _READ_ROWS, request_serializer=_Request.SerializeToString, response_deserializer=_Response.FromString
        )
        self._history_filter = _chain(_family(layout.SCORES), _NEWEST)

    async def close(self) -> None:
        await self._channel.close()

    async def _read(self, table: str, keys: list[bytes], row_filter) -> dict[bytes, list[Cell]]:
        request = _Request(table_name=table, filter=row_filter, app_profile_id=self._app_profile_id)
        request.rows.row_keys.extend(keys)
        rows: dict[bytes, list[Cell]] = {}
        timeout = self._deadline
        deadline = request_deadline.get()
        if deadline is not None:
            timeout = min(timeout, deadline - asyncio.get_running_loop().time())
            if timeout <= 0:
                raise BackendUnavailable("the request's time budget is spent")
        try:
            call = self._read_rows(request, timeout=timeout)
            chunks = []
            async for response in call:
                chunks.extend(response.chunks)
        except grpc.aio.AioRpcError as exc:
            raise BackendUnavailable(f"Bigtable {exc.code().name}: {exc.details()}") from None
        for key, cells in merge_chunks(chunks):
            rows[key] = cells
        return rows

    async def read_history(self, user: str) -> tuple[list[str], np.ndarray]:
        """The user's items and r_ui (float64), in qualifier order; empty if no row."""
        key = layout.user_row_key(user)
        cells = (await self._read(self._users, [key], self._history_filter)).get(key, [])
        items = [cell.qualifier.decode("utf-8") for cell in cells]
        scores = np.array([codecs.decode_double(cell.value) for cell in cells], dtype=np.float64)
        return items, scores

    async def read_pointer(self) -> int | None:
        """The generation serving should use, or None before the first pass."""
        row_filter = _chain(_family(layout.GENERATION), _column(layout.CURRENT), _NEWEST)
        cells = (await self._read(self._meta, [layout.GENERATION_ROW], row_filter)).get(layout.GENERATION_ROW)
        return codecs.decode_int64(cells[0].value) if cells else None

    def _top_filter(self, generation: int):
        return _chain(_family(layout.NEIGHBOURS), _column(layout.TOP), _as_of(generation), _NEWEST)

    async def read_popular(self, generation: int) -> tuple[list[str], np.ndarray]:
        """The popularity list as of ``generation`` (empty if none was written)."""
        cells = (await self._read(self._meta, [layout.POPULAR_ROW], self._top_filter(generation))).get(
            layout.POPULAR_ROW
        )
        if not cells:
            return [], np.empty(0, dtype=np.float64)
        return codecs.decode_neighbours_arrays(cells[0].value)

    async def read_neighbours(self, generation: int, items: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
        """Packed top-K lists of ``items`` as of ``generation``, in one read.

        Items without a similarity row in that generation are absent from the
        result; the lists keep their stored order.
        """
        keys = {layout.item_row_key(item): item for item in items}
        rows = await self._read(self._similarities, list(keys), self._top_filter(generation))
        return {keys[key]: codecs.decode_neighbours_arrays(cells[0].value) for key, cells in rows.items() if cells}


def _open_channel(emulator_host: str | None) -> grpc.aio.Channel:
    if emulator_host:
        return grpc.aio.insecure_channel(emulator_host, options=_CHANNEL_OPTIONS)
    import google.auth
    import google.auth.transport.grpc
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=[_SCOPE])
    plugin = google.auth.transport.grpc.AuthMetadataPlugin(credentials, google.auth.transport.requests.Request())
    channel_credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(), grpc.metadata_call_credentials(plugin)
    )
    log.info("reading Cloud Bigtable at %s", _CLOUD_ENDPOINT)
    return grpc.aio.secure_channel(_CLOUD_ENDPOINT, channel_credentials, options=_CHANNEL_OPTIONS)
