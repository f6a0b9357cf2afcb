"""``refresh --continuous``: warm passes back to back, exact, and a clean stop."""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from batch import dimsum
from batch.continuous import WarmState, run_continuous
from batch.generations import Generations, SimilarityReader
from batch.refresh import PassOptions, run_pass
from batch.source import read_items
from streamsim.runtime.seeding import write_scores
from tests.batch.test_refresh import clustered_scores, connection_flags, mark_dirty, visible

#: Bound on waits for the loop (a hung loop fails the test instead of hanging it); not a timing assertion.
PATIENCE = 180


def browse_fresh_pair(settings, users: list[str], x: str, y: str) -> None:
    """Users who browse fresh items x then y, as the fold leaves them (both marked dirty)."""
    write_scores(settings, {user: {x: 0.5, y: 0.5} for user in users})


def wait_until(condition, what: str):
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def test_changes_published_after_the_loop_started_become_visible_exactly(spark, fresh_stack):
    scores = clustered_scores(21, users=400, items=48, clusters=4)
    write_scores(fresh_stack, scores)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=6), partitions=2)
    stop, passes, summaries = threading.Event(), queue.Queue(), []
    loop = threading.Thread(
        target=lambda: summaries.append(
            run_continuous(spark, fresh_stack, options, stop=stop, min_interval=0.1, on_pass=passes.put)
        )
    )
    loop.start()
    try:
        first = passes.get(timeout=PATIENCE)
        assert first["flipped"] and first["mode"] == "full" and first["items_read"] == 48

        # Published after the loop started: three users browse fresh x then y.
        browse_fresh_pair(fresh_stack, ["user-1", "user-2", "user-3"], "fresh-x", "fresh-y")
        reader = SimilarityReader(fresh_stack)

        def lists_y():
            row = reader.neighbours("fresh-x")
            return row is not None and "fresh-y" in dict(row.neighbours)

        wait_until(lists_y, "fresh-x to list fresh-y")
        second = passes.get(timeout=PATIENCE)
        assert second["flipped"] and second["mode"] == "incremental"
        # Warm: only the two marked items were read, and no previous row (the loop holds them all).
        assert second["items_read"] == 2 and second["items"] == 50
        assert second["similarity_rows_read"] == 0

        # A second change on an existing item, merged against rows the loop cached.
        changed = {user: {"sku-013": scores[user].get("sku-013", 0.0) + 6.0} for user in list(scores)[:40]}
        changed_norms = {u: {**scores[u], **changed[u]} for u in changed}
        write_scores(fresh_stack, {**scores, **changed_norms}, mark_dirty=False)
        mark_dirty(fresh_stack, ["sku-013"])
        third = passes.get(timeout=PATIENCE)
        assert third["flipped"] and third["mode"] == "incremental" and third["items_read"] == 1
        assert third["similarity_rows_read"] == 0 and third["base_generation"] == second["generation"]
    finally:
        stop.set()
        loop.join(PATIENCE)
    assert not loop.is_alive()
    summary = summaries[0]
    assert summary.passes == summary.published == 3 and summary.last_generation == third["generation"]
    assert Generations(fresh_stack).current() == third["generation"]

    # What the warm loop published equals a cold full pass over the same state.
    full = run_pass(spark, fresh_stack, dataclasses.replace(options, full=True))
    assert visible(fresh_stack, third["generation"]) == visible(fresh_stack, full["generation"])
    assert (read_items(fresh_stack).dirty_micros == 0).all()


def test_warm_state_is_dropped_when_another_writer_moved_the_pointer(spark, fresh_stack):
    scores = clustered_scores(22, users=200, items=24, clusters=3)
    write_scores(fresh_stack, scores)
    options = PassOptions(params=dimsum.DimsumParams(threshold=0.0, top_k=5), partitions=2)
    warm = WarmState()
    first = run_pass(spark, fresh_stack, options, warm=warm)
    assert warm.generation == first["generation"] and len(warm.rows) == 24

    other = run_pass(spark, fresh_stack, dataclasses.replace(options, full=True))  # not this loop's
    mark_dirty(fresh_stack, ["sku-002"])
    again = run_pass(spark, fresh_stack, options, warm=warm)
    assert again["base_generation"] == other["generation"] and again["items_read"] == 24  # read cold
    assert warm.generation == again["generation"]
    assert visible(fresh_stack, again["generation"]) == visible(fresh_stack, other["generation"])


def test_sigterm_stops_the_command_after_the_pass_in_flight_on_a_complete_generation(fresh_stack):
    write_scores(fresh_stack, clustered_scores(23, users=200, items=24, clusters=3))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    command = [sys.executable, "-m", "batch", "refresh", "--continuous", "--min-interval", "0.5s"]
    command += ["--threshold", "0", "--top-k", "5", "--master", "local[1]", *connection_flags(fresh_stack)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        banner = process.stdout.readline()
        assert banner.startswith("continuous refresh:"), banner
        first = process.stdout.readline()
        assert first.startswith("generation "), first
        mark_dirty(fresh_stack, ["sku-001"])  # so a second pass starts; stop it in flight or while waiting
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out.strip().splitlines()[-1].startswith("continuous refresh stopped after"), out
    gens = Generations(fresh_stack)
    passes = gens.passes()
    assert passes[gens.current()]["state"] == "complete"
    assert not [g for g, stats in passes.items() if stats["state"] == "writing"]
