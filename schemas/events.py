"""The clickstream event contract and the weights that turn events into scores.

Wire format: the data of one Pub/Sub message is a UTF-8 JSON object::

    {"event_id": "e-1", "user": "u42", "item": "sku-7", "type": "basket",
     "ts": "2026-11-22T10:00:00Z"}

========== ==============================================================
field      rule
========== ==============================================================
event_id   an id (see below); a re-sent event (retry, replay) keeps its id
user, item an id
type       ``browse`` | ``basket`` | ``purchase``, or the seed's codes
           1 | 2 | 3 (as numbers or strings)
ts         RFC 3339 string with a time zone, or epoch milliseconds (a
           number, or a string of digits)
session    optional: an id shared by the events of one visit (else the
           stream groups a user's events by time, ``layout.session_key``)
attribution optional: the ``attribution`` token of the answer that showed
           the item (``schemas.attribution``); the stream counts the event
           for that answer's arm and route
========== ==============================================================

An *id* is a string of 1-128 characters without control characters or lone
surrogates (:func:`is_valid_id`); the serving API takes ids by the same rule.

Unknown fields are ignored so that publishers can add context without
breaking consumers. ``event_id`` and ``ts`` may also come as message
attributes (some publishers put envelope data there); the body wins.

A catalogue update is a message of the same stream with ``"kind": "catalog"``
(:func:`parse_message` tells the two apart; any other ``kind`` is an unknown
field of an event, as before)::

    {"kind": "catalog", "item": "sku-7", "category": "shoes", "available": false,
     "ts": "2026-11-22T10:00:00Z"}

``item`` is an id, ``ts`` as for events (it orders updates of one item: the
newest wins whatever order they arrive in), and at least one of ``category``
(an id) and ``available`` (a JSON boolean) is given; an absent one is left as
it is.

Time that cannot pin state: the ``ts`` of an event or a catalogue update becomes
a cell timestamp (the ``recent`` row's order, the catalogue cells' "newest wins"),
so a time far ahead would outrank every real one for as long as it is ahead (year
9999: for good). A reader that knows the time (the pipeline) passes ``now_ms``, and
a ``ts`` more than :data:`MAX_CLOCK_SKEW_MS` after it is refused
(``future_timestamp``, dead-lettered): a fast clock pins nothing for longer than
that. The bound only moves forward with the clock, so a message accepted once is
accepted again when redelivered.

A user's erasure request (GDPR art. 17) is a message with ``"kind": "forget"``::

    {"kind": "forget", "user": "u42", "ts": "2026-11-22T10:00:00Z"}

``user`` is an id and ``ts`` the time of the request, as for events: the stream removes
everything it holds of the user, and drops the user's events dated at or before ``ts``
whenever they arrive (``streaming.forget``). A re-sent request (same ``ts``) changes nothing.

Every way to break the contract raises :class:`EventError` with a stable
``code`` (see :data:`ERROR_CODES`), which the pipeline copies into the
dead-letter message's attributes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
from collections.abc import Mapping
from datetime import datetime

from schemas import attribution

#: Larger messages are rejected unread: a real event is ~150 bytes, so 8 KiB
#: leaves room for extra context while bounding parse cost per message.
MAX_EVENT_BYTES = 8192
#: Bigtable qualifiers and row keys carry these ids; 128 keeps rows small.
MAX_ID_CHARS = 128
#: Year 9999 in epoch ms: beyond it RFC 3339 cannot render the timestamp.
MAX_EPOCH_MS = 253402300799999
#: How far ahead of the reader's clock a ``ts`` may be (publishers' clocks run a
#: little ahead; NTP keeps them within a second). Beyond it: ``future_timestamp``.
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000

ERROR_CODES = {
    "too_large": f"message is larger than {MAX_EVENT_BYTES} bytes",
    "not_json": "message data is not UTF-8 JSON",
    "not_object": "message data is JSON but not an object",
    "missing_field": "a required field is missing",
    "bad_id": "event_id is not a 1-128 character string without control characters or lone surrogates",
    "bad_field": "user, item or session is not a 1-128 character string without control characters or lone surrogates",
    "bad_type": "type is not browse, basket, purchase or the codes 1, 2, 3",
    "bad_timestamp": "ts is neither an RFC 3339 string with a time zone nor epoch milliseconds",
    "bad_catalog": "a catalogue update needs category (an id) and/or available (true or false)",
    "future_timestamp": "ts is more than MAX_CLOCK_SKEW_MS ahead of the reader's clock",
    "bad_attribution": "attribution is not a token this deployment's serving issued",
}

#: The ``kind`` of a catalogue update message.
CATALOG_KIND = "catalog"
#: The ``kind`` of a user's erasure request.
FORGET_KIND = "forget"

# Control characters, and lone surrogates (JSON can spell "\ud800"), which
# cannot be encoded as UTF-8 for Bigtable keys and qualifiers.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def id_problem(value) -> str | None:
    """Why ``value`` is not an id, as the end of a sentence; None if it is one.

    The one place the id rule lives: the stream and the serving API both
    store ids in Bigtable keys, so they must accept exactly the same ones.
    """
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_ID_CHARS:
        return f"is {len(value)} characters long; the limit is {MAX_ID_CHARS}"
    bad = _FORBIDDEN.search(value)
    if bad is None:
        return None
    if "\ud800" <= bad.group() <= "\udfff":
        return "contains a lone surrogate, which UTF-8 cannot encode"
    return "contains control characters"


def all_valid_ids(values: list[str]) -> bool:
    """True if every string of ``values`` is an id: one pass over them all, the fast
    path of a request's id lists (:func:`id_problem` says what is wrong with one)."""
    return all(0 < len(v) <= MAX_ID_CHARS for v in values) and _FORBIDDEN.search(",".join(values)) is None


