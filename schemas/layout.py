"""Where streamsim keeps its state: Bigtable tables and Pub/Sub names.

Every table is tall and narrow: a row holds one entity or one (entity, entity) pair,
so no row and no read grows with an item's popularity or a user's history (Bigtable's
schema guidance: rows far under 100 MB, one response under gRPC's 4 MiB). Table ids
carry a configurable prefix, ``streamsim-`` by default::

    users          row = user_item_key(user, item): one per (user, item) pair
      s:r            r_ui, double: sum of the weights of the user's events on item
      s:n            events folded on the pair, int64
      s:v            the row's version, int64: every fold writes it with a
                     CheckAndMutateRow whose predicate is the version it read;
                     pair_version(erasure epoch, writes), so no version repeats
                     across an erasure
      e:<event_id>   empty; the pair's folded event ids (de-duplication), at
                     most MAX_FOLDED_PER_PAIR, aged out after DEDUP_WINDOW
      a:<arm|route|type>  int64: the pair's folded events that came back with an
                     attribution token of that arm and route (schemas.attribution),
                     written with the pair (same conditional write: exactly once)
    items          row = item_row_key(item): small, one per item
      n:norm2        sum_u r_ui^2, double (the stream owns it; DIMSUM reads it)
      n:enorm2       sum_u f(r_ui)^2 for the entry transform entries.FOLDED, double
                     (folded with norm2, in the same conditional write)
      n:users        users with r_ui > 0, int64
      n:events       events folded, int64
      n:version      the row's version, int64 (conditional writes, as above)
      d:dirty        empty; its cell timestamp is when the norm last changed.
                     A refresh clears marks older than its start, so a mark set
                     during the pass survives to the next one.
      q:<token>      an item fold in flight: the contributions it committed to
                     write (codecs.encode_intent), deleted once written
      m:category     the item's catalogue category (UTF-8, an id); the cell
                     timestamp is the catalogue update's time, so a late
                     update never hides a newer one
      m:available    codecs.encode_available: 1 shown, 0 hidden (out of stock,
                     deleted); no cell: available
      tm:<minute>, th:<hour>, td:<day>  int64: the item's events per time bucket, the
                     trending counters (schemas.trending), written in the stats' conditional
                     write (exactly once, as n:events)
      x:<user token> int64: the user's erasure epoch whose older contributions this
                     item's stats no longer hold (``streaming.forget``); kept DEDUP_WINDOW
    contributions  row = item_user_key(item, user): one per (item, user) pair
      c:c            codecs.encode_contribution(r_ui, stamp); the cell timestamp
                     is the stamp (ms): contribution_stamp(erasure epoch, event
                     count), so the newest cell is the highest count of the
                     newest epoch whatever order writers land in
    similarities   row = item_row_key(item)
      k:top          packed top-K neighbours (codecs.encode_neighbours); the
                     cell timestamp is the generation that wrote it
      b:top          packed bought-together list (codecs.encode_neighbours; empty
                     once the item has none), stamped with the generation like k:top
      b:rebuy        codecs.encode_repurchase: the item's buyers, repeat buyers and
                     typical repurchase interval, stamped with the generation
    meta           rows below
      generation  g:current   int64, the generation serving reads (the pointer)
      pass#<gen>  p:stats     JSON statistics of one refresh pass (FRESHNESS_KEYS
                              among them: what serving reports as freshness)
      popular     k:top       packed popularity list; cell timestamp = generation
      forget#<user token> f:at, f:epoch, f:receipt: the user's tombstone (the last
                  erasure's time in ms, and how many erasures) and its receipt (JSON)
      catalog#<written ms>#<batch>  l:changes: the catalogue change log, one row
                  per written batch of at most CATALOG_LOG_BATCH changes
                  (codecs.encode_catalog_changes: the same values and update times
                  as the items' m: cells), stamped with the write time and kept
                  CATALOG_LOG_WINDOW. Serving loads the m: cells at start and then
                  follows the log: a range read of a row per batch, not per change.
      trend#<window>#<shard> t<window>:<item>: the trending board of a window
                  (schemas.trending): (count, expected), stamped with the fold's clock
    recent         row = recent_row_key(user): one per user
      o:e            one cell version per event, the user's last RECENT_EVENTS events:
                     cell timestamp = recent_cell_micros(event time, event id),
                     value = the item id (UTF-8). Read newest first, reversed, it is
                     the user's recent sequence in event-time order (``directed``).
      p:e            one cell version per purchase, the user's last PURCHASES_KEPT
                     purchases, written like o:e (same cell timestamp and value):
                     the purchase index that bought-together and buy-again read
    sessions       two kinds of rows, both written like ``recent`` (below)
      row = item_sessions_key(item)
        h:s          one cell version per event on the item, its last SESSIONS_PER_ITEM:
                     cell timestamp = recent_cell_micros(event time, event id), value =
                     the event's session key (UTF-8, session_key): newest first, the
                     sessions that clicked the item most recently (session-kNN candidates)
      row = session_row_key(session key)
        o:e          one cell version per event of the session, its last SESSION_EVENTS,
                     as in ``recent``: newest first reversed, the session's items in order

A user's items are the ``users`` rows under ``user_prefix(user)``; the users holding an
item are the ``contributions`` rows under ``item_prefix(item)`` (the refresh's inverted
index). Pair keys join the two ids with a NUL byte, which the event contract forbids
in ids, so a prefix names exactly one entity.

The ``recent`` row is written with blind, idempotent cells only (no read-modify-write),
which is what makes it correct with any number of writers by construction:

- *duplicates, retries, replays*: an event's cell timestamp and value are functions of
  the event alone, so a re-delivered or retried event rewrites the identical cell;
- *concurrent writers*: writers of one user never touch each other's cells (distinct
  events get distinct timestamps, below), and a row mutation needs no read;
- *crashes between writes*: a message is acknowledged only after the whole fold, so a
  crash before the ack redelivers it and its cell is written (again, identically);
- *order of arrival*: what a reader sees is the RECENT_EVENTS highest timestamps among
  the cells written, the same set whatever order they landed in (a late, older event
  enters and is the one dropped). GC (``max_versions``) runs lazily on Bigtable, so
  readers also ask for at most RECENT_EVENTS cells per column (``cells_per_column``).

The ``sessions`` rows are written the same way, so the same argument holds: an event's two
cells (its item's holder cell, its session's item cell) are functions of the event alone.
An item's list may name one session several times (one cell per click); readers merge them.

The one loss: two events of one user in the same millisecond whose id hashes agree in
RECENT_TIE_BITS bits share a cell (one of them is kept, p = 2^-RECENT_TIE_BITS per such pair).

A generation is the epoch milliseconds at which its pass started. Readers of
``similarities`` take the newest cell not newer than the pointer, so a
half-written pass is invisible and a rollback is a pointer flip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import timedelta

from schemas import trending

DEFAULT_PREFIX = "streamsim-"

#: How long folded event ids are remembered. A redelivery or replay of an event
#: inside this window is a no-op; Pub/Sub keeps an unacknowledged message 7 days
#: by default (31 at most), so every redelivery falls inside it.
DEDUP_WINDOW = timedelta(days=30)
#: Folded event ids kept per (user, item) pair, newest first: the dedup state a
#: fold reads is bounded even for a bot that sends millions of events on one item.
#: A redelivered event older than the pair's last MAX_FOLDED_PER_PAIR events (or
#: than DEDUP_WINDOW) is counted again; on one pair that needs hundreds of newer
#: events between the delivery and its redelivery.
MAX_FOLDED_PER_PAIR = 128
#: Events kept per user in ``recent`` (the sequence the ``directed`` measure reads). A
#: session-based measure looks a few places back and forward (window 5 by default), and a
#: row of 64 short cells is ~3 KB, so every user read stays small whatever the history.
RECENT_EVENTS = 64
#: Bits of the event id's hash below the event time in a ``recent`` cell timestamp: they
#: separate events of one user in one millisecond. 10 bits leave room for event times up
#: to year 2255 in an int64 of microseconds (later times are clamped, see below).
RECENT_TIE_BITS = 10
#: Events kept per session in ``sessions`` (the items a neighbour session votes for).
SESSION_EVENTS = 64
#: Clicks kept per item in ``sessions``: the most recent sessions session-kNN may compare
#: (its m, 5,000 at most). ~40 bytes a cell: an item row read stays under 200 KB.
SESSIONS_PER_ITEM = 5000
#: An event without a ``session`` belongs to its user's session of one SESSION_GAP-long
#: window of event time (session_key).
SESSION_GAP = timedelta(minutes=30)
#: Purchases kept per user in ``recent`` p:e (the purchase index): bought-together pairs
#: per user are at most PURCHASES_KEPT² / 2, and a row of 64 short cells stays ~3 KB.
PURCHASES_KEPT = 64
#: Two purchases of one user are bought together when their event times are at most this
#: far apart. A purchase cell holds the item and the event time, not the shop's session id,
#: so a window stands for the session: a basket checked out at once lands within seconds.
BOUGHT_TOGETHER_WINDOW = timedelta(hours=24)
#: Similarity generations kept for rollback (the pointer may go back this far).
KEEP_GENERATIONS = 3
#: How long the catalogue change log keeps a change: a server that was away
#: longer reloads the whole catalogue at start anyway.
CATALOG_LOG_WINDOW = timedelta(days=7)
#: Changes per change-log row: a follower reads a million changes in a thousand rows;
#: a row stays near 100 KB (about 1 MB with 128-character ids), far under Bigtable's limits.
CATALOG_LOG_BATCH = 1000


@dataclasses.dataclass(frozen=True)
class GcRule:
    """A column family's garbage-collection rule (both limits apply if set)."""

    max_versions: int | None = None
    max_age: timedelta | None = None


