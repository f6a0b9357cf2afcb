"""The batch CLI's pure parts: periods, the Dataproc command, the human summary, bad input."""

from __future__ import annotations

import argparse
import zipfile

import pytest

from batch import cli
from batch.dimsum import DimsumParams
from streamsim.app.cli import main as streamsim_main


def test_every_accepts_periods_and_rejects_the_rest():
    assert cli.every_seconds("30s") == 30
    assert cli.every_seconds("10m") == 600
    assert cli.every_seconds("1.5h") == 5400
    for bad in ("10", "0m", "5x", "-1m", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.every_seconds(bad)


def test_dataproc_dry_run_prints_a_submit_line_with_the_packaged_project(tmp_path, capsys):
    code = cli.main(
        [
            "refresh",
            "--dataproc",
            "recs",
            "--region",
            "europe-west1",
            "--dry-run",
            "--full",
            "--threshold",
            "0.2",
            "--prefix",
            "prod-",
            "--job-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    line = capsys.readouterr().out.split()
    assert line[:5] == ["gcloud", "dataproc", "jobs", "submit", "pyspark"]
    assert "--cluster=recs" in line and "--region=europe-west1" in line
    forwarded = line[line.index("--") + 1 :]
    assert forwarded[0] == "refresh" and "--full" in forwarded
    assert forwarded[forwarded.index("--threshold") + 1] == "0.2"
    assert forwarded[forwarded.index("--prefix") + 1] == "prod-"
    # The job samples the same entries as a local refresh would.
    assert forwarded[forwarded.index("--entry-transform") + 1] == "saturate:0.1"
    names = zipfile.ZipFile(tmp_path / "streamsim-job.zip").namelist()
    assert {"batch/refresh.py", "schemas/layout.py", "streamsim/runtime/settings.py"} <= set(names)


def test_dataproc_needs_a_region(capsys):
    assert cli.main(["refresh", "--dataproc", "recs", "--dry-run"]) == 2
    assert "--region" in capsys.readouterr().err


def test_bad_parameters_are_clear_errors(capsys):
    assert cli.main(["refresh", "--top-k", "0", "--bigtable-host", "127.0.0.1:1"]) == 2
    assert "top-k" in capsys.readouterr().err
    assert streamsim_main(["inspect", "similar", "x", "--n", "0"]) == 2


def test_unreachable_emulator_is_reported_not_waited_on(capsys):
    assert streamsim_main(["inspect", "similar", "x", "--bigtable-host", "127.0.0.1:1"]) == 1
    assert "not reachable" in capsys.readouterr().err


def test_summary_names_the_figures_people_look_for():
    stats = {
        "generation": 5,
        "mode": "incremental",
        "reason": "dirty items",
        "items": 10,
        "users": 7,
        "items_recomputed": 2,
        "rows_written": 4,
        "pairs_emitted": 1200,
        "pairs_exact": 3400,
        "spot_check": {"pairs": 9, "mean_relative_error": 0.0123},
        "wall_seconds": 3.21,
    }
    line = cli._summary(stats)
    assert "generation 5 (incremental" in line and "1,200 emitted / 3,400 exact" in line and "0.0123" in line


@pytest.mark.parametrize("value", ["2", "1", "1.0", "-0.1", "nan", "inf"])
def test_min_similarity_outside_0_1_is_rejected_before_any_work(value, capsys):
    # A host nobody listens on: the command must stop at the flags, before any backend call.
    assert cli.main(["refresh", "--min-similarity", value, "--bigtable-host", "127.0.0.1:1"]) == 2
    assert "min-similarity" in capsys.readouterr().err


def test_min_similarity_within_0_1_is_accepted():
    assert DimsumParams(min_similarity=0.0).min_similarity == 0.0
    assert DimsumParams(min_similarity=0.99).min_similarity == 0.99
    for bad in (1.0, 2, -0.5, float("nan"), True):
        with pytest.raises(ValueError, match="min-similarity"):
            DimsumParams(min_similarity=bad)
    with pytest.raises(ValueError, match="top-k"):
        DimsumParams(top_k=True)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dry-run"], "--dry-run applies only with --dataproc"),
        (["--region", "europe-west1"], "--region applies only with --dataproc"),
        (["--job-dir", "x"], "--job-dir applies only with --dataproc"),
        (["--dataproc", "c", "--every", "10m"], "--every does not apply with --dataproc"),
        (["--dataproc", "c", "--master", "yarn"], "--master does not apply with --dataproc"),
        (["--dataproc", "c", "--spark-ui"], "--spark-ui does not apply with --dataproc"),
        (["--continuous", "--every", "10m"], "--every and --continuous exclude each other"),
        (["--min-interval", "10s"], "--min-interval applies only with --continuous"),
        (["--continuous", "--min-changed", "0"], "--min-changed must be at least 1"),
    ],
)
def test_flags_that_would_be_ignored_are_errors(flags, message, capsys, tmp_path):
    # --dry-run with --dataproc: were the check to regress, nothing would be submitted.
    extra = ["--region", "r", "--dry-run", "--job-dir", str(tmp_path)] if "--dataproc" in flags else []
    assert cli.main(["refresh", *flags, *extra, "--bigtable-host", "127.0.0.1:1"]) == 2
    assert message in capsys.readouterr().err


def test_every_longer_than_a_week_is_rejected():
    assert cli.every_seconds("168h") == 7 * 24 * 3600
    with pytest.raises(argparse.ArgumentTypeError, match="longer than a week"):
        cli.every_seconds("99999999h")


def test_allow_empty_is_forwarded_to_dataproc(tmp_path, capsys):
    argv = ["refresh", "--dataproc", "c", "--region", "r", "--dry-run", "--allow-empty", "--job-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    assert "--allow-empty" in capsys.readouterr().out.split()


def test_continuous_and_forced_modes_are_forwarded_to_dataproc_as_a_long_running_job(tmp_path, capsys):
    argv = ["refresh", "--dataproc", "c", "--region", "r", "--dry-run", "--job-dir", str(tmp_path)]
    assert cli.main([*argv, "--continuous", "--min-interval", "2m", "--incremental"]) == 0
    line = capsys.readouterr().out.split()
    forwarded = line[line.index("--") :]
    assert "--continuous" in forwarded and "--incremental" in forwarded
    assert forwarded[forwarded.index("--min-interval") + 1] == "120s"
    assert forwarded[forwarded.index("--min-changed") + 1] == "1"


def test_full_and_incremental_are_exclusive_flags(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["refresh", "--full", "--incremental", "--bigtable-host", "127.0.0.1:1"])
    assert exited.value.code == 2
    assert "--incremental: not allowed with argument --full" in capsys.readouterr().err


LOOPBACK_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}


def test_a_local_session_is_configured_for_loopback_without_the_ui():
    environ = {}
    options = cli.spark_builder(None, environ=environ)._options
    assert options["spark.master"] == "local[*]" and options["spark.ui.enabled"] == "false"
    assert LOOPBACK_CONF.items() <= options.items()
    assert environ["SPARK_LOCAL_IP"] == "127.0.0.1"  # where the UI would bind
    with_ui = cli.spark_builder("local[2]", spark_ui=True, environ={})._options
    assert with_ui["spark.master"] == "local[2]" and with_ui["spark.ui.enabled"] == "true"
    assert with_ui["spark.ui.killEnabled"] == "false" and LOOPBACK_CONF.items() <= with_ui.items()
    # A cluster master: executors elsewhere must reach the driver, so no loopback binding.
    cluster = cli.spark_builder("spark://head:7077", environ={})._options
    assert cluster["spark.ui.enabled"] == "false" and "spark.driver.host" not in cluster
    # Under spark-submit (Dataproc) the cluster's settings apply.
    submitted = cli.spark_builder(None, environ={"PYSPARK_GATEWAY_PORT": "1"})._options
    assert not {"spark.master", "spark.ui.enabled", "spark.driver.host", "spark.driver.bindAddress"} & submitted.keys()


LISTENING_SOCKETS = r"""
import json, os, sys
from batch.cli import spark_session

def descendants(pid):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in open(f"/proc/{pid}/task/{task}/children").read().split():
            found += [int(child), *descendants(int(child))]
    return found

def listening(pids):
    inodes = set()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                address, port = fields[1].split(":")
                found.append([address, int(port, 16)])
    return found

spark = spark_session(None)
assert spark.sparkContext.parallelize(range(100), 4).sum() == 4950  # executors and block manager up
conf = dict(spark.sparkContext.getConf().getAll())
print(json.dumps({"sockets": listening([os.getpid(), *descendants(os.getpid())]), "ui": conf.get("spark.ui.enabled")}))
spark.stop()
"""


def _is_loopback(hex_address: str) -> bool:
    raw = bytes.fromhex(hex_address)
    # /proc/net/tcp{,6} print each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return words[0] == 127
    return words == bytes(15) + b"\x01" or (words[:12] == bytes(10) + b"\xff\xff" and words[12] == 127)


@pytest.mark.slow
@pytest.mark.spark
def test_a_local_refresh_session_listens_on_loopback_only():
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_LOCAL_IP"))}
    result = subprocess.run(
        [sys.executable, "-c", LISTENING_SOCKETS], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ui"] == "false"
    assert report["sockets"], "expected the driver's listening sockets"
    exposed = [s for s in report["sockets"] if not _is_loopback(s[0])]
    assert exposed == []
