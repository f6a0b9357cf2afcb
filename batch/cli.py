"""`streamsim refresh | rollback` (also `python -m batch refresh|rollback ...`).

``refresh`` runs a DIMSUM pass on Spark (local by default, ``--master`` or spark-submit
otherwise), prints its statistics as JSON and stores them in ``meta``. Each pass picks
the cheaper of incremental and full from estimates (``batch.planner``); ``--full`` and
``--incremental`` force one. ``--every 10m`` repeats until interrupted; ``--continuous``
keeps one session and warm state and starts the next pass as soon as the last one has
flipped and enough has changed (``batch.continuous``), until SIGTERM or Ctrl-C, which
stop after the pass in flight; it waits out a backend outage of any length, and exits 1
only on what no retry fixes (credentials, permissions). ``--dataproc CLUSTER --region R`` submits the same command as
a Dataproc PySpark job instead (``--dry-run`` prints the gcloud line). On Google Cloud,
schedule it with Cloud Scheduler calling the Dataproc jobs API (or a Dataproc workflow
template) every N minutes, or submit ``--continuous`` once as a long-running job.
Overlapping passes are safe: the pointer only moves to a newer
generation (an older pass that finishes last is recorded as not flipped), but they waste
work, so keep one schedule per deployment.

A local session (no spark-submit) listens on loopback only and runs without the Spark UI
(which would listen on every interface and can kill jobs) unless ``--spark-ui`` is given;
under spark-submit (Dataproc) the cluster's own settings apply.

Executors on a cluster are other machines (or other Pythons) that have the libraries but
not this project. The job zip (:func:`job_zip`: ``schemas``, ``batch`` and ``streamsim``
as plain ``.py`` files, no serving kernel) is what they import it from: ``--dataproc``
ships it with ``--py-files``, and a session this command starts on a cluster master
(``--master spark://...``) ships the same zip with ``addPyFile``.

Exit status: 0 when the pass was published, or lost only to a newer generation already
being served (a line on stderr says so); 1 when it refused to publish (a generation with
no neighbours at all, without ``--allow-empty``; an incremental pass overlapped by
another) or a backend failed; 2 for bad flags, checked before any work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from streamsim.runtime.cli import (
    Parser,
    backend_error,
    connection_parser,
    name_subcommands,
    run_parsed,
    settings_from_args,
)

log = logging.getLogger(__name__)

_EVERY = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
#: Longest ``--every`` period (a week): beyond it, use a scheduler (and time.sleep overflows far beyond).
MAX_EVERY_SECONDS = 7 * 24 * 3600
LOOPBACK = "127.0.0.1"
DEFAULT_JOB_DIR = "dist"
#: Seconds between the starts of two ``--continuous`` passes, at least.
DEFAULT_MIN_INTERVAL = 30.0
#: Packages a Dataproc job needs on its PYTHONPATH (the cluster provides the libraries).
JOB_PACKAGES = ("schemas", "batch", "streamsim")


def every_seconds(text: str) -> float:
    match = _EVERY.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a period like 30s, 10m or 1h")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_EVERY_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than a week: schedule such passes with cron instead")
    return seconds


def register(subparsers, parent) -> None:
    refresh = subparsers.add_parser("refresh", parents=[parent], help="recompute item similarities (DIMSUM on Spark)")
    mode = refresh.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="recompute every row (default: the cheaper mode)")
    mode.add_argument(
        "--incremental",
        action="store_true",
        help="recompute only what changed even where a full pass looks cheaper (default: the cheaper mode)",
    )
    refresh.add_argument("--threshold", type=float, default=0.1, help="DIMSUM threshold s (0 = exact; default 0.1)")
    refresh.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    refresh.add_argument("--top-k", type=int, default=50, help="neighbours kept per item (default 50)")
    refresh.add_argument("--min-similarity", type=float, default=0.0, help="floor for a kept neighbour (default 0)")
    refresh.add_argument(
        "--similarity",
        help="the measure: cosine (default), shrinkage, bm25, asymmetric, jaccard, rp3beta, rp3beta_weighted,"
        " directed (see docs/refresh.md)",
    )
    refresh.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a measure parameter (repeatable)"
    )
    refresh.add_argument("--config", help="a tuned configuration (streamsim tune): its measure and parameters")
    refresh.add_argument(
        "--entry-transform",
        metavar="SPEC",
        help="what the entries are: raw, cap:C, saturate:K, log:C (default: the config's, else saturate:0.1; "
        "see docs/refresh.md)",
    )
    refresh.add_argument(
        "--entry-scale",
        type=float,
        help="M for experiments: the sampler treats entries as x/M (default: the entry transform's ceiling, "
        "which bounds every entry)",
    )
    refresh.add_argument(
        "--buckets",
        type=int,
        default=64,
        help="user key-space buckets, a power of two (default 64; bounds read partitions)",
    )
    refresh.add_argument("--partitions", type=int, help="read partitions (default: 2 per Spark core)")
    refresh.add_argument(
        "--allow-empty",
        action="store_true",
        help="publish a generation even if it has no neighbours at all (default: refuse, exit 1)",
    )
    refresh.add_argument(
        "--bought-min-support",
        type=int,
        default=2,
        metavar="N",
        help="co-buyers a bought-together pair needs (default 2; docs/refresh.md)",
    )
    refresh.add_argument("--master", help="Spark master (default: local[*], or spark-submit's)")
    refresh.add_argument(
        "--spark-ui",
        action="store_true",
        help="local sessions: run the Spark UI (on loopback, read-only; default: off)",
    )
    refresh.add_argument("--every", type=every_seconds, metavar="PERIOD", help="repeat every PERIOD (30s, 10m, 1h)")
    refresh.add_argument(
        "--continuous",
        action="store_true",
        help="run passes back to back in one session, each once enough has changed, until SIGTERM/Ctrl-C",
    )
    refresh.add_argument(
        "--min-interval",
        type=every_seconds,
        metavar="PERIOD",
        help=f"with --continuous: least time between pass starts (default {DEFAULT_MIN_INTERVAL:g}s)",
    )
    refresh.add_argument(
        "--min-changed",
        type=int,
        default=1,
        metavar="N",
        help="with --continuous: start a pass once N items are marked dirty (default 1)",
    )
    refresh.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="with --continuous: serve its outage metrics for Prometheus on 127.0.0.1:PORT",
    )
    refresh.add_argument("--json", action="store_true", help="print only the statistics, one JSON line per pass")
    refresh.add_argument("--dataproc", metavar="CLUSTER", help="submit to this Dataproc cluster instead")
    refresh.add_argument("--region", help="Dataproc region (with --dataproc)")
    refresh.add_argument("--dry-run", action="store_true", help="with --dataproc: print the gcloud command only")
    refresh.add_argument(
        "--job-dir", help=f"with --dataproc: where the job's zip is written (default {DEFAULT_JOB_DIR})"
    )
    refresh.set_defaults(run=run_refresh)

    rollback = subparsers.add_parser("rollback", parents=[parent], help="point serving back at the previous generation")
    rollback.add_argument("--json", action="store_true")
    rollback.set_defaults(run=run_rollback)


def _flag_problem(args) -> str | None:
    """Flags that cannot apply together, or apply only with another one; None if all is well."""
    if args.continuous and args.every:
        return "--every and --continuous exclude each other (--continuous waits --min-interval between passes)"
    if args.min_changed < 1:
        return "--min-changed must be at least 1"
    if not args.continuous and args.min_interval is not None:
        return "--min-interval applies only with --continuous"
    if args.metrics_port is not None and not (args.continuous and 0 < args.metrics_port < 65536):
        return "--metrics-port takes a TCP port and applies only with --continuous"
    if args.dataproc:
        for flag, given in (("--every", args.every), ("--master", args.master), ("--spark-ui", args.spark_ui)):
            if given:
                return (
                    f"{flag} does not apply with --dataproc (the job runs on the cluster's Spark; "
                    "--continuous makes it a long-running job)"
                )
        return None
    for flag, given in (("--dry-run", args.dry_run), ("--region", args.region), ("--job-dir", args.job_dir)):
        if given:
            return f"{flag} applies only with --dataproc"
    return None


def _options(args):
    from batch.dimsum import DimsumParams
    from batch.refresh import PassOptions

    problem = _flag_problem(args)
    if problem:
        raise ValueError(problem)
    name, given = _measure(args)
    params = DimsumParams(
        threshold=args.threshold,
        seed=args.seed,
        top_k=args.top_k,
        min_similarity=args.min_similarity,
        **({} if args.entry_scale is None else {"entry_scale": args.entry_scale}),
    )
    return PassOptions(
        params=params,
        full=args.full,
        incremental=args.incremental,
        buckets=args.buckets,
        partitions=args.partitions,
        allow_empty=args.allow_empty,
        bought_min_support=args.bought_min_support,
        similarity=name,
        similarity_params=tuple(given.items()),
        entry_transform=_transform(args),
    )


def _measure(args) -> tuple[str, dict]:
    """(measure, parameters): ``--config``'s, then ``--similarity``/``--param`` over them."""
    from batch import similarity
    from schemas.tuned import read_tuned

    name, given = similarity.DEFAULT, {}
    if args.config:
        tuned = read_tuned(args.config)
        name, given = tuned.similarity, dict(tuned.params)
    if args.similarity:
        if args.similarity != name:
            given = {}
        name = args.similarity
    given.update(similarity.parse_params(args.param))
    return name, similarity.measure(name).resolve(given)


