"""What streamsim costs a month on Google Cloud: measured work x a workload x list prices.

    .venv/bin/python -m benchmarks.cost                  # the tables of docs/cost.md, from MEASURED
    .venv/bin/python -m benchmarks.cost --measure [--events 30000] [--requests 2000]
                                                         # measure the inputs here, then the tables

(from the repository root). ``--measure`` starts its own emulators and, in one run:

1. **fold**: ``--events`` synthetic events over many users (few repeats per batch, as on a
   large shop) through one local-runner pipeline (``python -m streaming --no-supervise``):
   Bigtable rows read, rows written and CheckAndMutateRow calls per event from the fold's
   own tallies (the gateway counts them), and the pipeline process's CPU per event.
2. **refresh**: ``streamsim refresh --full`` (``local[2]``) on that state, then again with
   ``--extra-pairs`` more seeded: the pass's fixed wall time and its wall seconds x 2 cores
   per pair row (the slope between the two), and the bytes a full pass scans per pair row.
3. **serving**: ``--requests`` user queries against the app on loopback (in this process):
   Bigtable rows read per request and the server's CPU per request (the process's CPU
   less the client thread's).

The model (:func:`monthly`) is pure arithmetic on those inputs, a :class:`Workload` and
:data:`PRICES`; ``tests/test_cost_model.py`` checks it by hand. docs/cost.md explains each
line and its assumptions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys

#: List prices, us-central1, on-demand USD, as of 2026-12-07 (the review in docs/cost.md cites
#: each source and its date; re-check on the live pages before quoting a figure).
PRICES = {
    "bigtable_node_hour": 0.65,  # cloud.google.com/bigtable/pricing
    "bigtable_ssd_gb_month": 0.17,
    "pubsub_tib": 40.0,  # cloud.google.com/pubsub/pricing; first 10 GiB a month free
    "pubsub_free_gib": 10.0,
    "dataflow_vcpu_hour": 0.069,  # cloud.google.com/dataflow/pricing (streaming)
    "dataflow_gb_hour": 0.0035557,
    "dataflow_pd_gb_hour": 0.000054,
    "streaming_engine_gb": 0.018,
    "dataproc_serverless_dcu_hour": 0.06,  # cloud.google.com/dataproc-serverless/pricing
    "run_request_vcpu_second": 0.000024,  # cloud.google.com/run/pricing, tier 1
    "run_request_gib_second": 0.0000025,
    "run_request_million": 0.40,
    "run_instance_vcpu_second": 0.000018,  # instance-based billing, and jobs
    "run_instance_gib_second": 0.000002,
    "run_free_vcpu_seconds": 240_000,  # a month, per billing account (instance-based/jobs tier)
    "run_free_gib_seconds": 450_000,
    "egress_gb": 0.12,
}
HOURS = 730.0
SECONDS = HOURS * 3600
DAYS = HOURS / 24

#: Bigtable SSD node, 1 KB rows (cloud.google.com/bigtable/docs/performance).
NODE_READS_PER_SECOND = 17_000
NODE_WRITES_PER_SECOND = 14_000
NODE_SCAN_BYTES_PER_SECOND = 220e6
#: Bigtable's recommended CPU target for autoscaling (latency-sensitive serving).
NODE_CPU_TARGET = 0.7
#: Dataflow streaming worker with Streaming Engine: n1-standard-2 (2 vCPU, 7.5 GB), 30 GB disk.
DATAFLOW_WORKER = {"vcpu": 2, "gb": 7.5, "pd_gb": 30}
#: Dataproc Serverless default batch: 12 DCU (a 4-vCPU driver, two 4-vCPU executors), 8 executor vCPUs.
SERVERLESS_DCU, SERVERLESS_EXECUTOR_VCPUS, SERVERLESS_STARTUP_SECONDS = 12, 8, 60
#: Serving scores a user's strongest items, at most this many (``ServingConfig.max_history``).
MAX_HISTORY = 200


@dataclasses.dataclass(frozen=True)
class Measured:
    """Work per unit, from ``--measure`` (docs/cost.md has the run that gave MEASURED)."""

    fold_rows_read: float  # per event
    fold_rows_written: float  # per event, blind writes (MutateRows entries)
    fold_rows_checked: float  # per event, CheckAndMutateRow calls (a read and a write each)
    fold_cpu_seconds: float  # per event, the local runner's process
    message_bytes: float  # per event on Pub/Sub
    pass_fixed_seconds: float  # a full pass's time that does not grow with the state (local[2])
    pass_vcpu_seconds_per_pair: float  # and the CPU that does, per pair row
    pass_memory_bytes_per_pair: float  # peak resident memory of the pass, per pair row...
    pass_fixed_memory_mib: float  # ...above this (a small state's peak: JVM, interpreters)
    pass_scan_bytes_per_pair: float
    serve_rows_per_history_item: float  # per user query, cache warm: the history's rows
    serve_similarity_rows_per_history_item: float  # more per query when no similarity row is cached
    serve_cpu_seconds: float  # per user query


#: ``python -m benchmarks.cost --measure --events 30000 --requests 2000`` on the shared
#: 2-core machine, 2026-12-07 (docs/cost.md).
MEASURED = Measured(
    fold_rows_read=2.20,
    fold_rows_written=2.18,
    fold_rows_checked=1.35,
    fold_cpu_seconds=0.00075,
    message_bytes=98,
    pass_fixed_seconds=9.6,
    pass_vcpu_seconds_per_pair=63e-6,
    pass_scan_bytes_per_pair=202,
    pass_memory_bytes_per_pair=411,
    pass_fixed_memory_mib=689,
    serve_rows_per_history_item=1.04,
    serve_similarity_rows_per_history_item=0.36,
    serve_cpu_seconds=0.00174,
)


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    events_per_day: float
    requests_per_day: float
    items: int
    users: int
    #: Distinct (user, item) pairs held: rows of ``users`` and of ``contributions``.
    pairs: float
    #: Full-pass equivalents a day (the planner runs incremental passes when cheaper).
    passes_per_day: float
    #: Busiest hour over the average hour.
    peak_factor: float = 3.0
    #: Share of similarity rows found in serving's cache (history rows are always read).
    cache_hit: float = 0.9
    response_bytes: float = 2_000
    #: Stored bytes per pair: its users row (scores, up to 128 folded ids), its contributions
    #: row and its share of ``recent`` (an assumption, not a measurement: see docs/cost.md).
    stored_bytes_per_pair: float = 600


SEED = Workload(
    "seed", events_per_day=50e6, requests_per_day=5e6, items=1_000_000, users=10_000_000, pairs=200e6, passes_per_day=1
)
SMALL_SHOP = Workload(
    "small shop", events_per_day=1e6, requests_per_day=1e5, items=20_000, users=200_000, pairs=4e6, passes_per_day=24
)


@dataclasses.dataclass(frozen=True)
class Line:
    item: str
    sizing: str
    dollars: float


def idle(w: Workload) -> Workload:
    """The floor's workload: a deployment before any traffic (no events, requests or state)."""
    return dataclasses.replace(w, events_per_day=0, requests_per_day=0, pairs=0)


