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
line (a known header, a ``{``, or five columns for raw UserBehavior); with a
format given, the first line must be that format's header or one of its rows.
A file that is empty, or whose first line fits no format, is a
:class:`FormatError` raised by :func:`read_records` itself, before any record.

Lines are read with a bound (:data:`MAX_LINE_CHARS`): a longer line is
rejected as ``too_large`` without being held in memory, and the lines after
it are read as usual, so a file without newlines (a binary file,
``/dev/zero``) costs no more memory than a small one. A corrupt or truncated
``.gz`` stops the reading with :class:`CorruptSourceError`, naming the file.

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
import itertools
import json
import os
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from schemas import EventError, parse_event
from schemas.events import MAX_EVENT_BYTES

FORMATS = ("seed", "retailrocket", "taobao", "jsonl")

#: The longest source line read; a longer one is rejected (``too_large``) unread.
#: A contract message is at most MAX_EVENT_BYTES, and a CSV row turns into a JSON
#: object longer than itself (field names, quotes), so no longer line can become an
#: event: the contract's own limit bounds the line, and with it the memory a line takes.
MAX_LINE_CHARS = MAX_EVENT_BYTES
#: An over-long line is read and dropped this much at a time.
_SKIP_CHUNK_CHARS = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_TOO_LONG = f"the line is longer than {MAX_LINE_CHARS} characters, the limit"

_HEADERS = {
    "user,productsku,type": "seed",
    "timestamp,visitorid,event,itemid,transactionid": "retailrocket",
    "timestamp,user,item,behavior": "taobao",
}
_RETAILROCKET_TYPES = {"view": "browse", "addtocart": "basket", "transaction": "purchase"}
_TAOBAO_TYPES = {"pv": "browse", "fav": "browse", "cart": "basket", "buy": "purchase"}


class FormatError(ValueError):
    pass


class CorruptSourceError(FormatError):
    """A compressed source that cannot be read to its end (corrupt or truncated)."""


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


Source = Path | str | BinaryIO


def source_name(source: Source) -> str:
    """How messages name a source: its path, or a stream's name."""
    if isinstance(source, str | os.PathLike):
        return os.fsdecode(source)
    return str(getattr(source, "name", "<stream>"))


def open_text(source: Source, errors: str = "replace") -> io.TextIOWrapper:
    """The text of a path or a binary stream, gunzipped if it starts with the gzip magic.

    ``errors="surrogateescape"`` keeps bytes that are not UTF-8 as lone surrogates
    (U+DC80-U+DCFF), which valid UTF-8 never decodes to: a reader that must not
    merge distinct ids can find and refuse them.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        with open(path, "rb") as probe:
            gzipped = probe.read(2) == _GZIP_MAGIC
        raw = gzip.open(path, "rb") if gzipped else open(path, "rb")
    else:
        raw = source if hasattr(source, "peek") else io.BufferedReader(source)
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            raw = gzip.GzipFile(fileobj=raw, mode="rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors=errors, newline="")


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
    raise FormatError(f"cannot tell the format from the first line {line[:80]!r}; pass --format ({', '.join(FORMATS)})")


def read_records(
    source: Source, fmt: str = "auto", *, now_ms: Callable[[], int] | None = None
) -> Iterator[SourceRecord]:
    """Every data line of ``source`` (a path or a binary stream) as a :class:`SourceRecord`, in order.

    The file is opened and its first line checked here, so a missing, empty or
    unrecognisable file raises (``OSError``, :class:`FormatError`) before the
    first record is asked for; a corrupt ``.gz`` may also raise
    :class:`CorruptSourceError` later, where the damage is.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; choose auto or one of {', '.join(FORMATS)}")
    now_ms = now_ms or (lambda: int(time.time() * 1000))
    name = source_name(source)
    text = open_text(source)
    try:
        lines = bounded_lines(text, name)
        first = next(lines, "")
        if first == "":
            raise FormatError(f"{name} is empty")
        fmt, has_header = _first_line_format(first, fmt, name, now_ms)
    except BaseException:
        text.close()
        raise
    return _records(text, lines if has_header else itertools.chain([first], lines), fmt, now_ms)


def _first_line_format(first: str | None, fmt: str, name: str, now_ms) -> tuple[str, bool]:
    """(format, has a header) for a file whose first line is ``first`` (None: over-long)."""
    if first is None:
        if fmt == "auto":
            raise FormatError(
                f"cannot tell the format of {name}: its first line is longer than {MAX_LINE_CHARS} characters "
                "(not a text file of events?)"
            )
        raise FormatError(
            f"{name} is not {fmt}: its first line is longer than {MAX_LINE_CHARS} characters, "
            f"neither a {fmt} header nor a {fmt} row"
        )
    try:
        detected, has_header = detect_format(first)
    except FormatError as exc:
        if fmt == "auto":
            raise FormatError(f"{name}: {exc}") from None
        detected, has_header = None, False
    if fmt == "auto":
        return detected, has_header
    if has_header:
        if detected != fmt:
            raise FormatError(f"{name} has a {detected} header, not {fmt}")
        return fmt, True
    # A given format and no header: the first line must be a row of that format.
    line = first.rstrip("\r\n")
    try:
        _CONVERTERS[fmt](line, source_event_id(0, line), now_ms)
    except FormatError as exc:
        mismatch = str(exc)
    except EventError as exc:
        if exc.code not in ("not_json", "not_object"):
            return fmt, False  # a row of the right shape with a bad value: rejected like any other
        mismatch = exc.detail
    else:
        return fmt, False
    raise FormatError(
        f"{name} is not {fmt}: its first line {line.strip()[:80]!r} is neither a {fmt} header "
        f"nor a {fmt} row ({mismatch}); check --format, or leave it out to detect the format"
    )


def bounded_lines(text: io.TextIOBase, name: str, limit: int = MAX_LINE_CHARS) -> Iterator[str | None]:
    """The lines of ``text`` with their endings; None for a line over ``limit`` characters.

    A line ends at ``\n``, ``\r\n`` or a lone ``\r`` (``text`` is opened with ``newline=""``).

    An over-long line is reported (None) as soon as it passes the bound, and the
    rest of it is read and dropped in chunks only when the next line is asked
    for: whoever stops at the report (``--limit``) never reads further.
    """
    lines = 0
    try:
        while True:
            # Room for the line, a "\r\n", and one character to notice a longer line.
            line = text.readline(limit + 3)
            if not line:
                return
            lines += 1
            complete = line.endswith(("\n", "\r")) or len(line) < limit + 3
            if complete and len(line.rstrip("\r\n")) <= limit:
                yield line
                continue
            yield None
            while not complete:
                piece = text.readline(_SKIP_CHUNK_CHARS)
                complete = not piece or piece.endswith(("\n", "\r"))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        why = str(exc) or type(exc).__name__
        if not lines:
            raise CorruptSourceError(f"{name} is not a readable gzip file ({why})") from None
        raise CorruptSourceError(
            f"{name} is corrupt or truncated after line {lines:,} ({why}); the lines before it were read"
        ) from None


def _records(text: io.TextIOBase, lines: Iterator[str | None], fmt: str, now_ms) -> Iterator[SourceRecord]:
    convert = _CONVERTERS[fmt]
    with text:
        for position, line in enumerate(lines):
            if line is None:
                yield SourceRecord(position, None, "too_large", _TOO_LONG)
                continue
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