# --- column families and qualifiers -----------------------------------------
SCORES = "s"
FOLDED = "e"
ITEM_STATS = "n"
DIRTY = "d"
INTENTS = "q"
CONTRIBUTIONS = "c"
NEIGHBOURS = "k"
GENERATION = "g"
PASS_STATS = "p"
CATALOG = "m"
CATALOG_LOG = "l"
ORDER = "o"
HOLDERS = "h"
ERASED = "x"
FORGET = "f"
ATTRIBUTED = "a"
PURCHASES = "p"
BOUGHT = "b"

#: ``users`` s: qualifiers.
SCORE = b"r"
COUNT = b"n"
VERSION = b"v"
#: ``items`` n: qualifiers.
NORM2 = b"norm2"
ENTRY_NORM2 = b"enorm2"
EVENTS = b"events"
USERS = b"users"
ITEM_VERSION = b"version"
DIRTY_MARK = b"dirty"
#: ``contributions`` c: qualifier.
CONTRIBUTION = b"c"
TOP = b"top"
#: ``recent`` o: qualifier (one column, one version per event).
RECENT = b"e"
#: ``sessions`` h: qualifier (one column, one version per click on the item).
HOLDER = b"s"
#: ``similarities`` b: qualifiers (TOP: the bought-together list).
REPURCHASE = b"rebuy"
CURRENT = b"current"
STATS = b"stats"
#: ``items`` m: qualifiers.
CATEGORY = b"category"
AVAILABLE = b"available"
#: ``meta`` catalog log l: qualifier.
CATALOG_CHANGES = b"changes"
#: ``meta`` forget# f: qualifiers.
FORGOTTEN_AT = b"at"
FORGOTTEN_EPOCH = b"epoch"
RECEIPT = b"receipt"

