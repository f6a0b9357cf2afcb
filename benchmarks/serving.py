"""Serving benchmark: HTTP throughput and latency, and the kernel vs a dict scorer.

    .venv/bin/python -m benchmarks.serving [--seconds 5] [--rounds 3] [--connections 32]

(from the repository root). Starts its own Bigtable emulator on a free port, creates
the tables (``streamsim.runtime.provision``), seeds a catalogue with
``streamsim.runtime.seeding`` (top-50 neighbour lists), then measures in one run, with
every server pinned to CPU 0 (``taskset``) and wrk + the emulator on CPU 1:

- a bare aiohttp JSON handler (the baseline);
- session queries with 20 items (cache warmed first), unfiltered and with
  ``category=`` two of the catalogue's 50 categories (2% of items hidden in both);
- user queries (history reads coalesced across concurrent requests);
- session queries on a second server with merchandising rules loaded (``--rules``: five
  categories boosted, 100 items buried, at most 3 items per category), against the same
  queries without rules;
- the read rates the serving store reaches alone on the emulator, at the same
  concurrency and CPU: one history per ReadRows call (``read_history``) and 16
  per call (``read_histories``, what coalescing does);
- ``GET /trending`` over boards of 1,000 items per window (the three windows, a fifth of
  the requests with ``category=``): one range read per window per second, then the ranking;
- one worker vs ``--workers 2``: session queries with nothing pinned (wrk shares
  both cores with the workers);
- bought together (``GET /items/{item}/bought-together``, top-20 lists, cache warmed), a
  basket of 5 (``POST /bought-together``) and buy again (``GET /users/{user}/buy-again``:
  one purchase-index read and one statistics read per request, 20 purchases per user) and
  recently viewed (``GET /users/{user}/recent``: one ``recent`` row read, 20 clicks per user);
- the Cython kernel vs a seed-style pure-Python dict scorer on the same inputs.

Cases are interleaved over rounds and ratios are taken within a round
(against the baselines measured in it); each round prints the load average
(``/proc/loadavg``) it ran under. Needs ``wrk`` (Debian package) and ``taskset``.
Numbers vary with machine load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np

from schemas import Event, EventType, trending
from schemas.events import CatalogUpdate
from serving.scoring import NeighbourRow, Scorer
from streaming.store import FoldStore
from streamsim.app import localstack
from streamsim.runtime.bigtable import entry, open_tables, set_cell
from streamsim.runtime.catalog import write_catalog
from streamsim.runtime.provision import provision_bigtable
from streamsim.runtime.seeding import write_generation, write_purchases, write_scores
from streamsim.runtime.settings import Settings

GENERATION = 1_700_000_000_000
SERVER_CPU, LOAD_CPU = "0", "1"
CATEGORIES = 50
HIDDEN = 0.02
#: Histories per call in the batched-read baseline (what coalescing approaches).
BATCHED_READS = 16
#: The rules of the rules row: boosts by category and by item (the kernel's multiplier) and a cap.
RULES_CAP = 3

BARE_SERVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    async def handler(request):
        return web.json_response({"generation": 1, "items": []})
    app = web.Application()
    app.router.add_get("/recommendations", handler)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
    """
)

