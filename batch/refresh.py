"""One refresh pass: Bigtable rows and norms in, a new similarity generation out.

Full mode recomputes every row. Incremental mode (possible once a complete generation with
the same parameters is current, and run when ``batch.planner`` estimates it cheaper)
recomputes the rows of the affected items A and merges the other rows from their stored
lists (``batch.incremental`` states why that is exact):

- A = dirty items (marked before the pass started) plus, if γ changed because the item
  count changed, every item whose q_i = min(sg, ‖c_i‖) changed. A pair (i, j) with both
  i, j outside A has the same entries, the same p, q and the same keep decisions, hence
  bit-for-bit the same estimate (see ``batch.dimsum``).
- Clean rows that can only gain or lose entries of A are merged; the few where an unknown
  (unstored) clean neighbour could move up are recomputed in a second, small Spark job.
  Rows that do not change are carried over (readers resolve them to older cells).

I/O of an incremental pass: the users holding an affected item come from prefix scans of
the stream's ``contributions`` (one row per (item, user)), and their rows are read by
prefix, not by a scan of ``users``; of the previous generation only the rows of items
co-held with an affected item are read (C below). That is enough because scores never
disappear (r_ui only grows): a clean row p can change only through a candidate s(p, a) or
through a stored entry a in A, and either needs a user holding both p and a, who is among
the users read. Rows outside C are neither read nor rewritten.

The result equals a full pass on the same data (``tests/batch/test_refresh.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator

import numpy as np

from batch import bought as bought_together
from batch import engine, incremental, planner, source
from batch import similarity as measures
from batch.dimsum import DimsumParams, bucket_of_key, check_buckets, id_hashes
from batch.generations import UNWRITTEN_STATES, Generations
from schemas import entries, layout
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

#: Length of the fallback popularity list (at least top_k).
POPULAR_SIZE = 100
#: Up to this fraction of all items, an incremental pass finds the users holding the
#: affected items through ``contributions``; beyond it (e.g. γ moved and most q_i
#: changed) those prefixes hold about as much as the users table, so a scan is cheaper.
MAX_INDEX_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class PassOptions:
    params: DimsumParams = DimsumParams()
    full: bool = False
    #: Incremental even where the cost model (``batch.planner``) expects a full pass to be
    #: cheaper (a pass without a usable base generation is still full).
    incremental: bool = False
    #: Buckets of the user key space: the unit of reproducible summation. More buckets allow
    #: more read partitions; fewer keep the shuffle small. Part of the result's identity.
    buckets: int = 64
    #: Read partitions (key ranges); default 2 per Spark core.
    partitions: int | None = None
    spot_check_pairs: int = 300
    #: Publish (and flip to) a generation without a single neighbour. Off by default: such
    #: a generation (a floor above every score, no co-occurring items) would make serving
    #: answer every request from popularity only.
    allow_empty: bool = False
    #: The measure (``batch.similarity.REGISTRY``) and its parameters, as (name, value) pairs.
    similarity: str = measures.DEFAULT
    similarity_params: tuple[tuple[str, float], ...] = ()
    #: f, what the entries are (``schemas.entries``); its ceiling is M unless
    #: ``params.entry_scale`` overrides it. The stream folds the norms of ``entries.FOLDED``
    #: (and of raw scores); another transform's norms are summed by full passes.
    entry_transform: str = entries.DEFAULT.spec
    #: Co-buyers a bought-together pair needs (``batch.bought``).
    bought_min_support: int = bought_together.MIN_CO_BUYERS

    def __post_init__(self):
        check_buckets(self.buckets)
        if self.full and self.incremental:
            raise ValueError("--full and --incremental exclude each other")
        if self.partitions is not None and self.partitions < 1:
            raise ValueError("partitions must be at least 1")
        if self.bought_min_support < 1:
            raise ValueError("bought_min_support must be at least 1")
        resolved = measures.measure(self.similarity).resolve(dict(self.similarity_params))
        object.__setattr__(self, "similarity_params", tuple(sorted(resolved.items())))
        # (Measures that bound their own entries take raw scores: that is what is recorded.)
        effective = measures.effective_transform(measures.measure(self.similarity), self.entry_transform)
        object.__setattr__(self, "entry_transform", effective.spec)

    @property
    def transform(self) -> entries.EntryTransform:
        return entries.parse(self.entry_transform)

    def entry_scale(self) -> float:
        """M of the pass: a property of the measure and the transform, never of the data."""
        m = measures.measure(self.similarity)
        return measures.entry_scale(m, dict(self.similarity_params), self.params, self.transform)

    def identity(self) -> dict:
        """What must match between a base generation and an incremental pass."""
        p = self.params
        return {
            "threshold": p.threshold,
            "seed": p.seed,
            "top_k": p.top_k,
            "min_similarity": p.min_similarity,
            "buckets": self.buckets,
            "entry_scale": p.entry_scale,
            "entry_transform": self.entry_transform,
            "similarity": self.similarity,
            "similarity_params": dict(self.similarity_params),
        }


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


def run_pass(
    spark,
    settings: Settings,
    options: PassOptions = PassOptions(),
    *,
    before_flip: Callable[[int], None] | None = None,
    warm=None,
) -> dict:
    """Run one pass and return its statistics (also stored in ``meta pass#<gen>``).

    ``before_flip(generation)`` runs after every row is written and before the pointer
    moves (tests use it to read "during" a pass). ``warm`` (a :class:`batch.continuous.WarmState`)
    keeps the items and similarity rows between the passes of one loop.

    ``stats["flipped"]`` says whether readers now use this generation. When it is False,
    ``stats["not_flipped_reason"]`` says why, and ``stats["refused"]`` whether the pass
    refused to publish (a generation without neighbours, unless ``allow_empty``; an
    incremental pass overlapped by another one) rather than lost to a newer generation
    that was already current (:meth:`Generations.flip_pointer`).
    """
    wall = time.perf_counter()
    ctx = _Context(spark.sparkContext, settings, options, Generations(settings), _Phases(), warm)
    plan = _plan(ctx)
    with _failed_if_raised(ctx, plan.generation, plan.mode):
        reads = _UserReads(ctx, plan)
        try:
            with ctx.phases("read_users"):
                blocks = reads.blocks(_select_users(ctx, plan.items, plan.recompute))
                users = int(blocks.map(lambda b: b.users).sum())
            computed = _compute(ctx, plan, reads, blocks, users)
        finally:
            reads.close()
        with ctx.phases("bought_together"):
            bought = _bought_together(ctx, plan)
    stats = _publish(ctx, plan, computed, reads.selections, before_flip, bought)
    if warm is not None:
        if stats["flipped"]:
            warm.published(plan.generation, plan.base if plan.mode == "incremental" else None, computed.deep_rows())
        else:
            warm.not_published()
    stats["phases_seconds"] = ctx.phases.seconds
    stats["wall_seconds"] = round(time.perf_counter() - wall, 3)
    ctx.gens.finish_pass(stats, state=stats["state"])
    if stats["flipped"]:
        log.info(
            "pass %d complete: %d rows written in %.1f s", plan.generation, stats["rows_written"], stats["wall_seconds"]
        )
    else:
        # (info: the command prints the reason itself, as its one error line)
        log.info("pass %d not published: %s", plan.generation, stats["not_flipped_reason"])
    return stats


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every phase of a pass uses. It holds the SparkContext: no Spark closure may refer
    to it (closures take plain locals instead)."""

    sc: object
    settings: Settings
    options: PassOptions
    gens: Generations
    phases: _Phases
    warm: object | None = None


# --- plan: the mode, the affected set, which users each read selects ----------
@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a pass does, fixed before any user row is read."""

    #: The pass start in ms, strictly after any recorded generation.
    generation: int
    items: source.ItemTable
    #: The generation the pointer named at the start (None before the first pass).
    base: int | None
    mode: str
    reason: str
    #: Items marked dirty before the pass started (their marks are cleared at the end).
    dirty: np.ndarray
    #: Incremental: A, the items whose rows are recomputed. Full: None (every row).
    affected: np.ndarray | None
    #: Bucket ranges of the user key space, one per read partition.
    ranges: list[tuple[int, int]]
    #: The estimates the mode was chosen by (``batch.planner.Choice.record``); None if not estimated.
    cost_model: dict | None = None

    @property
    def start_micros(self) -> int:
        return layout.generation_cell_micros(self.generation)

    @property
    def recompute(self) -> np.ndarray | None:
        """Positions of the rows computed from the first read (None: all)."""
        return None if self.affected is None else np.flatnonzero(self.affected)


def _plan(ctx: _Context) -> _Plan:
    gens, options = ctx.gens, ctx.options
    known = gens.passes()
    generation = max(int(time.time() * 1000), max(known, default=0) + 1)
    base = gens.current()
    if ctx.warm is not None:
        ctx.warm.check_base(base)
    mode, reason, base_stats = _choose_mode(known, options, base)
    # Recorded at once: an overlapping pass that plans after this sees it and goes full
    # (``_choose_mode``); one that planned just before is caught before the flip (``_publish``).
    gens.begin_pass(generation, {"mode": mode, **options.identity()})
    with _failed_if_raised(ctx, generation, mode):
        with ctx.phases("read_items"):
            items = ctx.warm.read_items(ctx.settings) if ctx.warm is not None else source.read_items(ctx.settings)
        dirty = (items.dirty_micros > 0) & (items.dirty_micros < layout.generation_cell_micros(generation))
        affected, cost_model = None, None
        if mode == "incremental":
            affected = _affected(items, options, base_stats, dirty)
            choice = planner.choose(
                items.users,
                affected,
                _last_full_stats(known),
                max_index_fraction=MAX_INDEX_FRACTION,
                forced="incremental" if options.incremental else None,
                cached_rows=len(ctx.warm.rows) if ctx.warm is not None and ctx.warm.generation == base else 0,
            )
            mode, reason, cost_model = choice.mode, choice.reason, choice.record()
            if mode == "full":
                affected = None
        log.info("pass %d: %s (%s), %d items", generation, mode, reason, len(items))
        partitions = options.partitions or 2 * ctx.sc.defaultParallelism
        ranges = source.bucket_ranges(ctx.settings, options.buckets, partitions)
    return _Plan(generation, items, base, mode, reason, dirty, affected, ranges, cost_model=cost_model)


def _last_full_stats(known: dict[int, dict]) -> dict | None:
    """Statistics of the newest complete full pass (its counts calibrate ``batch.planner``)."""
    full = [g for g, stats in known.items() if stats.get("state") == "complete" and stats.get("mode") == "full"]
    return known[max(full)] if full else None


@contextlib.contextmanager
def _failed_if_raised(ctx: _Context, generation: int, mode: str):
    """Record the pass ``failed`` if the block raises: it stopped before writing any cell,
    so (unlike a ``writing`` record a crash leaves) it does not force the next pass to be full."""
    try:
        yield
    except BaseException as exc:
        record = {"generation": generation, "mode": mode, **ctx.options.identity()}
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        try:
            ctx.gens.finish_pass(record, state="failed")
        except Exception as store_exc:  # noqa: BLE001 - the original error is the one to raise
            log.warning("could not record pass %d as failed: %s", generation, store_exc)
        raise


def _choose_mode(known: dict[int, dict], options: PassOptions, base: int | None) -> tuple[str, str, dict | None]:
    """(mode, reason, statistics of the base generation if incremental), from the recorded passes."""
    if options.full:
        return "full", "--full", None
    if not measures.measure(options.similarity).incremental:
        return "full", f"similarity {options.similarity!r} is computed by full passes only", None
    if options.transform not in (entries.RAW, entries.FOLDED):
        return "full", f"the stream folds no norms for entries {options.entry_transform!r}: full passes sum them", None
    if base is None:
        return "full", "no generation yet", None
    stats = known.get(base)
    if not stats or stats.get("state") != "complete":
        return "full", f"no complete statistics for generation {base}", None
    if any(stats.get(k) != v for k, v in options.identity().items()):
        return "full", "parameters differ from the current generation", None
    if any(g > base for g in _with_cells(known)):
        # Rows carried over would resolve to the newer (rolled back or unfinished) cells.
        return "full", "a generation newer than the pointer exists (rollback or failed pass)", None
    return "incremental", "dirty items", stats  # unless batch.planner expects a full pass to be cheaper


def _with_cells(known: dict[int, dict]) -> list[int]:
    """Recorded generations that may have written similarity cells (not refused-empty or failed early)."""
    return [g for g, stats in known.items() if stats.get("state") not in UNWRITTEN_STATES]


def _affected(items: source.ItemTable, options: PassOptions, base_stats: dict, dirty: np.ndarray) -> np.ndarray:
    affected = dirty.copy()
    params = options.params
    gamma_new, gamma_old = params.gamma(len(items)), params.gamma(int(base_stats["items"]))
    if gamma_new != gamma_old:
        # q_i = M·min(sg, ‖c_i‖/M) is unchanged only where both sg exceed the scaled norm.
        norms = np.sqrt(items.entry_norms(options.transform))
        affected |= norms > math.sqrt(min(gamma_new, gamma_old)) * options.entry_scale()
    return affected


@dataclasses.dataclass(frozen=True)
class _Selection:
    """The users one read takes; ``how`` is what ``user_selection`` records."""

    how: str  # "scan" or "index"
    #: "index": the users holding the items, in ``source.user_order``.
    users: list[str] | None = None


def _select_users(ctx: _Context, items: source.ItemTable, holding: np.ndarray | None) -> _Selection:
    """All users (``holding`` None, or too many items to look up), or the users holding ``holding`` items."""
    if holding is None or len(holding) > MAX_INDEX_FRACTION * len(items):
        return _Selection("scan")
    holders = source.read_holders(ctx.settings, [items.ids[i] for i in holding.tolist()])
    return _Selection("index", users=source.user_order(holders))


# --- read: user blocks on Spark ----------------------------------------------
class _UserReads:
    """The user reads of a pass: one cached RDD of :class:`batch.dimsum.UserBlock` per read."""

    def __init__(self, ctx: _Context, plan: _Plan):
        self._sc, self._settings = ctx.sc, ctx.settings
        self._buckets, self._ranges = ctx.options.buckets, plan.ranges
        self._index = ctx.sc.broadcast(plan.items.index())
        self._cached = []
        #: How each read selected its users, in order.
        self.selections: list[str] = []

    def blocks(self, selection: _Selection):
        """The selected users' blocks, one per non-empty bucket, cached until :meth:`close`."""
        self.selections.append(selection.how)
        # Spark pickles the closures: they take locals, never ``self`` (which holds the context).
        settings, buckets, index = self._settings, self._buckets, self._index
        if selection.users is not None:
            # Each read partition gets the users of its bucket range: blocks stay per bucket.
            users = selection.users
            of_user = [bucket_of_key(layout.user_prefix(u), buckets) for u in users]
            tasks = [(r, [u for u, b in zip(users, of_user) if r[0] <= b < r[1]]) for r in self._ranges]
            rdd = self._sc.parallelize(tasks, len(tasks)).flatMap(
                lambda t: source.read_user_blocks(settings, t[0], buckets, index.value, users=t[1]) if t[1] else ()
            )
        else:
            rdd = self._sc.parallelize(self._ranges, len(self._ranges)).flatMap(
                lambda r: source.read_user_blocks(settings, r, buckets, index.value)
            )
        rdd = rdd.cache()
        self._cached.append(rdd)
        return rdd

    def sequences(self):
        """Every user's ``recent`` sequence, ``(bucket, [item positions])`` per bucket (full passes),
        cached until :meth:`close` (the pass reads it twice: occurrences, then counts)."""
        settings, buckets, index = self._settings, self._buckets, self._index
        rdd = self._sc.parallelize(self._ranges, len(self._ranges)).flatMap(
            lambda r: source.read_sequences(settings, r, buckets, index.value)
        )
        rdd = rdd.cache()
        self._cached.append(rdd)
        return rdd

    def close(self) -> None:
        for rdd in self._cached:
            rdd.unpersist()
        self._index.unpersist()


def _bought_together(ctx: _Context, plan: _Plan) -> bought_together.BoughtTogether:
    """The whole bought-together set from the purchase index (``batch.bought``), every pass."""
    settings, buckets = ctx.settings, ctx.options.buckets
    purchases = ctx.sc.parallelize(plan.ranges, len(plan.ranges)).flatMap(
        lambda r: source.read_purchases(settings, r, buckets)
    )
    result = bought_together.compute(purchases, ctx.options.params.top_k, ctx.options.bought_min_support)
    result.cleared = ctx.gens.read_bought_items(plan.generation)
    return result


# --- compute: the engine, the incremental merge, the spot check ---------------
@dataclasses.dataclass
class _Computed:
    """The rows a pass writes, and the figures its statistics report."""

    result: engine.GramResult
    #: Positions of the rows computed (incremental: A plus the clean rows recomputed).
    recomputed: np.ndarray
    #: Users of the blocks ``result`` was computed from.
    users: int
    #: User rows read in all (incremental: plus the holders of clean rows recomputed).
    users_read: int
    spot_check: dict = dataclasses.field(default_factory=dict)
    #: Clean rows recomputed in the second job: position -> (neighbour positions, scores).
    extra_top: dict = dataclasses.field(default_factory=dict)
    #: Clean rows merged from their stored lists: position -> [(neighbour position, score)].
    merges: dict = dataclasses.field(default_factory=dict)
    #: Warm loops: clean rows whose deeper list changed but not their first K (not rewritten).
    deeper_only: dict = dataclasses.field(default_factory=dict)
    #: Previous-generation rows looked up (incremental only).
    old_rows_read: int = 0
    #: The measure as applied (entries, scales, M); None for sequence measures.
    measure: measures.Applied | None = None

    def neighbour_count(self, k: int) -> int:
        """Neighbour entries over every row to write, at most ``k`` a row (without building the rows)."""
        total = sum(min(k, len(self._top(position)[0])) for position in self.recomputed.tolist())
        return total + sum(min(k, len(pairs)) for pairs in self.merges.values())

    def deep_rows(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(position, neighbour positions, scores) of every row computed or merged, as deep
        as computed (warm loops keep them; the first K are the rows written)."""
        for position in self.recomputed.tolist():
            cols, vals = self._top(position)
            yield position, np.asarray(cols, dtype=np.int64), np.asarray(vals, dtype=np.float64)
        for merged in (self.merges, self.deeper_only):
            for position, pairs in merged.items():
                yield position, np.array([c for c, _ in pairs], dtype=np.int64), np.array([v for _, v in pairs])

    def written_positions(self) -> set[int]:
        return set(self.recomputed.tolist()) | set(self.merges)

    def _top(self, position: int):
        return self.result.top.get(position) or self.extra_top.get(position) or ((), ())

    def rows(self, ids: list[str], k: int) -> Iterator[tuple[str, list[tuple[str, float]]]]:
        """(item, first ``k`` neighbours) of every row to write."""
        for position in self.recomputed.tolist():
            cols, vals = self._top(position)
            yield ids[position], [(ids[c], v) for c, v in zip(list(cols[:k]), list(vals[:k]))]
        for position, pairs in self.merges.items():
            yield ids[position], [(ids[c], v) for c, v in pairs[:k]]


def _compute(ctx: _Context, plan: _Plan, reads: _UserReads, blocks, users: int) -> _Computed:
    items, params, options = plan.items, ctx.options.params, ctx.options
    item_hash = id_hashes(items.ids)
    if measures.measure(options.similarity).sequences:
        return _compute_from_sequences(ctx, plan, reads, users, params)
    with ctx.phases("dimsum"):
        # Norms of the pass's entries from the stream (None: a full pass sums its own).
        stats = measures.ItemStats(items.entry_norms(options.transform), items.users, users)
        given = dict(options.similarity_params)
        measure = engine.applied(ctx.sc, blocks, options.similarity, given, stats, params, options.transform)
        if plan.affected is None:
            result = engine.similarity_rows(
                ctx.sc, blocks, measure.stats.norm2, item_hash, _deep(ctx, params), similarity=measure
            )
            computed = _Computed(result, np.arange(len(items)), users, users)
    if plan.affected is not None:
        computed = _compute_incremental(ctx, plan, reads, blocks, users, item_hash, params, measure)
    computed.measure = measure
    with ctx.phases("spot_check"):
        # On the rows computed from ``blocks`` (whose users are exactly those rows' users).
        computed.spot_check = engine.spot_check(
            blocks, measure.stats.norm2, computed.result, params, options.spot_check_pairs, similarity=measure
        )
    return computed


def _deep(ctx: _Context, params: DimsumParams) -> DimsumParams:
    """The parameters rows are computed with: a warm loop keeps lists deeper than K
    (``batch.incremental``), so fewer clean rows need a recompute; K are written."""
    if ctx.warm is None:
        return params
    return dataclasses.replace(params, top_k=ctx.warm.depth(params.top_k))


def _compute_from_sequences(ctx: _Context, plan: _Plan, reads: _UserReads, users: int, params) -> _Computed:
    """A sequence measure (``directed``): exact, from the ``recent`` rows, always a full pass."""
    with ctx.phases("directed"):
        given = dict(ctx.options.similarity_params)
        result = engine.directed_rows(ctx.sc, reads.sequences(), len(plan.items), params, given)
    computed = _Computed(result, np.arange(len(plan.items)), users, users)
    # Nothing is sampled: there is no estimate to check.
    computed.spot_check = {
        "pairs": 0,
        "pairs_above_threshold": 0,
        "mean_relative_error": None,
        "within_20pct": None,
        "sequences": result.users,
    }
    return computed


def _compute_incremental(
    ctx: _Context,
    plan: _Plan,
    reads: _UserReads,
    blocks,
    users: int,
    item_hash: np.ndarray,
    params: DimsumParams,
    measure: measures.Applied,
) -> _Computed:
    """Recompute A, merge the clean rows that can change, recompute the few that must be."""
    items, affected, deep = plan.items, plan.affected, _deep(ctx, params)
    with ctx.phases("read_generation"):
        # C: items co-held with an affected item (module docstring: only their rows can change).
        co_held = blocks.map(lambda b: np.unique(b.holding(affected).indices)).fold(np.empty(0, np.int32), np.union1d)
        wanted = np.zeros(len(items), dtype=bool)
        wanted[co_held] = True
        wanted &= ~affected
        old, old_rows_read = _stored_rows(ctx.gens, plan.base, items, wanted, ctx.warm)
    with ctx.phases("dimsum"):
        recomputed = np.flatnonzero(affected)
        result = engine.similarity_rows(
            ctx.sc,
            blocks,
            measure.stats.norm2,
            item_hash,
            deep,
            rows=recomputed,
            source_rows=affected,
            bar=incremental.candidate_bars(old, affected, params.top_k),
            similarity=measure,
        )
        deeper_only = {} if ctx.warm is not None else None
        merges, again = incremental.merge_rows(
            old, affected, result.candidates, params.top_k, deep.top_k, deeper_only=deeper_only
        )
        users_read, extra_top = users, {}
        if len(again):
            again_blocks = reads.blocks(_select_users(ctx, items, again))
            users_read += int(again_blocks.map(lambda b: b.users).sum())
            extra_top = engine.similarity_rows(
                ctx.sc, again_blocks, measure.stats.norm2, item_hash, deep, rows=again, similarity=measure
            ).top
            recomputed = np.union1d(recomputed, again)
        result.clean_rows_recomputed = len(again)
        log.info(
            "incremental: %d dirty, %d affected, %d merged, %d clean rows recomputed",
            int(plan.dirty.sum()),
            int(affected.sum()),
            len(merges),
            len(again),
        )
    return _Computed(
        result,
        recomputed,
        users,
        users_read,
        extra_top=extra_top,
        merges=merges,
        deeper_only=deeper_only or {},
        old_rows_read=old_rows_read,
    )


def _stored_rows(
    gens: Generations, base: int, items: source.ItemTable, wanted: np.ndarray, warm=None
) -> tuple[dict, int]:
    """The ``wanted`` rows as visible at ``base``: position -> (neighbour positions, scores),
    and how many were read from the store.

    With ``warm``, the rows it holds at ``base`` are not read again, and those read are kept.
    """
    index = items.index()
    positions = np.flatnonzero(wanted)
    old = warm.cached_rows(base, positions) if warm is not None else {}
    missing = [items.ids[p] for p in positions.tolist() if p not in old]
    for item, ids, scores in gens.read_items(base, missing):
        position = index.get(item)
        if position is None or not wanted[position]:
            continue
        cols = np.array([index.get(i, -1) for i in ids], dtype=np.int64)
        keep = cols >= 0
        old[position] = (cols[keep], np.asarray(scores)[keep])
        if warm is not None:
            warm.remember(position, *old[position])
    return old, len(missing)


# --- publish: rows, popularity, statistics, the pointer flip, the marks -------
def _publish(
    ctx: _Context,
    plan: _Plan,
    computed: _Computed,
    selections: list[str],
    before_flip: Callable[[int], None] | None,
    bought: bought_together.BoughtTogether,
) -> dict:
    """Write the generation, then make it current; returns the statistics so far.

    Every write goes through the gateway, which retries transient failures: a blip at
    the flip does not lose a pass whose rows are all written. A generation that would
    have no neighbour at all is refused before anything is written (unless
    ``allow_empty``): no rows, no flip, the dirty marks stay for the next pass.
    """
    gens, items, generation = ctx.gens, plan.items, plan.generation
    k = ctx.options.params.top_k
    neighbours = computed.neighbour_count(k)
    stats = _statistics(ctx.options, plan, computed, selections, 0, ctx.warm)
    stats.update(neighbours_written=neighbours, flipped=False, refused=False, not_flipped_reason=None, marks_cleared=0)
    if not ctx.options.allow_empty and neighbours == 0 and not _carries_neighbours(gens, plan, computed):
        stats.update(state="empty", refused=True, not_flipped_reason=_empty_reason(ctx.options, plan))
        return stats
    with ctx.phases("write"):
        stats["rows_written"] = gens.write_rows(generation, computed.rows(items.ids, k))
        gens.write_popular(generation, _popular(items, max(POPULAR_SIZE, ctx.options.params.top_k)))
        # Stamped with the generation too: the flip below publishes them with the rows.
        stats["bought_together"] = {**bought.record(), "rows_written": gens.write_bought(generation, bought.rows())}
    with ctx.phases("publish"):
        if before_flip is not None:
            before_flip(generation)
        stats[layout.PENDING_SINCE_KEY] = _pending_since(ctx.settings, plan.start_micros)
        gens.finish_pass({**stats, "state": "complete", "phases_seconds": ctx.phases.seconds})
        overlapping = _overlapping(gens, plan)
        if overlapping:
            stats.update(
                state="not_flipped",
                refused=True,
                not_flipped_reason=(
                    f"generation {generation} was not published: generation(s) {', '.join(map(str, overlapping))} "
                    f"were written while this incremental pass ran on {plan.base}, so the rows it carried over "
                    "could resolve to their cells; the next pass will be full"
                ),
            )
            return stats
        if not gens.flip_pointer(generation):
            stats.update(
                state="not_flipped",
                not_flipped_reason=(
                    f"generation {generation} was not published: the pointer already names the newer "
                    f"generation {gens.current()} (an overlapping pass finished first)"
                ),
            )
            return stats
        stats.update(state="complete", flipped=True)
        # After the flip: a crash in between leaves marks set, which only costs a recomputation.
        consumed = [items.ids[i] for i in np.flatnonzero(plan.dirty).tolist()]
        stats["marks_cleared"] = source.clear_marks(ctx.settings, consumed, plan.start_micros)
    return stats


def _pending_since(settings: Settings, start_micros: int) -> int | None:
    """Cell time (µs) of the oldest dirty mark set since the pass started: the oldest change
    the generation does not hold (an item changed again keeps only its newest mark)."""
    newer = [micros for micros in source.read_marks(settings).values() if micros >= start_micros]
    return min(newer) if newer else None


def _carries_neighbours(gens: Generations, plan: _Plan, computed: _Computed) -> bool:
    """Incremental: whether a row this pass carries over (does not rewrite) has neighbours at the base.

    Read only when every rewritten row is empty, and it stops at the first such row.
    """
    if plan.mode != "incremental":
        return False
    rewritten = {plan.items.ids[p] for p in computed.written_positions()}
    return any(ids and item not in rewritten for item, ids, _ in gens.read_all(plan.base))


def _empty_reason(options: PassOptions, plan: _Plan) -> str:
    params = options.params
    if not len(plan.items):
        why = "there are no items yet (has the stream folded any event?)"
    elif params.min_similarity > 0:
        why = f"no pair of items scores above --min-similarity {params.min_similarity:g}"
    elif params.threshold > 0:
        why = f"no two items share a user, or DIMSUM sampling at --threshold {params.threshold:g} kept no pair"
    else:
        why = "no two items share a user"
    return (
        f"generation {plan.generation} has no neighbours at all ({why}): not published, the pointer stays at "
        f"{plan.base if plan.base is not None else '(none)'}; pass --allow-empty to publish it anyway"
    )


def _overlapping(gens: Generations, plan: _Plan) -> list[int]:
    """Incremental: generations between the base and this one, written by an overlapping pass.

    Their cells would be newer than the base cells of the rows this pass carries over,
    so readers at this generation would see them there.
    """
    if plan.mode != "incremental":
        return []
    return sorted(g for g in _with_cells(gens.passes()) if plan.base < g < plan.generation)


def _popular(items: source.ItemTable, size: int) -> list[tuple[str, float]]:
    order = np.lexsort((np.arange(len(items)), -items.norm2, -items.users))[:size]
    return [(items.ids[i], float(items.users[i])) for i in order.tolist()]


def _statistics(
    options: PassOptions, plan: _Plan, computed: _Computed, selections: list[str], written: int, warm=None
) -> dict:
    result, gamma = computed.result, options.params.gamma(len(plan.items))
    return {
        "generation": plan.generation,
        "mode": plan.mode,
        "reason": plan.reason,
        # Estimated work of both modes, which chose ``mode`` (``batch.planner``).
        "cost_model": plan.cost_model,
        "base_generation": plan.base,
        **options.identity(),
        "gamma": None if math.isinf(gamma) else gamma,
        "items": len(plan.items),
        # Item rows read (a warm loop re-reads only the items marked dirty).
        "items_read": len(plan.items) if warm is None else warm.items_read,
        # Every change folded before this time (the pass start, µs) is in the generation.
        layout.WATERMARK_KEY: plan.start_micros,
        # Users of the blocks the pass computed from: incremental passes read only those
        # holding an affected item (through ``contributions``).
        "users": computed.users,
        # User rows read in all (incremental: plus the holders of clean rows recomputed).
        "users_read": computed.users_read,
        # How users were selected, per read: "scan" or "index".
        "user_selection": "+".join(selections),
        # Previous-generation rows looked up (incremental only; only items co-held with A).
        "similarity_rows_read": computed.old_rows_read,
        "read_partitions": len(plan.ranges),
        "pairs_emitted": result.pairs_emitted,
        "pairs_exact": result.pairs_exact,
        "dirty_items": int(plan.dirty.sum()),
        "items_recomputed": int(len(computed.recomputed)),
        "clean_rows_recomputed": result.clean_rows_recomputed,
        "rows_merged": len(computed.merges),
        "rows_written": written,
        "spot_check": computed.spot_check,
        # M (null: raw scores, which no ceiling bounds, so nothing was sampled).
        "entry_scale_value": _finite(computed.measure.entry_scale if computed.measure else math.inf),
    }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value