FAMILIES: dict[str, dict[str, GcRule]] = {
    "users": {
        SCORES: GcRule(max_versions=1),
        FOLDED: GcRule(max_versions=1, max_age=DEDUP_WINDOW),
        ATTRIBUTED: GcRule(max_versions=1),
    },
    "items": {
        ITEM_STATS: GcRule(max_versions=1),
        DIRTY: GcRule(max_versions=1),
        INTENTS: GcRule(max_versions=1),
        CATALOG: GcRule(max_versions=1),
        ERASED: GcRule(max_versions=1, max_age=DEDUP_WINDOW),
        # Trending counters (schemas.trending): one family per resolution, each aged as it needs.
        **{r.family: GcRule(max_versions=1, max_age=r.gc_age) for r in trending.RESOLUTIONS},
    },
    "contributions": {
        # Versions by event count (the cell timestamp), not by time: no max_age.
        CONTRIBUTIONS: GcRule(max_versions=1),
    },
    "similarities": {
        NEIGHBOURS: GcRule(max_versions=KEEP_GENERATIONS),
        BOUGHT: GcRule(max_versions=KEEP_GENERATIONS),
    },
    "meta": {
        # Past pointer values stay readable as older cells, for rollback.
        GENERATION: GcRule(max_versions=10),
        PASS_STATS: GcRule(max_versions=1),
        NEIGHBOURS: GcRule(max_versions=KEEP_GENERATIONS),
        CATALOG_LOG: GcRule(max_versions=1, max_age=CATALOG_LOG_WINDOW),
        FORGET: GcRule(max_versions=1),
        # Trending boards (schemas.trending): one family per window, aged out a little after it.
        **{w.board_family: GcRule(max_versions=1, max_age=w.board_age) for w in trending.WINDOWS.values()},
    },
    "recent": {
        # Versions by event time (the cell timestamp), not by write time: no max_age.
        ORDER: GcRule(max_versions=RECENT_EVENTS),
        PURCHASES: GcRule(max_versions=PURCHASES_KEPT),
    },
    "sessions": {
        # Versions by event time, as in ``recent``.
        HOLDERS: GcRule(max_versions=SESSIONS_PER_ITEM),
        ORDER: GcRule(max_versions=SESSION_EVENTS),
    },
}