def is_valid_id(value) -> bool:
    """True for a user, item or event id that keeps the contract above."""
    return id_problem(value) is None


class EventType(str, enum.Enum):
    BROWSE = "browse"
    BASKET = "basket"
    PURCHASE = "purchase"


# The seed's CSV export codes behaviour as 1 | 2 | 3.
_TYPE_ALIASES = {
    "browse": EventType.BROWSE,
    "basket": EventType.BASKET,
    "purchase": EventType.PURCHASE,
    "1": EventType.BROWSE,
    "2": EventType.BASKET,
    "3": EventType.PURCHASE,
}


class EventError(ValueError):
    """A message that breaks the event contract.

    ``code`` is one of :data:`ERROR_CODES` (stable, machine-readable);
    ``detail`` is a sentence for a person.
    """

    def __init__(self, code: str, detail: str):
        assert code in ERROR_CODES, code
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Event:
    event_id: str
    user: str
    item: str
    type: EventType
    ts_ms: int
    session: str | None = None
    #: The attribution token the event came back with (validated), if any.
    attribution: str | None = None

    def to_json(self) -> bytes:
        """The canonical wire form (``parse_event(e.to_json()) == e``)."""
        body = {"event_id": self.event_id, "user": self.user, "item": self.item, "type": self.type.value}
        body["ts"] = self.ts_ms
        if self.session is not None:
            body["session"] = self.session
        if self.attribution is not None:
            body["attribution"] = self.attribution
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclasses.dataclass(frozen=True)
class CatalogUpdate:
    """An item's catalogue change; None leaves that attribute as it is."""

    item: str
    category: str | None
    available: bool | None
    ts_ms: int

    def to_json(self) -> bytes:
        body = {"kind": CATALOG_KIND, "item": self.item, "ts": self.ts_ms}
        if self.category is not None:
            body["category"] = self.category
        if self.available is not None:
            body["available"] = self.available
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclasses.dataclass(frozen=True)
class ForgetRequest:
    """Erase everything of ``user`` held up to ``ts_ms``."""

    user: str
    ts_ms: int

    def to_json(self) -> bytes:
        body = {"kind": FORGET_KIND, "user": self.user, "ts": self.ts_ms}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _body(data: bytes) -> dict:
    if len(data) > MAX_EVENT_BYTES:
        raise EventError("too_large", f"{len(data)} bytes, the limit is {MAX_EVENT_BYTES}")
    try:
        body = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise EventError("not_json", str(exc)[:200]) from None
    if not isinstance(body, dict):
        raise EventError("not_object", f"got JSON {type(body).__name__}")
    return body


