"""The batch CLI's pure parts: periods, the Dataproc command, the human summary, bad input."""

from __future__ import annotations

import argparse
import zipfile

import pytest

from batch import cli
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
