"""The request bodies the deploy kit sends, parsed by the Google client libraries' own types.

The refresh's Dataproc batch and the Cloud Scheduler jobs are JSON templates in the module
(``definitions/``) that Terraform fills with ``templatefile``. Here each is filled the same
way and parsed into ``dataproc_v1.Batch`` / ``scheduler_v1.Job``, which reject an unknown
or misspelt field; and every command line the deploy kit gives a container is parsed by
streamsim's own command line parser.
"""

from __future__ import annotations

import json
import re

import pytest
from google.cloud import dataproc_v1, scheduler_v1
from google.protobuf.json_format import ParseError

from streamsim.app.cli import build_parser
from tests.deploy.hcl import MODULE, resources
from tests.deploy.test_images import DATAPROC_SPARK

DEFINITIONS = MODULE / "definitions"
MESSAGE_TYPES = {
    "refresh-batch.json": dataproc_v1.Batch,
    "schedule-refresh-batch.json": scheduler_v1.Job,
    "schedule-run-job.json": scheduler_v1.Job,
}
SAMPLE = {
    "project": "my-shop-recs",
    "region": "europe-west1",
    "bucket": "my-shop-recs-streamsim",
    "instance": "streamsim",
    "prefix": "streamsim-",
    "app_profile": "streamsim",
    "image": "europe-west1-docker.pkg.dev/my-shop-recs/streamsim/refresh:v1",
    "max_executors": "4",
    "service_account": "streamsim-refresh@my-shop-recs.iam.gserviceaccount.com",
    "scheduler_account": "streamsim-scheduler@my-shop-recs.iam.gserviceaccount.com",
    "subnetwork": "default",
    "schedule": "*/30 * * * *",
    "time_zone": "Etc/UTC",
    "job": "streamsim-fold",
}
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def terraform_template_variables() -> dict[str, set[str]]:
    """File name -> the variables refresh.tf's ``templatefile`` calls pass it."""
    text = (MODULE / "refresh.tf").read_text(encoding="utf-8")
    calls = re.findall(r'templatefile\("\$\{path\.module\}/definitions/([\w.-]+)", \{(.*?)\}\)', text, re.S)
    passed: dict[str, set[str]] = {}
    for name, body in calls:
        passed.setdefault(name, set()).update(re.findall(r"^\s*(\w+)\s*=", body, re.M))
    return passed


def render(name: str) -> str:
    return _PLACEHOLDER.sub(lambda m: SAMPLE[m.group(1)], (DEFINITIONS / name).read_text(encoding="utf-8"))


def test_every_definition_is_filled_by_terraform_with_exactly_its_placeholders():
    passed = terraform_template_variables()
    assert set(passed) == set(MESSAGE_TYPES) == {p.name for p in DEFINITIONS.glob("*.json")}
    for name, variables in passed.items():
        assert set(_PLACEHOLDER.findall((DEFINITIONS / name).read_text(encoding="utf-8"))) == variables, name


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
def test_each_definition_parses_as_its_api_message(name):
    message = MESSAGE_TYPES[name].from_json(render(name))  # unknown fields raise
    assert MESSAGE_TYPES[name].to_dict(message)


def test_a_misspelt_field_is_rejected():
    body = json.loads(render("refresh-batch.json"))
    body["runtimeConfig"]["containerImages"] = body["runtimeConfig"].pop("containerImage")
    with pytest.raises(ParseError, match="containerImages"):
        dataproc_v1.Batch.from_json(json.dumps(body))


def test_the_refresh_batch_runs_the_refresh_on_the_spark_35_runtime():
    batch = dataproc_v1.Batch.from_json(render("refresh-batch.json"))
    assert batch.runtime_config.version.startswith("2.3")  # Dataproc Serverless 2.3 LTS: Spark 3.5
    assert DATAPROC_SPARK == "3.5"
    assert batch.runtime_config.container_image == SAMPLE["image"]
    assert batch.environment_config.execution_config.service_account == SAMPLE["service_account"]
    args = build_parser().parse_args(list(batch.pyspark_batch.args))
    assert (args.command, args.project, args.instance, args.prefix) == (
        "refresh",
        "my-shop-recs",
        "streamsim",
        "streamsim-",
    )


def test_the_schedules_call_the_apis_that_start_the_work():
    batch = scheduler_v1.Job.from_json(render("schedule-refresh-batch.json"))
    assert (
        batch.http_target.uri
        == "https://dataproc.googleapis.com/v1/projects/my-shop-recs/locations/europe-west1/batches"
    )
    assert batch.http_target.http_method == scheduler_v1.HttpMethod.POST
    assert batch.http_target.oauth_token.service_account_email == SAMPLE["scheduler_account"]
    job = scheduler_v1.Job.from_json(render("schedule-run-job.json"))
    assert job.http_target.uri.endswith("/locations/europe-west1/jobs/streamsim-fold:run")
    assert job.http_target.http_method == scheduler_v1.HttpMethod.POST


def _container_args(body: dict) -> list[str]:
    template = body["template"][0]
    template = template.get("template", [template])[0]  # a job's task template, or a service's
    args = template["containers"][0]["args"]
    substitutions = {"var.project": "my-shop-recs", "var.prefix": "streamsim-"}
    out = []
    for arg in args:
        arg = str(arg)
        if arg.startswith("${"):
            expression = arg[2:-1]
            arg = substitutions.get(expression, "streamsim")  # instance and app profile ids
        out.append(arg)
    return out


@pytest.mark.parametrize(
    "rtype, name, entrypoint",
    [
        ("google_cloud_run_v2_job", "fold", []),
        ("google_cloud_run_v2_job", "refresh", []),
        ("google_cloud_run_v2_service", "serving", ["serve"]),  # ENTRYPOINT streamsim serve
    ],
)
def test_every_container_command_line_is_one_streamsim_accepts(rtype, name, entrypoint):
    argv = entrypoint + _container_args(resources(MODULE)[rtype][name])
    args = build_parser().parse_args(argv)
    assert args.project == "my-shop-recs" and args.prefix == "streamsim-"
