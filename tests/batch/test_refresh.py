"""The refresh pass end to end: Bigtable emulator in, Spark local[2], generations out."""

from __future__ import annotations

import dataclasses
import json

import grpc
import numpy as np
import pytest

from batch import dimsum, engine
from batch.cli import main as batch_main
from batch.generations import GenerationError, Generations, SimilarityReader
from batch.refresh import PassOptions, run_pass
from batch.source import blocks_from_scores, read_items
from schemas import codecs, entries, layout
from schemas.rows import neighbours_cell
from streamsim.app.cli import main as streamsim_main
from streamsim.runtime.bigtable import entry, filters, open_tables, set_cell
from streamsim.runtime.bigtable.table import Table
from streamsim.runtime.seeding import write_scores
from tests.support.flaky_calls import AnswerLost, Failed
from tests.support.similarity_oracles import score_matrix


def clustered_scores(seed: int, users: int = 1200, items: int = 40, clusters: int = 4, weights=(0.5, 2.0, 6.0)) -> dict:
    """Users mostly inside one cluster of items: high within-cluster cosines, popular items."""
    rng = np.random.default_rng(seed)
    per = items // clusters
    scores = {}
    for u in range(users):
        home = rng.integers(clusters)
        row = {}
        for j in range(items):
            if (j // per == home and rng.random() < 0.5) or rng.random() < 0.03:
                row[f"sku-{j:03d}"] = float(rng.choice(weights))
        if row:
            scores[f"user-{u}"] = row
    return scores


def sparse_scores(seed: int, users: int = 250, items: int = 30, density: float = 0.12) -> dict:
    rng = np.random.default_rng(seed)
    scores = {}
    for u in range(users):
        row = {
            f"i{j}": float(rng.choice([0.5, 2.0, 6.0])) * rng.integers(1, 4)
            for j in range(items)
            if rng.random() < density
        }
        if row:
            scores[f"u{u}"] = row
    return scores


def oracle(scores: dict) -> tuple[list[str], np.ndarray]:
    """Exact cosines of the entries a default pass computes from: f(r_ui), f the default transform."""
    ids, x = score_matrix(scores)
    x.data = entries.DEFAULT.apply(x.data)
    return ids, dimsum.exact_cosines(x).toarray()


def visible(settings, generation) -> dict[str, list[tuple[str, float]]]:
    return {item: list(zip(ids, scores)) for item, ids, scores in Generations(settings).read_all(generation)}


def popular(settings, generation) -> list[tuple[str, float]]:
    """The popularity list as serving reads it (``meta popular`` at ``generation``)."""
    cell = neighbours_cell(open_tables(settings).meta.read_row(layout.POPULAR_ROW, filters.visible_at(generation)))
    return codecs.decode_neighbours(cell.value) if cell is not None else []


def mark_dirty(settings, items) -> None:
    """What the stream does when an item's norm changes (the server stamps the mark)."""
    open_tables(settings).items.mutate(
        entry(layout.item_row_key(item), [set_cell(layout.DIRTY, layout.DIRTY_MARK, b"")]) for item in items
    )


def test_exact_pass_equals_scipy_cosine_oracle(spark, fresh_stack):
    scores = sparse_scores(1)
    write_scores(fresh_stack, scores)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=100), partitions=3)
    stats = run_pass(spark, fresh_stack, options)

    ids, cos = oracle(scores)
    rows = visible(fresh_stack, stats["generation"])
    assert stats["mode"] == "full" and stats["items"] == len(ids) == len(rows)
    assert stats["pairs_emitted"] == stats["pairs_exact"] > 0
    assert stats["users"] == len(scores) and stats["gamma"] is None
    checked = 0
    for i, item in enumerate(ids):
        got = dict(rows[item])
        expected = {ids[j]: cos[i, j] for j in range(len(ids)) if j != i and cos[i, j] > 0}
        assert got.keys() == expected.keys()
        for other, value in expected.items():
            assert abs(got[other] - value) < 1e-9
            checked += 1
        assert [s for _, s in rows[item]] == sorted((s for _, s in rows[item]), reverse=True)
    assert checked > 300
    assert stats["spot_check"]["mean_relative_error"] < 1e-9
    counts = {item: sum(item in row for row in scores.values()) for item in ids}
    assert [c for _, c in popular(fresh_stack, stats["generation"])] == sorted(counts.values(), reverse=True)
    # Every dirty mark set before the pass was consumed.
    assert (read_items(fresh_stack).dirty_micros == 0).all()