GENERATION_ROW = b"generation"
POPULAR_ROW = b"popular"
CATALOG_LOG_PREFIX = b"catalog#"
FORGET_PREFIX = b"forget#"

_TABLE_ID = re.compile(r"^[_a-zA-Z0-9][-_.a-zA-Z0-9]{0,49}$")
_PUBSUB_ID = re.compile(r"^[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$")


@dataclasses.dataclass(frozen=True)
class TableIds:
    users: str
    items: str
    contributions: str
    similarities: str
    meta: str
    recent: str
    sessions: str

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


def salted_ranges(parts: int = 256) -> list[tuple[bytes, bytes | None]]:
    """``[start, end)`` key ranges (None: to the table's end) that split a salted table
    by the first hex digits of the salt, in key order, covering every key.

    Whole-table reads go range by range: a read of ``[after, end of table)`` costs the
    Bigtable emulator time in the rows to the end (1.4 s per page at 300k rows, so a
    1M-row table never finished loading), a bounded range only its own.
    """
    digits = len(f"{parts - 1:x}")
    if parts < 2 or 16**digits != parts or digits > 4:
        raise ValueError(f"parts must be a power of 16 from 16 to 65536, got {parts}")
    starts = [b""] + [b"%0*x" % (digits, k) for k in range(1, parts)]
    return list(zip(starts, [*starts[1:], None]))


#: Joins the two ids of a pair key; ids never contain control characters.
PAIR_SEPARATOR = b"\x00"


def item_row_key(item: str) -> bytes:
    """The ``items`` and ``similarities`` row of an item."""
    return _salted(item)


def user_prefix(user: str) -> bytes:
    """The key prefix of a user's ``users`` rows (salted by the user: its rows stay together)."""
    return _salted(user) + PAIR_SEPARATOR


def item_prefix(item: str) -> bytes:
    """The key prefix of an item's ``contributions`` rows."""
    return _salted(item) + PAIR_SEPARATOR


def user_item_key(user: str, item: str) -> bytes:
    return user_prefix(user) + item.encode("utf-8")


def item_user_key(item: str, user: str) -> bytes:
    return item_prefix(item) + user.encode("utf-8")