def bigtable_nodes(load_node_seconds_per_second: float) -> int:
    """Nodes that keep ``load`` (node-seconds of work per second) under the CPU target; at least 1."""
    return max(1, math.ceil(load_node_seconds_per_second / NODE_CPU_TARGET - 1e-9))


def bigtable_load(m: Measured, w: Workload, *, peak: bool) -> float:
    """Node-seconds per second of the fold and serving (the refresh is counted per pass)."""
    factor = w.peak_factor if peak else 1.0
    events = w.events_per_day / 86_400 * factor
    requests = w.requests_per_day / 86_400 * factor
    reads = events * (m.fold_rows_read + m.fold_rows_checked) + requests * serve_rows(m, w)
    writes = events * (m.fold_rows_written + m.fold_rows_checked)
    return reads / NODE_READS_PER_SECOND + writes / NODE_WRITES_PER_SECOND


def serve_rows(m: Measured, w: Workload) -> float:
    """Rows one user query reads: its history's, and the similarity rows not in the cache."""
    history = min(w.pairs / w.users, MAX_HISTORY)
    return history * (m.serve_rows_per_history_item + (1 - w.cache_hit) * m.serve_similarity_rows_per_history_item)


def pass_node_hours(m: Measured, w: Workload) -> float:
    """Node-hours of one full pass: scan every pair row, read and write every item row."""
    scan = w.pairs * m.pass_scan_bytes_per_pair / NODE_SCAN_BYTES_PER_SECOND
    rows = w.items / NODE_READS_PER_SECOND + w.items / NODE_WRITES_PER_SECOND
    return (scan + rows) / 3600


def cloud_run_instance(vcpu_seconds: float, gib_seconds: float) -> float:
    """Instance-based billing (and jobs) before the free tier."""
    return vcpu_seconds * PRICES["run_instance_vcpu_second"] + gib_seconds * PRICES["run_instance_gib_second"]


def run_free_tier() -> float:
    """What the monthly free tier of instance-based Cloud Run is worth (once per account)."""
    return cloud_run_instance(PRICES["run_free_vcpu_seconds"], PRICES["run_free_gib_seconds"])


