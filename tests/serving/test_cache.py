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


def test_absent_ids_have_their_own_bound_and_never_evict_rows():
    cache = NeighbourCache(max_rows=100, max_absent=10)
    real = [f"real{k}" for k in range(100)]
    for k, item in enumerate(real):
        cache.store("g", item, row(k))
    for k in range(5000):  # a flood of random ids, each read once and found absent
        cache.store("g", f"random{k}", NO_NEIGHBOURS)
    assert len(cache) == 100 and cache.absent == 10
    found, missing = cache.lookup("g", real)
    assert missing == [] and [r.items.tolist() for r in found] == [[k] for k in range(100)]
    # The most recent absent ids are still remembered; older ones are read again.
    assert cache.lookup("g", ["random4999"]) == ([NO_NEIGHBOURS], [])
    assert cache.lookup("g", ["random0"])[1] == ["random0"]
    cache.drop_generation("g")
    assert cache.absent == 0