@pytest.mark.slow
def test_sampling_is_accurate_and_independent_of_partitioning(spark, fresh_stack):
    # DIMSUM's guarantee assumes entries in [0, 1]: unit scores taken raw (M = 1), and enough
    # users per item that column norms exceed sqrt(gamma), so entries really are sampled.
    scores = clustered_scores(2, users=2000, weights=(1.0,))
    write_scores(fresh_stack, scores)
    params = dimsum.DimsumParams(threshold=0.2, seed=11, top_k=50, entry_scale=1.0)
    ids, cos = oracle(scores)
    items = read_items(fresh_stack)
    p, _ = dimsum.sampling_probabilities(items.norm2, params.gamma(len(items)), params.entry_scale)
    assert (p < 0.9).all()

    two = run_pass(spark, fresh_stack, PassOptions(params=params, partitions=2, full=True, entry_transform="raw"))
    eight = run_pass(spark, fresh_stack, PassOptions(params=params, partitions=8, full=True, entry_transform="raw"))
    assert (two["read_partitions"], eight["read_partitions"]) == (2, 8)
    rows2, rows8 = visible(fresh_stack, two["generation"]), visible(fresh_stack, eight["generation"])
    assert rows2 == rows8
    assert two["pairs_emitted"] < two["pairs_exact"]

    within, total, errors = 0, 0, []
    for i, item in enumerate(ids):
        got = dict(rows2[item])
        for j, other in enumerate(ids):
            if j != i and cos[i, j] >= params.threshold:
                total += 1
                error = abs(got.get(other, 0.0) - cos[i, j]) / cos[i, j]
                errors.append(error)
                within += error <= 0.2
    assert total > 100
    assert within / total >= 0.9
    assert two["spot_check"]["within_20pct"] >= 0.9

    other_seed = run_pass(
        spark,
        fresh_stack,
        PassOptions(params=dataclasses.replace(params, seed=12), partitions=2, entry_transform="raw"),
    )
    assert visible(fresh_stack, other_seed["generation"]) != rows2


def test_spark_engine_equals_the_numpy_core_bit_for_bit(spark):
    scores = clustered_scores(3, users=400, items=20)
    ids = sorted({i for row in scores.values() for i in row})
    index = {item: k for k, item in enumerate(ids)}
    norm2 = np.zeros(len(ids))
    for row in scores.values():
        for item, r in row.items():
            norm2[index[item]] += r * r
    blocks = blocks_from_scores(scores, index, 16)
    hashes = dimsum.id_hashes(ids)
    for seed in (0, 1):
        params = dimsum.DimsumParams(threshold=0.2, seed=seed, top_k=len(ids), entry_scale=6.0)
        result = engine.similarity_rows(
            spark.sparkContext, spark.sparkContext.parallelize(blocks, 3), norm2, hashes, params
        )
        p, q = dimsum.sampling_probabilities(norm2, params.gamma(len(ids)), params.entry_scale)
        gram = dimsum.sum_in_bucket_order(
            (b.bucket, dimsum.block_gram(dimsum.sample_block(b, len(ids), p, q, hashes, seed).matrix)) for b in blocks
        )
        expected = dimsum.top_k_rows(gram, np.arange(len(ids)), len(ids), 0.0)
        for position, (cols, vals) in enumerate(expected):
            got_cols, got_vals = result.top.get(position, (np.empty(0), np.empty(0)))
            assert np.array_equal(cols, got_cols) and np.array_equal(vals, got_vals)


@pytest.mark.slow
def test_reader_sees_previous_generation_during_a_pass_and_rollback_restores_it(spark, fresh_stack, capsys):
    scores = sparse_scores(4)
    write_scores(fresh_stack, scores)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=5), partitions=2)
    reader = SimilarityReader(fresh_stack)
    with pytest.raises(GenerationError):
        reader.neighbours("i1")
    first = run_pass(spark, fresh_stack, options)
    before = {item: reader.neighbours(item).neighbours for item in ("i1", "i2", "i3")}

    # New events on i1 change the rows of i1 and of its neighbours.
    changed = {user: dict(row) for user, row in scores.items()}
    for user in list(changed)[:60]:
        changed[user]["i1"] = changed[user].get("i1", 0.0) + 6.0
    write_scores(fresh_stack, changed)
    seen_during = {}

    def during(generation):
        seen_during["pointer"] = reader.generations.current()
        seen_during["rows"] = {item: reader.neighbours(item).neighbours for item in before}
        seen_during["new"] = reader.neighbours("i1", generation).neighbours

    second = run_pass(spark, fresh_stack, dataclasses.replace(options, full=True), before_flip=during)
    assert seen_during["pointer"] == first["generation"]
    assert seen_during["rows"] == before
    assert seen_during["new"] != before["i1"]
    assert reader.generations.current() == second["generation"]
    assert reader.neighbours("i1").neighbours == seen_during["new"]

    assert batch_main(["rollback", "--json", *connection_flags(fresh_stack)]) == 0
    assert json.loads(capsys.readouterr().out) == {"from": second["generation"], "to": first["generation"]}
    assert {item: reader.neighbours(item).neighbours for item in before} == before
    with pytest.raises(GenerationError, match="oldest"):
        reader.generations.rollback()

    # After a rollback the next pass cannot carry rows over: it is full. (Through the CLI.)
    assert batch_main(["refresh", "--json", "--threshold", "0", "--top-k", "5", *connection_flags(fresh_stack)]) == 0
    third = json.loads(capsys.readouterr().out)
    assert third["mode"] == "full" and "rollback" in third["reason"]
    assert reader.generations.current() == third["generation"]
    assert batch_main(["refresh", "--threshold", "2", *connection_flags(fresh_stack)]) == 2
    assert "threshold" in capsys.readouterr().err


