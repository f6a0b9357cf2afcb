"""The catalogue as serving sees it: each item's category and availability.

A process loads the catalogue (the ``items`` rows' ``m:`` cells, see
:mod:`schemas.layout`) at start, then follows the change log every poll interval,
so hiding an item takes effect without a refresh. A poll reads the log from its
position, a few seconds back (a change whose write took that long still lands ahead
of it), to its end: pages of a bounded size, but no bound on the pages, so a poll
never leaves changes for later, and a log row holds a batch of up to
``CATALOG_LOG_BATCH`` changes, so a million changes are a thousand rows. Rows read
in the overlap before are not decoded again. Applying a change is idempotent and
the newest update of a column wins (cell timestamps are update times), so the order
and repetition of reads are harmless.

The load is repeated every ``reload_seconds``, which also refreshes the
per-category popularity; it runs beside the follower, never instead of it, and its
result is taken between two polls: the fresh catalogue replaces the old one and the
log is read again from before the reload began (the rows it read may predate
changes the follower had applied). A load that fails part way (Bigtable away)
resumes from its last page at the next attempt.

Per-category popularity (the fill of a ``category=`` query): the load reads each
item's user count beside its catalogue cells and keeps, per category, its
:data:`CATEGORY_FILL` items with the most users: the measure the refresh's global
popularity list ranks by, as of the last load.

Kernel answers are filtered through :class:`ItemFacts`: numpy arrays of category
code and hidden flag per vocabulary index, kept in step with the vocabulary and
the catalogue's changes, so a filter costs a gather and a comparison per candidate.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Iterator

import numpy as np

from schemas import layout
from schemas.rows import CatalogCells
from serving.neighbours import Vocabulary
from serving.polling import PollCounts, poll_forever
from serving.store import BigtableStore

log = logging.getLogger(__name__)

#: Items kept per category for the popular fill (room for some to be hidden).
CATEGORY_FILL = 200
#: Items rows per read of a load: one page must come within the background deadline
#: (10 s) even on a machine so loaded that the emulator and the client crawl.
LOAD_PAGE_ROWS = 1000
#: Change-log rows per read (each up to CATALOG_LOG_BATCH changes): a page is
#: applied between two reads, so the event loop is never held much longer.
LOG_PAGE_ROWS = 10
#: How far behind its position a poll starts reading the log.
LOG_OVERLAP_MS = 5000
#: Changes remembered for the per-vocabulary arrays to catch up with; an array
#: further behind is rebuilt.
CHANGES_KEPT = 100_000
NO_CATEGORY = -1
_NO_CODES = np.empty(0, dtype=np.int32)


class Catalogue:
    """Category code and availability per item; what a load and the change log said."""

    def __init__(self):
        self._codes: dict[str, int] = {}
        #: Category name by code.
        self.names: list[str] = []
        #: item -> [category code, its micros, available, its micros]
        self._entries: dict[str, list] = {}
        self.hidden: set[str] = set()
        #: Category code -> (items, user counts), most users first.
        self._fill: dict[int, tuple[list[str], list[float]]] = {}
        #: One more per change; ``_changes[k]`` is the item of change ``_base + k + 1``.
        self.seq = 0
        self._base = 0
        self._changes: list[str] = []
        self.loaded = False
        self.loads = 0
        self.changes_applied = 0

    def __len__(self) -> int:
        return len(self._entries)

    def codes(self, categories) -> np.ndarray:
        """int32 codes of the ``categories`` known (an unknown one matches no item)."""
        found = [self._codes[c] for c in categories if c in self._codes]
        return np.array(found, dtype=np.int32) if found else _NO_CODES

    def category_code(self, item: str) -> int:
        entry = self._entries.get(item)
        return NO_CATEGORY if entry is None else entry[0]

    def category_of(self, item: str) -> str | None:
        entry = self._entries.get(item)
        return None if entry is None or entry[0] == NO_CATEGORY else self.names[entry[0]]

    def _code(self, category: str) -> int:
        code = self._codes.get(category)
        if code is None:
            code = self._codes[category] = len(self._codes)
            self.names.append(category)
        return code

    def apply(self, item: str, cells: CatalogCells) -> bool:
        """Apply an item's cells where they are not older than what is known; True if it changed."""
        entry = self._entries.get(item)
        if entry is None:
            entry = self._entries[item] = [NO_CATEGORY, 0, True, 0]
        changed = False
        if cells.category is not None and cells.category_micros >= entry[1]:
            code = self._code(cells.category)
            changed |= code != entry[0]
            entry[0], entry[1] = code, cells.category_micros
        if cells.available is not None and cells.available_micros >= entry[3]:
            changed |= cells.available != entry[2]
            entry[2], entry[3] = cells.available, cells.available_micros
            if cells.available:
                self.hidden.discard(item)
            else:
                self.hidden.add(item)
        if changed:
            self.seq += 1
            self.changes_applied += 1
            self._changes.append(item)
            if len(self._changes) > 2 * CHANGES_KEPT:
                drop = len(self._changes) - CHANGES_KEPT
                del self._changes[:drop]
                self._base += drop
        return changed

    def changed_since(self, seq: int) -> list[str] | None:
        """Items changed after change ``seq``; None if those are no longer all known."""
        if seq < self._base:
            return None
        return self._changes[seq - self._base :]

    def replace(self, other: Catalogue) -> None:
        """Take ``other``'s state (a fresh load); arrays built on the old one are rebuilt."""
        self._codes, self._entries, self.hidden, self._fill = other._codes, other._entries, other.hidden, other._fill
        self.names = other.names
        self.seq += 1
        self._base, self._changes = self.seq, []
        self.loaded = True
        self.loads += 1

    def fill(self, codes: np.ndarray) -> Iterator[tuple[str, float]]:
        """The categories' most popular items, most users first (hidden ones included)."""
        lists = [self._fill[code] for code in codes.tolist() if code in self._fill]
        if len(lists) == 1:
            return zip(*lists[0])
        return heapq.merge(*(zip(*pair) for pair in lists), key=lambda entry: -entry[1])

    def set_fill(self, popular: dict[int, list[tuple[float, str]]]) -> None:
        for code, entries in popular.items():
            best = heapq.nsmallest(CATEGORY_FILL, entries)
            self._fill[code] = ([item for _, item in best], [-users for users, _ in best])


