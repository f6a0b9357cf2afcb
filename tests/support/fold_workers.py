"""Fold writers that run in their own processes (each with its own Bigtable client),
for the tests that race them against each other."""

from __future__ import annotations

import dataclasses

from schemas import Event, Weights
from streamsim.runtime.settings import Settings


@dataclasses.dataclass(frozen=True)
class Batch:
    events: list[Event]
    #: Stop after the pair writes, as a worker that dies before the item writes.
    crash_before_items: bool = False


def run_writer(settings: Settings, batches: list[Batch], start, blind: bool = False) -> dict:
    """Fold ``batches`` in order once ``start`` is set; ``blind``: without the version checks."""
    from streaming import store

    if blind:
        # Plain writes in place of the conditional ones: the race the store must survive.
        never = store.filters.value_equals(b"\xff never a version")

        def unconditional(key, column, version, mutations):
            return store.Conditional(key, store.filters.chain(column, never), otherwise=mutations)

        store._versioned = unconditional
    fold_store = store.FoldStore(settings)
    totals = store.FoldStats()
    start.wait()
    for batch in batches:
        stats = store.FoldStats(events=len(batch.events))
        contributions = fold_store.fold_users(batch.events, Weights(), stats)
        if not batch.crash_before_items:
            fold_store.fold_items(contributions, stats, event_ms=store.newest_event_ms(batch.events))
        totals.add(stats)
    return dataclasses.asdict(totals)