@pytest.mark.slow
def test_incremental_pass_equals_a_full_pass(spark, fresh_stack, capsys):
    scores = clustered_scores(5, users=600, items=60, clusters=6)
    write_scores(fresh_stack, scores)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.1, seed=3, top_k=8), partitions=2)
    first = run_pass(spark, fresh_stack, options)
    assert first["mode"] == "full"

    # New events: heavier scores on 3 items (about 5% of the items).
    rng = np.random.default_rng(6)
    new_scores = {user: dict(row) for user, row in scores.items()}
    touched = ["sku-003", "sku-017", "sku-041"]
    for user in rng.choice(sorted(new_scores), size=80, replace=False).tolist():
        item = touched[rng.integers(len(touched))]
        new_scores[user][item] = new_scores[user].get(item, 0.0) + 6.0
    write_scores(fresh_stack, new_scores, mark_dirty=False)
    mark_dirty(fresh_stack, touched)

    def mark_during(generation):
        mark_dirty(fresh_stack, ["sku-050"])  # an event arriving while the pass runs

    incremental = run_pass(spark, fresh_stack, options, before_flip=mark_during)
    assert incremental["mode"] == "incremental"
    assert incremental["dirty_items"] == 3
    assert 3 <= incremental["items_recomputed"] < incremental["items"] / 2
    assert incremental["marks_cleared"] == 3
    # Only users holding a dirty item were read (prefix scans of the stream's contributions);
    # a second read, for clean rows recomputed in full, scans if they are many (near-binary
    # entries tie at the K-th neighbour more often than raw scores, and such rows are recomputed).
    assert incremental["user_selection"].split("+")[0] == "index"
    assert incremental["users"] == sum(any(i in row for i in touched) for row in new_scores.values())
    assert 0 < incremental["users"] <= incremental["users_read"]
    items = read_items(fresh_stack)
    assert [i for i, m in zip(items.ids, items.dirty_micros.tolist()) if m] == ["sku-050"]

    full = run_pass(spark, fresh_stack, dataclasses.replace(options, full=True))
    assert visible(fresh_stack, incremental["generation"]) == visible(fresh_stack, full["generation"])
    # Rows outside the touched items changed too, so merges and carried rows are covered.
    before, after = visible(fresh_stack, first["generation"]), visible(fresh_stack, full["generation"])
    assert any(before[i] != after[i] for i in after if i not in touched)

    # A brand-new item changes n, hence gamma and every sampled item's q: still equal.
    for user in rng.choice(sorted(new_scores), size=40, replace=False).tolist():
        new_scores[user]["sku-new"] = 2.0
    write_scores(fresh_stack, new_scores, mark_dirty=False)
    mark_dirty(fresh_stack, ["sku-new"])
    # (most q_i move with gamma: the cost model would run it full, so force incremental)
    grown = run_pass(spark, fresh_stack, dataclasses.replace(options, incremental=True))
    assert grown["mode"] == "incremental" and grown["items"] == 61
    full = run_pass(spark, fresh_stack, dataclasses.replace(options, full=True))
    assert visible(fresh_stack, grown["generation"]) == visible(fresh_stack, full["generation"])

    # The CLI reads what serving reads.
    assert streamsim_main(["inspect", "similar", "sku-003", "--n", "3", "--json", *connection_flags(fresh_stack)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["item"] == "sku-003" and answer["generation"] == full["generation"]
    expected = visible(fresh_stack, full["generation"])["sku-003"][:3]
    assert [(n["item"], n["similarity"]) for n in answer["neighbours"]] == expected
    assert streamsim_main(["inspect", "similar", "no-such-item", *connection_flags(fresh_stack)]) == 1
    assert "no similarity row" in capsys.readouterr().err


def test_incremental_pass_reads_only_users_holding_dirty_items(spark, fresh_stack):
    scores = sparse_scores(7, users=300, items=40)
    write_scores(fresh_stack, scores)
    # Raw scores (the stream folds their norms too): their cosines rarely tie at the K-th
    # neighbour, so every clean row merges and the pass reads once. (Near-binary entries tie
    # more, and rows with ties there are recomputed, in a second read: correct, but another read.)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=5), partitions=2, entry_transform="raw")
    first = run_pass(spark, fresh_stack, options)
    assert first["users_read"] == len(scores) and first["user_selection"] == "scan"

    # New events on i1 for some users, and a first one for some others.
    changed = {user: dict(row) for user, row in scores.items()}
    for user in list(changed)[:50]:
        changed[user]["i1"] = changed[user].get("i1", 0.0) + 6.0
    write_scores(fresh_stack, changed, mark_dirty=False)
    mark_dirty(fresh_stack, ["i1"])
    incremental = run_pass(spark, fresh_stack, options)
    holders = sum("i1" in row for row in changed.values())
    assert incremental["mode"] == "incremental" and incremental["user_selection"] == "index"
    assert incremental["users_read"] == holders < len(scores)
    co_held = {item for row in changed.values() if "i1" in row for item in row} - {"i1"}
    assert incremental["similarity_rows_read"] == len(co_held) < incremental["items"]
    full = run_pass(spark, fresh_stack, dataclasses.replace(options, full=True))
    assert visible(fresh_stack, incremental["generation"]) == visible(fresh_stack, full["generation"])

    # Over a tenth of the items to recompute: their holders are about everyone, so scan.
    for user in list(changed)[-30:]:
        changed[user]["i-new"] = 2.0
    write_scores(fresh_stack, changed, mark_dirty=False)
    mark_dirty(fresh_stack, sorted({item for row in changed.values() for item in row}))
    # (the cost model would run this pass full: see test_planner.py)
    fallback = run_pass(spark, fresh_stack, dataclasses.replace(options, incremental=True))
    assert fallback["mode"] == "incremental" and fallback["user_selection"] == "scan"
    assert fallback["users_read"] == len(changed)
    full = run_pass(spark, fresh_stack, dataclasses.replace(options, full=True))
    assert visible(fresh_stack, fallback["generation"]) == visible(fresh_stack, full["generation"])


class _Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "injected by the test"


@pytest.mark.parametrize("applied", [False, True], ids=["not-applied", "applied-answer-lost"])
def test_a_transient_failure_at_the_flip_does_not_lose_the_pass(spark, fresh_stack, monkeypatch, applied):
    write_scores(fresh_stack, sparse_scores(8, users=80, items=12))
    state = []
    real_start = Table._start_check_and_mutate

    def flaky(self, request):
        # Once armed (every row written), the first flip of the pointer fails transiently.
        if state == ["armed"] and request.row_key == layout.GENERATION_ROW:
            state[0] = "failed once"
            return AnswerLost(real_start(self, request), _Unavailable()) if applied else Failed(_Unavailable())
        return real_start(self, request)

    monkeypatch.setattr(Table, "_start_check_and_mutate", flaky)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=5), partitions=2)
    stats = run_pass(spark, fresh_stack, options, before_flip=lambda generation: state.append("armed"))
    assert state == ["failed once"]
    gens = Generations(fresh_stack)
    assert stats["flipped"] and gens.current() == stats["generation"]
    assert gens.pass_stats(stats["generation"])["state"] == "complete"
    assert stats["marks_cleared"] == stats["items"]


