"""``streamsim refresh --continuous``: one Spark session, passes back to back, warm state between them.

What stays valid from one pass to the next (:class:`WarmState`):

- the item table (norm², users, dirty marks). The stream writes an item's stats and its
  dirty mark in one atomic row write, and a mark is cleared only after a pass that read
  the row after the mark was set has flipped. So re-reading only the marked items keeps
  the table exact: the rows come from a scan filtered to the mark column (the server
  skips clean rows), then by key.
- the similarity rows as visible at the generation this loop last published: the rows a
  pass wrote (``DEPTH_FACTOR`` times deeper than written: exact top lists whose first K
  are the stored rows), and the previous-generation rows it read to merge. The next
  incremental pass, based on that same generation, reads only the rows it lacks.

Both are valid only while this loop is the only writer: when the pointer names a
generation the loop did not publish (a rollback, another refresh), the state is dropped
and rebuilt from the store. A new pass starts as soon as the last one has flipped, at
least ``min_interval`` after the last one started, and once at least ``min_changed``
items are marked dirty. :class:`Stopper` turns SIGTERM/SIGINT into a stop after the
pass in flight (the pointer only ever names a complete generation: a pass flips it last);
a second signal stops at once, which also leaves the pointer on a complete generation.

A backend outage does not end the loop (:mod:`streamsim.runtime.outage`): before each pass
it probes Bigtable (one TCP connect for an emulator), and a probe or a pass that fails is
retried on the outage schedule (2, 4, ... 60 s) for as long as it takes; the first pass after
the backend is back carries ``outage`` (failed attempts, seconds) in its statistics. The
pointer still names the last complete generation throughout. Only an error retrying cannot
fix (credentials, permissions, an invalid request) stops the loop, raised to the command.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

from batch import source
from streamsim.runtime.cli import backend_error, describe_error, one_line
from streamsim.runtime.outage import Outage, unfixable
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

#: Similarity rows a loop keeps (oldest evicted first): bounded whatever the catalogue size.
MAX_CACHED_ROWS = 300_000
#: A loop computes and keeps lists this many times K deep (it writes K): a clean row whose
#: entries on changed items drop then rarely needs a recompute (``batch.incremental``).
DEPTH_FACTOR = 2
#: How often an idle loop looks for new dirty marks.
POLL_SECONDS = 0.5


@dataclasses.dataclass
class WarmState:
    """Items and similarity rows kept between the passes of one loop (module docstring)."""

    items: source.ItemTable | None = None
    #: The generation ``rows`` are visible at (the last one this loop published).
    generation: int | None = None
    #: Item position in ``items`` -> (neighbour positions, scores), best first.
    rows: collections.OrderedDict = dataclasses.field(default_factory=collections.OrderedDict)
    max_rows: int = MAX_CACHED_ROWS
    #: Item rows re-read by the last :meth:`read_items` (all of them when cold).
    items_read: int = 0

    @staticmethod
    def depth(k: int) -> int:
        """How deep the lists this state keeps are, for rows of ``k`` neighbours."""
        return DEPTH_FACTOR * k

    def check_base(self, base: int | None) -> None:
        """Drop everything unless the pointer still names the generation this loop published."""
        if self.items is not None and base != self.generation:
            log.info("generation %s is not the one this loop published (%s): warm state dropped", base, self.generation)
            self.items, self.generation = None, None
            self.rows.clear()

    def read_items(self, settings: Settings) -> source.ItemTable:
        """The item table as :func:`batch.source.read_items` would read it now."""
        if self.items is None:
            self.items = source.read_items(settings)
            self.items_read = len(self.items)
            return self.items
        marks = source.read_marks(settings)
        changed = source.read_some_items(settings, marks)
        self.items_read = len(changed)
        old = self.items
        stats = {
            item: (n2, users, 0, e2)
            for item, n2, users, e2 in zip(old.ids, old.norm2.tolist(), old.users.tolist(), old.entry_norm2.tolist())
        }
        stats.update(changed)
        ids = sorted(stats)
        table = [stats[i] for i in ids]
        if len(ids) != len(old.ids):
            self._renumber(old.ids, ids)
        self.items = source.ItemTable(
            ids=ids,
            norm2=np.array([t[0] for t in table], dtype=np.float64),
            users=np.array([t[1] for t in table], dtype=np.int64),
            dirty_micros=np.array([t[2] for t in table], dtype=np.int64),
            entry_norm2=np.array([t[3] for t in table], dtype=np.float64),
        )
        return self.items

    def _renumber(self, old_ids: list[str], new_ids: list[str]) -> None:
        """New items took positions: move the cached rows (keys and neighbours) to the new ones."""
        index = {item: i for i, item in enumerate(new_ids)}
        moved = np.array([index[item] for item in old_ids], dtype=np.int64)
        self.rows = collections.OrderedDict(
            (int(moved[position]), (moved[cols], vals)) for position, (cols, vals) in self.rows.items()
        )

    def cached_rows(self, base: int | None, positions: Iterable[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The rows at ``positions`` this state holds as visible at ``base`` (none for another base)."""
        if base is None or base != self.generation:
            return {}
        return {p: self.rows[p] for p in positions if p in self.rows}

    def remember(self, position: int, cols: np.ndarray, vals: np.ndarray) -> None:
        self.rows[position] = (cols, vals)
        self.rows.move_to_end(position)
        if len(self.rows) > self.max_rows:
            self.rows.popitem(last=False)

    def published(self, generation: int, base: int | None, rows: Iterable[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """A pass on ``base`` flipped to ``generation`` after writing ``rows`` (their first K)."""
        if base != self.generation:
            self.rows.clear()  # a full pass (or another base): only what it wrote is known
        self.generation = generation
        for position, cols, vals in rows:
            self.remember(position, cols, vals)

    def not_published(self) -> None:
        """A pass did not flip: what it read may not match the pointer any more."""
        self.items, self.generation = None, None
        self.rows.clear()


class Stopper:
    """SIGTERM / SIGINT: the first asks the loop to stop after the pass in flight, a second stops now."""

    def __init__(self):
        self.event = threading.Event()
        self._previous = {}

    def __enter__(self) -> Stopper:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        log.info("%s: stopping after the pass in flight (again to stop now)", signal.Signals(signum).name)
        self.event.set()


@dataclasses.dataclass
class LoopSummary:
    passes: int = 0
    published: int = 0
    last_generation: int | None = None
    pass_seconds: list[float] = dataclasses.field(default_factory=list)
    #: Backend outages the loop waited out.
    outages: int = 0

    def line(self) -> str:
        if not self.passes:
            return "continuous refresh stopped: no pass ran (nothing was marked dirty)"
        mean = sum(self.pass_seconds) / len(self.pass_seconds)
        return (
            f"continuous refresh stopped after {self.passes} passes ({self.published} published), "
            f"last generation {self.last_generation}, mean pass {mean:.1f} s, {self.outages} outages waited out"
        )


def run_continuous(
    spark,
    settings: Settings,
    options,
    *,
    stop: threading.Event,
    min_interval: float = 30.0,
    min_changed: int = 1,
    on_pass: Callable[[dict], None] = lambda stats: None,
    run_pass: Callable | None = None,
    outage: Outage | None = None,
) -> LoopSummary:
    """Passes until ``stop`` is set; each one once ``min_changed`` items are dirty (module docstring).

    ``outage``: where the failures in a row are kept (the command serves it as metrics).
    """
    if run_pass is None:
        from batch.refresh import run_pass
    warm, summary, outage = WarmState(), LoopSummary(), outage or Outage("refresh pass")
    last_start, ended = None, None
    while not stop.is_set():
        if last_start is not None and stop.wait(max(0.0, min_interval - (time.monotonic() - last_start))):
            break
        try:
            problem = backend_error(settings)
            if problem:
                raise ConnectionError(problem)
            pending = len(source.read_marks(settings))
            if pending < max(1, min_changed):
                ended = outage.recovered() or ended  # the backend answers and nothing is to do: over
                stop.wait(POLL_SECONDS)
                continue
            last_start = time.monotonic()
            stats = run_pass(spark, settings, options, warm=warm)
        except Exception as exc:
            # The pointer still names the last complete generation: wait the outage out.
            warm.not_published()
            if unfixable(exc):
                raise
            last_start = None
            stop.wait(outage.failed(one_line(describe_error(exc))))
            continue
        ended = outage.recovered() or ended
        if ended:
            stats["outage"], ended = ended, None
        summary.passes += 1
        summary.pass_seconds.append(stats["wall_seconds"])
        if stats["flipped"]:
            summary.published += 1
            summary.last_generation = stats["generation"]
        on_pass(stats)
    summary.outages = outage.recovered_total
    return summary
