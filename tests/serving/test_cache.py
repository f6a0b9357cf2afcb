"""The neighbour cache (bounded LRU per generation) and the vocabulary."""

import numpy as np
import pytest

from serving.neighbours import NO_NEIGHBOURS, NeighbourCache, NeighbourRow, Vocabulary


def row(*items):
    return NeighbourRow(np.array(items, dtype=np.int32), np.ones(len(items)))


def test_lru_keeps_the_recently_used_rows_within_its_bound():
    cache = NeighbourCache(max_rows=2)
    cache.store(1, "a", row(1))
    cache.store(1, "b", row(2))
    found, missing = cache.lookup(1, ["a"])  # a is now the most recent
    assert missing == [] and found[0].items.tolist() == [1]
    cache.store(1, "c", row(3))  # evicts b, the least recently used
    found, missing = cache.lookup(1, ["a", "b", "c"])
    assert missing == ["b"] and found[1] is None and len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1) and cache.hit_ratio() == 0.75


def test_rows_are_per_generation_and_absence_is_cached():
    cache = NeighbourCache(max_rows=10)
    cache.store((1, 1), "a", row(1))
    cache.store((1, 1), "cold", NO_NEIGHBOURS)
    assert cache.lookup((2, 2), ["a"])[1] == ["a"]
    found, missing = cache.lookup((1, 1), ["cold"])
    assert missing == [] and found[0] is NO_NEIGHBOURS
    cache.drop_generation((1, 1))
    assert len(cache) == 0
    with pytest.raises(ValueError):
        NeighbourCache(0)


def test_vocabulary_hands_out_stable_indices():
    vocabulary = Vocabulary()
    assert vocabulary.indices(["x", "y", "x"]).tolist() == [0, 1, 0]
    assert vocabulary.indices(["z", "y"]).tolist() == [2, 1]
    assert vocabulary.known({"y", "unknown"}).tolist() == [1]
    assert vocabulary.known([]).dtype == np.int32
    assert vocabulary.ids == ["x", "y", "z"] and len(vocabulary) == 3


def test_older_generations_are_evicted_first():
    cache = NeighbourCache(max_rows=3)
    cache.store("old", "a", row(1))
    cache.store("old", "b", row(2))
    cache.store("new", "a", row(3))
    cache.lookup("old", ["b", "a"])  # recently used, but of an older view
    cache.store("new", "b", row(4))
    cache.store("new", "c", row(5))
    assert len(cache) == 3
    assert cache.lookup("old", ["a", "b"])[1] == ["a", "b"]
    assert cache.lookup("new", ["a", "b", "c"])[1] == []