def test_an_older_pass_that_finishes_last_does_not_move_the_pointer_back(spark, fresh_stack, capsys):
    write_scores(fresh_stack, sparse_scores(9, users=120, items=15))
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=5), partitions=2)
    first = run_pass(spark, fresh_stack, options)
    full, newer = dataclasses.replace(options, full=True), {}

    def a_newer_pass_finishes_first(generation):
        newer.update(run_pass(spark, fresh_stack, full))

    older = run_pass(spark, fresh_stack, full, before_flip=a_newer_pass_finishes_first)
    gens = Generations(fresh_stack)
    assert first["generation"] < older["generation"] < newer["generation"]
    assert newer["flipped"] and newer["mode"] == "full"  # it saw the older pass, still writing
    assert not older["flipped"] and not older["refused"] and "already names the newer" in older["not_flipped_reason"]
    assert gens.current() == newer["generation"]
    assert gens.pass_stats(older["generation"])["state"] == "not_flipped"
    # The pass that was never served is no rollback target.
    assert gens.rollback() == (newer["generation"], first["generation"])


def test_an_incremental_pass_overlapped_by_an_older_one_refuses_to_publish(spark, fresh_stack):
    scores = sparse_scores(10, users=120, items=15)
    write_scores(fresh_stack, scores)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=5), partitions=2)
    first = run_pass(spark, fresh_stack, options)
    mark_dirty(fresh_stack, ["i1"])
    gens = Generations(fresh_stack)

    def a_pass_planned_just_before(generation):
        # Planned before this one, so this one could not see it; now it writes cells.
        gens.begin_pass(generation - 1, {"mode": "full"})

    refused = run_pass(spark, fresh_stack, options, before_flip=a_pass_planned_just_before)
    assert refused["mode"] == "incremental" and refused["refused"] and not refused["flipped"]
    assert str(refused["generation"] - 1) in refused["not_flipped_reason"]
    assert gens.current() == first["generation"]
    assert gens.pass_stats(refused["generation"])["state"] == "not_flipped"
    assert refused["marks_cleared"] == 0 and read_items(fresh_stack).dirty_micros.any()
    after = run_pass(spark, fresh_stack, options)
    assert after["mode"] == "full" and after["flipped"]