def _common(m: Measured, w: Workload, *, autoscale_peak: bool) -> list[Line]:
    average, peak = bigtable_load(m, w, peak=False), bigtable_load(m, w, peak=True)
    nodes = bigtable_nodes(peak if autoscale_peak else average)
    pass_hours = pass_node_hours(m, w) * w.passes_per_day * DAYS if w.pairs else 0.0
    node_dollars = (nodes * HOURS + pass_hours) * PRICES["bigtable_node_hour"]
    stored_gb = w.pairs * w.stored_bytes_per_pair / 1e9
    pubsub_gib = w.events_per_day * DAYS * m.message_bytes * 2 / 2**30  # publish + one subscription
    egress_gb = w.requests_per_day * DAYS * w.response_bytes / 1e9
    return [
        Line(
            "Bigtable nodes",
            f"load {average:.2f} node avg / {peak:.2f} peak at 100% CPU -> {nodes} node(s) at "
            f"{NODE_CPU_TARGET:.0%}; passes {pass_hours:.1f} node-h",
            node_dollars,
        ),
        Line("Bigtable SSD storage", f"{stored_gb:,.1f} GB", stored_gb * PRICES["bigtable_ssd_gb_month"]),
        Line(
            "Pub/Sub",
            f"{pubsub_gib:,.1f} GiB (publish + delivery)",
            max(0.0, pubsub_gib - PRICES["pubsub_free_gib"]) / 1024 * PRICES["pubsub_tib"],
        ),
        Line("Egress", f"{egress_gb:,.0f} GB of answers", egress_gb * PRICES["egress_gb"]),
    ]


def serving_line(m: Measured, w: Workload, *, min_instances: int) -> Line:
    """Cloud Run serving, 1 vCPU and 1 GiB per instance."""
    busy = w.requests_per_day * DAYS * m.serve_cpu_seconds  # vCPU-seconds of work
    if min_instances:
        # Instance-based: always-on instances, enough for the peak at 60% CPU; no request fee.
        peak_rps = w.requests_per_day / 86_400 * w.peak_factor
        instances = max(min_instances, math.ceil(peak_rps * m.serve_cpu_seconds / 0.6 - 1e-9))
        seconds = instances * SECONDS
        sizing = f"{instances} always-on instance(s), {busy / SECONDS:.2f} vCPU busy on average"
        return Line("Cloud Run serving", sizing, cloud_run_instance(seconds, seconds))
    # Request-based, scaled to zero: CPU and memory while requests are in flight, and the fee.
    requests = w.requests_per_day * DAYS
    dollars = busy * (PRICES["run_request_vcpu_second"] + PRICES["run_request_gib_second"])
    dollars += requests / 1e6 * PRICES["run_request_million"]
    return Line("Cloud Run serving", f"request-based, scaled to zero, {busy:,.0f} vCPU-s", dollars)


def free_tier(cloud_run: float) -> Line:
    """Instance-based Cloud Run's monthly free tier, against what that billing used."""
    return Line("Cloud Run free tier", "240k vCPU-s, 450k GiB-s a month", -min(run_free_tier(), cloud_run))


def standard(m: Measured, w: Workload, *, size_for_peak: bool = True) -> list[Line]:
    """Dataflow fold, Dataproc Serverless refresh, Cloud Run serving (min 1 instance)."""
    lines = _common(m, w, autoscale_peak=size_for_peak)
    peak_events = w.events_per_day / 86_400 * w.peak_factor
    workers = max(1, math.ceil(peak_events * m.fold_cpu_seconds / (DATAFLOW_WORKER["vcpu"] * 0.7) - 1e-9))
    per_worker = HOURS * (
        DATAFLOW_WORKER["vcpu"] * PRICES["dataflow_vcpu_hour"]
        + DATAFLOW_WORKER["gb"] * PRICES["dataflow_gb_hour"]
        + DATAFLOW_WORKER["pd_gb"] * PRICES["dataflow_pd_gb_hour"]
    )
    # Streaming Engine moves each event through the two keyed stages.
    shuffled_gb = w.events_per_day * DAYS * m.message_bytes * 2 / 1e9
    lines.append(
        Line(
            "Dataflow fold",
            f"{workers} n1-standard-2 worker(s) (peak {peak_events:,.0f} events/s); {shuffled_gb:,.0f} GB shuffled",
            workers * per_worker + shuffled_gb * PRICES["streaming_engine_gb"],
        )
    )
    pass_seconds = (
        SERVERLESS_STARTUP_SECONDS
        + m.pass_fixed_seconds
        + w.pairs * m.pass_vcpu_seconds_per_pair / SERVERLESS_EXECUTOR_VCPUS
    )
    per_pass = SERVERLESS_DCU * pass_seconds / 3600 * PRICES["dataproc_serverless_dcu_hour"]
    passes = w.passes_per_day if w.pairs else 0  # no state, nothing to refresh
    lines.append(
        Line(
            "Dataproc Serverless refresh",
            f"{passes:g} full pass(es)/day, {pass_seconds / 60:.1f} min at {SERVERLESS_DCU} DCU (${per_pass:.2f} each)",
            per_pass * passes * DAYS,
        )
    )
    serving = serving_line(m, w, min_instances=1)
    return [*lines, serving, free_tier(serving.dollars)]


