"""Benchmark of the streaming fold at shop scale, on the local runner and the emulators.

    .venv/bin/python -m benchmarks.stream_fold [--events 1000000] [--second-events 200000]
        [--hot-events 200000] [--lag-rate 500] [--lag-seconds 20] [--ceiling-events 50000]

(from the repository root). Starts its own emulators (free ports) and, in one run:

1. **ceiling** (the baseline): from this one Python process, pull ``--ceiling-events``
   messages (1,000 per pull) and write two rows per event with gateway ``mutate``
   batches: what one process can move at best, without any fold logic.
2. **shop at scale**: ``streamsim.sources.synthetic.SHOP_AT_SCALE`` (power-law items
   over a million users, 30% of traffic on one item), ``--events`` of it as a backlog,
   folded by one pipeline process (``python -m streaming --no-supervise --idle-exit``).
   Events/s over the first and the last 10% of the stream come from the write times
   of the folded-id cells; bytes and cells read per event, and conflicts, from the
   pipeline's own tallies; RSS sampled every second.
3. **two processes** on the same subscription over ``--second-events`` more of the
   same shape: conflicts and retries per 1,000 events when two writers overlap.
4. **lag** at a steady ``--lag-rate`` for ``--lag-seconds``: write time of the
   event's folded-id cell minus its publish time, p50/p99.
5. **hot item**: ``--hot-events`` events from half as many users, each browsing the
   item ``hot`` and one random item out of 5,000 (the stream that used to fail).

Prints each figure and the end-to-end / ceiling ratio.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from schemas import Event, EventType, codecs, layout
from schemas.rows import decode_item
from streaming.publish import EventPublisher
from streamsim.app import localstack
from streamsim.runtime import provision
from streamsim.runtime.bigtable import entry, filters, open_tables, set_cell
from streamsim.runtime.clients import publisher_client, subscriber_client
from streamsim.runtime.settings import Settings
from streamsim.sources.synthetic import SHOP_AT_SCALE, clickstream

_STOPPED = re.compile(r"stopped: (\d+) messages pulled and written; (\{.*\})")


def ceiling(settings: Settings, subscription: str, count: int) -> float:
    """Events/s of raw pulls plus raw two-row writes, in this process."""
    subscriber = subscriber_client(settings)
    path = subscriber.subscription_path(settings.project, subscription)
    pulled, started = 0, time.perf_counter()
    table = open_tables(settings).users
    while pulled < count:
        response = subscriber.pull(subscription=path, max_messages=1000, timeout=10)
        if not response.received_messages:
            continue
        subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in response.received_messages])
        table.mutate(
            entry(
                f"ceiling-{kind}-{pulled + k}".encode(),
                [set_cell(layout.SCORES, layout.SCORE, codecs.encode_double(1))],
            )
            for k in range(len(response.received_messages))
            for kind in ("user", "item")
        )
        pulled += len(response.received_messages)
    return count / (time.perf_counter() - started)


def folded_times(settings: Settings, id_prefix: str) -> dict[str, float]:
    """event id -> write time (s) of its folded-id cell, for ids with this prefix."""
    prefix = layout.folded_qualifier(id_prefix)
    # A qualifier range, not a regex: the emulator evaluates a regex per cell, slowly.
    columns = filters.family(layout.FOLDED)
    columns.column_range_filter.start_qualifier_closed = prefix
    columns.column_range_filter.end_qualifier_open = prefix[:-1] + bytes([prefix[-1] + 1])
    times = {}
    for _, row in open_tables(settings).users.read_rows(row_filter=filters.chain(columns, filters.strip_values())):
        for qualifier, cell in row.get(layout.FOLDED, {}).items():
            times[qualifier.decode()] = cell.timestamp_micros / 1e6
    return times


def rates(times: dict[str, float]) -> tuple[float, float, float]:
    """(events/s overall, over the first 10%, over the last 10%) from write times."""
    ordered = sorted(times.values())
    tenth = max(1, len(ordered) // 10)

    def rate(part):
        return len(part) / max(part[-1] - part[0], 1e-6)

    return rate(ordered), rate(ordered[:tenth]), rate(ordered[-tenth:])


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self._halt = pid, [], threading.Event()

    def run(self):
        while not self._halt.wait(1.0):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            kib = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), None)
            if kib is None:  # exited: a zombie has no resident set
                return
            self.samples.append(kib / 1024)

    def stop(self):
        self._halt.set()
        self.join()

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        tenth = self.samples[: max(1, len(self.samples) // 10)]
        return (
            f"first 10% max {max(tenth):.0f}, overall max {max(self.samples):.0f}, "
            f"last {self.samples[-1]:.0f} MiB ({len(self.samples)} samples)"
        )


class Pipeline:
    """``python -m streaming --no-supervise -v`` as a child, its RSS and its final tallies."""

    def __init__(self, settings: Settings, *flags: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streaming", "--no-supervise", "-v", *settings.to_argv(), *flags],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.rss = RssSampler(self.process.pid)
        self.rss.start()
        self.counts: dict = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            found = _STOPPED.search(line)
            if found:
                self.counts = ast.literal_eval(found.group(2))
            elif " ERROR " in line or "Traceback" in line:
                sys.stderr.write("  pipeline: " + line)

    def wait(self) -> int:
        code = self.process.wait()
        self._reader.join()
        self.rss.stop()
        return code


def publish(settings: Settings, messages) -> float:
    started = time.perf_counter()
    with EventPublisher(settings) as out:
        count = out.publish(messages)
    return count / (time.perf_counter() - started)


def per_event(counts: dict, events: int) -> str:
    return (
        f"{counts.get('bytes_read', 0) / events:,.0f} bytes and {counts.get('cells_read', 0) / events:.1f} "
        f"cells read per event; {1000 * counts.get('conflicts', 0) / events:.2f} conflicts per 1,000 events"
    )


def hot_stream(events: int, seed: int = 11):
    rng = random.Random(seed)
    users = max(1, events // 2)
    for k in range(events):
        user = f"hot-user-{k % users}"
        item = "hot" if k < users else f"hot-other-{rng.randrange(5000)}"
        yield Event(f"hot-{k}", user, item, EventType.BROWSE, 1_767_225_600_000 + k).to_json()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stream_fold",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=SHOP_AT_SCALE.events)
    parser.add_argument("--second-events", type=int, default=200_000)
    parser.add_argument("--hot-events", type=int, default=200_000)
    parser.add_argument("--lag-rate", type=float, default=500)
    parser.add_argument("--lag-seconds", type=float, default=20)
    parser.add_argument("--ceiling-events", type=int, default=50_000)
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    base = Settings(project="streamsim-bench", instance="bench", prefix="b-", state_dir=state_dir)
    stack = localstack.up(base, bigtable_port=localstack.free_port(), pubsub_port=localstack.free_port())
    settings = dataclasses.replace(base, bigtable_host=stack["bigtable"]["host"], pubsub_host=stack["pubsub"]["host"])
    summary = []
    try:
        provision.provision(settings)
        raw_sub = f"{settings.prefix}bench-raw"
        publisher = publisher_client(settings)
        subscriber_client(settings).create_subscription(
            name=f"projects/{settings.project}/subscriptions/{raw_sub}",
            topic=publisher.topic_path(settings.project, settings.pubsub.events_topic),
        )
        publisher.stop()
        ceiling_events = (
            Event(f"ceil-{k}", f"c{k}", f"ci{k % 500}", EventType.BROWSE, k).to_json()
            for k in range(args.ceiling_events)
        )
        print(f"ceiling: {args.ceiling_events:,} events ...", flush=True)
        publish(settings, ceiling_events)
        top = ceiling(settings, raw_sub, args.ceiling_events)
        subscriber_client(settings).delete_subscription(
            subscription=f"projects/{settings.project}/subscriptions/{raw_sub}"
        )
        print(f"  {top:,.0f} events/s (raw pull + two raw row writes per event)", flush=True)
        # The fold pipeline has not run yet: its subscription holds the ceiling's events too.
        shape = dataclasses.replace(SHOP_AT_SCALE, events=args.events, malformed_rate=0.0)
        print(f"shop at scale: publishing {args.events:,} events ({shape}) ...", flush=True)
        print(f"  published at {publish(settings, clickstream(shape)):,.0f}/s", flush=True)
        one = Pipeline(settings, "--idle-exit", "5")
        if one.wait() != 0:
            print("pipeline failed")
            return 1
        times = folded_times(settings, f"syn-{shape.seed}-")
        overall, first, last = rates(times)
        hot_users = decode_item(open_tables(settings).items.read_row(layout.item_row_key("item-hot"))).users
        print(
            f"  folded {len(times):,} events: {overall:,.0f}/s overall, first 10% {first:,.0f}/s, "
            f"last 10% {last:,.0f}/s (last/first {last / first:.2f}); item-hot has {hot_users:,} users",
            flush=True,
        )
        print(f"  {per_event(one.counts, len(times) + args.ceiling_events)}", flush=True)
        print(f"  pipeline RSS: {one.rss.summary()}", flush=True)
        summary += [
            f"shop at scale  {overall:8,.0f} events/s  first 10% {first:,.0f}/s  last 10% {last:,.0f}/s  "
            f"(last/first {last / first:.2f}; target >= 0.8, and >= 2,000/s)",
            f"               {per_event(one.counts, len(times) + args.ceiling_events)}",
            f"               RSS {one.rss.summary()}; top item {hot_users:,} users",
            f"ceiling        {top:8,.0f} events/s  ratio end to end / ceiling {overall / top:.2f}",
        ]

        second = dataclasses.replace(shape, events=args.second_events, seed=shape.seed + 1)
        print(f"two processes on one subscription: {args.second_events:,} events ...", flush=True)
        publish(settings, clickstream(second))
        both = [Pipeline(settings, "--idle-exit", "5") for _ in range(2)]
        if any(p.wait() != 0 for p in both):
            print("a pipeline failed")
            return 1
        merged = {k: sum(p.counts.get(k, 0) for p in both) for k in ("conflicts", "bytes_read", "cells_read")}
        times2 = folded_times(settings, f"syn-{second.seed}-")
        overall2, _, _ = rates(times2)
        print(f"  folded {len(times2):,} events at {overall2:,.0f}/s; {per_event(merged, len(times2))}", flush=True)
        summary.append(f"two processes  {overall2:8,.0f} events/s  {per_event(merged, len(times2))}")

        print(f"lag at a steady {args.lag_rate:.0f} events/s for {args.lag_seconds:.0f}s ...", flush=True)
        lagging = Pipeline(settings, "--max-seconds", str(args.lag_seconds + 20))
        time.sleep(10)  # pipeline start-up is not lag
        count = int(args.lag_rate * args.lag_seconds)
        published_at = {}
        with EventPublisher(settings) as out:
            started = time.monotonic()
            for k in range(count):
                ahead = k / args.lag_rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                now_ms = int(time.time() * 1000)
                published_at[f"lag-{k}"] = now_ms / 1000
                out.publish([Event(f"lag-{k}", f"lag-user-{k % 997}", f"lag-item-{k % 311}", EventType.BROWSE, now_ms)])
        lagging.wait()
        times3 = folded_times(settings, "lag-")
        lags = [times3[i] - published_at[i] for i in published_at if i in times3]
        p50, p99 = statistics.quantiles(lags, n=100)[49], statistics.quantiles(lags, n=100)[98]
        print(
            f"  {len(lags)}/{count} visible; lag p50 {p50:.3f}s p99 {p99:.3f}s max {max(lags):.3f}s; "
            f"RSS {lagging.rss.summary()}",
            flush=True,
        )
        summary.append(f"lag            p50 {p50:.3f}s  p99 {p99:.3f}s at {args.lag_rate:.0f}/s (target p99 <= 1s)")

        print(f"hot item: {args.hot_events:,} events, half of them on one item ...", flush=True)
        publish(settings, hot_stream(args.hot_events))
        hot_run = Pipeline(settings, "--idle-exit", "5")
        if hot_run.wait() != 0:
            print("pipeline failed on the hot-item stream")
            return 1
        times4 = folded_times(settings, "hot-")
        overall4, first4, last4 = rates(times4)
        hot_row = decode_item(open_tables(settings).items.read_row(layout.item_row_key("hot")))
        print(
            f"  folded {len(times4):,}/{args.hot_events:,}: {overall4:,.0f}/s, first 10% {first4:,.0f}/s, "
            f"last 10% {last4:,.0f}/s; 'hot' has {hot_row.users:,} users; {per_event(hot_run.counts, len(times4))}; "
            f"RSS {hot_run.rss.summary()}",
            flush=True,
        )
        summary.append(
            f"hot item       {overall4:8,.0f} events/s  first 10% {first4:,.0f}/s  last 10% {last4:,.0f}/s; "
            f"{len(times4):,}/{args.hot_events:,} folded, 'hot' {hot_row.users:,} users; "
            f"{per_event(hot_run.counts, len(times4))}"
        )

        print("\nsummary (compare ratios, not absolutes: the machine has 2 cores)")
        for line in summary:
            print("  " + line)
        return 0
    finally:
        localstack.down(base)


if __name__ == "__main__":
    sys.exit(main())
