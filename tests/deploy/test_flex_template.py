"""The fold's Flex Template: its parameters, its spec built offline, its entry point.

``gcloud dataflow flex-template build --print-only`` builds the template spec without
credentials or a bucket; the entry point (deploy/dataflow/main.py) is run up to the
submission with Beam's ``--dry_run``, which translates the job without sending it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess

import pytest

from streaming.pipeline import FoldOptions
from streaming.runner import pipeline_options, run_pipeline
from streamsim.runtime.cli import settings_from_args
from tests.deploy.hcl import ROOT

DATAFLOW = ROOT / "deploy" / "dataflow"
METADATA = json.loads((DATAFLOW / "metadata.json").read_text(encoding="utf-8"))
IMAGE = "europe-west1-docker.pkg.dev/my-shop-recs/streamsim/dataflow:v1"


def flex_main():
    spec = importlib.util.spec_from_file_location("flex_main", DATAFLOW / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fold_option_names() -> set[str]:
    parser = argparse.ArgumentParser()
    FoldOptions._add_argparse_args(parser)
    return {action.dest for action in parser._actions if action.dest != "help"}


def test_the_parameters_are_the_pipelines_options_and_the_connection():
    names = [p["name"] for p in METADATA["parameters"]]
    assert len(names) == len(set(names))
    assert set(names) == fold_option_names() | {"bigtable_instance", "table_prefix", "app_profile_id"}
    required = {p["name"] for p in METADATA["parameters"] if not p.get("isOptional")}
    assert required == {"bigtable_instance"}
    assert all(p.get("label") and p.get("helpText") for p in METADATA["parameters"])


def test_gcloud_builds_the_template_spec_offline(tmp_path):
    gcloud = shutil.which("gcloud")
    if not gcloud:
        pytest.fail("gcloud is not installed (the Google Cloud CLI; see deploy/README.md)")
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    argv = [gcloud, "dataflow", "flex-template", "build", "gs://my-shop-recs-streamsim/templates/fold-v1.json"]
    argv += ["--image", IMAGE, "--sdk-language", "PYTHON", "--metadata-file", str(DATAFLOW / "metadata.json")]
    result = subprocess.run(
        [*argv, "--print-only", "--project", "my-shop-recs"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout[result.stdout.index("{") :])
    assert spec["image"] == IMAGE
    assert spec["sdkInfo"]["language"] == "PYTHON"
    assert spec["metadata"]["parameters"] == METADATA["parameters"]


def test_gcloud_rejects_a_parameter_without_a_name(tmp_path):
    broken = dict(METADATA, parameters=[dict(METADATA["parameters"][0], name="")])
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "config"), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    result = subprocess.run(
        ["gcloud", "dataflow", "flex-template", "build", "gs://b/t.json", "--image", IMAGE, "--sdk-language", "PYTHON"]
        + ["--metadata-file", str(tmp_path / "metadata.json"), "--print-only", "--project", "p"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0 and "name" in result.stderr.lower()


#: What the launcher passes: the template's parameters and Dataflow's own options.
LAUNCHER_ARGV = [
    "--bigtable_instance=recs",
    "--table_prefix=shop-",
    "--app_profile_id=streamsim",
    "--weights=browse=1,basket=3,purchase=5",
    "--project=my-shop-recs",
    "--region=europe-west1",
    "--temp_location=gs://my-shop-recs-streamsim/dataflow/tmp",
    "--staging_location=gs://my-shop-recs-streamsim/dataflow/staging",
    "--job_name=streamsim-fold",
    f"--sdk_container_image={IMAGE}",
]


def test_the_entry_point_turns_the_launchers_arguments_into_the_folds():
    from streamsim.app.cli import build_parser

    argv = flex_main().stream_argv(LAUNCHER_ARGV)
    args = build_parser().parse_args(["stream", *argv])
    settings = settings_from_args(args)
    assert (settings.project, settings.instance, settings.prefix) == ("my-shop-recs", "recs", "shop-")
    assert settings.app_profile_id == "streamsim"
    assert args.no_supervise
    options = pipeline_options(args.beam_args[1:])
    assert options.get_all_options()["runner"] == "DataflowRunner"
    assert options.view_as(FoldOptions).weights == "browse=1,basket=3,purchase=5"
    assert options.get_all_options()["sdk_container_image"] == IMAGE


def test_the_entry_points_job_translates_for_dataflow():
    """Up to the submission: the job the launcher would send, built with ``--dry_run``."""
    from streamsim.app.cli import build_parser

    argv = flex_main().stream_argv([*LAUNCHER_ARGV, "--dry_run=True", "--no_auth", "--sdk_location=container"])
    args = build_parser().parse_args(["stream", *argv])
    assert run_pipeline(settings_from_args(args), args.beam_args[1:]) == 0