def parse_message(
    data: bytes, attributes: Mapping[str, str] | None = None, *, now_ms: int | None = None
) -> Event | CatalogUpdate | ForgetRequest:
    """One message of the stream: a catalogue update or an erasure request if its ``kind``
    says so, else an event. ``now_ms`` bounds every kind's ``ts`` (an erasure dated ahead
    would drop the user's events until then).

    Raises :class:`EventError` as :func:`parse_event` does; pure, like it.
    """
    body = _body(data)
    if body.get("kind") == CATALOG_KIND:
        return _not_ahead(_catalog_update(body, attributes or {}), now_ms)
    if body.get("kind") == FORGET_KIND:
        return _not_ahead(_forget_request(body, attributes or {}), now_ms)
    return _not_ahead(_event(body, attributes or {}), now_ms)


def parse_event(data: bytes, attributes: Mapping[str, str] | None = None, *, now_ms: int | None = None) -> Event:
    """Parse one message into an :class:`Event` or raise :class:`EventError`.

    ``now_ms``: the reader's clock; a ``ts`` more than :data:`MAX_CLOCK_SKEW_MS`
    after it is ``future_timestamp`` (None: no bound). Pure: no I/O, no clock of
    its own, and no other exception escapes for any input bytes.
    """
    return _not_ahead(_event(_body(data), attributes or {}), now_ms)


def _not_ahead(parsed, now_ms: int | None):
    if now_ms is not None and parsed.ts_ms > now_ms + MAX_CLOCK_SKEW_MS:
        ahead = (parsed.ts_ms - now_ms) / 1000
        raise EventError(
            "future_timestamp",
            f"ts {parsed.ts_ms} is {ahead:,.0f} s ahead of now (the bound is {MAX_CLOCK_SKEW_MS // 1000} s)",
        )
    return parsed


def _catalog_update(body: dict, attributes: Mapping[str, str]) -> CatalogUpdate:
    for name in ("item", "ts"):
        if name not in body and name not in attributes:
            raise EventError("missing_field", f"'{name}' is required")
    item = body.get("item", attributes.get("item"))
    if not is_valid_id(item):
        raise EventError("bad_field", f"item {_show(item)}")
    category, available = body.get("category"), body.get("available")
    if category is None and available is None:
        raise EventError("bad_catalog", "neither category nor available is given")
    if category is not None and not is_valid_id(category):
        raise EventError("bad_catalog", f"category {_show(category)}")
    if available is not None and not isinstance(available, bool):
        raise EventError("bad_catalog", f"available {_show(available)} is not true or false")
    return CatalogUpdate(item, category, available, _parse_ts(body.get("ts", attributes.get("ts"))))


def _forget_request(body: dict, attributes: Mapping[str, str]) -> ForgetRequest:
    for name in ("user", "ts"):
        if name not in body and name not in attributes:
            raise EventError("missing_field", f"'{name}' is required")
    user = body.get("user", attributes.get("user"))
    if not is_valid_id(user):
        raise EventError("bad_field", f"user {_show(user)}")
    return ForgetRequest(user, _parse_ts(body.get("ts", attributes.get("ts"))))


