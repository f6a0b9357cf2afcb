"""Fold writers that run in their own processes (each with its own Bigtable client),
for the tests that race them against each other."""

from __future__ import annotations

import dataclasses
import multiprocessing
import random

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


def redelivery_plans(events: list[Event], seed: int, writers: int) -> list[list[Batch]]:
    """Each event goes to two writers (a redelivery racing the delivery); some batches die
    between the pair and item writes, and every event reaches some writer that lives."""
    rnd = random.Random(seed)
    plans: list[list[Batch]] = [[] for _ in range(writers)]
    for offset in range(0, len(events), 100):
        chunk = events[offset : offset + 100]
        first, second = rnd.sample(range(writers), 2)
        plans[first].append(Batch(rnd.sample(chunk, len(chunk)), crash_before_items=rnd.random() < 0.3))
        plans[second].append(Batch(list(reversed(chunk))))
    return plans


def race(settings: Settings, plans: list[list[Batch]], *, blind: bool = False):
    """Run one writer process per plan, all started at once; their summed ``FoldStats``."""
    from streaming.store import FoldStats

    context = multiprocessing.get_context("spawn")
    start = context.Manager().Event()
    with context.Pool(len(plans)) as pool:
        runs = [pool.apply_async(run_writer, (settings, plan, start, blind)) for plan in plans]
        start.set()
        totals = FoldStats()
        for run in runs:
            totals.add(FoldStats(**run.get(timeout=300)))
    return totals
