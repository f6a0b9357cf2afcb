"""The fold as two keyed Beam stages: pairs by user, then items by item.

::

    Delivered --KeyByUser--> GroupIntoBatches --FoldUsers--> (item shard, PairUpdate)
        --GroupIntoBatches--> FoldItems --> Settled (message ids and counts)

Keys are shards of the id (a stable hash), so every user (item) has exactly one
key: in a healthy job one worker at a time writes a given user's pairs (item's
stats), and conditional writes stay conflict-free. Correctness does not rest on
it (``streaming.store`` is safe with any number of writers); speed does. A shard
gathers many users, so a batch is a few hundred rows, not one.

Hot items need nothing special: all of a batch's contributions to one item are
folded into one stats write (pre-combined), whatever share of traffic it gets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from schemas import Event, Weights
from streaming.fold import Contribution
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

#: Key shards per stage on Dataflow: enough for many workers, few enough that a
#: shard's batch fills. The local runner has one worker thread: one shard, the
#: biggest batches (``--fold_shards``).
SHARDS = 64
LOCAL_SHARDS = 1
#: Elements per batch, and how long a partial batch may wait (bounds the lag it adds;
#: two stages, so at most twice this).
BATCH_SIZE = 1000
MAX_BUFFERING_SECONDS = 0.1
STATS = "stats"


def shard_of(entity: str, shards: int) -> int:
    """A stable shard (not Python's per-process ``hash``): the same on every worker."""
    return int.from_bytes(hashlib.blake2b(entity.encode("utf-8"), digest_size=4).digest(), "big") % shards


@dataclasses.dataclass(frozen=True)
class PairUpdate:
    """A pair's absolute contribution after the user stage, with the messages behind it."""

    item: str
    user: str
    contribution: Contribution
    message_ids: tuple[str, ...]
    #: The event time (ms) of the pair's newest event in the user batch: the trending
    #: bucket hint (``streaming.trending``); two updates of one pair merge to the newest.
    newest_ms: int = 0


@dataclasses.dataclass(frozen=True)
class Settled:
    """Messages whose events are written for good, and what the stage counted."""

    message_ids: tuple[str, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()


def _counts(stats) -> tuple[tuple[str, int], ...]:
    """The non-zero counters of a batch (``FoldStats``), for the local runner's tallies."""
    return tuple((k, v) for k, v in dataclasses.asdict(stats).items() if v and k != "events")


# The stats go to a tagged output; without this hint Beam would infer the main
# output's type from both and refuse the next GroupIntoBatches.
@beam.typehints.with_output_types(tuple[int, "PairUpdate"])
class FoldUsersFn(beam.DoFn):
    """A batch of deliveries -> their pairs folded (``FoldStore.fold_users``) -> PairUpdates."""

    def __init__(self, settings: Settings, weights: Weights, shards: int):
        self._settings = settings
        self._weights = weights
        self._shards = shards
        self.accepted = Metrics.counter("streaming", "accepted")
        self.duplicates = Metrics.counter("streaming", "duplicates")
        self.conflicts = Metrics.counter("streaming", "conflicts")

    def setup(self):
        from streaming.store import FoldStore

        self._store = FoldStore(self._settings)

    def process(self, keyed):
        from streaming.store import FoldStats, newest_event_ms

        _, deliveries = keyed
        events: list[Event] = [d.event for d in deliveries]
        stats = FoldStats(events=len(events))
        started = time.perf_counter()
        contributions = self._store.fold_users(events, self._weights, stats)
        log.debug("folded %d events into pairs in %.3fs", len(events), time.perf_counter() - started)
        messages: dict[tuple[str, str], list[str]] = {}
        for d in deliveries:
            messages.setdefault((d.event.item, d.event.user), []).append(d.message_id)
        newest = newest_event_ms(events)
        dropped: list[str] = []
        for (item, user), ids in messages.items():
            contribution = contributions.get(item, {}).get(user)
            if contribution is None:  # every event of the pair predates the user's erasure
                dropped += ids
                continue
            yield shard_of(item, self._shards), PairUpdate(item, user, contribution, tuple(ids), newest[item, user])
        self.accepted.inc(stats.accepted)
        self.duplicates.inc(stats.duplicates)
        self.conflicts.inc(stats.conflicts)
        yield beam.pvalue.TaggedOutput(STATS, Settled(tuple(dropped), _counts(stats)))


class FoldItemsFn(beam.DoFn):
    """A batch of PairUpdates -> one stats write per item (``FoldStore.fold_items``) -> Settled."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self.written = Metrics.counter("streaming", "items_written")
        self.conflicts = Metrics.counter("streaming", "conflicts")

    def setup(self):
        from streaming.store import FoldStore

        self._store = FoldStore(self._settings)

    def process(self, keyed):
        from streaming.store import FoldStats

        _, updates = keyed
        incoming: dict[str, dict[str, Contribution]] = {}
        newest: dict[tuple[str, str], int] = {}
        for update in updates:
            pair = (update.item, update.user)
            newest[pair] = max(newest.get(pair, update.newest_ms), update.newest_ms)
            per_item = incoming.setdefault(update.item, {})
            # Two user batches may carry one pair: the later state has the higher count.
            known = per_item.get(update.user)
            if known is None or update.contribution[1] > known[1]:
                per_item[update.user] = update.contribution
        stats = FoldStats()
        self._store.fold_items(incoming, stats, event_ms=newest)
        self.written.inc(stats.items_written)
        self.conflicts.inc(stats.conflicts)
        yield Settled(tuple(m for update in updates for m in update.message_ids), _counts(stats))


class FoldIntoBigtable(beam.PTransform):
    """Delivered events -> Bigtable; returns the Settled records (one per item batch, and
    the user stage's counts)."""

    def __init__(self, settings: Settings, weights: Weights, shards: int = SHARDS):
        super().__init__()
        self._settings = settings
        self._weights = weights
        self._shards = shards

    def expand(self, deliveries):
        shards = self._shards
        users = (
            deliveries
            | "KeyByUser" >> beam.Map(lambda d: (shard_of(d.event.user, shards), d))
            | "BatchUsers" >> beam.GroupIntoBatches(BATCH_SIZE, max_buffering_duration_secs=MAX_BUFFERING_SECONDS)
            | "FoldUsers"
            >> beam.ParDo(FoldUsersFn(self._settings, self._weights, shards)).with_outputs(STATS, main="pairs")
        )
        items = (
            users.pairs
            | "BatchItems" >> beam.GroupIntoBatches(BATCH_SIZE, max_buffering_duration_secs=MAX_BUFFERING_SECONDS)
            | "FoldItems" >> beam.ParDo(FoldItemsFn(self._settings))
        )
        return (items, users[STATS]) | "SettledFolds" >> beam.Flatten()
