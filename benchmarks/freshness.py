"""Freshness end to end: how long until a new co-occurrence is served, under a steady stream.

    .venv/bin/python -m benchmarks.freshness [--rate 500] [--probes 20] [--probe-every 4]
        [--min-interval 1s] [--data PATH | --synthetic]

(from the repository root). Starts its own Bigtable and Pub/Sub emulators and seeds
Tmall-sized state as the stream leaves it (the Tmall file when present, else the seeded
synthetic set of ``benchmarks.dimsum`` at the same size), then runs the whole loop as
child processes: the stream (``python -m streaming``), the continuous refresh
(``python -m batch refresh --continuous --json``) and serving (``python -m serving``).
A thread publishes a steady ``--rate`` browse events/s (in batches every 0.1 s) on the seeded users and items
(items drawn by popularity). Once the first two passes are published, every
``--probe-every`` seconds a probe publishes three fresh users who browse a fresh item x
then a fresh item y, and polls ``GET /items/x/similar`` until y is listed: the time from
publish to listed, and (to split it) the time until y's stats are folded. Prints p50/p99
over the probes, the passes (mode, seconds, dirty items) and the 1-minute load average;
the machine is shared, so the load goes with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from batch.source import read_some_items
from benchmarks.dimsum import DEFAULT_TMALL, load_tmall, synthetic
from benchmarks.refresh_modes import seed_state
from schemas import Event, EventType
from streaming.publish import EventPublisher
from streamsim.app import localstack
from streamsim.runtime import provision
from streamsim.runtime.settings import Settings

#: Probes that have not seen y after this long count as this long (and are reported).
PROBE_GIVE_UP_SECONDS = 300


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Background(threading.Thread):
    """A steady ``rate`` events/s of browse events on seeded users and items, a tenth each 0.1 s."""

    def __init__(self, settings: Settings, users: list[str], items: list[str], weights: np.ndarray, rate: int):
        super().__init__(daemon=True)
        self.settings, self.users, self.items, self.rate = settings, users, items, rate
        self.cdf = np.cumsum(weights / weights.sum())
        self.stop = threading.Event()
        self.sent = 0
        self.behind = 0.0

    def run(self):
        rng = np.random.default_rng(3)
        per_tick = max(1, self.rate // 10)
        started = time.monotonic()
        with EventPublisher(self.settings) as out:
            while not self.stop.is_set():
                now_ms = int(time.time() * 1000)
                users = rng.integers(0, len(self.users), per_tick)
                items = np.searchsorted(self.cdf, rng.random(per_tick), side="right").clip(0, len(self.items) - 1)
                events = [
                    Event(f"bg-{self.sent + k}", self.users[u], self.items[i], EventType.BROWSE, now_ms)
                    for k, (u, i) in enumerate(zip(users.tolist(), items.tolist()))
                ]
                out.publish(events)
                self.sent += len(events)
                due = started + self.sent / self.rate
                self.behind = max(self.behind, time.monotonic() - due)
                self.stop.wait(max(0.0, due - time.monotonic()))


class Refresh:
    """The continuous refresh as a child; collects its per-pass JSON lines."""

    def __init__(self, settings: Settings, min_interval: str, log_path: Path):
        command = [sys.executable, "-m", "batch", "refresh", "--continuous", "--json"]
        command += ["--min-interval", min_interval, *settings.to_argv()]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        self.passes: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            if line.startswith("{"):
                self.passes.append(json.loads(line))


def similar_lists(port: int, x: str, y: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/items/{x}/similar?n=10", timeout=2) as answer:
            body = json.loads(answer.read())
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return False
    return any(entry.get("item") == y and entry.get("source") != "popular" for entry in body.get("items", []))


def folded(settings: Settings, item: str) -> bool:
    """Whether the stream has folded an event on ``item`` (its stats row has a norm)."""
    return bool(read_some_items(settings, [item]))


def probe(settings: Settings, port: int, k: int, results: list) -> None:
    """Publish x-then-y for three fresh users; record (k, seconds to folded, seconds to listed, listed)."""
    x, y = f"fresh-x-{k}", f"fresh-y-{k}"
    now_ms = int(time.time() * 1000)
    events = []
    for j in range(3):
        user = f"fresh-u-{k}-{j}"
        events += [
            Event(f"p{k}-{j}-x", user, x, EventType.BROWSE, now_ms),
            Event(f"p{k}-{j}-y", user, y, EventType.BROWSE, now_ms + 1),
        ]
    published = time.monotonic()
    with EventPublisher(settings) as out:
        out.publish(events)
    folded_after = None
    while time.monotonic() - published < PROBE_GIVE_UP_SECONDS:
        if folded_after is None and folded(settings, y):
            folded_after = time.monotonic() - published
        if similar_lists(port, x, y):
            results.append((k, folded_after, time.monotonic() - published, True))
            return
        time.sleep(0.2)
    results.append((k, folded_after, float(PROBE_GIVE_UP_SECONDS), False))


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    wanted = ("streamsim_serving_generation_age_seconds", "streamsim_serving_freshness_lag_seconds")
    return {
        name: float(line.split()[-1]) for line in text.splitlines() for name in wanted if line.startswith(name + " ")
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.freshness", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500, help="background events/s")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--probe-every", type=float, default=4.0, help="seconds between probe starts")
    parser.add_argument("--min-interval", default="1s", help="the refresh's --min-interval")
    parser.add_argument("--data", type=Path, default=DEFAULT_TMALL)
    parser.add_argument("--synthetic", action="store_true", help="synthetic state even if the Tmall file is there")
    args = parser.parse_args(argv)

    if args.synthetic or not args.data.is_file():
        name, (users, item_ids, matrix) = "synthetic (Tmall-sized)", synthetic(0.032, n_items=31_000)
    else:
        name, (users, item_ids, matrix) = "Tmall", load_tmall(args.data)
    print(f"({name}: {len(users):,} users, {len(item_ids):,} items, {matrix.nnz:,} pairs)", flush=True)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    def interrupt(signum, frame):
        raise KeyboardInterrupt  # so the children and emulators are stopped on the way out

    signal.signal(signal.SIGTERM, interrupt)
    log_dir = Path(tempfile.mkdtemp(prefix="freshness-"))
    print(f"(children's logs in {log_dir})", flush=True)
    emulators = [localstack.start_emulator(kind, localstack.free_port(), log_dir) for kind in ("bigtable", "pubsub")]
    children: list[subprocess.Popen] = []
    background = None
    try:
        settings = Settings(
            project="freshness-bench",  # Pub/Sub wants at least 6 characters
            instance="bench",
            bigtable_host=emulators[0].host,
            pubsub_host=emulators[1].host,
            prefix="f-",
            state_dir=log_dir,
        )
        provision.provision(settings)
        seed_state(settings, users, item_ids, matrix)
        port = localstack.free_port()
        argv_conn = settings.to_argv()
        stream_cmd = [sys.executable, "-m", "streaming", "--no-supervise", *argv_conn]
        serve_cmd = [sys.executable, "-m", "serving", "--port", str(port), "--poll-seconds", "0.5", *argv_conn]
        for child, command in (("stream", stream_cmd), ("serve", serve_cmd)):
            with open(log_dir / f"{child}.log", "wb") as log:
                children.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        refresh = Refresh(settings, args.min_interval, log_dir / "refresh.log")
        children.append(refresh.process)
        popularity = np.diff(matrix.tocsc().indptr).astype(np.float64)
        background = Background(settings, users, item_ids, popularity, args.rate)
        background.start()

        started = time.monotonic()
        while len(refresh.passes) < 2:
            if any(child.poll() is not None for child in children):
                sys.exit(f"benchmarks.freshness: a child exited during warm-up; see the logs in {log_dir}")
            time.sleep(1)
        print(f"(warm-up: {len(refresh.passes)} passes in {time.monotonic() - started:.0f} s)", flush=True)
        first_probe_pass = len(refresh.passes)
        load_start = os.getloadavg()[0]
        results: list = []
        threads = []
        for k in range(args.probes):
            thread = threading.Thread(target=probe, args=(settings, port, k, results), daemon=True)
            thread.start()
            threads.append(thread)
            time.sleep(args.probe_every)
        for thread in threads:
            thread.join(PROBE_GIVE_UP_SECONDS + 10)
        load_end = os.getloadavg()[0]
        metrics = scrape(port)

        seconds = sorted(r[2] for r in results)
        to_fold = sorted(r[1] for r in results if r[1] is not None)
        missed = [r[0] for r in results if not r[3]]
        passes = refresh.passes[first_probe_pass:]
        print(
            json.dumps(
                {
                    "data": name,
                    "rate": args.rate,
                    "background_sent": background.sent,
                    "background_max_behind_s": round(background.behind, 2),
                    "probes": len(results),
                    "missed": missed,
                    "freshness_s": [round(s, 2) for s in seconds],
                    "p50_s": round(percentile(seconds, 50), 2),
                    "p99_s": round(percentile(seconds, 99), 2),
                    # Of which: publish -> y's stats folded (the stream's lag, backlog included).
                    "folded_p50_s": round(percentile(to_fold, 50), 2),
                    "folded_p99_s": round(percentile(to_fold, 99), 2),
                    "passes": [
                        {
                            "mode": p["mode"],
                            "seconds": p["wall_seconds"],
                            "dirty": p["dirty_items"],
                            "recomputed": p["items_recomputed"],
                            "items_read": p.get("items_read"),
                        }
                        for p in passes
                    ],
                    "metrics_at_end": metrics,
                    "load_1min": [round(load_start, 2), round(load_end, 2)],
                }
            ),
            flush=True,
        )
        pass_seconds = [p["wall_seconds"] for p in passes]
        print(
            f"freshness over {len(results)} probes at {args.rate} events/s ({name}): "
            f"p50 {percentile(seconds, 50):.1f} s, "
            f"p99 {percentile(seconds, 99):.1f} s (target p99 <= 60 s, moonshot 15 s), of which folding p50 "
            f"{percentile(to_fold, 50):.1f} s, p99 {percentile(to_fold, 99):.1f} s; {len(passes)} passes, "
            f"median {statistics.median(pass_seconds) if pass_seconds else float('nan'):.1f} s; "
            f"load {load_start:.1f} -> {load_end:.1f}",
            flush=True,
        )
    finally:
        if background is not None:
            background.stop.set()
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
        for emulator in emulators:
            emulator.stop()


if __name__ == "__main__":
    main()
