"""Source files that can be replayed as events, and their deterministic event ids.

=============  ==============================================================
format         lines
=============  ==============================================================
seed           ``user,productSku,type`` with type 1 browse, 2 basket,
               3 purchase (the seed's export; no event time: ``ts`` is the
               publish time)
retailrocket   ``timestamp,visitorid,event,itemid,transactionid`` (Kaggle
               RetailRocket ``events.csv``; ms; view/addtocart/transaction)
taobao         ``timestamp,user,item,behavior`` (shared/data tmall set; s) or
               the raw UserBehavior order ``user,item,category,behavior,
               timestamp`` without header; pv and fav -> browse, cart ->
               basket, buy -> purchase
jsonl          one contract event (JSON object) per line
=============  ==============================================================

``.gz`` files are read directly. ``auto`` picks the format from the first
line (a known header, a ``{``, or five columns for raw UserBehavior).

Event ids of replayed rows are derived from the row's position and its text
(:func:`source_event_id`), not the file name: replaying a file twice yields
the same ids (a no-op end to end), while identical rows at different
positions (the seed repeats a row for each repeated view) stay distinct.
A jsonl line that carries an ``event_id`` keeps it.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from schemas import EventError, parse_event

FORMATS = ("seed", "retailrocket", "taobao", "jsonl")

_HEADERS = {
    "user,productsku,type": "seed",
    "timestamp,visitorid,event,itemid,transactionid": "retailrocket",
    "timestamp,user,item,behavior": "taobao",
}
_RETAILROCKET_TYPES = {"view": "browse", "addtocart": "basket", "transaction": "purchase"}
_TAOBAO_TYPES = {"pv": "browse", "fav": "browse", "cart": "basket", "buy": "purchase"}


class FormatError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """One data line: the message to publish, or why it cannot be."""

    position: int
    data: bytes | None
    error: str | None = None
    detail: str | None = None


def source_event_id(position: int, line: str) -> str:
    """Stable id of the data line at ``position`` (0 = first data line)."""
    digest = hashlib.blake2b(f"{position}\x00{line}".encode(), digest_size=12).hexdigest()
    return f"src-{position}-{digest}"


def open_text(path: Path) -> io.TextIOBase:
    path = Path(path)
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def detect_format(first_line: str) -> tuple[str, bool]:
    """(format, whether the first line is a header) from a file's first line."""
    line = first_line.strip().lstrip("\ufeff")
    if line.lower() in _HEADERS:
        return _HEADERS[line.lower()], True
    if line.startswith("{"):
        return "jsonl", False
    parts = line.split(",")
    if len(parts) == 5 and parts[3] in _TAOBAO_TYPES and parts[4].isdigit():
        return "taobao", False
    raise FormatError(f"cannot tell the format from the first line {line[:80]!r}; pass --format")


def read_records(path: Path, fmt: str = "auto", *, now_ms: Callable[[], int] | None = None) -> Iterator[SourceRecord]:
    """Every data line of ``path`` as a :class:`SourceRecord`, in file order."""
    if fmt != "auto" and fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; choose auto or one of {', '.join(FORMATS)}")
    now_ms = now_ms or (lambda: int(time.time() * 1000))
    with open_text(path) as text:
        first = text.readline()
        if not first:
            return
        detected, has_header = detect_format(first)
        if fmt == "auto":
            fmt = detected
        elif has_header and detected != fmt:
            raise FormatError(f"{path} has a {detected} header, not {fmt}")
        lines = text if has_header else _chain(first, text)
        convert = _CONVERTERS[fmt]
        for position, line in enumerate(lines):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            event_id = source_event_id(position, line)
            try:
                body = convert(line, event_id, now_ms)
                data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                parse_event(data)
            except EventError as exc:
                yield SourceRecord(position, None, exc.code, exc.detail)
                continue
            except FormatError as exc:
                yield SourceRecord(position, None, "bad_row", str(exc))
                continue
            yield SourceRecord(position, data)


def _chain(first: str, rest) -> Iterator[str]:
    yield first
    yield from rest


def _columns(line: str, count: int) -> list[str]:
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != count:
        raise FormatError(f"expected {count} columns, got {len(parts)}")
    return parts


def _seed(line, event_id, now_ms):
    user, item, code = _columns(line, 3)
    return {"event_id": event_id, "user": user, "item": item, "type": code, "ts": now_ms()}


def _retailrocket(line, event_id, now_ms):
    ts, user, event, item, _transaction = _columns(line, 5)
    if event not in _RETAILROCKET_TYPES:
        raise EventError("bad_type", f"RetailRocket event {event[:40]!r}")
    return {"event_id": event_id, "user": user, "item": item, "type": _RETAILROCKET_TYPES[event], "ts": _int(ts)}


def _taobao(line, event_id, now_ms):
    parts = [p.strip() for p in line.split(",")]
    if len(parts) == 4:
        ts, user, item, behaviour = parts
    elif len(parts) == 5:
        user, item, _category, behaviour, ts = parts
    else:
        raise FormatError(f"expected 4 or 5 columns, got {len(parts)}")
    if behaviour not in _TAOBAO_TYPES:
        raise EventError("bad_type", f"Taobao behaviour {behaviour[:40]!r}")
    # Taobao times are epoch seconds; the contract wants ms.
    return {"event_id": event_id, "user": user, "item": item, "type": _TAOBAO_TYPES[behaviour], "ts": _int(ts) * 1000}


def _jsonl(line, event_id, now_ms):
    try:
        body = json.loads(line)
    except ValueError as exc:
        raise EventError("not_json", str(exc)[:200]) from None
    if not isinstance(body, dict):
        raise EventError("not_object", f"got JSON {type(body).__name__}")
    body.setdefault("event_id", event_id)
    return body


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise EventError("bad_timestamp", f"ts {text[:40]!r}") from None


_CONVERTERS = {"seed": _seed, "retailrocket": _retailrocket, "taobao": _taobao, "jsonl": _jsonl}
