"""Where streamsim keeps its state: Bigtable tables and Pub/Sub names.

Tables (ids carry a configurable prefix, ``streamsim-`` by default)::

    users         row = user_row_key(user)
      s:<item>      r_ui, double: sum of the weights of the user's events on item
      e:<event_id>  empty; the event ids already folded (de-duplication),
                    aged out after DEDUP_WINDOW by the family's GC rule
      u:norm2       sum_i r_ui^2, double
      u:events      events folded, int64
      m:<item>      events folded on item, int64 (absolute; feeds c:<user>)
    items         row = item_row_key(item)
      n:norm2       sum_u r_ui^2, double (the stream owns it; DIMSUM reads it)
      n:users       users with r_ui > 0, int64
      n:events      events folded, int64
      c:<user>      the user's contribution, codecs.encode_contribution(r_ui,
                    events): an inverted index of users. The stream writes
                    absolute values per (item, user), so norm2 and users are
                    updated from the old cells in the same row mutation and a
                    retried write changes nothing.
      d:dirty       empty; its cell timestamp is when the norm last changed.
                    A refresh clears marks older than its start, so a mark set
                    during the pass survives to the next one.
    similarities  row = item_row_key(item)
      k:top         packed top-K neighbours (codecs.encode_neighbours); the
                    cell timestamp is the generation that wrote it
    meta          rows below
      generation  g:current   int64, the generation serving reads (the pointer)
      pass#<gen>  p:stats     JSON statistics of one refresh pass
      popular     k:top       packed popularity list; cell timestamp = generation

A generation is the epoch milliseconds at which its pass started. Readers of
``similarities`` take the newest cell not newer than the pointer, so a
half-written pass is invisible and a rollback is a pointer flip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import timedelta

DEFAULT_PREFIX = "streamsim-"

#: How long folded event ids are remembered. A replay of the same events
#: inside this window is a no-op; older ids are aged out by GC.
DEDUP_WINDOW = timedelta(days=30)
#: Similarity generations kept for rollback (the pointer may go back this far).
KEEP_GENERATIONS = 3


@dataclasses.dataclass(frozen=True)
class GcRule:
    """A column family's garbage-collection rule (both limits apply if set)."""

    max_versions: int | None = None
    max_age: timedelta | None = None


# --- column families and qualifiers -----------------------------------------
SCORES = "s"
FOLDED = "e"
USER_STATS = "u"
ITEM_STATS = "n"
DIRTY = "d"
ITEM_COUNTS = "m"
CONTRIBUTIONS = "c"
NEIGHBOURS = "k"
GENERATION = "g"
PASS_STATS = "p"

NORM2 = b"norm2"
EVENTS = b"events"
USERS = b"users"
DIRTY_MARK = b"dirty"
TOP = b"top"
CURRENT = b"current"
STATS = b"stats"

FAMILIES: dict[str, dict[str, GcRule]] = {
    "users": {
        SCORES: GcRule(max_versions=1),
        FOLDED: GcRule(max_versions=1, max_age=DEDUP_WINDOW),
        USER_STATS: GcRule(max_versions=1),
        ITEM_COUNTS: GcRule(max_versions=1),
    },
    "items": {
        ITEM_STATS: GcRule(max_versions=1),
        DIRTY: GcRule(max_versions=1),
        CONTRIBUTIONS: GcRule(max_versions=1),
    },
    "similarities": {
        NEIGHBOURS: GcRule(max_versions=KEEP_GENERATIONS),
    },
    "meta": {
        # Past pointer values stay readable as older cells, for rollback.
        GENERATION: GcRule(max_versions=10),
        PASS_STATS: GcRule(max_versions=1),
        NEIGHBOURS: GcRule(max_versions=KEEP_GENERATIONS),
    },
}

GENERATION_ROW = b"generation"
POPULAR_ROW = b"popular"

_TABLE_ID = re.compile(r"^[_a-zA-Z0-9][-_.a-zA-Z0-9]{0,49}$")
_PUBSUB_ID = re.compile(r"^[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$")


@dataclasses.dataclass(frozen=True)
class TableIds:
    users: str
    items: str
    similarities: str
    meta: str

    @classmethod
    def for_prefix(cls, prefix: str = DEFAULT_PREFIX) -> TableIds:
        ids = cls(**{name: f"{prefix}{name}" for name in FAMILIES})
        for table_id in ids.as_dict().values():
            if not _TABLE_ID.match(table_id):
                raise ValueError(f"table id {table_id!r} is not valid for Bigtable")
        return ids

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PubSubNames:
    """Topic and subscription ids (not full resource paths)."""

    events_topic: str
    events_subscription: str
    dead_letter_topic: str
    #: Keeps dead-lettered messages until someone reads them: a topic with no
    #: subscription would drop them.
    dead_letter_subscription: str

    @classmethod
    def for_prefix(cls, prefix: str = DEFAULT_PREFIX) -> PubSubNames:
        names = cls(
            events_topic=f"{prefix}events",
            events_subscription=f"{prefix}events-fold",
            dead_letter_topic=f"{prefix}events-dead-letter",
            dead_letter_subscription=f"{prefix}events-dead-letter-keep",
        )
        for name in dataclasses.astuple(names):
            if not _PUBSUB_ID.match(name):
                raise ValueError(
                    f"Pub/Sub id {name!r} is not valid: it needs 3-255 characters and "
                    "must start with a letter (choose another prefix)"
                )
        return names

    def topics(self) -> dict[str, str]:
        return {"events": self.events_topic, "dead_letter": self.dead_letter_topic}

    def subscriptions(self) -> dict[str, tuple[str, str]]:
        """Logical name -> (subscription id, topic id)."""
        return {
            "events": (self.events_subscription, self.events_topic),
            "dead_letter": (self.dead_letter_subscription, self.dead_letter_topic),
        }


# --- row keys ---------------------------------------------------------------
# Shops number users and items sequentially; sequential row keys would send all
# writes to one tablet. A 4-hex-digit hash prefix spreads them while keeping
# the id readable in the key.
_SALT_CHARS = 4


def _salted(entity: str) -> bytes:
    raw = entity.encode("utf-8")
    return hashlib.blake2b(raw, digest_size=2).hexdigest().encode("ascii") + b"#" + raw


def user_row_key(user: str) -> bytes:
    return _salted(user)


def item_row_key(item: str) -> bytes:
    return _salted(item)


def id_from_row_key(key: bytes) -> str:
    """The user or item id a ``users``/``items``/``similarities`` key holds."""
    if len(key) <= _SALT_CHARS or key[_SALT_CHARS : _SALT_CHARS + 1] != b"#":
        raise ValueError(f"{key!r} is not a streamsim row key")
    return key[_SALT_CHARS + 1 :].decode("utf-8")


def score_qualifier(item: str) -> bytes:
    return item.encode("utf-8")


def contribution_qualifier(user: str) -> bytes:
    return user.encode("utf-8")


def folded_qualifier(event_id: str) -> bytes:
    return event_id.encode("utf-8")


def pass_row_key(generation: int) -> bytes:
    # Zero-padded so a key-ordered scan lists passes oldest first.
    return b"pass#%016d" % generation


def generation_cell_micros(generation: int) -> int:
    """Bigtable cell timestamp (µs, ms granularity) of a generation (epoch ms)."""
    return generation * 1000


def generation_of_cell(micros: int) -> int:
    return micros // 1000
