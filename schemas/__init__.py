"""The single source of truth the streaming, batch and serving packages import.

- :mod:`schemas.events`: the event contract (``parse_event``) and event weights.
- :mod:`schemas.layout`: Bigtable table ids, column families, GC rules, row keys
  and qualifiers; Pub/Sub topic and subscription names.
- :mod:`schemas.codecs`: value codecs (doubles, int64, packed top-K neighbours).
"""

from schemas.codecs import (
    decode_double,
    decode_int64,
    decode_neighbours,
    encode_double,
    encode_int64,
    encode_neighbours,
)
from schemas.events import CatalogUpdate, Event, EventError, EventType, Weights, parse_event, parse_message
from schemas.layout import PubSubNames, TableIds

__all__ = [
    "CatalogUpdate",
    "Event",
    "EventError",
    "EventType",
    "PubSubNames",
    "TableIds",
    "Weights",
    "decode_double",
    "decode_int64",
    "decode_neighbours",
    "encode_double",
    "encode_int64",
    "encode_neighbours",
    "parse_event",
    "parse_message",
]
