"""One refresh pass: Bigtable rows and norms in, a new similarity generation out.

Full mode recomputes every row. Incremental mode (the default once a complete generation
with the same parameters is current) recomputes the rows of the affected items A and merges
the other rows from their stored lists (``batch.incremental`` states why that is exact):

- A = dirty items (marked before the pass started) plus, if γ changed because the item
  count changed, every item whose q_i = min(sg, ‖c_i‖) changed. A pair (i, j) with both
  i, j outside A has the same entries, the same p, q and the same keep decisions, hence
  bit-for-bit the same estimate (see ``batch.dimsum``).
- Clean rows that can only gain or lose entries of A are merged; the few where an unknown
  (unstored) clean neighbour could move up are recomputed in a second, small Spark job.
  Rows that do not change are carried over (readers resolve them to older cells).

I/O of an incremental pass: the users holding an affected item come from the stream's
inverted index (``items c:<user>``) and are read by key, not by a scan of ``users``; of
the previous generation only the rows of items co-held with an affected item are read
(C below). That is enough because scores never disappear (r_ui only grows): a clean
row p can change only through a candidate s(p, a) or through a stored entry a in A, and
either needs a user holding both p and a, who is among the users read. Rows outside C
are neither read nor rewritten. Items written before the index existed (a norm but no
``c`` cell) make the pass fall back to a scan of every user.

The result equals a full pass on the same data (``tests/test_batch_refresh.py``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable

import numpy as np
from google.cloud.bigtable import row_filters
from google.cloud.bigtable.row import DirectRow

from batch import engine, incremental, source
from batch.dimsum import DimsumParams, bucket_of_key, check_buckets, id_hashes
from batch.generations import Generations, _commit
from schemas import layout
from streamsim.clients import bigtable_instance
from streamsim.settings import Settings

log = logging.getLogger(__name__)

#: Length of the fallback popularity list (at least top_k).
POPULAR_SIZE = 100
#: Up to this many affected items (and 10% of all), an incremental pass reads only the
#: users holding one of them, through a server-side qualifier filter; the regex grows
#: with the list, so beyond it a plain scan is cheaper.
MAX_HOLDING_ITEMS = 2000
#: Up to this fraction of all items, an incremental pass finds the users holding the
#: affected items through the inverted index; beyond it (e.g. γ moved and most q_i
#: changed) the index holds about as much as the users table, so a scan is cheaper.
MAX_INDEX_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class PassOptions:
    params: DimsumParams = DimsumParams()
    full: bool = False
    #: Buckets of the user key space: the unit of reproducible summation. More buckets allow
    #: more read partitions; fewer keep the shuffle small. Part of the result's identity.
    buckets: int = 64
    #: Read partitions (key ranges); default 2 per Spark core.
    partitions: int | None = None
    spot_check_pairs: int = 300
    #: Incremental passes: let Bigtable select the users holding an affected item (a
    #: qualifier-regex filter). Worth it on Cloud Bigtable; the emulator evaluates such
    #: filters slowly (measured: 8k Tmall users, 300 items: 81 s vs 2.3 s for a plain
    #: scan), so by default all users are scanned and the non-holders skipped client-side.
    server_filter: bool = False

    def __post_init__(self):
        check_buckets(self.buckets)
        if self.partitions is not None and self.partitions < 1:
            raise ValueError("partitions must be at least 1")

    def identity(self) -> dict:
        """What must match between a base generation and an incremental pass."""
        p = self.params
        return {"threshold": p.threshold, "seed": p.seed, "top_k": p.top_k,
                "min_similarity": p.min_similarity, "buckets": self.buckets}


class _Phases:
    """Wall time per phase, logged as each starts and ends (Spark shows its own progress bar)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        log.info("phase %s ...", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        log.info("phase %s done in %.2f s", name, self.seconds[name])


def _choose_mode(gens: Generations, options: PassOptions, base: int | None) -> tuple[str, str, dict | None]:
    if options.full:
        return "full", "--full", None
    if base is None:
        return "full", "no generation yet", None
    stats = gens.pass_stats(base)
    if not stats or stats.get("state") != "complete":
        return "full", f"no complete statistics for generation {base}", None
    if any(stats.get(k) != v for k, v in options.identity().items()):
        return "full", "parameters differ from the current generation", None
    if any(g > base for g in gens.passes()):
        # Rows carried over would resolve to the newer (rolled back or unfinished) cells.
        return "full", "a generation newer than the pointer exists (rollback or failed pass)", None
    return "incremental", "dirty items", stats


def _popular(items: source.ItemTable, size: int) -> list[tuple[str, float]]:
    order = np.lexsort((np.arange(len(items)), -items.norm2, -items.users))[:size]
    return [(items.ids[i], float(items.users[i])) for i in order.tolist()]


def _clear_marks(settings: Settings, items: source.ItemTable, consumed: np.ndarray, start_micros: int) -> int:
    from datetime import datetime, timezone

    table = bigtable_instance(settings).table(settings.tables.items)
    # Only cells older than the pass start: a mark set while the pass ran survives.
    before = row_filters.TimestampRange(end=datetime.fromtimestamp(start_micros / 1e6, tz=timezone.utc))
    rows = []
    for i in np.flatnonzero(consumed).tolist():
        row = DirectRow(layout.item_row_key(items.ids[i]), table)
        row.delete_cell(layout.DIRTY, layout.DIRTY_MARK, time_range=before)
        rows.append(row)
    _commit(table, rows)
    return len(rows)


def run_pass(spark, settings: Settings, options: PassOptions = PassOptions(), *,
             before_flip: Callable[[int], None] | None = None) -> dict:
    """Run one pass and return its statistics (also stored in ``meta pass#<gen>``).

    ``before_flip(generation)`` runs after every row is written and before the pointer
    moves (tests use it to read "during" a pass).
    """
    sc = spark.sparkContext
    params = options.params
    phases = _Phases()
    wall = time.perf_counter()
    gens = Generations(settings)
    known = gens.passes()
    # A generation is the pass start in ms; strictly after any recorded one.
    generation = max(int(time.time() * 1000), max(known, default=0) + 1)
    start_micros = layout.generation_cell_micros(generation)

    with phases("read_items"):
        items = source.read_items(settings)
        base = gens.current()
        mode, reason, base_stats = _choose_mode(gens, options, base)
    n = len(items)
    log.info("pass %d: %s (%s), %d items", generation, mode, reason, n)
    gens.begin_pass(generation, {"mode": mode, **options.identity()})
    index = items.index()
    item_hash = id_hashes(items.ids)
    dirty = (items.dirty_micros > 0) & (items.dirty_micros < start_micros)
    ranges = source.bucket_ranges(settings, options.buckets, options.partitions or 2 * sc.defaultParallelism)
    shared_index = sc.broadcast(index)
    buckets = options.buckets
    cached = []
    selections = []

    def holder_keys(holding: np.ndarray) -> list[bytes] | None:
        """Sorted row keys of the users holding ``holding`` items, None to scan instead."""
        if len(holding) > MAX_INDEX_FRACTION * len(items):
            return None
        users, unindexed = source.read_holders(settings, [items.ids[i] for i in holding.tolist()])
        if unindexed:
            log.warning("%d of %d items to recompute have no inverted-index cells (state written before "
                        "the index existed, e.g. %s): scanning every user instead",
                        len(unindexed), len(holding), unindexed[0])
            return None
        return sorted(layout.user_row_key(u) for u in users)

    def user_blocks(holding: np.ndarray | None):
        """Cached blocks of all users, or of the users with a score on ``holding`` items."""
        keys = None if holding is None else holder_keys(holding)
        if keys is not None:
            selections.append("index")
            # Each read partition gets the keys of its bucket range: blocks stay per bucket.
            of_key = np.array([bucket_of_key(k, buckets) for k in keys], dtype=np.int64)
            tasks = [(r, [k for k, b in zip(keys, of_key.tolist()) if r[0] <= b < r[1]]) for r in ranges]
            rdd = (
                sc.parallelize(tasks, len(tasks))
                .flatMap(lambda t: source.read_user_blocks(settings, t[0], buckets, shared_index.value,
                                                           keys=t[1]) if t[1] else ())
                .cache()
            )
            cached.append(rdd)
            return rdd
        names = None
        if (options.server_filter and holding is not None
                and len(holding) <= min(MAX_HOLDING_ITEMS, len(items) // 10)):
            names = [items.ids[i] for i in holding.tolist()]
        selections.append("scan" if names is None else "server_filter")
        rdd = (
            sc.parallelize(ranges, len(ranges))
            .flatMap(lambda r: source.read_user_blocks(settings, r, buckets, shared_index.value, names))
            .cache()
        )
        cached.append(rdd)
        return rdd

    merges: dict[int, list[tuple[int, float]]] = {}
    users_read, old_rows_read = 0, 0
    if mode == "full":
        with phases("read_users"):
            blocks = user_blocks(None)
            users = users_read = blocks.map(lambda b: b.users).sum()
        with phases("dimsum"):
            result = engine.similarity_rows(sc, blocks, items.norm2, item_hash, params)
            recomputed, extra_top = np.arange(n), {}
    else:
        affected = _affected(items, params, base_stats, dirty)
        with phases("read_users"):
            blocks = user_blocks(np.flatnonzero(affected))
            users = users_read = blocks.map(lambda b: b.users).sum()
        with phases("read_generation"):
            # C: items co-held with an affected item (module docstring: only their rows can change).
            co_held = blocks.map(lambda b: np.unique(b.holding(affected).indices)).fold(
                np.empty(0, np.int32), np.union1d)
            wanted = np.zeros(n, dtype=bool)
            wanted[co_held] = True
            wanted &= ~affected
            old = _stored_rows(gens, base, items, wanted)
            old_rows_read = int(wanted.sum())
        with phases("dimsum"):
            recomputed = np.flatnonzero(affected)
            result = engine.similarity_rows(sc, blocks, items.norm2, item_hash, params, rows=recomputed,
                                            source_rows=affected,
                                            bar=incremental.candidate_bars(old, affected, params.top_k))
            merges, again = incremental.merge_rows(old, affected, result.candidates, params.top_k)
            extra_top = {}
            if len(again):
                again_blocks = user_blocks(again)
                users_read += again_blocks.map(lambda b: b.users).sum()
                extra_top = engine.similarity_rows(sc, again_blocks, items.norm2, item_hash, params,
                                                   rows=again).top
                recomputed = np.union1d(recomputed, again)
            result.clean_rows_recomputed = len(again)
            log.info("incremental: %d dirty, %d affected, %d merged, %d clean rows recomputed",
                     int(dirty.sum()), int(affected.sum()), len(merges), len(again))

    with phases("write"):
        def rows():
            for position in recomputed.tolist():
                cols, vals = result.top.get(position) or extra_top.get(position) or ((), ())
                yield items.ids[position], [(items.ids[c], v) for c, v in zip(list(cols), list(vals))]
            for position, pairs in merges.items():
                yield items.ids[position], [(items.ids[c], v) for c, v in pairs]

        written = gens.write_rows(generation, rows())
        gens.write_popular(generation, _popular(items, max(POPULAR_SIZE, params.top_k)))

    with phases("spot_check"):
        # On the rows computed from ``blocks`` (whose users are exactly those rows' users).
        check = engine.spot_check(blocks, items.norm2, result, params, options.spot_check_pairs)
    for rdd in cached:
        rdd.unpersist()
    shared_index.unpersist()

    gamma = params.gamma(n)
    stats = {
        "generation": generation,
        "mode": mode,
        "reason": reason,
        "base_generation": base,
        **options.identity(),
        "gamma": None if math.isinf(gamma) else gamma,
        "items": n,
        # Users of the blocks the pass computed from: incremental passes read only those
        # holding an affected item (through the index, or server_filter).
        "users": int(users),
        # User rows read in all (incremental: plus the holders of clean rows recomputed).
        "users_read": int(users_read),
        # How users were selected, per read: "scan", "index" or "server_filter".
        "user_selection": "+".join(selections),
        # Previous-generation rows looked up (incremental only; only items co-held with A).
        "similarity_rows_read": old_rows_read,
        "read_partitions": len(ranges),
        "pairs_emitted": result.pairs_emitted,
        "pairs_exact": result.pairs_exact,
        "dirty_items": int(dirty.sum()),
        "items_recomputed": int(len(recomputed)),
        "clean_rows_recomputed": result.clean_rows_recomputed,
        "rows_merged": len(merges),
        "rows_written": written,
        "spot_check": check,
    }
    with phases("publish"):
        gens.finish_pass({**stats, "phases_seconds": phases.seconds})
        if before_flip is not None:
            before_flip(generation)
        gens.flip_pointer(generation)
        # After the flip: a crash in between leaves marks set, which only costs a recomputation.
        stats["marks_cleared"] = _clear_marks(settings, items, dirty, start_micros)
    stats["phases_seconds"] = phases.seconds
    stats["wall_seconds"] = round(time.perf_counter() - wall, 3)
    gens.finish_pass(stats)
    log.info("pass %d complete: %d rows written in %.1f s", generation, written, stats["wall_seconds"])
    return stats


def _affected(items: source.ItemTable, params: DimsumParams, base_stats: dict, dirty: np.ndarray) -> np.ndarray:
    affected = dirty.copy()
    gamma_new, gamma_old = params.gamma(len(items)), params.gamma(int(base_stats["items"]))
    if gamma_new != gamma_old:
        # q_i = min(sg, ‖c_i‖) is unchanged only where both sg exceed the norm.
        affected |= np.sqrt(items.norm2) > math.sqrt(min(gamma_new, gamma_old))
    return affected


def _stored_rows(gens: Generations, base: int, items: source.ItemTable, wanted: np.ndarray) -> dict:
    """The ``wanted`` rows as visible at ``base``: position -> (neighbour positions, scores)."""
    index = items.index()
    old = {}
    for item, ids, scores in gens.read_items(base, [items.ids[i] for i in np.flatnonzero(wanted).tolist()]):
        position = index.get(item)
        if position is None or not wanted[position]:
            continue
        cols = np.array([index.get(i, -1) for i in ids], dtype=np.int64)
        keep = cols >= 0
        old[position] = (cols[keep], np.asarray(scores)[keep])
    return old
