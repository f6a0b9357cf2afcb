"""The cost model that picks a pass's mode: pure estimates, then the real pass on the emulator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from batch import dimsum, planner
from batch.refresh import PassOptions, run_pass
from streamsim.runtime.seeding import write_scores
from tests.batch.test_refresh import clustered_scores, mark_dirty, visible


def catalogue(seed: int, items: int = 2000) -> np.ndarray:
    """Users per item, long-tailed like a shop's."""
    rng = np.random.default_rng(seed)
    return np.maximum(1, (5000 / (np.arange(items) + 5) ** 0.9 * rng.uniform(0.5, 1.5, items)).astype(np.int64))


def test_size_biased_items_per_user_is_exact_from_pair_counts():
    rng = np.random.default_rng(0)
    m = rng.integers(1, 40, size=500)  # items per user
    pairs = int(m.sum())
    stats = {"pairs_exact": int((m * (m - 1) // 2).sum())}
    assert planner.size_biased_items_per_user(pairs, stats) == pytest.approx((m**2).sum() / pairs)
    assert planner.size_biased_items_per_user(pairs, None) is None


@pytest.mark.parametrize("seed", range(5))
def test_a_few_dirty_items_go_incremental_most_of_the_catalogue_goes_full(seed):
    users = catalogue(seed)
    full_stats = {"pairs_exact": int(users.sum()) * 4}
    rng = np.random.default_rng(seed)
    few = np.zeros(len(users), dtype=bool)
    few[rng.choice(len(users), size=len(users) // 100, replace=False)] = True
    choice = planner.choose(users, few, full_stats, max_index_fraction=0.1)
    assert choice.mode == "incremental"
    assert choice.incremental.cost < choice.full.cost
    assert choice.incremental.user_rows < choice.full.user_rows == users.sum()

    most = rng.random(len(users)) < 0.8
    choice = planner.choose(users, most, full_stats, max_index_fraction=0.1)
    assert choice.mode == "full" and choice.reason.startswith("cheaper than incremental")
    assert choice.incremental.cost >= choice.full.cost

    # Forced modes keep both estimates for the record.
    forced = planner.choose(users, most, full_stats, max_index_fraction=0.1, forced="incremental")
    assert forced.mode == "incremental" and forced.reason.startswith("--incremental")
    assert forced.record()["incremental"]["cost"] == choice.record()["incremental"]["cost"]


def test_cached_rows_make_incremental_cheaper_and_estimates_stay_within_totals():
    users = catalogue(9)
    affected = np.zeros(len(users), dtype=bool)
    affected[:40] = True  # the most popular items: co-held with most of the catalogue
    cold = planner.incremental_work(users, affected, 6.0, max_index_fraction=0.1)
    warm = planner.incremental_work(users, affected, 6.0, max_index_fraction=0.1, cached_rows=len(users))
    assert warm.similarity_rows_read == 0 < cold.similarity_rows_read <= len(users) - 40
    assert warm.cost < cold.cost
    assert cold.user_rows <= users.sum() and cold.rows_written <= len(users)
    # No full pass to learn m* from: every holder is assumed to hold everything (an upper bound).
    unknown = planner.incremental_work(users, affected, None, max_index_fraction=0.1)
    assert unknown.user_rows == users.sum()


def test_the_pass_runs_the_mode_the_estimates_choose_and_records_why(spark, fresh_stack):
    scores = clustered_scores(11, users=500, items=60, clusters=6)
    write_scores(fresh_stack, scores)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.1, seed=1, top_k=8), partitions=2)
    first = run_pass(spark, fresh_stack, options)
    assert first["mode"] == "full" and first["cost_model"] is None  # no base generation to start from

    # One item of sixty: incremental.
    changed = {user: dict(row) for user, row in scores.items()}
    for user in list(changed)[:30]:
        changed[user]["sku-007"] = changed[user].get("sku-007", 0.0) + 2.0
    write_scores(fresh_stack, changed, mark_dirty=False)
    mark_dirty(fresh_stack, ["sku-007"])
    small = run_pass(spark, fresh_stack, options)
    model = small["cost_model"]
    assert small["mode"] == "incremental" and model["incremental"]["cost"] < model["full"]["cost"]
    assert small["users_read"] < first["users_read"]

    # Most of the catalogue: full, and the reason says so.
    for user in list(changed)[30:200]:
        for item in changed[user]:
            changed[user][item] += 0.5
    write_scores(fresh_stack, changed, mark_dirty=False)
    mark_dirty(fresh_stack, sorted({item for row in changed.values() for item in row})[:50])
    large = run_pass(spark, fresh_stack, options)
    model = large["cost_model"]
    assert large["mode"] == "full" and large["reason"].startswith("cheaper than incremental")
    assert model["incremental"]["cost"] >= model["full"]["cost"]
    assert large["dirty_items"] == 50 and large["users_read"] == len(changed)

    # --full forces a full pass (no estimate needed); both give the same rows.
    forced = run_pass(spark, fresh_stack, dataclasses.replace(options, full=True))
    assert forced["mode"] == "full" and forced["reason"] == "--full"
    assert visible(fresh_stack, forced["generation"]) == visible(fresh_stack, large["generation"])


def test_full_and_incremental_cannot_both_be_forced():
    with pytest.raises(ValueError, match="exclude each other"):
        PassOptions(full=True, incremental=True)