def _transform(args) -> str:
    """The entry transform: ``--entry-transform``, else ``--config``'s, else the default."""
    from schemas import entries
    from schemas.tuned import read_tuned

    if args.entry_transform:
        return entries.parse(args.entry_transform).spec
    if args.config:
        return read_tuned(args.config).entries
    return entries.DEFAULT.spec


def _is_local(master: str) -> bool:
    """``local``, ``local[4]``, ``local[*]``, ``local[4,2]``: driver and executors in this process."""
    return master == "local" or master.startswith("local[")


def spark_builder(master: str | None, *, spark_ui: bool = False, environ=os.environ):
    """The (unstarted) session builder of a refresh: ``--master``, spark-submit's (Dataproc), or local[*].

    Not under spark-submit, the session is ours to configure: the UI is off unless
    ``spark_ui`` (on, it is read-only), and a local one binds the driver RPC and block
    manager to loopback (Spark would otherwise take the address the host name resolves
    to, the UI every interface). ``environ`` gets ``SPARK_LOCAL_IP`` (the UI's bind
    address) and ``PYSPARK_PYTHON`` for the JVM and executors, unless already set.
    Under spark-submit (``PYSPARK_GATEWAY_PORT`` set) nothing is changed.
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("streamsim-refresh")
    if "PYSPARK_GATEWAY_PORT" in environ:
        return builder.master(master) if master else builder
    master = master or "local[*]"
    builder = builder.master(master).config("spark.ui.enabled", "true" if spark_ui else "false")
    if spark_ui:
        builder = builder.config("spark.ui.killEnabled", "false")
    if _is_local(master):
        # Executors must import this project: they run on this interpreter unless told otherwise.
        environ.setdefault("PYSPARK_PYTHON", sys.executable)
        environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
        builder = builder.config("spark.driver.host", LOOPBACK).config("spark.driver.bindAddress", LOOPBACK)
    return builder


def spark_session(master: str | None, *, spark_ui: bool = False):
    """The refresh's session: the active one if there is one (a notebook, a test), else a new one."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    spark = spark_builder(master, spark_ui=spark_ui).getOrCreate()
    if ships_job(master):
        spark.sparkContext.addPyFile(str(job_zip(Path(_job_files().name))))
    return spark


