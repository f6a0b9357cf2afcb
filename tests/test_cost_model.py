"""The cost model's arithmetic (benchmarks/cost.py, docs/cost.md), checked by hand."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks import cost

#: Round inputs, so every figure below can be worked out on paper.
M = cost.Measured(
    fold_rows_read=2,
    fold_rows_written=3,
    fold_rows_checked=1,
    fold_cpu_seconds=0.001,
    message_bytes=1024,
    pass_fixed_seconds=0,
    pass_vcpu_seconds_per_pair=1e-4,
    pass_scan_bytes_per_pair=220,
    pass_memory_bytes_per_pair=600,
    pass_fixed_memory_mib=700,
    serve_rows_per_history_item=1,
    serve_similarity_rows_per_history_item=1,
    serve_cpu_seconds=0.002,
)
W = cost.Workload(
    "paper",
    events_per_day=86_400_000,  # 1,000 events/s, 3,000 at the peak hour
    requests_per_day=8_640_000,  # 100 requests/s
    items=17_000,
    users=1_000_000,
    pairs=10e6,  # 10 history items per user
    passes_per_day=1,
)


def line(lines, item):
    (found,) = [entry for entry in lines if entry.item == item]
    return found


def test_list_prices_give_the_reviews_hand_figures():
    assert cost.HOURS * cost.PRICES["bigtable_node_hour"] == pytest.approx(474.50)
    # n1-standard-2 streaming worker: 2 vCPU, 7.5 GB, 30 GB disk.
    dataflow = line(cost.standard(M, cost.idle(W)), "Dataflow fold").dollars
    assert dataflow == pytest.approx(2 * 0.069 * 730 + 7.5 * 0.0035557 * 730 + 30 * 0.000054 * 730)
    assert dataflow == pytest.approx(121.39, abs=0.01)
    # One always-on 1 vCPU / 1 GiB instance, less the free tier: $47.34.
    always_on = cost.cloud_run_instance(cost.SECONDS, cost.SECONDS)
    assert always_on == pytest.approx(52.56) and always_on - cost.run_free_tier() == pytest.approx(47.34)


def test_bigtable_load_and_nodes():
    # Serving reads 10 history rows + 10% of 10 similarity rows = 11 rows a request.
    assert cost.serve_rows(M, W) == pytest.approx(11)
    # 1,000 events/s x (2 + 1 reads, 3 + 1 writes) + 100 requests/s x 11 reads.
    average = 4100 / 17_000 + 4000 / 14_000
    assert cost.bigtable_load(M, W, peak=False) == pytest.approx(average)
    assert cost.bigtable_load(M, W, peak=True) == pytest.approx(3 * average)
    assert [cost.bigtable_nodes(x) for x in (0, 0.7, 0.71, 1.4, 1.41)] == [1, 1, 2, 2, 3]
    # A full pass scans 10M x 220 B at 220 MB/s (10 s) and reads and writes 17k item rows.
    assert cost.pass_node_hours(M, W) == pytest.approx((10 + 1 + 17_000 / 14_000) / 3600)
    nodes = line(cost.standard(M, W), "Bigtable nodes").dollars
    assert nodes == pytest.approx((3 * 730 + cost.pass_node_hours(M, W) * cost.DAYS) * 0.65)  # 1.58 -> 3 nodes


def test_pubsub_dataflow_and_serving_scale_with_traffic():
    lines = cost.standard(M, W)
    gib = 86_400_000 * cost.DAYS * 1024 * 2 / 2**30
    assert line(lines, "Pub/Sub").dollars == pytest.approx((gib - 10) / 1024 * 40)
    # Peak 3,000 events/s x 1 ms = 3 vCPU busy; 2-vCPU workers at 70%: 3 workers.
    shuffled = 86_400_000 * cost.DAYS * 1024 * 2 / 1e9
    assert line(lines, "Dataflow fold").dollars == pytest.approx(3 * 121.3883 + shuffled * 0.018, rel=1e-4)
    # 300 requests/s x 2 ms = 0.6 vCPU at the peak: one instance is enough, at 60%.
    assert line(lines, "Cloud Run serving").dollars == pytest.approx(52.56)
    heavier = dataclasses.replace(M, serve_cpu_seconds=0.003)
    assert line(cost.standard(heavier, W), "Cloud Run serving").dollars == pytest.approx(2 * 52.56)
    # A pass: 60 s start-up + 10M x 0.1 ms over 8 executor vCPUs = 185 s at 12 DCU.
    per_pass = 12 * 185 / 3600 * 0.06
    assert line(lines, "Dataproc Serverless refresh").dollars == pytest.approx(per_pass * cost.DAYS)
    slower = dataclasses.replace(M, pass_fixed_seconds=15)  # Spark's own start-up and job overhead
    assert line(cost.standard(slower, W), "Dataproc Serverless refresh").dollars == pytest.approx(
        12 * 200 / 3600 * 0.06 * cost.DAYS
    )


def test_the_floor_is_one_bigtable_node_plus_what_is_always_on():
    standard_floor = cost.total(cost.standard(M, cost.idle(W)))
    assert standard_floor == pytest.approx(474.50 + 121.3883 + 52.56 - 5.22, abs=0.01)
    # The small-shop profile: only Bigtable is always on; the jobs still start on schedule.
    idle_shop = cost.small_shop(M, cost.idle(W))
    fold = line(idle_shop, "Cloud Run job: fold").dollars
    assert fold == pytest.approx(4 * 24 * cost.DAYS * 80 * (0.000018 + 0.000002))  # 20 s start + 60 s window
    refresh = line(idle_shop, "Cloud Run job: refresh").dollars
    assert refresh == pytest.approx(24 * cost.DAYS * 30 * (2 * 0.000018 + 4 * 0.000002))  # 30 s start
    assert line(idle_shop, "Cloud Run free tier").dollars == pytest.approx(-5.22)
    assert cost.total(idle_shop) == pytest.approx(474.50 + fold + refresh - 5.22)
    assert cost.total(idle_shop) < 475.0


def test_the_small_shop_profile_costs_less_than_the_standard_one_for_a_small_shop():
    small, standard = cost.total(cost.small_shop(M, cost.SMALL_SHOP)), cost.total(cost.standard(M, cost.SMALL_SHOP))
    assert small < standard - 100
    assert "(b) small shop, small-shop profile" in cost.report(M)
