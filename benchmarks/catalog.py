"""The catalogue at shop scale: a worker's start-up, the follower's rate, a hide behind a big change.

    .venv/bin/python -m benchmarks.catalog [--items 1000000] [--behind 200000] [--poll-seconds 1]

(from the repository root). Starts its own Bigtable emulator and writes ``--items``
catalogue rows as ``streamsim catalog`` does (batches of 1,000: the items rows, then
one change-log row per batch), and a generation. Then, in one run:

1. reading: the whole catalogue as a start-up load reads it (items rows/s), and the
   same changes as the follower reads them from the change log (changes/s); the ratio
   is what following costs against reloading;
2. start-up: ``python -m serving --workers 1`` until ``/readyz`` answers 200, with the
   catalogue and with an empty one (the baseline: process, imports, channel, generation
   in the same run); a restarted worker listens only then;
3. a hide behind a big change: on that running server, ``--behind`` changes written as
   fast as the writer goes, then a hide of the most popular item; the seconds from the
   hide's write until ``GET /recommendations?user=nobody`` no longer returns it, against
   ``--poll-seconds``.

The machine may be shared: the 1-minute load average is printed with each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from schemas.events import CatalogUpdate
from serving.catalog import Catalogue, CatalogueFollower, CatalogueRead
from serving.store import BackendUnavailable, BigtableStore
from streamsim.app import localstack
from streamsim.runtime import provision
from streamsim.runtime.bigtable import open_tables
from streamsim.runtime.catalog import write_catalog
from streamsim.runtime.seeding import write_generation
from streamsim.runtime.settings import Settings

GENERATION = 1_700_000_000_000
BATCH = 1000


def load() -> float:
    return round(os.getloadavg()[0], 2)


def write_items(settings: Settings, count: int, ts_ms: int, prefix: str = "i") -> float:
    """Seconds to write ``count`` catalogue changes in batches, as ``streamsim catalog`` does."""
    tables = open_tables(settings)
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        end = min(count, start + BATCH)
        write_catalog(tables, [CatalogUpdate(f"{prefix}{k}", f"c{k % 500}", True, ts_ms) for k in range(start, end)])
    return time.perf_counter() - started


async def read_rates(settings: Settings) -> tuple[float, float, int]:
    """(seconds of a full load, seconds of following the whole log, changes followed)."""
    store = BigtableStore(settings)
    try:
        started = time.perf_counter()
        read = CatalogueRead(store)
        while True:
            try:
                await read.run()  # resumes where a failed page left it, as a server's load does
                break
            except BackendUnavailable as exc:
                print(f"(a page of the load failed, read again: {exc})", flush=True)
        loading = time.perf_counter() - started
        follower = CatalogueFollower(store, Catalogue(), 1.0, 600.0)
        follower.catalogue.loaded = True
        started = time.perf_counter()
        applied = await follower.follow()
        following = time.perf_counter() - started
        assert applied >= len(read.fresh), (applied, len(read.fresh))
        return loading, following, applied
    finally:
        await store.close()


def get(port: int, path: str) -> tuple[int, dict | None]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def start_server(settings: Settings, poll_seconds: float, log_dir: Path) -> tuple[subprocess.Popen, int, float]:
    """A ``python -m serving`` process; (process, port, seconds until /readyz answered 200)."""
    port = localstack.free_port()
    command = [
        sys.executable, "-m", "serving", "--port", str(port), "--workers", "1", "--poll-seconds", str(poll_seconds),
        *settings.to_argv(),
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(log_dir / f"serve-{port}.log", "w"))
    while get(port, "/readyz")[0] != 200:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}: see {log_dir}")
        time.sleep(0.05)
    return process, port, time.perf_counter() - started


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(60)


def top_item(port: int) -> str | None:
    answer = get(port, "/recommendations?user=nobody&n=1")[1]
    return answer["items"][0]["item"] if answer and answer["items"] else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.catalog", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--behind", type=int, default=200_000, help="changes written just before the hide")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="catalog-bench-"))
    emulator = localstack.start_emulator("bigtable", localstack.free_port(), log_dir)
    try:
        full = Settings(project="bench", instance="bench", bigtable_host=emulator.host, prefix="c-", state_dir=log_dir)
        empty = Settings(project="bench", instance="bench", bigtable_host=emulator.host, prefix="e-", state_dir=log_dir)
        for settings in (full, empty):
            provision.provision_bigtable(settings)
            write_generation(settings, GENERATION, {}, popular=[("top", 10.0), ("next", 5.0)])
        write_catalog(open_tables(full), [CatalogUpdate("top", "c0", True, 1_000)])
        seconds = write_items(full, args.items, 2_000)
        print(
            f"wrote {args.items:,} catalogue changes in {seconds:.1f} s ({args.items / seconds:,.0f}/s), load {load()}"
        )

        loading, following, applied = asyncio.run(read_rates(full))
        print(
            f"reading {args.items:,} items: a full load {loading:.1f} s ({args.items / loading:,.0f} rows/s); "
            f"following the log {following:.1f} s ({applied / following:,.0f} changes/s); "
            f"follow / load = {following / loading:.3f}, load {load()}"
        )

        baseline_process, _, baseline = start_server(empty, args.poll_seconds, log_dir)
        stop(baseline_process)
        process, port, startup = start_server(full, args.poll_seconds, log_dir)
        print(
            f"start-up until ready: empty catalogue {baseline:.1f} s, {args.items:,} items {startup:.1f} s "
            f"(ratio {startup / baseline:.1f}), load {load()}"
        )
        try:
            assert top_item(port) == "top"
            seconds = write_items(full, args.behind, 3_000, prefix="b")
            write_catalog(open_tables(full), [CatalogUpdate("top", None, False, int(time.time() * 1000))])
            hidden_from = time.perf_counter()
            while top_item(port) == "top":
                time.sleep(0.02)
            lag = time.perf_counter() - hidden_from
            print(
                f"a hide written after {args.behind:,} changes ({seconds:.1f} s of writing): gone from answers "
                f"{lag:.2f} s after its write (poll interval {args.poll_seconds} s), load {load()}"
            )
        finally:
            stop(process)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