class ItemFacts:
    """Category codes (int32, -1: none) and hidden flags (bool) by vocabulary index, and
    under merchandising rules (:mod:`serving.rules`) a factor (float64) and a blocked flag
    (hidden, or of an excluded category) by index.

    One per vocabulary: grown as the vocabulary grows, updated from the
    catalogue's change list (rebuilt when it fell too far behind). New rules
    re-derive the rule arrays from the category codes with two gathers (a table by
    code) and a lookup per boosted item, never a pass in Python over the vocabulary.
    """

    def __init__(self):
        self._category = np.empty(0, dtype=np.int32)
        self._hidden = np.empty(0, dtype=bool)
        self._covered = 0
        self._seq = -1
        self._blocked = np.empty(0, dtype=bool)
        self._factor = np.empty(0, dtype=np.float64)
        self._rules = None
        #: Indices below it have rule arrays derived under ``_rules``...
        self._ruled = 0
        #: ...but for these ``(index, item)``, changed by the catalogue since (:meth:`arrays`
        #: may apply a change that :meth:`ruled` has not seen).
        self._stale: list[tuple[int, str]] = []
        #: Factor and exclusion by category code (the last entry: no category).
        self._code_factor = np.ones(1)
        self._code_excluded = np.zeros(1, dtype=bool)
        self._tabled: tuple = ()

    def arrays(self, vocabulary: Vocabulary, catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
        return self._follow(vocabulary, catalogue)

    def ruled(self, vocabulary: Vocabulary, catalogue: Catalogue, rules) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(category, blocked, factor)`` under ``rules`` (valid below ``len(vocabulary)``)."""
        if rules is not self._rules:
            self._rules, self._ruled = rules, 0
        self._follow(vocabulary, catalogue)
        changed, self._stale = self._stale, []
        names = catalogue.names
        if self._tabled != (rules, id(names), len(names)):
            self._tabled = (rules, id(names), len(names))
            self._code_factor = np.array([rules.category_factors.get(name, 1.0) for name in names] + [1.0])
            self._code_excluded = np.array([name in rules.excluded_categories for name in names] + [False])
            self._ruled = 0  # a new category may be named by the rules: cheap to redo
        for index, item in changed:
            if index < self._ruled:
                self._derive(index, index + 1, rules, [item])
        size = len(vocabulary)
        if size > self._ruled:
            start = self._ruled
            if size - start > len(rules.item_factors):
                self._derive(start, size, rules, None)
                for item, factor in rules.item_factors.items():
                    index = vocabulary.get(item)
                    if index is not None and start <= index < size:
                        self._factor[index] *= factor
            else:
                self._derive(start, size, rules, vocabulary.ids[start:size])
            self._ruled = size
        return self._category, self._blocked, self._factor

    def _derive(self, start: int, end: int, rules, items) -> None:
        codes = self._category[start:end]
        self._blocked[start:end] = self._hidden[start:end] | self._code_excluded[codes]
        self._factor[start:end] = self._code_factor[codes]
        if items is not None and rules.item_factors:
            for k, item in enumerate(items):
                factor = rules.item_factors.get(item)
                if factor is not None:
                    self._factor[start + k] *= factor

    def _follow(self, vocabulary: Vocabulary, catalogue: Catalogue):
        """The catalogue arrays brought up to date (what changed in place is left for :meth:`ruled`)."""
        if self._seq != catalogue.seq:
            changed = catalogue.changed_since(self._seq) if self._seq >= 0 else None
            if changed is None:
                self._covered = self._ruled = 0
            else:
                for item in changed:
                    index = vocabulary.get(item)
                    if index is not None and index < self._covered:
                        self._category[index] = catalogue.category_code(item)
                        self._hidden[index] = item in catalogue.hidden
                        if index < self._ruled:
                            self._stale.append((index, item))
                if len(self._stale) > CHANGES_KEPT:
                    self._ruled, self._stale = 0, []  # cheaper to derive again
            self._seq = catalogue.seq
        size = len(vocabulary)
        if size > self._covered:
            if size > len(self._category):
                capacity = max(size, 2 * len(self._category), 1024)
                self._category = np.resize(self._category, capacity)
                self._hidden = np.resize(self._hidden, capacity)
                self._blocked = np.resize(self._blocked, capacity)
                self._factor = np.resize(self._factor, capacity)
            new = vocabulary.ids[self._covered : size]
            code, hidden = catalogue.category_code, catalogue.hidden
            self._category[self._covered : size] = [code(item) for item in new]
            self._hidden[self._covered : size] = [item in hidden for item in new]
            self._ruled = min(self._ruled, self._covered)
            self._covered = size
        return self._category, self._hidden


class CatalogueRead:
    """A read of every item's catalogue cells, range by range of the salted keys
    (``layout.salted_ranges``) and page by page; a failed page is read again by the
    next :meth:`run`, which goes on from there."""

    def __init__(self, store: BigtableStore):
        self._store = store
        #: Changes logged from here on may be missing from the rows read.
        self.started_ms = int(time.time() * 1000)
        self.fresh = Catalogue()
        self._popular: dict[int, list[tuple[float, str]]] = {}
        self._ranges = layout.salted_ranges()
        self._range = 0
        self._after: bytes | None = None

    async def run(self) -> CatalogueRead:
        while self._range < len(self._ranges):
            start, end = self._ranges[self._range]
            after = self._after is not None
            page = await self._store.read_catalog_page(self._after if after else start, end, after, LOAD_PAGE_ROWS)
            for _key, item, cells, users in page:
                if cells.category is None and cells.available is None:
                    continue  # an item the stream knows and the catalogue does not
                self.fresh.apply(item, cells)
                code = self.fresh.category_code(item)
                if code != NO_CATEGORY and users > 0:
                    self._popular.setdefault(code, []).append((-users, item))
            if len(page) < LOAD_PAGE_ROWS:
                self._range, self._after = self._range + 1, None
                if self._range == len(self._ranges):
                    self.fresh.set_fill(self._popular)
            else:
                self._after = page[-1][0]
        return self


class CatalogueFollower(PollCounts):
    """Loads the catalogue, then follows its change log; :meth:`run` polls until cancelled."""

    def __init__(self, store: BigtableStore, catalogue: Catalogue, poll_seconds: float, reload_seconds: float):
        self._store = store
        self.catalogue = catalogue
        self.poll_seconds = poll_seconds
        self.reload_seconds = reload_seconds
        self._position_ms = 0
        self._loaded_at = 0.0
        #: Log rows read in the overlap (key -> written ms): not decoded or applied again.
        self._known: dict[bytes, int] = {}
        self._reading: CatalogueRead | None = None
        self._reload: asyncio.Task | None = None
        self._loading: asyncio.Future | None = None
        #: Change-log rows (batches) decoded and applied; rows re-read in the overlap are not.
        self.log_batches = 0
        super().__init__()

    async def load(self) -> None:
        """Read every item's catalogue cells (in pages), then take them all at once.

        One read at a time, which outlives a caller that stops waiting (the app
        waits START_LOAD_SECONDS at start): the next call waits for the same read.
        """
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read_and_take())
        loading = self._loading
        try:
            await asyncio.shield(loading)
        finally:
            if loading.done():
                self._loading = None
                if not loading.cancelled():
                    loading.exception()  # retrieved here (raised above, or by another waiter)

    async def _read_and_take(self) -> None:
        if self._reading is None:
            self._reading = CatalogueRead(self._store)
        self._take(await self._reading.run())

    def _take(self, read: CatalogueRead) -> None:
        self._reading = None
        self.catalogue.replace(read.fresh)
        # Changes written while the load ran are in the log, after this point:
        # read (and applied to the fresh catalogue) again.
        self._position_ms = read.started_ms - LOG_OVERLAP_MS
        self._known.clear()
        self._loaded_at = time.monotonic()
        log.info("catalogue loaded: %d items, %d hidden", len(read.fresh), len(read.fresh.hidden))

    async def follow(self) -> int:
        """Apply the change log from a little behind the position to its end; returns changes applied."""
        now_ms = int(time.time() * 1000)
        start, after = layout.catalog_log_start(min(self._position_ms, now_ms - LOG_OVERLAP_MS)), False
        applied = 0
        while True:
            page = await self._store.read_catalog_log(start, after, LOG_PAGE_ROWS, self._known)
            for key, written_ms, changes in page:
                if changes is not None:
                    self.log_batches += 1
                    for item, cells in changes:
                        applied += self.catalogue.apply(item, cells)
                    self._known[key] = written_ms
                self._position_ms = max(self._position_ms, written_ms)
            if len(page) < LOG_PAGE_ROWS:
                break
            start, after = page[-1][0], True
        horizon = min(self._position_ms, now_ms) - 2 * LOG_OVERLAP_MS
        self._known = {key: ms for key, ms in self._known.items() if ms >= horizon}
        return applied

    async def poll(self) -> None:
        if not self.catalogue.loaded:
            await self.load()  # nothing to follow before it
            return
        if self._reload is not None and self._reload.done():
            reload, self._reload = self._reload, None
            if reload.exception() is None:
                self._take(reload.result())
            else:
                log.warning("catalogue reload interrupted (resumed at the next poll): %s", reload.exception())
        if self._reload is None and time.monotonic() - self._loaded_at > self.reload_seconds:
            self._reading = self._reading or CatalogueRead(self._store)
            self._reload = asyncio.create_task(self._reading.run(), name="catalogue-reload")
        await self.follow()

    async def run(self) -> None:
        """Poll until cancelled, starting one interval from now (the app loads at start)."""
        try:
            await poll_forever(self.poll, self.poll_seconds, "the catalogue", self, wait_first=True)
        finally:
            for task in (self._reload, self._loading):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
