"""Similarity rows as the kernel wants them, and the cache that keeps them.

A generation's similarity rows never change once its pointer is flipped, so
a row read once is good for the rest of that generation: the cache is keyed
by ``(generation, item)`` and evicts least recently used rows beyond a bound.
Items without a row are cached too (as :data:`NO_NEIGHBOURS`), or every
request for a cold item would read Bigtable again; but apart, in a small bound
of their own, so that a flood of random ids evicts only other absent ids and
never a row that exists.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from serving.scoring import NeighbourRow


class Vocabulary:
    """Item id <-> dense int index, for one generation's kernel calls.

    Indices are handed out in the order items are first seen, so they are
    stable for the life of the vocabulary but mean nothing across processes.
    It only grows; :class:`serving.generation.Generation` replaces it (and
    drops its cached rows) when it reaches its bound.
    """

    def __init__(self):
        self._index: dict[str, int] = {}
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def indices(self, items: list[str]) -> np.ndarray:
        """int32 indices of ``items``, adding the new ones."""
        index, ids = self._index, self.ids
        out = np.empty(len(items), dtype=np.int32)
        for position, item in enumerate(items):
            found = index.get(item)
            if found is None:
                found = index[item] = len(ids)
                ids.append(item)
            out[position] = found
        return out

    def known(self, items) -> np.ndarray:
        """int32 indices of those ``items`` already in the vocabulary (no additions)."""
        get = self._index.get
        found = [k for k in map(get, items) if k is not None]
        return np.array(found, dtype=np.int32) if found else _EMPTY_INDICES

    def get(self, item: str) -> int | None:
        return self._index.get(item)


# One item's top-K neighbours are the kernel's own row type, ``NeighbourRow``
# (vocabulary indices, cosines, stored order), checked once when built.
_EMPTY_INDICES = np.empty(0, dtype=np.int32)
NO_NEIGHBOURS = NeighbourRow(_EMPTY_INDICES, np.empty(0, dtype=np.float64))


#: The rows of a view not cached at all (never written to).
_NO_ROWS: OrderedDict = OrderedDict()


class NeighbourCache:
    """Bounded LRU of ``(generation, item) -> NeighbourRow``; counts hits and misses.

    Stored as one LRU per generation view so that a lookup hashes only the
    item id (its hash is cached on the string), not a composite key. The bound
    is on all rows together; rows of older views are evicted first, as a
    generation's rows are useless once the pointer has moved past it.
    Ids without a row (:data:`NO_NEIGHBOURS`) live in a separate LRU of
    ``max_absent`` entries, keyed ``(generation, item)``, looked up only on a miss.
    """

    def __init__(self, max_rows: int, max_absent: int = 20_000):
        if max_rows < 1 or max_absent < 1:
            raise ValueError(f"the neighbour cache needs room for at least 1 row, got {max_rows}, {max_absent}")
        self.max_rows = max_rows
        self.max_absent = max_absent
        self._views: OrderedDict[object, OrderedDict[str, NeighbourRow]] = OrderedDict()
        self._absent: OrderedDict[tuple[object, str], None] = OrderedDict()
        self._size = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return self._size

    @property
    def absent(self) -> int:
        """Ids cached as having no row."""
        return len(self._absent)

    def lookup(self, generation, items: list[str]) -> tuple[list[NeighbourRow | None], list[str]]:
        """The cached lists of ``items`` (None where not cached) and the items to read."""
        rows = self._views.get(generation, _NO_ROWS)
        get, touch = rows.get, rows.move_to_end
        absent = self._absent
        found: list[NeighbourRow | None] = []
        missing: list[str] = []
        for item in items:
            row = get(item)
            if row is not None:
                touch(item)
            elif absent and (generation, item) in absent:
                absent.move_to_end((generation, item))
                row = NO_NEIGHBOURS
            else:
                missing.append(item)
            found.append(row)
        self.misses += len(missing)
        self.hits += len(items) - len(missing)
        return found, missing

    def store(self, generation, item: str, row: NeighbourRow) -> None:
        if row is NO_NEIGHBOURS:
            absent = self._absent
            absent[(generation, item)] = None
            absent.move_to_end((generation, item))
            if len(absent) > self.max_absent:
                absent.popitem(last=False)
            return
        views = self._views
        rows = views.get(generation)
        if rows is None:
            rows = views[generation] = OrderedDict()
        if item not in rows:
            self._size += 1
        rows[item] = row
        rows.move_to_end(item)
        while self._size > self.max_rows:
            oldest_key, oldest = next(iter(views.items()))
            oldest.popitem(last=False)
            self._size -= 1
            if not oldest:
                del views[oldest_key]

    def drop_generation(self, generation) -> None:
        rows = self._views.pop(generation, None)
        if rows:
            self._size -= len(rows)
        for key in [key for key in self._absent if key[0] == generation]:
            del self._absent[key]

    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
