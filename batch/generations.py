"""Similarity generations in Bigtable: read the visible one, write a new one, flip, roll back.

A generation is the epoch milliseconds at which its pass started; its ``similarities``
cells carry that timestamp (``layout.generation_cell_micros``). The pointer
``meta generation g:current`` names the generation readers use, and a reader takes, per
row, the newest cell NOT NEWER than the pointer (``filters.visible_at``): rows a pass did
not rewrite (an incremental pass carries them over) resolve to the older generation that
wrote them, and rows of a pass still being written (newer than the pointer) are invisible.

Protocol of a pass (``batch.refresh``): :func:`begin_pass` records ``pass#<gen>`` with
state ``writing``; rows; popularity list; :func:`finish_pass` stores the statistics;
only then :func:`flip_pointer`. :func:`rollback` points back at the newest completed
pass older than the current pointer.

The pointer only moves forward, except by :func:`rollback`. :func:`flip_pointer` is one
CheckAndMutateRow on the ``meta`` generation row: "if the newest pointer cell already
names a generation >= this one, change nothing, else set it". So of two overlapping
passes the newer one is served whichever finishes last, and the older one is recorded
as ``not_flipped``. The value is ``codecs.encode_int64`` (big-endian, signed): for
the non-negative values a generation has (epoch ms), byte order is numeric order, so a
value-range filter [g, 2**63-1] selects exactly the pointers >= g; a negative (garbage)
pointer lies outside it and is overwritten. :func:`rollback` is the one backward move,
a compare-and-set: "if the pointer still names the generation I rolled back from, set
the target", so it never undoes a pass that flipped meanwhile.

States of ``pass#<gen>``: ``writing`` (running, or crashed: its cells may exist),
``complete`` (flipped, or about to be), ``not_flipped`` (written, but the pointer stayed:
a newer generation was current, or the pass refused to publish), ``empty`` (refused
before writing anything: no cells exist), ``failed`` (stopped by an error before writing
any cell; ``error`` says which).

Every read and write goes through the Bigtable gateway (``streamsim.runtime.bigtable``),
whose ``mutate`` retries transient failures: a pass whose rows are all written is not
lost to a blip at the pointer flip. ``streamsim inspect similar`` reads through
:class:`SimilarityReader`; serving has its own asyncio reads (``serving.store``). The
``similarities`` family keeps ``KEEP_GENERATIONS`` versions but the emulator collects
garbage lazily, so every read here asks for the newest cell per column.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Iterable, Iterator

from schemas import codecs, layout
from schemas.rows import Row, neighbours_cell
from streamsim.runtime.bigtable import entry, filters, open_tables, set_cell
from streamsim.runtime.bigtable.messages import RowFilter
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

#: Rows handed to the gateway at a time by :meth:`Generations.write_rows`, so a pass's
#: rows are encoded as they are written rather than all held at once.
WRITE_BATCH_ROWS = 1000
#: Largest value of the pointer's int64 cell.
MAX_GENERATION = (1 << 63) - 1
#: Pass states that guarantee no similarity cell of the generation exists (module docstring).
UNWRITTEN_STATES = frozenset({"empty", "failed"})


class GenerationError(RuntimeError):
    """No generation to read or roll back to; the message says why."""


def _pointer_in(low: int, high: int) -> RowFilter:
    """The newest pointer cell, if it names a generation in [low, high] (0 <= low <= high).

    Newest first, then the value range: older cells (kept for rollback) must not match.
    Big-endian signed int64 compares as bytes like the numbers only for non-negative
    values, which is why ``low`` may not be negative.
    """
    if not 0 <= low <= high <= MAX_GENERATION:
        raise ValueError(f"generation range [{low}, {high}] is not within [0, 2**63)")
    value_range = RowFilter()
    value_range.value_range_filter.start_value_closed = codecs.encode_int64(low)
    value_range.value_range_filter.end_value_closed = codecs.encode_int64(high)
    return filters.chain(filters.column(layout.GENERATION, layout.CURRENT), filters.newest(), value_range)


@dataclasses.dataclass(frozen=True)
class Neighbours:
    item: str
    #: The generation whose cell was read (may be older than the pointer: carried over).
    generation: int
    neighbours: list[tuple[str, float]]


def _stats_of(row: Row) -> dict | None:
    cell = row.get(layout.PASS_STATS, {}).get(layout.STATS)
    return json.loads(cell.value) if cell is not None else None


class Generations:
    """The ``meta`` and ``similarities`` tables of one deployment."""

    def __init__(self, settings: Settings):
        tables = open_tables(settings)
        self.meta = tables.meta
        self.similarities = tables.similarities

    # --- the pointer ---------------------------------------------------------
    def current(self) -> int | None:
        """The generation readers use, or None before the first pass."""
        cell = (
            self.meta.read_row(layout.GENERATION_ROW, filters.newest()).get(layout.GENERATION, {}).get(layout.CURRENT)
        )
        return codecs.decode_int64(cell.value) if cell is not None else None

    def flip_pointer(self, generation: int) -> bool:
        """Point readers at ``generation`` unless the pointer names it or a newer one already.

        Returns whether the pointer now names ``generation``: False means a newer
        generation is current (an overlapping pass finished first) and nothing changed.
        """
        set_pointer = set_cell(layout.GENERATION, layout.CURRENT, codecs.encode_int64(generation))
        matched = self.meta.check_and_mutate(
            layout.GENERATION_ROW, _pointer_in(generation, MAX_GENERATION), false_mutations=[set_pointer]
        )
        if matched:
            # Not newer than the pointer, or an attempt of ours that was applied but whose
            # answer was lost (the gateway retried it): which one, the pointer tells.
            current = self.current()
            if current != generation:
                log.info("generation pointer stays at %s: not flipped to the older %d", current, generation)
                return False
        log.info("generation pointer -> %d", generation)
        return True

    def _move_pointer_back(self, expected: int, target: int) -> bool:
        """Set the pointer to ``target`` only if it still names ``expected``; whether it now names ``target``."""
        matched = self.meta.check_and_mutate(
            layout.GENERATION_ROW,
            _pointer_in(expected, expected),
            true_mutations=[set_cell(layout.GENERATION, layout.CURRENT, codecs.encode_int64(target))],
        )
        return matched or self.current() == target

    # --- passes --------------------------------------------------------------
    def passes(self) -> dict[int, dict]:
        """Every recorded pass, generation -> statistics (state ``writing`` or ``complete``)."""
        found = {}
        for _, row in self.meta.read_rows(start=layout.pass_row_key(0), end=b"pass$", row_filter=filters.newest()):
            stats = _stats_of(row)
            if stats is not None:
                found[int(stats["generation"])] = stats
        return found

    def pass_stats(self, generation: int) -> dict | None:
        return _stats_of(self.meta.read_row(layout.pass_row_key(generation), filters.newest()))

    def _store_stats(self, stats: dict) -> None:
        value = json.dumps(stats, sort_keys=True).encode("utf-8")
        self.meta.mutate(
            [entry(layout.pass_row_key(int(stats["generation"])), [set_cell(layout.PASS_STATS, layout.STATS, value)])]
        )

    def begin_pass(self, generation: int, params: dict) -> None:
        """Record that ``generation`` is being written (so a crash leaves a trace)."""
        self._store_stats({"generation": generation, "state": "writing", **params})

    def finish_pass(self, stats: dict, *, state: str = "complete") -> None:
        """Store a pass's statistics: ``complete``, or how it ended unpublished (module docstring)."""
        self._store_stats({**stats, "state": state})

    # --- rows ----------------------------------------------------------------
    def write_rows(self, generation: int, rows: Iterable[tuple[str, list[tuple[str, float]]]]) -> int:
        """Write packed neighbour lists stamped with ``generation``; returns rows written."""
        when = layout.generation_cell_micros(generation)
        entries = (
            entry(
                layout.item_row_key(item),
                [set_cell(layout.NEIGHBOURS, layout.TOP, codecs.encode_neighbours(neighbours), when)],
            )
            for item, neighbours in rows
        )
        written = 0
        while batch := list(itertools.islice(entries, WRITE_BATCH_ROWS)):
            written += self.similarities.mutate(batch)
        return written

    def write_bought(self, generation: int, rows: Iterable[tuple[str, list[tuple[str, float]], object]]) -> int:
        """Write bought-together lists and repurchase statistics (``batch.bought``: item,
        list, :class:`batch.bought.Repurchase`) stamped with ``generation``; returns rows written."""
        when = layout.generation_cell_micros(generation)
        entries = (
            entry(
                layout.item_row_key(item),
                [
                    set_cell(layout.BOUGHT, layout.TOP, codecs.encode_neighbours(bought), when),
                    set_cell(
                        layout.BOUGHT,
                        layout.REPURCHASE,
                        codecs.encode_repurchase(stats.buyers, stats.repeat_buyers, stats.interval_ms),
                        when,
                    ),
                ],
            )
            for item, bought, stats in rows
        )
        written = 0
        while batch := list(itertools.islice(entries, WRITE_BATCH_ROWS)):
            written += self.similarities.mutate(batch)
        return written

    def read_bought_items(self, before_generation: int) -> set[str]:
        """Items whose newest ``b`` cells before ``before_generation`` hold a list or a buyer:
        what a reader of that generation would see if the pass did not rewrite them."""
        row_filter = filters.chain(
            filters.family(layout.BOUGHT),
            filters.before(layout.generation_cell_micros(before_generation)),
            filters.newest(),
        )
        found = set()
        for key, row in self.similarities.read_rows(row_filter=row_filter):
            cells = row.get(layout.BOUGHT, {})
            top, stats = cells.get(layout.TOP), cells.get(layout.REPURCHASE)
            listed = top is not None and codecs.decode_neighbours_arrays(top.value)[0]
            if listed or (stats is not None and codecs.decode_repurchase(stats.value)[0] > 0):
                found.add(layout.id_from_row_key(key))
        return found

    def write_popular(self, generation: int, popular: list[tuple[str, float]]) -> None:
        self.meta.mutate(
            [
                entry(
                    layout.POPULAR_ROW,
                    [
                        set_cell(
                            layout.NEIGHBOURS,
                            layout.TOP,
                            codecs.encode_neighbours(popular),
                            layout.generation_cell_micros(generation),
                        )
                    ],
                )
            ]
        )

    def read_all(self, generation: int) -> Iterator[tuple[str, list[str], list[float]]]:
        """Every row as visible at ``generation``: (item, neighbour ids, scores)."""
        yield from self._decoded(self.similarities.read_rows(row_filter=filters.visible_at(generation)))

    def read_items(self, generation: int, items: Iterable[str]) -> Iterator[tuple[str, list[str], list[float]]]:
        """Like :meth:`read_all`, for the rows of ``items`` only (read by key, in batches)."""
        keys = {layout.item_row_key(item) for item in items}
        yield from self._decoded(self.similarities.read_rows(keys, row_filter=filters.visible_at(generation)))

    @staticmethod
    def _decoded(rows: Iterable[tuple[bytes, Row]]) -> Iterator[tuple[str, list[str], list[float]]]:
        for key, row in rows:
            cell = neighbours_cell(row)
            if cell is not None:
                ids, scores = codecs.decode_neighbours_arrays(cell.value)
                yield layout.id_from_row_key(key), ids, scores.tolist()

    # --- rollback ------------------------------------------------------------
    def rollback(self) -> tuple[int, int]:
        """Point back at the newest complete pass older than the pointer; (from, to)."""
        current = self.current()
        if current is None:
            raise GenerationError("no generation yet: run `streamsim refresh` first")
        passes = self.passes()
        older = sorted(g for g, s in passes.items() if s.get("state") == "complete" and g < current)
        if not older:
            raise GenerationError(f"generation {current} is the oldest recorded pass; nothing to roll back to")
        target = older[-1]
        # Rows rewritten by every pass keep KEEP_GENERATIONS cells: further back may be gone.
        written = [g for g, s in passes.items() if s.get("state") not in UNWRITTEN_STATES]
        if sum(g > target for g in written) >= layout.KEEP_GENERATIONS:
            raise GenerationError(
                f"generation {target} is more than {layout.KEEP_GENERATIONS} passes old; its cells may be "
                "collected: run a full refresh instead"
            )
        if not self._move_pointer_back(current, target):
            raise GenerationError(
                f"the generation pointer moved from {current} to {self.current()} while rolling back "
                "(a pass finished meanwhile); nothing changed: run `streamsim rollback` again if you still want to"
            )
        log.info("generation pointer rolled back %d -> %d", current, target)
        return current, target


class SimilarityReader:
    """Neighbour lists by item, at the pointer or a given generation: what
    ``streamsim inspect similar`` reads (serving reads through ``serving.store``)."""

    def __init__(self, settings: Settings):
        self.generations = Generations(settings)

    def current(self) -> int | None:
        """The generation the pointer names, or None before the first pass."""
        return self.generations.current()

    def neighbours(self, item: str, generation: int | None = None) -> Neighbours | None:
        """The item's list at ``generation`` (default: the pointer); None if it has no row.

        Raises :class:`GenerationError` before the first pass.
        """
        if generation is None:
            generation = self.current()
            if generation is None:
                raise GenerationError("no similarity generation yet: run `streamsim refresh` first")
        row = self.generations.similarities.read_row(layout.item_row_key(item), filters.visible_at(generation))
        cell = neighbours_cell(row)
        if cell is None:
            return None
        return Neighbours(item, layout.generation_of_cell(cell.timestamp_micros), codecs.decode_neighbours(cell.value))
