"""Similarity generations in Bigtable: read the visible one, write a new one, flip, roll back.

A generation is the epoch milliseconds at which its pass started; its ``similarities``
cells carry that timestamp (``layout.generation_cell_micros``). The pointer
``meta generation g:current`` names the generation readers use, and a reader takes, per
row, the newest cell NOT NEWER than the pointer: rows a pass did not rewrite (an
incremental pass carries them over) resolve to the older generation that wrote them,
and rows of a pass still being written (newer than the pointer) are invisible.

Protocol of a pass (``batch.refresh``): :func:`begin_pass` records ``pass#<gen>`` with
state ``writing``; rows; popularity list; :func:`finish_pass` stores the statistics;
only then :func:`flip_pointer`. :func:`rollback` points back at the newest completed
pass older than the current pointer.

Other components import :class:`SimilarityReader` to serve neighbours. The
``similarities`` family keeps ``KEEP_GENERATIONS`` versions but the emulator collects
garbage lazily, so every read here carries a cells-per-column limit.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone

from google.cloud.bigtable import row_filters
from google.cloud.bigtable.row import DirectRow

from schemas import codecs, layout
from streamsim.clients import bigtable_instance
from streamsim.settings import Settings

log = logging.getLogger(__name__)

#: Rows per MutateRows call: far below Bigtable's 100k mutations per request, and
#: small enough that one failed batch is cheap to retry.
WRITE_BATCH_ROWS = 1000


class GenerationError(RuntimeError):
    """No generation to read or roll back to; the message says why."""


def generation_datetime(generation: int) -> datetime:
    return datetime.fromtimestamp(layout.generation_cell_micros(generation) / 1e6, tz=timezone.utc)


def visible_at(generation: int) -> row_filters.RowFilter:
    """Newest neighbour cell not newer than ``generation``."""
    # TimestampRange's end is exclusive and has ms granularity: +1 ms includes the generation.
    end = generation_datetime(generation) + timedelta(milliseconds=1)
    return row_filters.RowFilterChain(
        [
            # One column as a column range: the emulator evaluates regex filters per cell, slowly.
            row_filters.ColumnRangeFilter(layout.NEIGHBOURS, start_column=layout.TOP, end_column=layout.TOP),
            row_filters.TimestampRangeFilter(row_filters.TimestampRange(end=end)),
            row_filters.CellsColumnLimitFilter(1),
        ]
    )


def _latest_cell() -> row_filters.RowFilter:
    return row_filters.CellsColumnLimitFilter(1)


@dataclasses.dataclass(frozen=True)
class Neighbours:
    item: str
    #: The generation whose cell was read (may be older than the pointer: carried over).
    generation: int
    neighbours: list[tuple[str, float]]


def _commit(table, rows: list[DirectRow]) -> None:
    for start in range(0, len(rows), WRITE_BATCH_ROWS):
        statuses = table.mutate_rows(rows[start : start + WRITE_BATCH_ROWS])
        failed = [s for s in statuses if s.code != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} Bigtable row writes failed, first: {failed[0]}")


class Generations:
    """The ``meta`` and ``similarities`` tables of one deployment."""

    def __init__(self, settings: Settings):
        instance = bigtable_instance(settings)
        self.meta = instance.table(settings.tables.meta)
        self.similarities = instance.table(settings.tables.similarities)

    # --- the pointer ---------------------------------------------------------
    def current(self) -> int | None:
        """The generation readers use, or None before the first pass."""
        row = self.meta.read_row(layout.GENERATION_ROW, filter_=_latest_cell())
        if row is None or layout.GENERATION not in row.cells:
            return None
        return codecs.decode_int64(row.cells[layout.GENERATION][layout.CURRENT][0].value)

    def flip_pointer(self, generation: int) -> None:
        row = DirectRow(layout.GENERATION_ROW, self.meta)
        row.set_cell(layout.GENERATION, layout.CURRENT, codecs.encode_int64(generation))
        _commit(self.meta, [row])
        log.info("generation pointer -> %d", generation)

    # --- passes --------------------------------------------------------------
    def passes(self) -> dict[int, dict]:
        """Every recorded pass, generation -> statistics (state ``writing`` or ``complete``)."""
        found = {}
        for row in self.meta.read_rows(
            start_key=layout.pass_row_key(0), end_key=b"pass$", filter_=_latest_cell()
        ):
            stats = json.loads(row.cells[layout.PASS_STATS][layout.STATS][0].value)
            found[int(stats["generation"])] = stats
        return found

    def pass_stats(self, generation: int) -> dict | None:
        row = self.meta.read_row(layout.pass_row_key(generation), filter_=_latest_cell())
        if row is None:
            return None
        return json.loads(row.cells[layout.PASS_STATS][layout.STATS][0].value)

    def _store_stats(self, stats: dict) -> None:
        row = DirectRow(layout.pass_row_key(int(stats["generation"])), self.meta)
        row.set_cell(layout.PASS_STATS, layout.STATS, json.dumps(stats, sort_keys=True).encode("utf-8"))
        _commit(self.meta, [row])

    def begin_pass(self, generation: int, params: dict) -> None:
        """Record that ``generation`` is being written (so a crash leaves a trace)."""
        self._store_stats({"generation": generation, "state": "writing", **params})

    def finish_pass(self, stats: dict) -> None:
        self._store_stats({**stats, "state": "complete"})

    # --- rows ----------------------------------------------------------------
    def write_rows(self, generation: int, rows: Iterable[tuple[str, list[tuple[str, float]]]]) -> int:
        """Write packed neighbour lists stamped with ``generation``; returns rows written."""
        when = generation_datetime(generation)
        batch, written = [], 0
        for item, neighbours in rows:
            row = DirectRow(layout.item_row_key(item), self.similarities)
            row.set_cell(layout.NEIGHBOURS, layout.TOP, codecs.encode_neighbours(neighbours), timestamp=when)
            batch.append(row)
            if len(batch) == WRITE_BATCH_ROWS:
                _commit(self.similarities, batch)
                written += len(batch)
                batch = []
        _commit(self.similarities, batch)
        return written + len(batch)

    def write_popular(self, generation: int, popular: list[tuple[str, float]]) -> None:
        row = DirectRow(layout.POPULAR_ROW, self.meta)
        row.set_cell(layout.NEIGHBOURS, layout.TOP, codecs.encode_neighbours(popular),
                     timestamp=generation_datetime(generation))
        _commit(self.meta, [row])

    def read_all(self, generation: int) -> Iterator[tuple[str, list[str], list[float]]]:
        """Every row as visible at ``generation``: (item, neighbour ids, scores)."""
        for row in self.similarities.read_rows(filter_=visible_at(generation)):
            cells = row.cells.get(layout.NEIGHBOURS, {}).get(layout.TOP)
            if cells:
                items, scores = codecs.decode_neighbours_arrays(cells[0].value)
                yield layout.id_from_row_key(row.row_key), items, scores.tolist()

    def read_items(self, generation: int, items: Iterable[str]) -> Iterator[tuple[str, list[str], list[float]]]:
        """Like :meth:`read_all`, for the rows of ``items`` only (read by key, in batches)."""
        from batch import raw_reads

        keys = sorted({layout.item_row_key(item) for item in items})
        for key, cells in raw_reads.read_rows(self.similarities, visible_at(generation), keys=keys):
            cell = cells.get(layout.NEIGHBOURS, {}).get(layout.TOP)
            if cell:
                ids, scores = codecs.decode_neighbours_arrays(cell[0])
                yield layout.id_from_row_key(key), ids, scores.tolist()

    # --- rollback ------------------------------------------------------------
    def rollback(self) -> tuple[int, int]:
        """Point back at the newest complete pass older than the pointer; (from, to)."""
        current = self.current()
        if current is None:
            raise GenerationError("no generation yet: run `streamsim refresh` first")
        complete = sorted(g for g, s in self.passes().items() if s.get("state") == "complete")
        older = [g for g in complete if g < current]
        if not older:
            raise GenerationError(f"generation {current} is the oldest recorded pass; nothing to roll back to")
        target = older[-1]
        # Rows rewritten by every pass keep KEEP_GENERATIONS cells: further back may be gone.
        newer_written = [g for g in self.passes() if g > target]
        if len(newer_written) >= layout.KEEP_GENERATIONS:
            raise GenerationError(
                f"generation {target} is more than {layout.KEEP_GENERATIONS} passes old; its cells may be "
                "collected: run a full refresh instead"
            )
        self.flip_pointer(target)
        return current, target


class SimilarityReader:
    """What serving and ``streamsim similar`` read: neighbours at the current pointer."""

    def __init__(self, settings: Settings):
        self.generations = Generations(settings)

    def neighbours(self, item: str, generation: int | None = None) -> Neighbours | None:
        """The item's list at ``generation`` (default: the pointer); None if it has no row.

        Raises :class:`GenerationError` before the first pass.
        """
        if generation is None:
            generation = self.generations.current()
            if generation is None:
                raise GenerationError("no similarity generation yet: run `streamsim refresh` first")
        row = self.generations.similarities.read_row(layout.item_row_key(item), filter_=visible_at(generation))
        if row is None:
            return None
        cell = row.cells[layout.NEIGHBOURS][layout.TOP][0]
        micros = int(cell.timestamp.timestamp() * 1_000_000)
        return Neighbours(item, layout.generation_of_cell(round(micros / 1000) * 1000),
                          codecs.decode_neighbours(cell.value))

    def popular(self, generation: int | None = None) -> list[tuple[str, float]]:
        if generation is None:
            generation = self.generations.current()
            if generation is None:
                return []
        row = self.generations.meta.read_row(layout.POPULAR_ROW, filter_=visible_at(generation))
        if row is None:
            return []
        return codecs.decode_neighbours(row.cells[layout.NEIGHBOURS][layout.TOP][0].value)
