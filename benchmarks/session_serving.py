"""Session-kNN served live: throughput and latency, and how soon a new session is a neighbour.

    .venv/bin/python -m benchmarks.session_serving [--seconds 5] [--rounds 2] [--rate 500] [--probes 10]

(from the repository root). Starts its own Bigtable and Pub/Sub emulators, seeds a generation
(5,000 items, top-50 lists, as ``benchmarks.serving``) and a session index of 20,000 sessions of
2-8 clicks written by the fold's own writer, then measures in one run, servers pinned to CPU 0
and wrk + the emulators on CPU 1 (``benchmarks.serving``'s harness):

- a bare aiohttp JSON handler (the baseline);
- the same 4-click session queries (``browsed=a,b,c,d``) scored item-item (today's server);
- and by V-SKNN over the session index (``--session-method v-sknn``: k = 100, m = 1,000).

Then freshness: the stream (``python -m streaming``) folds a steady ``--rate`` events/s of
sessions published on Pub/Sub, and each probe publishes a new session (a seeded item, then a
fresh item) and polls a session query on the seeded item until the fresh item is voted for:
the time from publishing to being used as a neighbour. The machine is shared: each figure
carries the load average it ran under.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson

from benchmarks.serving import (
    BARE_SERVER,
    GENERATION,
    LOAD_CPU,
    SERVER_CPU,
    load_average,
    make_catalogue,
    pinned,
    stop,
    wait_http,
    wrk,
)
from schemas import Event, EventType
from streaming.publish import EventPublisher
from streaming.store import FoldStore
from streamsim.app import localstack
from streamsim.runtime.provision import provision
from streamsim.runtime.seeding import write_generation
from streamsim.runtime.settings import Settings

SESSIONS = 20_000
QUERY_CLICKS = 4
PROBE_GIVE_UP_SECONDS = 120


def session_index(items: list[str], count: int, seed: int = 13) -> list[Event]:
    """``count`` sessions of 2-8 clicks, items drawn with a popularity skew, a second apart."""
    rng = random.Random(seed)
    weights = [1.0 / (k + 10) for k in range(len(items))]
    events, clock = [], GENERATION - count * 10_000
    for s in range(count):
        for item in rng.choices(items, weights, k=rng.randint(2, 8)):
            clock += 1000
            events.append(Event(f"seed-{len(events)}", f"shopper{s}", item, EventType.BROWSE, clock, f"visit{s}"))
    return events


class Background(threading.Thread):
    """A steady ``rate`` events/s of new sessions (5 clicks each) on Pub/Sub, a tenth each 0.1 s."""

    def __init__(self, settings: Settings, items: list[str], rate: int):
        super().__init__(daemon=True)
        self.settings, self.items, self.rate = settings, items, rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self):
        rng = random.Random(17)
        started = time.monotonic()
        with EventPublisher(self.settings) as out:
            while not self.stop.is_set():
                now = int(time.time() * 1000)
                batch = [
                    Event(
                        f"bg-{self.sent + k}",
                        f"bg-user{(self.sent + k) // 5}",
                        rng.choice(self.items),
                        EventType.BROWSE,
                        now,
                        f"bg-visit{(self.sent + k) // 5}",
                    )
                    for k in range(max(1, self.rate // 10))
                ]
                out.publish(batch)
                self.sent += len(batch)
                self.stop.wait(max(0.0, started + self.sent / self.rate - time.monotonic()))


def voted(port: int, item: str, fresh: str) -> bool:
    # Every item the neighbours vote for (a fresh item voted by one neighbour ranks low).
    url = f"http://127.0.0.1:{port}/recommendations?browsed={item}&n=1000&allow_repeats=true"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            body = orjson.loads(answer.read())
    except OSError:
        return False
    return any(e["item"] == fresh and e["source"] == "sessions" for e in body.get("items", []))


def probe(settings: Settings, port: int, item: str, k: int) -> float:
    """Publish a session (item, then a fresh item); seconds until a query on item votes for it."""
    fresh, now = f"fresh-{k}", int(time.time() * 1000)
    events = [
        Event(f"probe-{k}-0", f"probe-user{k}", item, EventType.BROWSE, now, f"probe-visit{k}"),
        Event(f"probe-{k}-1", f"probe-user{k}", fresh, EventType.BROWSE, now + 1, f"probe-visit{k}"),
    ]
    published = time.monotonic()
    with EventPublisher(settings) as out:
        out.publish(events)
    while time.monotonic() - published < PROBE_GIVE_UP_SECONDS:
        if voted(port, item, fresh):
            return time.monotonic() - published
        time.sleep(0.05)
    return float("inf")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.session_serving", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="0: the freshness probes only")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=500, help="background events/s during the freshness probes")
    parser.add_argument("--probes", type=int, default=10)
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            print(f"benchmarks.session_serving needs {tool} (apt-get install wrk util-linux)", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="session-bench-"))
    emulators = [localstack.start_emulator(kind, localstack.free_port(), workdir) for kind in ("bigtable", "pubsub")]
    processes: list[subprocess.Popen] = []
    background = None
    try:
        for emulator in emulators:
            subprocess.run(["taskset", "-pc", LOAD_CPU, str(emulator.pid)], check=True, capture_output=True)
        settings = Settings(
            project="session-bench",
            instance="bench",
            bigtable_host=emulators[0].host,
            pubsub_host=emulators[1].host,
            prefix="sb-",
            state_dir=workdir,
        )
        os.environ.update(settings.emulator_env())
        provision(settings)
        catalogue = make_catalogue(5000, 10, k=50, history=20)
        write_generation(
            settings,
            GENERATION,
            catalogue.neighbours,
            popular=[(item, 1000.0 - k) for k, item in enumerate(catalogue.items[:100])],
        )
        index = session_index(catalogue.items, SESSIONS)
        store = FoldStore(settings)
        for offset in range(0, len(index), 2000):
            store.append_sessions(index[offset : offset + 2000])
        print(f"seeded {len(catalogue.items):,} items (top-50 lists) and {SESSIONS:,} sessions ({len(index):,} clicks)")

        rng = random.Random(11)
        by_session: dict[str, list[str]] = {}
        for event in index:
            by_session.setdefault(event.session, []).append(event.item)
        picked = rng.sample(sorted(by_session), 500)
        paths = [
            "/recommendations?browsed=" + ",".join((by_session[s] * QUERY_CLICKS)[:QUERY_CLICKS]) + "&n=10"
            for s in picked
        ]
        ports = {name: localstack.free_port() for name in ("bare", "item-item", "v-sknn")}
        common = ["--workers", "1", *settings.to_argv()]
        servers = {
            "bare": pinned(SERVER_CPU, [sys.executable, "-c", BARE_SERVER, str(ports["bare"])]),
            "item-item": pinned(
                SERVER_CPU, [sys.executable, "-m", "serving", "--port", str(ports["item-item"]), *common]
            ),
            "v-sknn": pinned(
                SERVER_CPU,
                [
                    sys.executable,
                    "-m",
                    "serving",
                    "--port",
                    str(ports["v-sknn"]),
                    "--session-method",
                    "v-sknn",
                    *common,
                ],
            ),
        }
        processes += servers.values()
        wait_http(f"http://127.0.0.1:{ports['bare']}/recommendations")
        for name in ("item-item", "v-sknn"):
            wait_http(f"http://127.0.0.1:{ports[name]}/readyz")
            wrk(ports[name], paths, 3, args.connections, workdir)  # warm the caches
        rows = {"bare aiohttp handler": [], "session query, item-item": [], "session query, v-sknn": []}
        for _ in range(args.rounds):
            load = load_average()
            for runs, name in zip(rows.values(), ("bare", "item-item", "v-sknn")):
                targets = ["/recommendations"] if name == "bare" else paths
                result = wrk(ports[name], targets, args.seconds, args.connections, workdir, servers[name].pid)
                runs.append({**result, "load": load})
        print(f"\none core (CPU 0), {args.connections} connections, {args.rounds} rounds of {args.seconds:g} s:")
        bare = statistics.median(r["rps"] for r in rows["bare aiohttp handler"]) if args.rounds else 0.0
        for label, runs in rows.items() if args.rounds else ():
            rps = statistics.median(r["rps"] for r in runs)
            print(
                f"  {label:<26} {rps:8.0f} req/s ({rps / bare:5.3f}x bare)   "
                f"p50 {statistics.median(r['p50_ms'] for r in runs):6.2f} ms   "
                f"p99 {statistics.median(r['p99_ms'] for r in runs):6.2f} ms   "
                f"cpu {statistics.median(r['cpu_us'] for r in runs):7.0f} us/req   "
                f"non-2xx {sum(r['non2xx'] for r in runs)}   load {','.join(r['load'] for r in runs)}"
            )

        with open(workdir / "stream.log", "wb") as log:
            stream = subprocess.Popen(
                [sys.executable, "-m", "streaming", "--no-supervise", *settings.to_argv()],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append(stream)
        background = Background(settings, catalogue.items, args.rate)
        background.start()
        time.sleep(10)  # the stream starts and catches up
        seconds = []
        for k in range(args.probes):
            seconds.append(probe(settings, ports["v-sknn"], rng.choice(catalogue.items[:50]), k))
            time.sleep(1)
        seconds.sort()
        print(
            f"\nnew session used as a neighbour, {args.probes} probes at {args.rate} events/s "
            f"(background sent {background.sent:,}; load {load_average()}): "
            f"p50 {statistics.median(seconds):.2f} s, max {seconds[-1]:.2f} s  (target <= 5 s)"
        )
        print("  all: " + ", ".join(f"{s:.2f}" for s in seconds))
    finally:
        if background is not None:
            background.stop.set()
        for process in processes:
            stop(process)
        for emulator in emulators:
            emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
