"""Bought together and repurchase statistics: the measure against brute-force oracles (Spark
``local[2]``), then end to end on the emulator (events through the fold, a real pass)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch import bought
from batch.generations import Generations
from batch.refresh import PassOptions, run_pass
from schemas import Weights, codecs, layout
from streaming import forget
from streaming.store import FoldStore, fold_batch
from streamsim.runtime.bigtable import filters
from tests.support.bought_oracles import bought_together_oracle, crafted_stream, repurchase_oracle

HOUR = 3_600_000


def _random_purchases(seed: int, users: int = 30, items: int = 12) -> dict[str, list[tuple[str, int]]]:
    rnd = random.Random(seed)
    return {
        f"u{u}": [(f"i{rnd.randrange(items)}", rnd.randrange(0, 96 * HOUR)) for _ in range(rnd.randrange(1, 10))]
        for u in range(users)
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("min_support", [1, 2])
def test_the_spark_measure_equals_the_brute_force_oracle(spark, seed, min_support):
    purchases = _random_purchases(seed)
    rdd = spark.sparkContext.parallelize(list(purchases.values()), 3)
    got = bought.compute(rdd, k=5, min_support=min_support, window_ms=24 * HOUR)
    expected = bought_together_oracle(purchases, 24 * HOUR, min_support, 5)
    assert set(got.lists) == set(expected)
    for item, pairs in expected.items():
        assert [j for j, _ in got.lists[item]] == [j for j, _ in pairs]
        assert [s for _, s in got.lists[item]] == pytest.approx([s for _, s in pairs], rel=1e-12)
    stats = {i: (s.buyers, s.repeat_buyers, s.interval_ms) for i, s in got.stats.items()}
    assert stats == repurchase_oracle(purchases, bought.MIN_INTERVAL_MS)
    assert got.users == len(purchases)


def test_a_pair_outside_the_window_or_of_one_item_is_not_bought_together():
    assert bought.user_pairs([("a", 0), ("b", 24 * HOUR), ("c", 24 * HOUR + 1)], 24 * HOUR) == {
        ("a", "b"),
        ("b", "c"),
    }
    assert bought.user_pairs([("a", 0), ("a", 5)], 24 * HOUR) == set()


def _published(settings, generation: int) -> tuple[dict, dict]:
    """The ``b`` lists and statistics a reader of ``generation`` sees."""
    table = Generations(settings).similarities
    lists, stats = {}, {}
    for column, out in ((layout.TOP, lists), (layout.REPURCHASE, stats)):
        for key, row in table.read_rows(row_filter=filters.visible_at(generation, layout.BOUGHT, column)):
            cell = row[layout.BOUGHT][column]
            item = layout.id_from_row_key(key)
            out[item] = (
                codecs.decode_neighbours(cell.value) if column == layout.TOP else codecs.decode_repurchase(cell.value)
            )
    return lists, stats


def _assert_published(settings, generation, purchases, k):
    lists, stats = _published(settings, generation)
    expected = bought_together_oracle(purchases, bought.WINDOW_MS, 2, k)
    assert {i: [j for j, _ in v] for i, v in lists.items() if v} == {i: [j for j, _ in v] for i, v in expected.items()}
    for item, pairs in expected.items():
        assert [s for _, s in lists[item]] == pytest.approx([s for _, s in pairs], rel=1e-12)
    rebuy = repurchase_oracle(purchases, bought.MIN_INTERVAL_MS)
    assert {i: s for i, s in stats.items() if s[0]} == rebuy
    return lists


def test_a_pass_publishes_co_purchases_only_and_clears_lists_that_emptied(spark, fresh_stack):
    events, purchases = crafted_stream(seed=7)
    store = FoldStore(fresh_stack)
    for offset in range(0, len(events), 40):
        fold_batch(store, events[offset : offset + 40], Weights())
    options = PassOptions(full=True)
    first = run_pass(spark, fresh_stack, options)
    assert first["flipped"] and first["bought_together"]["buyers"] == len(purchases)
    lists = _assert_published(fresh_stack, first["generation"], purchases, options.params.top_k)
    # Browsed together by everyone, bought by some, never together: on no list.
    assert not any(j in ("x1", "x2") for v in lists.values() for j, _ in v)
    assert not lists.get("x1") and not lists.get("x2")

    # Erase every buyer of one listed item: its list and its partners' entries go, visibly.
    item = next(i for i, v in sorted(lists.items()) if v)
    gone = sorted(u for u, bought_ in purchases.items() if any(i == item for i, _ in bought_))
    for user in gone:
        forget.forget_user(fresh_stack, user, at_ms=100 * HOUR)
    kept = {u: v for u, v in purchases.items() if u not in gone}
    # An incremental pass recomputes the whole set all the same.
    second = run_pass(spark, fresh_stack, PassOptions(incremental=True))
    assert second["mode"] == "incremental" and second["flipped"]
    assert second["bought_together"]["items_emptied"] >= 1
    after = _assert_published(fresh_stack, second["generation"], kept, options.params.top_k)
    assert after[item] == [] and not any(j == item for v in after.values() for j, _ in v)
    # The first generation's cells are still there: a rollback shows its lists again.
    assert _published(fresh_stack, first["generation"])[0] == lists


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 5 * 24 * HOUR)), max_size=layout.PURCHASES_KEPT))
def test_a_users_pairs_are_bounded_and_each_is_a_co_purchase_in_the_window(purchases):
    pairs = bought.user_pairs(purchases, 24 * HOUR)
    assert len(pairs) <= len(purchases) * (len(purchases) - 1) // 2
    for i, j in pairs:
        assert i < j
        assert any(abs(a - b) <= 24 * HOUR for x, a in purchases for y, b in purchases if (x, y) == (i, j))
    # Every co-purchase in the window is found.
    for x, a in purchases:
        for y, b in purchases:
            if x != y and abs(a - b) <= 24 * HOUR:
                assert (min(x, y), max(x, y)) in pairs