def _entity(key: bytes) -> bytes:
    if len(key) <= _SALT_CHARS or key[_SALT_CHARS : _SALT_CHARS + 1] != b"#":
        raise ValueError(f"{key!r} is not a streamsim row key")
    return key[_SALT_CHARS + 1 :]


def id_from_row_key(key: bytes) -> str:
    """The item id an ``items``/``similarities`` key holds."""
    entity = _entity(key)
    if PAIR_SEPARATOR in entity:
        raise ValueError(f"{key!r} is a pair key, not an entity key")
    return entity.decode("utf-8")


def ids_from_pair_key(key: bytes) -> tuple[str, str]:
    """``(first, second)`` of a ``users`` (user, item) or ``contributions`` (item, user) key."""
    first, separator, second = _entity(key).partition(PAIR_SEPARATOR)
    if not separator:
        raise ValueError(f"{key!r} is not a pair key")
    return first.decode("utf-8"), second.decode("utf-8")


def folded_qualifier(event_id: str) -> bytes:
    return event_id.encode("utf-8")


def pass_row_key(generation: int) -> bytes:
    # Zero-padded so a key-ordered scan lists passes oldest first.
    return b"pass#%016d" % generation


#: Keys of a pass's statistics JSON that serving reads: every change folded before the
#: watermark (µs, the pass start) is in the generation; the oldest dirty mark set after
#: it (µs; null if none when the pass published) is the oldest change that is not.
WATERMARK_KEY = "watermark_micros"
PENDING_SINCE_KEY = "pending_since_micros"
FRESHNESS_KEYS = (WATERMARK_KEY, PENDING_SINCE_KEY)


def generation_cell_micros(generation: int) -> int:
    """Bigtable cell timestamp (µs, ms granularity) of a generation (epoch ms)."""
    return generation * 1000


def generation_of_cell(micros: int) -> int:
    return micros // 1000


def catalog_log_key(written_ms: int, batch: str) -> bytes:
    """The change-log row of one batch of catalogue changes (zero-padded: key order is write order)."""
    return CATALOG_LOG_PREFIX + b"%016d#" % written_ms + batch.encode("utf-8")


def catalog_log_start(written_ms: int) -> bytes:
    """The first change-log key written at or after ``written_ms``."""
    return CATALOG_LOG_PREFIX + b"%016d#" % max(written_ms, 0)


def parse_catalog_log_key(key: bytes) -> tuple[int, str]:
    """``(written_ms, batch)`` of a change-log key."""
    start = len(CATALOG_LOG_PREFIX)
    stamp = key[start : start + 16]
    if not key.startswith(CATALOG_LOG_PREFIX) or key[start + 16 : start + 17] != b"#" or not stamp.isdigit():
        raise ValueError(f"{key!r} is not a catalogue change key")
    return int(stamp), key[start + 17 :].decode("utf-8")


def recent_row_key(user: str) -> bytes:
    """The ``recent`` row of a user: salted like ``user_prefix`` (without the separator), so
    a pass reads it by the same bucket key ranges as the ``users`` rows."""
    return _salted(user)


