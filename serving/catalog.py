"""The catalogue as serving sees it: each item's category and availability.

A process loads the catalogue (the ``items`` rows' ``m:`` cells, see
:mod:`schemas.layout`) once at start, then follows the change log every poll
interval, so hiding an item takes effect within that interval without a refresh.
A poll reads the log from its position, a few seconds back (a change whose write
took that long still lands ahead of it), in pages of a bounded size; applying a
change is idempotent and the newest update of a column wins (cell timestamps are
update times), so re-reading is harmless. The load is repeated every
``reload_seconds``, which also refreshes the per-category popularity.

Per-category popularity (the fill of a ``category=`` query): the load reads each
item's user count beside its catalogue cells and keeps, per category, its
:data:`CATEGORY_FILL` items with the most users: the measure the refresh's global
popularity list ranks by, as of the last load.

Kernel answers are filtered through :class:`ItemFacts`: numpy arrays of category
code and hidden flag per vocabulary index, kept in step with the vocabulary and
the catalogue's changes, so a filter costs a gather and a comparison per candidate.
"""

from __future__ import annotations

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
LOAD_PAGE_ROWS = 5000
LOG_PAGE_ROWS = 2000
#: Pages of the change log one poll reads at most; the rest waits for the next poll.
LOG_PAGES_PER_POLL = 10
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

    def _code(self, category: str) -> int:
        code = self._codes.get(category)
        if code is None:
            code = self._codes[category] = len(self._codes)
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
    """Category codes (int32, -1: none) and hidden flags (bool) by vocabulary index.

    One per vocabulary: grown as the vocabulary grows, updated from the
    catalogue's change list (rebuilt when it fell too far behind).
    """

    def __init__(self):
        self._category = np.empty(0, dtype=np.int32)
        self._hidden = np.empty(0, dtype=bool)
        self._covered = 0
        self._seq = -1

    def arrays(self, vocabulary: Vocabulary, catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
        if self._seq != catalogue.seq:
            changed = catalogue.changed_since(self._seq) if self._seq >= 0 else None
            if changed is None:
                self._covered = 0
            else:
                for item in changed:
                    index = vocabulary.get(item)
                    if index is not None and index < self._covered:
                        self._category[index] = catalogue.category_code(item)
                        self._hidden[index] = item in catalogue.hidden
            self._seq = catalogue.seq
        size = len(vocabulary)
        if size > self._covered:
            if size > len(self._category):
                capacity = max(size, 2 * len(self._category), 1024)
                self._category = np.resize(self._category, capacity)
                self._hidden = np.resize(self._hidden, capacity)
            new = vocabulary.ids[self._covered : size]
            code, hidden = catalogue.category_code, catalogue.hidden
            self._category[self._covered : size] = [code(item) for item in new]
            self._hidden[self._covered : size] = [item in hidden for item in new]
            self._covered = size
        return self._category, self._hidden


class CatalogueFollower(PollCounts):
    """Loads the catalogue, then follows its change log; :meth:`run` polls until cancelled."""

    def __init__(self, store: BigtableStore, catalogue: Catalogue, poll_seconds: float, reload_seconds: float):
        self._store = store
        self.catalogue = catalogue
        self.poll_seconds = poll_seconds
        self.reload_seconds = reload_seconds
        self._position_ms = 0
        self._loaded_at = 0.0
        super().__init__()

    async def load(self) -> None:
        """Read every item's catalogue cells (in pages), then take them all at once."""
        started_ms = int(time.time() * 1000)
        fresh = Catalogue()
        popular: dict[int, list[tuple[float, str]]] = {}
        after = None
        while True:
            page = await self._store.read_catalog_page(after, LOAD_PAGE_ROWS)
            for _key, item, cells, users in page:
                if cells.category is None and cells.available is None:
                    continue  # an item the stream knows and the catalogue does not
                fresh.apply(item, cells)
                code = fresh.category_code(item)
                if code != NO_CATEGORY and users > 0:
                    popular.setdefault(code, []).append((-users, item))
            if len(page) < LOAD_PAGE_ROWS:
                break
            after = page[-1][0]
        fresh.set_fill(popular)
        self.catalogue.replace(fresh)
        # Changes written while the load ran are in the log, after this point.
        self._position_ms = started_ms - LOG_OVERLAP_MS
        self._loaded_at = time.monotonic()
        log.info("catalogue loaded: %d items, %d hidden", len(fresh), len(fresh.hidden))

    async def follow(self) -> int:
        """Apply the change log from a little behind the position; returns changes applied."""
        now_ms = int(time.time() * 1000)
        start, after = layout.catalog_log_start(min(self._position_ms, now_ms - LOG_OVERLAP_MS)), False
        applied = 0
        for _ in range(LOG_PAGES_PER_POLL):
            page = await self._store.read_catalog_log(start, after, LOG_PAGE_ROWS)
            for _key, written_ms, item, cells in page:
                applied += self.catalogue.apply(item, cells)
                self._position_ms = max(self._position_ms, written_ms)
            if len(page) < LOG_PAGE_ROWS:
                break
            start, after = page[-1][0], True
        return applied

    async def poll(self) -> None:
        if not self.catalogue.loaded or time.monotonic() - self._loaded_at > self.reload_seconds:
            await self.load()
        else:
            await self.follow()

    async def run(self) -> None:
        """Poll until cancelled, starting one interval from now (the app loads at start)."""
        await poll_forever(self.poll, self.poll_seconds, "the catalogue", self, wait_first=True)