#: The small-shop profile's jobs (docs/cost.md): schedule, size, and fixed seconds of a run
#: (container and interpreter start; the fold's drain window).
FOLD_JOB = {"every_minutes": 15, "vcpu": 1, "gib": 1, "startup_seconds": 20, "drain_seconds": 60}
REFRESH_JOB = {"every_minutes": 60, "vcpu": 2, "gib": 4, "startup_seconds": 30}


def small_shop(m: Measured, w: Workload) -> list[Line]:
    """Fold and refresh as scheduled Cloud Run jobs, serving scaled to zero: nothing always on but Bigtable."""
    lines = _common(m, w, autoscale_peak=False)
    runs = 60 / FOLD_JOB["every_minutes"] * 24 * DAYS
    events_per_run = w.events_per_day / (runs / DAYS)
    fold_seconds = FOLD_JOB["startup_seconds"] + FOLD_JOB["drain_seconds"] + events_per_run * m.fold_cpu_seconds
    fold = cloud_run_instance(runs * fold_seconds * FOLD_JOB["vcpu"], runs * fold_seconds * FOLD_JOB["gib"])
    passes = 60 / REFRESH_JOB["every_minutes"] * 24 * DAYS
    pass_seconds = (
        REFRESH_JOB["startup_seconds"]
        + m.pass_fixed_seconds
        + w.pairs * m.pass_vcpu_seconds_per_pair / REFRESH_JOB["vcpu"]
    )
    refresh = cloud_run_instance(
        passes * pass_seconds * REFRESH_JOB["vcpu"], passes * pass_seconds * REFRESH_JOB["gib"]
    )
    every = f"every {FOLD_JOB['every_minutes']} min"
    lines.append(
        Line("Cloud Run job: fold", f"{every}, {fold_seconds:.0f} s a run ({events_per_run:,.0f} events)", fold)
    )
    every = f"every {REFRESH_JOB['every_minutes']} min"
    sizing = f"{every}, {pass_seconds:.0f} s a pass on {REFRESH_JOB['vcpu']} vCPU"
    lines.append(Line("Cloud Run job: refresh", sizing, refresh))
    return [*lines, free_tier(fold + refresh), serving_line(m, w, min_instances=0)]


def total(lines: list[Line]) -> float:
    return sum(line.dollars for line in lines)


def table(title: str, profile, m: Measured, w: Workload) -> str:
    """A profile's lines for ``w`` beside its floor (the same profile for :func:`idle` ``w``)."""
    lines, floor = profile(m, w), profile(m, idle(w))
    out = [title, f"  {'line':28} {'$/month':>9} {'floor':>8}  sizing"]
    out += [f"  {a.item:28} {a.dollars:9,.2f} {b.dollars:8,.2f}  {a.sizing}" for a, b in zip(lines, floor)]
    out.append(f"  {'total':28} {total(lines):9,.2f} {total(floor):8,.2f}")
    return "\n".join(out)


def report(m: Measured) -> str:
    def on_average(m, w):
        return standard(m, w, size_for_peak=False)

    return "\n\n".join(
        [
            table("(a) seed workload, standard profile, Bigtable sized for the peak hour", standard, m, SEED),
            table("(a) seed workload, standard profile, Bigtable sized for the average", on_average, m, SEED),
            table("(b) small shop, standard profile", standard, m, SMALL_SHOP),
            table("(b) small shop, small-shop profile (Cloud Run jobs)", small_shop, m, SMALL_SHOP),
            "the seed's own bill: $214/month (daily batch, no streaming, pay-per-read Datastore)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--measure", action="store_true", help="measure the inputs on the emulators first")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--extra-pairs", type=int, default=200_000, help="pairs seeded for the second refresh pass")
    args = parser.parse_args(argv)
    measured = MEASURED
    if args.measure:
        from benchmarks.cost_measure import measure

        measured = measure(events=args.events, requests=args.requests, extra_pairs=args.extra_pairs)
        print(json.dumps(dataclasses.asdict(measured), indent=2))
    print(report(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
