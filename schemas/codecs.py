"""Value codecs for Bigtable cells.

Numbers are big-endian so that Bigtable's own ``ReadModifyWrite`` increment
(64-bit big-endian signed) and ``cbt`` agree with them.

Top-K neighbour lists (similarity rows, the popularity list) use a versioned,
columnar packed format so that serving can decode a row with two
``numpy.frombuffer`` calls and no per-neighbour Python work::

    offset  size      field
    0       1         version (1)
    1       4         count n, uint32 big-endian
    5       8n        scores, float64 big-endian, in list order
    5+8n    2n        item id lengths in bytes, uint16 big-endian
    5+10n   sum(len)  item ids, UTF-8, concatenated
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable

import numpy as np

PACKED_VERSION = 1
_HEADER = struct.Struct(">BI")
_DOUBLE = struct.Struct(">d")
_INT64 = struct.Struct(">q")
_CONTRIBUTION = struct.Struct(">dq")


def encode_double(value: float) -> bytes:
    return _DOUBLE.pack(value)


def decode_double(data: bytes) -> float:
    return _DOUBLE.unpack(data)[0]


def encode_int64(value: int) -> bytes:
    return _INT64.pack(value)


def decode_int64(data: bytes) -> int:
    return _INT64.unpack(data)[0]


def encode_available(available: bool) -> bytes:
    """A catalogue ``available`` cell: one byte, 1 shown, 0 hidden."""
    return b"\x01" if available else b"\x00"


def decode_available(data: bytes) -> bool:
    return data != b"\x00"


def encode_catalog_changes(changes: Iterable[tuple[str, str | None, bool | None, int]]) -> bytes:
    """A catalogue change-log cell: ``(item, category, available, update micros)`` per change
    (None: left as it is), as compact UTF-8 JSON (one C call decodes a thousand)."""
    return json.dumps([list(change) for change in changes], separators=(",", ":"), ensure_ascii=False).encode()


def decode_catalog_changes(data: bytes) -> list[tuple[str, str | None, bool | None, int]]:
    return [tuple(change) for change in json.loads(data)]


def encode_text(text: str) -> bytes:
    return text.encode("utf-8")


def decode_text(data: bytes) -> str:
    return data.decode("utf-8")


def encode_contribution(r_ui: float, events: int) -> bytes:
    """A ``contributions`` cell: r_ui (float64) then the stamp of the events behind it (int64)."""
    return _CONTRIBUTION.pack(r_ui, events)


def decode_contribution(data: bytes) -> tuple[float, int]:
    return _CONTRIBUTION.unpack(data)


def encode_neighbours(neighbours: Iterable[tuple[str, float]]) -> bytes:
    """Pack ``(item, score)`` pairs, keeping their order."""
    items: list[bytes] = []
    scores: list[float] = []
    for item, score in neighbours:
        raw = item.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise ValueError(f"item id of {len(raw)} bytes does not fit the packed format")
        items.append(raw)
        scores.append(score)
    return b"".join(
        (
            _HEADER.pack(PACKED_VERSION, len(items)),
            np.asarray(scores, dtype=">f8").tobytes(),
            np.asarray([len(i) for i in items], dtype=">u2").tobytes(),
            *items,
        )
    )


def decode_neighbours_arrays(data: bytes) -> tuple[list[str], np.ndarray]:
    """Unpack to ``(items, scores)`` with scores as native float64."""
    if len(data) < _HEADER.size:
        raise ValueError("packed neighbour list is truncated")
    version, count = _HEADER.unpack_from(data)
    if version != PACKED_VERSION:
        raise ValueError(f"packed neighbour list version {version} is not supported")
    scores_end = _HEADER.size + 8 * count
    lengths_end = scores_end + 2 * count
    if len(data) < lengths_end:
        raise ValueError("packed neighbour list is truncated")
    scores = np.frombuffer(data, dtype=">f8", count=count, offset=_HEADER.size)
    lengths = np.frombuffer(data, dtype=">u2", count=count, offset=scores_end)
    ends = lengths_end + np.cumsum(lengths, dtype=np.int64)
    if lengths_end + int(lengths.sum(dtype=np.int64)) != len(data):
        raise ValueError("packed neighbour list has a bad length")
    starts = ends - lengths
    items = [data[s:e].decode("utf-8") for s, e in zip(starts.tolist(), ends.tolist())]
    return items, scores.astype(np.float64)


def decode_neighbours(data: bytes) -> list[tuple[str, float]]:
    items, scores = decode_neighbours_arrays(data)
    return list(zip(items, scores.tolist()))


def encode_intent(contributions: Iterable[tuple[str, float, int]]) -> bytes:
    """An ``items q:<token>`` cell: the (user, r_ui, stamp) an item fold committed to write.

    A negative stamp -e is an erasure: delete the user's contribution cells older than epoch e.

    JSON: Python writes floats with the shortest repr that reads back exactly.
    """
    return json.dumps([[user, r, n] for user, r, n in contributions], separators=(",", ":")).encode("utf-8")


def decode_intent(data: bytes) -> list[tuple[str, float, int]]:
    return [(user, float(r), int(n)) for user, r, n in json.loads(data)]


_REPURCHASE = struct.Struct(">qqq")


def encode_repurchase(buyers: int, repeat_buyers: int, interval_ms: int) -> bytes:
    """A ``similarities b:rebuy`` cell: the item's buyers, the buyers who bought it twice
    or more, and its typical repurchase interval in ms (0: nobody bought it twice)."""
    return _REPURCHASE.pack(buyers, repeat_buyers, interval_ms)


def decode_repurchase(data: bytes) -> tuple[int, int, int]:
    return _REPURCHASE.unpack(data)