def ships_job(master: str | None, environ=os.environ) -> bool:
    """Whether a session started for ``master`` must ship the job zip to its executors:
    a cluster master, not under spark-submit (whose ``--py-files`` shipped it already)."""
    return "PYSPARK_GATEWAY_PORT" not in environ and master is not None and not _is_local(master)


_JOB_FILES: list[tempfile.TemporaryDirectory] = []


def _job_files() -> tempfile.TemporaryDirectory:
    """Where this process writes the zip it ships: executors fetch it from the driver
    while the session lives, so it stays until the process exits."""
    if not _JOB_FILES:
        _JOB_FILES.append(tempfile.TemporaryDirectory(prefix="streamsim-job-"))
    return _JOB_FILES[0]


def _summary(stats: dict) -> str:
    check = stats["spot_check"]
    rel = check["mean_relative_error"]
    return (
        f"generation {stats['generation']} ({stats['mode']}: {stats['reason']}): {stats['items']} items, "
        f"{stats['users']} users, {stats['items_recomputed']} rows recomputed, {stats['rows_written']} written; "
        f"pairs {stats['pairs_emitted']:,} emitted / {stats['pairs_exact']:,} exact; "
        f"spot check {check['pairs']} pairs, mean rel. error {'-' if rel is None else f'{rel:.3g}'}; "
        f"{stats['wall_seconds']:.1f} s"
    )


