"""``python -m benchmarks.cost --measure``: the cost model's inputs, measured on the emulators.

See :mod:`benchmarks.cost` for what is measured and how it is used.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from benchmarks.cost import Measured
from benchmarks.stream_fold import Pipeline, publish
from schemas import parse_event
from serving.app import STORE
from streamsim.app import localstack
from streamsim.runtime import provision
from streamsim.runtime.bigtable import filters, open_tables
from streamsim.runtime.seeding import write_scores
from streamsim.runtime.settings import Settings
from streamsim.sources.synthetic import ClickstreamShape, clickstream
from tests.serving.live import serve

LOCAL_CORES = 2
MAX_FOLD_ROUNDS = 5


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_fold(settings: Settings, messages: list[bytes]) -> dict:
    publish(settings, messages)
    before, counts, rounds = children_cpu(), collections.Counter(), 0
    # On a loaded machine the emulator can answer empty pulls for seconds with a backlog
    # left: run again until every event is folded (each start-up counts in the CPU).
    while counts["accepted"] + counts["duplicates"] < len(messages) and rounds < MAX_FOLD_ROUNDS:
        pipeline = Pipeline(settings, "--idle-exit", "20")
        if pipeline.wait() != 0:
            raise RuntimeError("the fold pipeline failed")
        counts.update(pipeline.counts)
        rounds += 1
    cpu, events = children_cpu() - before, counts["accepted"] + counts["duplicates"]
    print(f"fold: {events:,} events in {rounds} run(s), {cpu:.1f} CPU s; tallies {dict(counts)}", flush=True)
    return {
        "fold_rows_read": counts["rows_read"] / events,
        "fold_rows_written": counts["rows_written"] / events,
        "fold_rows_checked": counts["rows_checked"] / events,
        # Includes the pipeline's start-up and its idle wait: an upper bound per event.
        "fold_cpu_seconds": cpu / events,
        "message_bytes": statistics.fmean(len(m) for m in messages),
    }


def process_tree(pid: int) -> dict[int, tuple[float, float]]:
    """pid -> (resident MiB, CPU seconds so far) of a process and all its descendants
    (the refresh's driver, its JVM, the Python workers)."""
    found, todo, tick = {}, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            for task in os.listdir(f"/proc/{current}/task"):
                todo += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
        except OSError:
            continue
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        found[current] = (rss / 1024, (int(fields[11]) + int(fields[12])) / tick)
    return found


def full_pass(settings: Settings) -> tuple[float, int, int, float]:
    """(CPU seconds, pair rows, scan bytes, peak MiB) of one ``streamsim refresh --full`` in a
    process of its own; CPU and memory summed over its process tree, sampled twice a second
    (CPU, not wall time: the machine is shared)."""
    command = [sys.executable, "-m", "streamsim", "refresh", "--full", "--json", "--master", f"local[{LOCAL_CORES}]"]
    process = subprocess.Popen(
        [*command, *settings.to_argv()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak, cpu, outputs = 0.0, {}, []
    reader = threading.Thread(target=lambda: outputs.extend(process.communicate()), daemon=True)
    reader.start()
    while reader.is_alive():
        tree = process_tree(process.pid)
        peak = max(peak, sum(rss for rss, _ in tree.values()))
        cpu.update({p: max(c, cpu.get(p, 0.0)) for p, (_, c) in tree.items()})
        reader.join(0.5)
    if process.returncode != 0:
        raise RuntimeError(f"the refresh failed: {outputs[1][-2000:]}")
    stats = json.loads(outputs[0].strip().splitlines()[-1])
    users = open_tables(settings).users
    pairs = sum(1 for _ in users.read_rows(row_filter=filters.newest()))
    print(
        f"refresh: {pairs:,} pair rows, {stats['items']:,} items, full pass {stats['wall_seconds']:.1f} s wall, "
        f"{sum(cpu.values()):.1f} CPU s (whole process tree), peak {peak:,.0f} MiB",
        flush=True,
    )
    return sum(cpu.values()), pairs, users.bytes_read, peak


def seeded_scores(pairs: int, items: int, seed: int = 3) -> dict:
    """About ``pairs`` extra pairs, ten per user, items drawn with a long tail."""
    rng = np.random.default_rng(seed)
    popularity = 1 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    scores = {}
    for u in range(pairs // 10):
        chosen = np.unique(rng.choice(items, size=10, p=popularity))
        scores[f"seeded-{u}"] = {f"seeded-item-{i}": float(rng.choice([0.5, 2.0, 6.0])) for i in chosen.tolist()}
    return scores


def measure_refresh(settings: Settings, extra_pairs: int) -> dict:
    """A full pass on the fold's state and on it plus ``extra_pairs``: fixed cost and cost per pair."""
    small_cpu, small_pairs, _, small_peak = full_pass(settings)
    write_scores(settings, seeded_scores(extra_pairs, items=5_000))
    large_cpu, large_pairs, scanned, large_peak = full_pass(settings)
    added = large_pairs - small_pairs
    per_pair = max(0.0, large_cpu - small_cpu) / added
    print(f"refresh memory: {(large_peak - small_peak) * 2**20 / added:,.0f} bytes per added pair row", flush=True)
    return {
        # CPU that does not grow with the state (JVM and Spark start-up, job overhead) over the
        # local[2] session's cores: the wall time it adds.
        "pass_fixed_seconds": max(0.0, small_cpu - small_pairs * per_pair) / LOCAL_CORES,
        "pass_vcpu_seconds_per_pair": per_pair,
        "pass_scan_bytes_per_pair": scanned / large_pairs,
        "pass_memory_bytes_per_pair": (large_peak - small_peak) * 2**20 / added,
        "pass_fixed_memory_mib": small_peak,
    }


def measure_serving(settings: Settings, histories: dict[str, int], requests: int) -> dict:
    """Per history item: rows read warm (history rows), similarity rows read cold; CPU per request."""
    server = serve(settings)
    try:
        deadline = time.monotonic() + 60
        while server.get("/readyz")[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("serving did not become ready")
            time.sleep(0.2)
        store = server.app[STORE]
        asked = random.Random(5).sample(sorted(histories), min(requests, len(histories)))
        length = statistics.fmean(histories[u] for u in asked)

        def rounds() -> tuple[float, float]:
            rows, cpu, own = store.rows_read, time.process_time(), time.thread_time()
            for user in asked:
                status, _ = server.get(f"/recommendations?user={quote(user)}&n=10")
                if status != 200:
                    raise RuntimeError(f"/recommendations answered {status}")
            # The server's CPU: this process's, less this (the client's) thread.
            served = (time.process_time() - cpu) - (time.thread_time() - own)
            return (store.rows_read - rows) / len(asked), served / len(asked)

        cold_rows, _ = rounds()  # the similarity cache fills
        warm_rows, warm_cpu = rounds()  # only history rows (and the pointer polls) are read
    finally:
        server.stop()
    print(
        f"serving: {len(asked):,} user queries ({length:.1f} items each), rows/request cold {cold_rows:.1f}, "
        f"warm {warm_rows:.1f}, {warm_cpu * 1e6:.0f} us CPU/request",
        flush=True,
    )
    return {
        "serve_rows_per_history_item": warm_rows / length,
        "serve_similarity_rows_per_history_item": (cold_rows - warm_rows) / length,
        "serve_cpu_seconds": warm_cpu,
    }


def measure(*, events: int, requests: int, extra_pairs: int) -> Measured:
    state_dir = Path(tempfile.mkdtemp(prefix="cost-bench-"))
    base = Settings(project="streamsim-bench", instance="bench", prefix="c-", state_dir=state_dir)
    stack = localstack.up(base, bigtable_port=localstack.free_port(), pubsub_port=localstack.free_port())
    settings = dataclasses.replace(base, bigtable_host=stack["bigtable"]["host"], pubsub_host=stack["pubsub"]["host"])
    try:
        provision.provision(settings)
        # Many users, so a batch of 1,000 events rarely repeats a pair (as on a large shop).
        shape = ClickstreamShape(users=events * 2, items=max(1_000, events // 10), events=events, malformed_rate=0.0)
        messages = list(clickstream(shape))
        held: dict[str, set] = {}
        for message in messages:
            event = parse_event(message)
            held.setdefault(event.user, set()).add(event.item)
        inputs = {**measure_fold(settings, messages), **measure_refresh(settings, extra_pairs)}
        inputs.update(measure_serving(settings, {u: len(items) for u, items in held.items()}, requests))
    finally:
        localstack.down(base)
    return Measured(**inputs)
