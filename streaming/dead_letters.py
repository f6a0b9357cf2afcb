"""The attributes of a dead letter, made to fit Cloud Pub/Sub's limits whatever the bad message carried.

A dead letter is the rejected message's bytes, untouched, with its attributes
plus ``error`` (an :data:`schemas.events.ERROR_CODES` code) and ``detail`` (a
sentence). A copy of attributes that Pub/Sub accepted on the way in is not
always publishable: 99 or 100 of them plus our two is over the count limit;
an ``error`` or ``detail`` of the publisher's would be overwritten; a
``goog...`` key is Pub/Sub's own (a topic with a schema adds
``googclient_schemaname``), not the publisher's to send; a key named like a
parameter of ``PublisherClient.publish(topic, data, ordering_key=, retry=,
timeout=, **attrs)`` breaks the call itself; and the message may be so close
to the request size limit that nothing more fits. Any of these fails the
publish on every redelivery, so the pipeline would fail the bundle forever.
The Pub/Sub emulator enforces none of the limits (it accepts 102 attributes).

:func:`dead_letter_attributes` (pure) builds attributes that always fit:

``error``
    always present.
``detail``
    always present; cut to :data:`MAX_VALUE_BYTES` UTF-8 bytes at a character
    boundary (and shorter only if the request size leaves no room).
``dropped_attributes``
    present only when original attributes were left out: how many.
``dropped_keys``
    with it: the left-out keys as a JSON array (ASCII, so any key can be
    written; ``json.loads`` gives back every key that is valid UTF-8), in the
    order below, as many as fit in one value; the list is complete when its
    length equals ``dropped_attributes``.
anything else
    an original attribute, unchanged.

Original attributes are kept in a deterministic order, as many as fit: the
event's own fields first (:func:`schemas.parse_event` reads them from
attributes too, so a replay after a fix needs them), then by key. One is left
out if its key is one of the names above, starts with ``goog`` (in any case)
or names a ``publish()`` parameter; if its key or value is over its limit or
not valid UTF-8; or if the slots or bytes are used up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

# Cloud Pub/Sub resource limits, https://cloud.google.com/pubsub/quotas#resource_limits
# ("Attributes per message: 100", "Attribute key size: 256 bytes", "Attribute value
# size: 1024 bytes", "Publish request: 10 MB (total size)"). Keys starting with "goog"
# are Pub/Sub's: publishers must not use them, and Pub/Sub stamps its own on messages of
# a topic with a schema (googclient_schemaname, _schemaencoding, _schemarevisionid),
# which would mean nothing on the dead-letter topic anyway.
#: Attributes per message.
MAX_ATTRIBUTES = 100
#: Bytes of an attribute key, UTF-8.
MAX_KEY_BYTES = 256
#: Bytes of an attribute value, UTF-8.
MAX_VALUE_BYTES = 1024
#: Bytes of a serialized PublishRequest; the Python client refuses a larger one itself
#: (``MessageTooLargeError``, its ``_SERVER_PUBLISH_MAX_BYTES``), before any RPC.
MAX_PUBLISH_REQUEST_BYTES = 10_000_000
#: Attribute keys Pub/Sub reserves for itself (checked case-insensitively, to be safe).
RESERVED_KEY_PREFIX = "goog"

ERROR = "error"
DETAIL = "detail"
DROPPED_ATTRIBUTES = "dropped_attributes"
DROPPED_KEYS = "dropped_keys"
#: Keys the dead letter writes itself: an original attribute of that name is left out.
OWN_KEYS = frozenset({ERROR, DETAIL, DROPPED_ATTRIBUTES, DROPPED_KEYS})
#: Named parameters of ``google.cloud.pubsub_v1.PublisherClient.publish``: attributes go
#: in as ``**attrs``, so one of these names cannot be passed (``topic`` raises TypeError,
#: ``ordering_key`` ValueError, ``timeout`` kills the batch thread). Tested against the client.
PUBLISH_PARAMETERS = frozenset({"self", "topic", "data", "ordering_key", "retry", "timeout"})
#: Original attributes kept first: the event fields :func:`schemas.parse_event` reads from attributes.
REPLAY_KEYS = ("event_id", "user", "item", "type", "ts")


def dead_letter_attributes(
    attributes: Mapping[str, str], error: str, detail: str, *, budget_bytes: int | None = None
) -> dict[str, str]:
    """The attributes to publish a dead letter with (see the module docstring).

    ``budget_bytes``: the most the attributes may take serialized
    (:func:`attributes_wire_size`), e.g. :func:`publish_attribute_budget`;
    None for no limit but the per-attribute and count ones. The result always
    keeps the count and per-attribute limits and has ``error`` and ``detail``;
    it keeps ``budget_bytes`` too unless even ``error``, an empty ``detail``
    and ``dropped_attributes`` exceed it (data within about 100 bytes of the
    request limit: nothing can make such a message publishable intact).
    """
    budget = float("inf") if budget_bytes is None else budget_bytes
    error = _cut(error, MAX_VALUE_BYTES)
    detail = _cut(detail, MAX_VALUE_BYTES)
    ordered = sorted(attributes.items(), key=_order)
    publishable = [(k, v) for k, v in ordered if _publishable(k, v)]
    fixed_size = _size(ERROR, error) + _size(DETAIL, detail)
    if len(publishable) == len(ordered) and len(publishable) <= MAX_ATTRIBUTES - 2:
        if fixed_size + sum(_size(k, v) for k, v in publishable) <= budget:
            return {**dict(publishable), ERROR: error, DETAIL: detail}

    # Something is left out: the two bookkeeping attributes take two slots.
    count_size = _size(DROPPED_ATTRIBUTES, str(len(ordered)))  # the longest count possible
    room = budget - _size(ERROR, error) - count_size
    detail = _fit_value(DETAIL, detail, room)
    room -= _size(DETAIL, detail)
    kept: dict[str, str] = {}
    for key, value in publishable:
        if len(kept) < MAX_ATTRIBUTES - 4 and _size(key, value) <= room:
            kept[key] = value
            room -= _size(key, value)
    dropped = [k for k, _ in ordered if k not in kept]
    count = str(len(dropped))
    room += count_size - _size(DROPPED_ATTRIBUTES, count)
    result = {**kept, ERROR: error, DETAIL: detail, DROPPED_ATTRIBUTES: count}
    listed = _json_keys(dropped, min(MAX_VALUE_BYTES, _value_room(DROPPED_KEYS, room)))
    if listed is not None:
        result[DROPPED_KEYS] = listed
    return result


def publish_attribute_budget(topic: str, data_bytes: int) -> int:
    """Bytes left for the attributes of one message of ``data_bytes`` published alone to ``topic``.

    A PublishRequest is ``topic`` (field 1) and the message (field 2), which is
    ``data`` (field 1) and the attribute entries (field 2): a tag byte and a
    length varint each. The message's length varint is counted at its widest.
    """
    topic_bytes = len(topic.encode("utf-8", "replace"))
    overhead = _field(topic_bytes) + 1 + _varint_len(MAX_PUBLISH_REQUEST_BYTES) + _field(data_bytes)
    return MAX_PUBLISH_REQUEST_BYTES - overhead


def attributes_wire_size(attributes: Mapping[str, str]) -> int:
    """Bytes the attributes take in a serialized PubsubMessage (map entries, field 2)."""
    return sum(_size(k, v) for k, v in attributes.items())


def _order(item) -> tuple:
    key = item[0]
    rank = REPLAY_KEYS.index(key) if key in REPLAY_KEYS else len(REPLAY_KEYS)
    return (rank, str(key))


def _publishable(key, value) -> bool:
    if not isinstance(key, str) or not isinstance(value, str):
        return False
    if key in OWN_KEYS or key in PUBLISH_PARAMETERS or key[: len(RESERVED_KEY_PREFIX)].lower() == RESERVED_KEY_PREFIX:
        return False
    try:
        return len(key.encode("utf-8")) <= MAX_KEY_BYTES and len(value.encode("utf-8")) <= MAX_VALUE_BYTES
    except UnicodeEncodeError:  # a lone surrogate: protobuf cannot serialize it
        return False


def _cut(text: str, limit: int) -> str:
    """``text`` as valid UTF-8 (lone surrogates become ``?``), cut to ``limit`` bytes at a character boundary."""
    return str(text).encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _field(length: int) -> int:
    """Bytes of a length-delimited protobuf field (tag < 16) with a ``length``-byte payload."""
    return 1 + _varint_len(length) + length


def _entry_size(key_bytes: int, value_bytes: int) -> int:
    """Bytes of one ``map<string, string>`` entry (protobuf writes both key and value)."""
    return _field(_field(key_bytes) + _field(value_bytes))


def _size(key: str, value: str) -> int:
    return _entry_size(len(key.encode("utf-8")), len(value.encode("utf-8")))


def _value_room(key: str, room: float) -> int:
    """The longest value (bytes, at most MAX_VALUE_BYTES) ``key`` can carry in ``room`` bytes; < 0 if none."""
    key_bytes = len(key.encode("utf-8"))
    length = int(min(room, MAX_VALUE_BYTES))
    while length >= 0 and _entry_size(key_bytes, length) > room:
        length -= 1
    return length


def _fit_value(key: str, value: str, room: float) -> str:
    return _cut(value, max(0, _value_room(key, room)))


def _json_keys(keys: list, limit: int) -> str | None:
    """As many of ``keys`` as fit in ``limit`` bytes, as an ASCII JSON array; None if not even ``[]`` fits."""
    parts, used = [], 2
    for key in keys:
        item = json.dumps(str(key))  # ensure_ascii: \\u escapes, lone surrogates included
        if used + len(item) + (1 if parts else 0) > limit:
            break
        parts.append(item)
        used += len(item) + (1 if len(parts) > 1 else 0)
    return "[" + ",".join(parts) + "]" if used <= limit else None