def test_a_pass_that_fails_before_writing_is_recorded_failed_and_forces_nothing(spark, fresh_stack, monkeypatch):
    write_scores(fresh_stack, sparse_scores(12, users=100, items=12))
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=5), partitions=2)
    first = run_pass(spark, fresh_stack, options)
    mark_dirty(fresh_stack, ["i1"])
    real = engine.similarity_rows

    def broken(*args, **kwargs):
        raise RuntimeError("executor lost")

    monkeypatch.setattr(engine, "similarity_rows", broken)
    with pytest.raises(RuntimeError, match="executor lost"):
        run_pass(spark, fresh_stack, options)
    monkeypatch.setattr(engine, "similarity_rows", real)
    gens = Generations(fresh_stack)
    (failed,) = [s for g, s in gens.passes().items() if g > first["generation"]]
    assert failed["state"] == "failed" and "executor lost" in failed["error"]
    assert gens.current() == first["generation"]
    # No cell of it exists, so the next pass can still carry rows over.
    assert run_pass(spark, fresh_stack, options)["mode"] == "incremental"


def test_a_generation_without_neighbours_is_not_published(spark, fresh_stack, capsys):
    scores = sparse_scores(11, users=150, items=15)
    write_scores(fresh_stack, scores)
    flags = ["--json", "--threshold", "0", "--top-k", "5", *connection_flags(fresh_stack)]
    assert batch_main(["refresh", *flags]) == 0
    good = json.loads(capsys.readouterr().out)
    gens = Generations(fresh_stack)
    _, cos = oracle(scores)
    np.fill_diagonal(cos, 0)
    assert 0 < cos.max() < 0.95
    mark_dirty(fresh_stack, ["i1"])

    # Every pair is below the floor: nothing to publish.
    assert batch_main(["refresh", "--min-similarity", "0.95", *flags]) == 1
    out, err = capsys.readouterr()
    empty = json.loads(out)
    assert err.count("\n") == 1 and "no neighbours at all" in err and "--allow-empty" in err
    assert empty["state"] == "empty" and empty["refused"] and empty["rows_written"] == 0
    assert gens.current() == good["generation"]
    assert gens.pass_stats(empty["generation"])["state"] == "empty"
    assert read_items(fresh_stack).dirty_micros.any()  # the marks stay for the next pass
    # Nothing was written, so the next pass may still be incremental.
    assert batch_main(["refresh", *flags]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "incremental"

    assert batch_main(["refresh", "--min-similarity", "0.95", "--allow-empty", *flags]) == 0
    published = json.loads(capsys.readouterr().out)
    assert published["flipped"] and gens.current() == published["generation"]
    assert all(not ids for _, ids, _ in gens.read_all(published["generation"]))


def connection_flags(settings) -> list[str]:
    return [
        "--project",
        settings.project,
        "--instance",
        settings.instance,
        "--bigtable-host",
        settings.bigtable_host,
        "--pubsub-host",
        settings.pubsub_host,
        "--prefix",
        settings.prefix,
        "--state-dir",
        str(settings.state_dir),
    ]