READ_RATE = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from streamsim.runtime.settings import Settings
    from serving.store import BigtableStore
    host, prefix, seconds, concurrency, users, batch = (
        sys.argv[1], sys.argv[2], float(sys.argv[3]), *map(int, sys.argv[4:7]))
    async def main():
        # A generous deadline: this measures the rate, and a shared machine has slow moments.
        store = BigtableStore(
            Settings(project="bench", instance="bench", bigtable_host=host, prefix=prefix), deadline_seconds=5.0)
        done = 0
        async def worker(k):
            nonlocal done
            while time.perf_counter() < stop:
                if batch == 1:
                    await store.read_history(f"user{(k * 7919 + done) % users}")
                else:
                    await store.read_histories(
                        [f"user{(k * 7919 + done + j) % users}" for j in range(batch)], 5.0)
                done += batch
        global stop
        stop = time.perf_counter() + 1.0
        await asyncio.gather(*[worker(k) for k in range(concurrency)])  # warm-up
        done = 0
        start, cpu = time.perf_counter(), time.process_time()
        stop = start + seconds
        await asyncio.gather(*[worker(k) for k in range(concurrency)])
        print(json.dumps({"reads_per_second": done / (time.perf_counter() - start),
                          "cpu_us": (time.process_time() - cpu) / done * 1e6}))
        await store.close()
    asyncio.run(main())
    """
)


@dataclasses.dataclass
class Catalogue:
    items: list[str]
    neighbours: dict[str, list[tuple[str, float]]]
    users: dict[str, dict[str, float]]


def make_catalogue(n_items: int, n_users: int, k: int, history: int, seed: int = 7) -> Catalogue:
    rng = random.Random(seed)
    items = [f"sku-{i:06d}" for i in range(n_items)]
    neighbours = {}
    for item in items:
        picked = rng.sample(items, k + 1)
        pairs = [(other, round(rng.random(), 6)) for other in picked if other != item][:k]
        neighbours[item] = sorted(pairs, key=lambda pair: -pair[1])
    users = {
        f"user{u}": {item: rng.choice([0.5, 2.0, 6.0, 2.5]) for item in rng.sample(items, history)}
        for u in range(n_users)
    }
    return Catalogue(items, neighbours, users)


def pinned(cpu: str, command: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", cpu, *command], **kwargs)


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    port: int,
    paths: list[str],
    seconds: float,
    connections: int,
    workdir: Path,
    pid: int | None = None,
    cpu: str | None = LOAD_CPU,
    bodies: list[str] | None = None,
) -> dict:
    """``bodies``: POST each body (JSON) to ``paths[0]`` in turn instead of GETs of ``paths``."""
    script = workdir / "paths.lua"
    if bodies is None:
        listing = ",\n".join(json.dumps(path) for path in paths)
        send = "wrk.format('GET', paths[i])"
    else:
        listing = ",\n".join(json.dumps(body) for body in bodies)
        headers = '{["Content-Type"] = "application/json"}'
        send = f"wrk.format('POST', {json.dumps(paths[0])}, {headers}, paths[i])"
    script.write_text(
        "local paths = {\n" + listing + "\n}\nlocal i = 0\n"
        f"request = function()\n  i = i % #paths + 1\n  return {send}\nend\n"
    )
    command = [
        *(["taskset", "-c", cpu] if cpu is not None else []),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else float("nan")
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*", output)

    def percentile(name: str) -> float:
        value, unit = re.search(rf"^\s+{name}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {
        "rps": rate,
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
        # CPU per request of the server process: what throughput on a
        # core of its own would be, whatever else the machine is doing.
        "cpu_us": cpu / requests * 1e6 if requests else float("nan"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def seed_boards(settings: Settings, items: list[str]) -> None:
    """Board cells for ``items`` in every window, stamped now (as item folds would write them)."""
    now_micros = int(time.time() * 1000) * 1000
    rows: dict[bytes, list] = {}
    for k, item in enumerate(items):
        for window in trending.WINDOWS.values():
            cell = trending.encode_entry(window.min_count + k % 50, float(k % 7))
            key = window.board_key(trending.board_shard(item))
            rows.setdefault(key, []).append(set_cell(window.board_family, item.encode(), cell, now_micros))
    open_tables(settings).meta.mutate(entry(key, cells) for key, cells in rows.items())


def load_average() -> str:
    """The 1-minute load average now (the machine is shared: each figure carries it)."""
    return Path("/proc/loadavg").read_text().split()[0]


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def seed_style_scorer(history: dict[str, float], neighbours: dict[str, list[tuple[str, float]]], n: int):
    """The seed's approach: a dict of sums, then a sort (here with exclusions, as required)."""
    scores: dict[str, float] = {}
    for item, weight in history.items():
        for other, similarity in neighbours.get(item, ()):
            if other in history:
                continue
            scores[other] = scores.get(other, 0.0) + weight * similarity
    return sorted(scores.items(), key=lambda pair: -pair[1])[:n]