def run_refresh(args) -> int:
    try:
        options = _options(args)
    except ValueError as exc:
        print(f"streamsim refresh: {exc}", file=sys.stderr)
        return 2
    if args.dataproc:
        return submit_dataproc(args)
    from pyspark.sql import SparkSession

    from batch.refresh import run_pass

    settings = settings_from_args(args)
    problem = backend_error(settings)
    if problem:
        print(f"streamsim refresh: {problem}", file=sys.stderr)
        return 1
    # Inside a running Spark application (a notebook, a test) use its session and leave it open.
    owned = SparkSession.getActiveSession() is None
    spark = spark_session(args.master, spark_ui=args.spark_ui)
    try:
        if args.continuous:
            return _run_continuous(spark, settings, options, args)
        while True:
            started = time.monotonic()
            stats = run_pass(spark, settings, options)
            code = _report(stats, as_json=args.json)
            if not args.every:
                return code
            time.sleep(max(0.0, args.every - (time.monotonic() - started)))
    finally:
        if owned:
            spark.stop()


def _min_interval(args) -> float:
    return DEFAULT_MIN_INTERVAL if args.min_interval is None else args.min_interval


def _run_continuous(spark, settings, options, args) -> int:
    """The ``--continuous`` loop: a summary line per pass (or its JSON), one at the end; 0 on a clean stop."""
    from batch.continuous import Stopper, run_continuous
    from streamsim.runtime.outage import Outage, serve_metrics

    def report(stats: dict) -> None:
        if args.json:
            print(json.dumps(stats), flush=True)
        elif stats["flipped"]:
            print(_summary(stats), flush=True)
        else:
            print(f"streamsim refresh: {stats['not_flipped_reason']}", file=sys.stderr, flush=True)

    if not args.json:
        print(
            f"continuous refresh: a pass whenever {args.min_changed}+ items changed, at most every "
            f"{_min_interval(args):g} s; Ctrl-C or SIGTERM stops after the pass in flight",
            flush=True,
        )
    outage = Outage("refresh pass")
    if args.metrics_port is not None:
        serve_metrics(args.metrics_port, {"refresh": outage})
    with Stopper() as stopper:
        try:
            summary = run_continuous(
                spark,
                settings,
                options,
                stop=stopper.event,
                min_interval=_min_interval(args),
                min_changed=args.min_changed,
                on_pass=report,
                outage=outage,
            )
        except KeyboardInterrupt:
            print("continuous refresh interrupted; the pointer names the last complete generation", file=sys.stderr)
            return 130
    if not args.json:
        print(summary.line(), flush=True)
    return 0