def _event(body: dict, attributes: Mapping[str, str]) -> Event:
    def field(name: str):
        if name in body:
            return body[name]
        if name in attributes:
            return attributes[name]
        raise EventError("missing_field", f"'{name}' is required")

    event_id = field("event_id")
    if not is_valid_id(event_id):
        raise EventError("bad_id", f"event_id {_show(event_id)}")
    user, item = field("user"), field("item")
    for name, value in (("user", user), ("item", item)):
        if not is_valid_id(value):
            raise EventError("bad_field", f"{name} {_show(value)}")
    event_type = _parse_type(field("type"))
    ts_ms = _parse_ts(field("ts"))
    session = body.get("session", attributes.get("session"))
    if session is not None and not is_valid_id(session):
        raise EventError("bad_field", f"session {_show(session)}")
    token = body.get("attribution", attributes.get("attribution"))
    if token is not None:
        try:
            attribution.decode(token)
        except attribution.AttributionError as exc:
            raise EventError("bad_attribution", f"attribution {_show(token)}: {exc}") from None
    return Event(
        event_id=event_id, user=user, item=item, type=event_type, ts_ms=ts_ms, session=session, attribution=token
    )


def _show(value) -> str:
    return repr(value)[:80]


def _parse_type(value) -> EventType:
    if isinstance(value, bool):
        raise EventError("bad_type", f"type {_show(value)}")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str) and value.lower() in _TYPE_ALIASES:
        return _TYPE_ALIASES[value.lower()]
    raise EventError("bad_type", f"type {_show(value)}")


def _parse_ts(value) -> int:
    if isinstance(value, bool):
        raise EventError("bad_timestamp", f"ts {_show(value)}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise EventError("bad_timestamp", f"ts {_show(value)}")
        ms = int(value)
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        ms = int(value)  # epoch ms as a string, as Pub/Sub attributes carry it
    elif isinstance(value, str):
        ms = _parse_rfc3339(value)
    else:
        raise EventError("bad_timestamp", f"ts {_show(value)}")
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise EventError("bad_timestamp", f"ts {ms} ms is outside year 1970-9999")
    return ms


def _parse_rfc3339(text: str) -> int:
    # fromisoformat accepts more than RFC 3339 (e.g. a bare date); insisting on
    # a 'T'/' ' separator and a zone rules out the ambiguous forms.
    if len(text) > 64 or not re.match(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d", text):
        raise EventError("bad_timestamp", f"ts {_show(text)}")
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise EventError("bad_timestamp", f"ts {_show(text)}") from None
    if moment.tzinfo is None:
        raise EventError("bad_timestamp", f"ts {_show(text)} has no time zone")
    try:
        return math.floor(moment.timestamp() * 1000)
    except (OverflowError, ValueError):
        raise EventError("bad_timestamp", f"ts {_show(text)}") from None


@dataclasses.dataclass(frozen=True)
class Weights:
    """How much one event of each type adds to r_ui (the seed's 0.5 / 2 / 6)."""

    browse: float = 0.5
    basket: float = 2.0
    purchase: float = 6.0

    def __post_init__(self):
        for name in ("browse", "basket", "purchase"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"weight {name}={value!r} must be a positive number")

    def of(self, event_type: EventType) -> float:
        # An EventType as is (the serving hot path); anything else through the enum.
        return getattr(self, event_type.value if type(event_type) is EventType else EventType(event_type).value)

    @classmethod
    def parse(cls, text: str) -> Weights:
        """``"browse=1,basket=3,purchase=5"`` (missing names keep defaults)."""
        values = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, number = part.partition("=")
            name = name.strip().lower()
            if not sep or name not in ("browse", "basket", "purchase"):
                raise ValueError(f"bad weight {part!r}: expected browse=, basket= or purchase=")
            try:
                values[name] = float(number)
            except ValueError:
                raise ValueError(f"bad weight {part!r}: {number!r} is not a number") from None
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Weights:
        """Weights from ``STREAMSIM_WEIGHTS``, else the defaults."""
        text = environ.get("STREAMSIM_WEIGHTS", "")
        return cls.parse(text) if text else cls()