def time_per_call(function, repeat: int) -> float:
    function()
    best = float("inf")
    for _ in range(5):  # best of 5 blocks: the machine is shared
        start = time.perf_counter()
        for _ in range(repeat):
            function()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def kernel_benchmark(catalogue: Catalogue) -> list[dict]:
    rng = random.Random(3)
    vocabulary = {item: k for k, item in enumerate(catalogue.items)}
    rows = []
    for size in (20, 100):
        history = {item: rng.choice([0.5, 2.0, 6.0]) for item in rng.sample(catalogue.items, size)}
        lists = [catalogue.neighbours[item] for item in history]
        items = np.array([vocabulary[o] for pairs in lists for o, _ in pairs], dtype=np.int32)
        scores = np.array([s for pairs in lists for _, s in pairs], dtype=np.float64)
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in lists])]).astype(np.int64)
        weights = np.array(list(history.values()))
        excluded = np.array([vocabulary[i] for i in history], dtype=np.int32)
        scorer = Scorer(len(vocabulary))
        top = scorer.top_n(items, scores, offsets, weights, 10, excluded=excluded)
        expected = seed_style_scorer(history, catalogue.neighbours, 10)
        assert [catalogue.items[i] for i in top.items] == [item for item, _ in expected], "kernel and dict disagree"
        python = time_per_call(lambda: seed_style_scorer(history, catalogue.neighbours, 10), 200)
        kernel = time_per_call(lambda: scorer.top_n(items, scores, offsets, weights, 10, excluded=excluded), 5000)
        # The serving path: one cached NeighbourRow per history item.
        lists_as_rows = [
            NeighbourRow(items[offsets[j] : offsets[j + 1]], scores[offsets[j] : offsets[j + 1]]) for j in range(size)
        ]
        assert scorer.top_n_rows(lists_as_rows, weights, 10, excluded=excluded).items.tolist() == top.items.tolist()
        by_rows = time_per_call(lambda: scorer.top_n_rows(lists_as_rows, weights, 10, excluded=excluded), 5000)
        rows.append(
            {
                "history": size,
                "python_us": python * 1e6,
                "kernel_us": kernel * 1e6,
                "rows_us": by_rows * 1e6,
                "speedup": python / kernel,
                "rows_speedup": python / by_rows,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all cases")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            print(f"benchmarks.serving needs {tool} (apt-get install wrk util-linux)", file=sys.stderr)
            return 2

    catalogue = make_catalogue(args.items, args.users, k=50, history=20)
    print("kernel vs seed-style dict scorer (top-50 lists, n=10, best of 5):")
    for row in kernel_benchmark(catalogue):
        print(
            f"  {row['history']:>3} items: python {row['python_us']:8.1f} us   kernel {row['kernel_us']:6.1f} us"
            f" ({row['speedup']:5.1f}x)   kernel on cached rows {row['rows_us']:6.1f} us"
            f" ({row['rows_speedup']:5.1f}x)"
            "  target >= 20x"
        )

    workdir = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    port = localstack.free_port()
    emulator = localstack.start_emulator("bigtable", port, workdir)
    processes = []
    try:
        # The emulator shares CPU 1 with wrk; the servers have CPU 0 to themselves.
        subprocess.run(["taskset", "-pc", LOAD_CPU, str(emulator.pid)], check=True, capture_output=True)
        settings = Settings(
            project="bench", instance="bench", bigtable_host=emulator.host, prefix="bench-", state_dir=workdir
        )
        os.environ.update(settings.emulator_env())
        provision_bigtable(settings)
        write_scores(settings, catalogue.users, mark_dirty=False)
        bought_rng = random.Random(13)
        write_generation(
            settings,
            GENERATION,
            catalogue.neighbours,
            popular=[(item, 1000.0 - k) for k, item in enumerate(catalogue.items[:100])],
            bought={item: pairs[:20] for item, pairs in catalogue.neighbours.items()},
            repurchase={
                item: (100, bought_rng.randrange(0, 60), bought_rng.randrange(1, 60) * 86_400_000)
                for item in catalogue.items
            },
        )
        now_ms = int(time.time() * 1000)
        write_purchases(
            settings,
            {
                user: [(item, now_ms - bought_rng.randrange(1, 90) * 86_400_000) for item in list(row)[:20]]
                for user, row in catalogue.users.items()
            },
        )
        catalog_rng = random.Random(5)
        write_catalog(
            open_tables(settings),
            [
                CatalogUpdate(item, f"cat{catalog_rng.randrange(CATEGORIES)}", catalog_rng.random() >= HIDDEN, 1)
                for item in catalogue.items
            ],
        )
        seed_boards(settings, catalogue.items[:1000])
        FoldStore(settings).append_recent(
            [
                Event(f"{user}/r{k}", user, item, EventType.BROWSE, now_ms - (len(row) - k) * 60_000)
                for user, row in catalogue.users.items()
                for k, item in enumerate(row)
            ]
        )
        print(
            f"\nseeded {len(catalogue.items)} items (top-50 lists), {len(catalogue.users)} users x 20 items, "
            f"a catalogue of {CATEGORIES} categories with {HIDDEN:.0%} of items hidden"
        )

        rng = random.Random(11)
        kinds = ("browsed", "basket", "purchased")
        sessions = []
        for _ in range(500):
            picked = rng.sample(catalogue.items, 20)
            parts = {kind: picked[k::3] for k, kind in enumerate(kinds)}
            sessions.append("/recommendations?" + "&".join(f"{k}={','.join(v)}" for k, v in parts.items()) + "&n=10")
        filtered = [f"{path}&category=cat{k % CATEGORIES},cat{(k + 7) % CATEGORIES}" for k, path in enumerate(sessions)]
        user_paths = [f"/recommendations?user=user{u}&n=10" for u in rng.sample(range(args.users), args.users)]
        trending_paths = [
            f"/trending?window={window}&n=10" + (f"&category=cat{k % CATEGORIES}" if k % 5 == 0 else "")
            for k, window in enumerate(list(trending.WINDOWS) * 20)
        ]
        bought_paths = [f"/items/{item}/bought-together?n=10" for item in rng.sample(catalogue.items, 500)]
        baskets = [json.dumps({"items": rng.sample(catalogue.items, 5), "n": 10}) for _ in range(500)]
        again_paths = [f"/users/user{u}/buy-again?n=10" for u in rng.sample(range(args.users), args.users)]
        recent_paths = [f"/users/user{u}/recent?n=10" for u in rng.sample(range(args.users), args.users)]

        bare_port, serve_port, pair_port = localstack.free_port(), localstack.free_port(), localstack.free_port()
        rules_port = localstack.free_port()
        rules_file = workdir / "rules.json"
        rules_file.write_text(
            json.dumps(
                {
                    "boost": [
                        *({"category": f"cat{k}", "factor": 1.5} for k in range(5)),
                        {"items": catalogue.items[::50], "factor": 0.5},
                    ],
                    "cap_per_category": {"*": RULES_CAP},
                }
            )
        )
        # Both servers live on CPU 0 for the whole run; only the one under wrk is busy.
        bare = pinned(SERVER_CPU, [sys.executable, "-c", BARE_SERVER, str(bare_port)])
        processes.append(bare)
        server = pinned(
            SERVER_CPU,
            [
                sys.executable,
                "-m",
                "serving",
                "--port",
                str(serve_port),
                "--workers",
                "1",
                *settings.to_argv(),
            ],
        )
        processes.append(server)
        ruled = pinned(
            SERVER_CPU,
            [
                sys.executable,
                "-m",
                "serving",
                "--port",
                str(rules_port),
                "--workers",
                "1",
                "--rules",
                str(rules_file),
                *settings.to_argv(),
            ],
        )
        processes.append(ruled)
        # Two workers, nothing pinned: the comparison of 1 and 2 workers on both cores.
        pair = subprocess.Popen(
            [sys.executable, "-m", "serving", "--port", str(pair_port), "--workers", "2", *settings.to_argv()]
        )
        processes.append(pair)
        wait_http(f"http://127.0.0.1:{bare_port}/recommendations")
        wait_http(f"http://127.0.0.1:{serve_port}/readyz")
        wait_http(f"http://127.0.0.1:{pair_port}/readyz")
        wait_http(f"http://127.0.0.1:{rules_port}/readyz")
        wrk(bare_port, ["/recommendations"], 2, args.connections, workdir)
        for warm_port in (serve_port, rules_port, pair_port, pair_port):  # warm the caches (each worker has its own)
            wrk(warm_port, sessions, 5, args.connections, workdir)
        wrk(serve_port, filtered, 2, args.connections, workdir)
        wrk(serve_port, user_paths, 3, args.connections, workdir)
        wrk(serve_port, bought_paths, 3, args.connections, workdir)
        wrk(serve_port, ["/bought-together"], 3, args.connections, workdir, bodies=baskets)
        wrk(serve_port, again_paths, 2, args.connections, workdir)

        # Rounds interleave the cases: the machine is shared, and load that
        # drifts between two back-to-back measurements would skew a ratio.
        rounds: list[dict] = []
        for _ in range(args.rounds):
            measured = {
                "load": load_average(),
                "bare aiohttp handler": wrk(
                    bare_port, ["/recommendations"], args.seconds, args.connections, workdir, bare.pid
                ),
                "session, 20 items (warm)": wrk(
                    serve_port, sessions, args.seconds, args.connections, workdir, server.pid
                ),
                "session, category-filtered": wrk(
                    serve_port, filtered, args.seconds, args.connections, workdir, server.pid
                ),
                "user queries": wrk(serve_port, user_paths, args.seconds, args.connections, workdir, server.pid),
                "trending": wrk(serve_port, trending_paths, args.seconds, args.connections, workdir, server.pid),
                "session, rules (boost+cap)": wrk(
                    rules_port, sessions, args.seconds, args.connections, workdir, ruled.pid
                ),
                "bought together (warm)": wrk(
                    serve_port, bought_paths, args.seconds, args.connections, workdir, server.pid
                ),
                "basket of 5, POST (warm)": wrk(
                    serve_port,
                    ["/bought-together"],
                    args.seconds,
                    args.connections,
                    workdir,
                    server.pid,
                    bodies=baskets,
                ),
                "buy again": wrk(serve_port, again_paths, args.seconds, args.connections, workdir, server.pid),
                "recently viewed": wrk(serve_port, recent_paths, args.seconds, args.connections, workdir, server.pid),
            }
            for name, batch in (("reads alone", 1), ("batched reads alone", BATCHED_READS)):
                reader = pinned(
                    SERVER_CPU,
                    [
                        sys.executable,
                        "-c",
                        READ_RATE,
                        emulator.host,
                        "bench-",
                        str(args.seconds),
                        str(args.connections),
                        str(args.users),
                        str(batch),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                measured[name] = json.loads(reader.communicate(timeout=args.seconds + 60)[0])
            measured["1 worker, both cores"] = wrk(
                serve_port, sessions, args.seconds, args.connections, workdir, cpu=None
            )
            measured["2 workers, both cores"] = wrk(
                pair_port, sessions, args.seconds, args.connections, workdir, cpu=None
            )
            rounds.append(measured)
        with urllib.request.urlopen(f"http://127.0.0.1:{serve_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        hit_ratio = float(re.search(r"^streamsim_serving_cache_hit_ratio ([\d.e+-]+)$", metrics, re.M).group(1))

        def counter(name: str) -> float:
            return float(re.search(rf"^streamsim_serving_{name}_total ([\d.e+-]+)$", metrics, re.M).group(1))

        histories_per_call = counter("history_reads") / max(counter("history_read_calls"), 1.0)
    finally:
        for process in processes:
            if process.poll() is None:
                stop(process)
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\nHTTP, servers on CPU {SERVER_CPU}, wrk -c{args.connections} on CPU {LOAD_CPU}, "
        f"{args.rounds} interleaved rounds of {args.seconds:g} s"
    )
    print(
        f"  {'round':5} {'case':26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'CPU us/req':>10}"
        "  ratio by req/s | by CPU per request"
    )
    ratios: dict[str, list[float]] = {
        "session": [],
        "user": [],
        "session_cpu": [],
        "user_cpu": [],
        "filtered": [],
        "filtered_cpu": [],
        "workers": [],
        "user_batched": [],
        "rules": [],
        "rules_cpu": [],
    }
    for number, measured in enumerate(rounds, 1):
        bare_row, reads = measured["bare aiohttp handler"], measured["reads alone"]
        session = measured["session, 20 items (warm)"]
        print(f"  round {number}: load average {measured['load']} at its start")
        for name in (
            "bare aiohttp handler",
            "session, 20 items (warm)",
            "session, category-filtered",
            "session, rules (boost+cap)",
            "user queries",
            "trending",
            "bought together (warm)",
            "basket of 5, POST (warm)",
            "buy again",
            "recently viewed",
            "1 worker, both cores",
            "2 workers, both cores",
        ):
            row = measured[name]
            if name == "user queries":
                by_rate, by_cpu = row["rps"] / reads["reads_per_second"], reads["cpu_us"] / row["cpu_us"]
                what = "of reads"
            elif name in ("session, category-filtered", "session, rules (boost+cap)"):
                by_rate, by_cpu = row["rps"] / session["rps"], session["cpu_us"] / row["cpu_us"]
                what = "of unfiltered" if name == "session, category-filtered" else "of no rules"
            elif name == "2 workers, both cores":
                by_rate = row["rps"] / measured["1 worker, both cores"]["rps"]
                by_cpu, what = float("nan"), "of 1 worker"
            else:
                by_rate, by_cpu, what = row["rps"] / bare_row["rps"], bare_row["cpu_us"] / row["cpu_us"], "of bare"
            print(
                f"  {number:5} {name:26} {row['rps']:9.0f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
                f"{row['non2xx']:8d} {row['cpu_us']:10.0f}  {by_rate:5.2f} | {by_cpu:5.2f} {what} "
                f"{row['socket_errors']}"
            )
        batched = measured["batched reads alone"]
        print(
            f"  {number:5} {'single-row reads alone':26} {reads['reads_per_second']:9.0f} {'':27} "
            f"{reads['cpu_us']:10.0f}  (BigtableStore.read_history, c={args.connections}, same CPU)"
        )
        print(
            f"  {number:5} {'batched reads alone':26} {batched['reads_per_second']:9.0f} {'':27} "
            f"{batched['cpu_us']:10.0f}  (read_histories, {BATCHED_READS} per call, histories/s)"
        )
        user = measured["user queries"]
        filtered_row = measured["session, category-filtered"]
        ratios["filtered"].append(session["rps"] / filtered_row["rps"])
        ratios["filtered_cpu"].append(filtered_row["cpu_us"] / session["cpu_us"])
        ruled_row = measured["session, rules (boost+cap)"]
        ratios["rules"].append(session["rps"] / ruled_row["rps"])
        ratios["rules_cpu"].append(ruled_row["cpu_us"] / session["cpu_us"])
        ratios["workers"].append(measured["2 workers, both cores"]["rps"] / measured["1 worker, both cores"]["rps"])
        ratios["user_batched"].append(user["rps"] / batched["reads_per_second"])
        ratios["session"].append(session["rps"] / bare_row["rps"])
        ratios["session_cpu"].append(bare_row["cpu_us"] / session["cpu_us"])
        ratios["user"].append(user["rps"] / reads["reads_per_second"])
        ratios["user_cpu"].append(reads["cpu_us"] / user["cpu_us"])
    session_p99 = [m["session, 20 items (warm)"]["p99_ms"] for m in rounds]
    print(f"  cache hit ratio at the end: {hit_ratio:.3f}; user histories per ReadRows call: {histories_per_call:.1f}")
    median = {name: statistics.median(values) for name, values in ratios.items()}
    print("\ntargets (median over rounds; 'by CPU' = CPU time per request, robust to other load):")
    print(
        f"  session >= 50% of bare: {median['session']:.0%} by req/s, {median['session_cpu']:.0%} by CPU;"
        f"  p99 <= 5 ms: {statistics.median(session_p99):.2f} ms (best round {min(session_p99):.2f} ms)"
    )
    print(
        f"  user >= 80% of reads alone: {median['user']:.0%} by req/s, {median['user_cpu']:.0%} by CPU;"
        f" {median['user_batched']:.0%} of batched reads"
    )
    print(
        f"  category-filtered session <= 1.2x unfiltered: {median['filtered']:.2f}x by req/s,"
        f" {median['filtered_cpu']:.2f}x by CPU per request"
    )
    print(
        f"  session with rules (boost + cap {RULES_CAP}) vs without: {median['rules']:.2f}x by req/s,"
        f" {median['rules_cpu']:.2f}x by CPU per request"
    )
    print(f"  2 workers >= 1.4x one worker (both cores, wrk sharing them): {median['workers']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