def _report(stats: dict, *, as_json: bool) -> int:
    """Print a pass's outcome; its exit status (1 if it refused to publish)."""
    if as_json:
        print(json.dumps(stats), flush=True)
    elif stats["flipped"]:
        print(_summary(stats))
        print(json.dumps(stats, indent=2), flush=True)
    if stats["flipped"]:
        return 0
    print(f"streamsim refresh: {stats['not_flipped_reason']}", file=sys.stderr, flush=True)
    return 1 if stats["refused"] else 0


def job_zip(directory: Path) -> Path:
    """The refresh's code for executors that lack the project: ``JOB_PACKAGES`` as ``.py`` files."""
    root = Path(__file__).resolve().parents[1]
    path = directory / "streamsim-job.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in JOB_PACKAGES:
            for file in sorted((root / package).rglob("*.py")):
                archive.write(file, file.relative_to(root))
    return path


def dataproc_command(args, job_zip: Path) -> list[str]:
    """The ``gcloud dataproc jobs submit pyspark`` line for this refresh.

    The cluster needs the batch extra's libraries (google-cloud-bigtable, scipy, numpy),
    e.g. created with ``--metadata PIP_PACKAGES='google-cloud-bigtable scipy'`` and the
    ``pip-install`` initialization action.
    """
    main = Path(__file__).resolve().parent / "__main__.py"
    forwarded = [
        "refresh",
        "--json",
        "--threshold",
        str(args.threshold),
        "--seed",
        str(args.seed),
        "--top-k",
        str(args.top_k),
        "--min-similarity",
        str(args.min_similarity),
        "--buckets",
        str(args.buckets),
    ]
    if args.entry_scale is not None:
        forwarded += ["--entry-scale", str(args.entry_scale)]
    forwarded += ["--entry-transform", _transform(args)]
    name, given = _measure(args)
    forwarded += ["--similarity", name] + [f"--param={k}={v!r}" for k, v in given.items()]
    if args.partitions:
        forwarded += ["--partitions", str(args.partitions)]
    if args.full:
        forwarded.append("--full")
    if args.incremental:
        forwarded.append("--incremental")
    if args.continuous:
        interval = f"{_min_interval(args):g}s"
        forwarded += ["--continuous", "--min-interval", interval, "--min-changed", str(args.min_changed)]
    if args.allow_empty:
        forwarded.append("--allow-empty")
    forwarded += ["--bought-min-support", str(args.bought_min_support)]
    forwarded += settings_from_args(args).to_argv(remote=True)
    return [
        "gcloud",
        "dataproc",
        "jobs",
        "submit",
        "pyspark",
        str(main),
        f"--cluster={args.dataproc}",
        f"--region={args.region}",
        f"--py-files={job_zip}",
        "--",
        *forwarded,
    ]


def submit_dataproc(args) -> int:
    if not args.region:
        print("streamsim refresh: --dataproc needs --region", file=sys.stderr)
        return 2
    job_dir = Path(args.job_dir or DEFAULT_JOB_DIR)
    job_dir.mkdir(parents=True, exist_ok=True)
    command = dataproc_command(args, job_zip(job_dir))
    if args.dry_run:
        print(" ".join(command))
        return 0
    if not shutil.which("gcloud"):
        print("streamsim refresh: gcloud is not installed (see --dry-run for the command)", file=sys.stderr)
        return 1
    return subprocess.call(command)


def run_rollback(args) -> int:
    from batch.generations import GenerationError, Generations

    settings = settings_from_args(args)
    problem = backend_error(settings)
    if problem:
        print(f"streamsim rollback: {problem}", file=sys.stderr)
        return 1
    try:
        old, new = Generations(settings).rollback()
    except GenerationError as exc:
        print(f"streamsim rollback: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"from": old, "to": new}) if args.json else f"generation pointer {old} -> {new}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m batch refresh|rollback ...``."""
    parser = Parser(prog="python -m batch", description="streamsim's DIMSUM refresh")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(subparsers, connection_parser())
    name_subcommands(subparsers)
    return run_parsed(parser.parse_args(argv))