#: Largest event time (ms) a ``recent`` timestamp can hold: ((ms << bits) | tie) * 1000 < 2^63.
_RECENT_MAX_MS = ((2**63 - 1) // 1000 >> RECENT_TIE_BITS) - 1


def recent_cell_micros(ts_ms: int, event_id: str) -> int:
    """The ``recent`` cell timestamp (µs) of an event: its time, then a hash of its id.

    ``((ts_ms << RECENT_TIE_BITS) | hash) * 1000``: a multiple of 1000, so it keeps Cloud
    Bigtable's millisecond granularity; ordered by event time first, so the newest cells are
    the latest events; a function of the event alone, so a re-delivery rewrites the same cell.
    (The value is not a wall-clock time: the family has no max_age.)
    """
    tie = int.from_bytes(hashlib.blake2b(event_id.encode("utf-8"), digest_size=4).digest(), "big")
    ms = min(max(ts_ms, 0), _RECENT_MAX_MS)
    return ((ms << RECENT_TIE_BITS) | (tie & ((1 << RECENT_TIE_BITS) - 1))) * 1000


def session_key(user: str, session: str | None, ts_ms: int) -> str:
    """The session an event belongs to: its ``session`` field, else its user's events in one
    SESSION_GAP-long window of event time.

    A fixed window, not an inactivity cut: the session of an event must be a function of the
    event alone (a later or concurrent event could otherwise merge or split sessions that
    writers already indexed). The window key holds a NUL, which ids never do, so it never
    names a session a shop gave.
    """
    if session is not None:
        return session
    return f"{user}{PAIR_SEPARATOR.decode()}{ts_ms // (SESSION_GAP // timedelta(milliseconds=1))}"


def item_sessions_key(item: str) -> bytes:
    """The ``sessions`` row listing the sessions that clicked the item."""
    return b"i" + _salted(item)


def session_row_key(session: str) -> bytes:
    """The ``sessions`` row holding a session's items (``session``: a session_key).

    A session the stream cut by time is salted by its user, so a user's such sessions sit
    under one prefix (:func:`user_sessions_prefix`) that an erasure can scan."""
    user, cut, _ = session.partition(PAIR_SEPARATOR.decode())
    if not cut:
        return b"s" + _salted(session)
    return user_sessions_prefix(user) + session[len(user) + 1 :].encode("utf-8")


def user_sessions_prefix(user: str) -> bytes:
    """The key prefix of the ``sessions`` rows of a user's time-cut sessions."""
    return b"s" + _salted(user) + PAIR_SEPARATOR


def id_from_sessions_key(key: bytes) -> str:
    """The item (``item_sessions_key``) or session key (``session_row_key``) a ``sessions`` row holds."""
    if key[:1] not in (b"i", b"s"):
        raise ValueError(f"{key!r} is not a sessions row key")
    return _entity(key[1:]).decode("utf-8")


def recent_micros_after(ts_ms: int) -> int:
    """The lowest ``recent`` cell timestamp of an event after ``ts_ms``: cells below it are
    the events at or before ``ts_ms``."""
    return (min(max(ts_ms + 1, 0), _RECENT_MAX_MS) << RECENT_TIE_BITS) * 1000


def recent_event_ms(micros: int) -> int:
    """The event time (ms) of a ``recent`` cell timestamp."""
    return (micros // 1000) >> RECENT_TIE_BITS


# --- erasure epochs (streaming.forget) ----------------------------------------
# A user's epoch is how many times the user was forgotten. State written for a user
# carries the epoch its writer saw, so that an erasure removes exactly the older state
# and a stale writer can never pass for a new one.

#: Bits of a pair row's version below its epoch (s:v = epoch << bits | writes).
PAIR_VERSION_BITS = 40
#: Bits of a contribution stamp below its epoch (stamp = epoch << bits | events).
STAMP_EVENT_BITS = 32


def user_token(user: str) -> bytes:
    """A fixed-length pseudonym of a user (hex): what tombstones and erasure marks are keyed by,
    so that no row or qualifier holds a forgotten user's id."""
    return hashlib.blake2b(user.encode("utf-8"), digest_size=16, person=b"streamsim-forget").hexdigest().encode()


def forget_row_key(user: str) -> bytes:
    """The ``meta`` row of a user's tombstone and receipt."""
    return FORGET_PREFIX + user_token(user)


def pair_version(epoch: int, writes: int) -> int:
    return (epoch << PAIR_VERSION_BITS) | writes


def version_epoch(version: int) -> int:
    """The epoch a ``users`` row was written in (0: never forgotten, or no row)."""
    return version >> PAIR_VERSION_BITS


def contribution_stamp(epoch: int, events: int) -> int:
    return (epoch << STAMP_EVENT_BITS) | events


def stamp_epoch(stamp: int) -> int:
    return stamp >> STAMP_EVENT_BITS


def stamp_events(stamp: int) -> int:
    return stamp & ((1 << STAMP_EVENT_BITS) - 1)
