"""The Terraform is the layout: tables, families, GC rules and Pub/Sub names as ``schemas`` has them.

The tables are kept by hand in ``deploy/terraform/modules/streamsim/bigtable.tf``; these tests
fail when a table, a family or a GC rule there differs from ``schemas.layout.FAMILIES``, when
a topic or subscription differs from ``PubSubNames``, when an account gains or loses a role,
and (what ``terraform validate`` would catch, had it the provider) when an expression names
a variable, local or resource that does not exist.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from schemas.layout import DEFAULT_PREFIX, FAMILIES, PubSubNames
from tests.deploy.hcl import EXAMPLE, MODULE, merged_blocks, resources, source_text, unquote_template

_GO_DURATION = re.compile(r"^(\d+)h$")


def _hours(text: str) -> timedelta:
    match = _GO_DURATION.match(text)
    assert match, f"max_age {text!r} is not a whole number of hours (Go duration, e.g. 720h)"
    return timedelta(hours=int(match.group(1)))


@pytest.fixture(scope="module")
def module_resources():
    return resources(MODULE)


@pytest.fixture(scope="module")
def module_locals():
    return merged_blocks(MODULE, "locals")


@pytest.fixture(scope="module")
def module_variables():
    return merged_blocks(MODULE, "variable")


def test_every_table_family_and_gc_rule_is_the_layouts(module_locals):
    tables = module_locals["tables"]
    assert set(tables) == set(FAMILIES), "tables differ from schemas.layout.FAMILIES"
    for table, families in FAMILIES.items():
        assert set(tables[table]) == set(families), f"{table}: families differ from the layout"
        for family, rule in families.items():
            declared = tables[table][family]
            assert declared.get("max_version") == rule.max_versions, f"{table}:{family} max_version"
            age = declared.get("max_age")
            assert (None if age is None else _hours(age)) == rule.max_age, f"{table}:{family} max_age"


def test_tables_are_named_with_the_layouts_prefix(module_resources, module_variables):
    table = module_resources["google_bigtable_table"]["table"]
    assert table["for_each"] == "${local.tables}"
    assert unquote_template(table["name"]) == "${var.prefix}${each.key}"
    assert module_variables["prefix"]["default"] == DEFAULT_PREFIX
    # Every family is a block of its table, and every family gets a GC policy.
    assert table["dynamic"][0]["column_family"]["for_each"] == "${each.value}"
    policy = module_resources["google_bigtable_gc_policy"]["family"]
    assert policy["for_each"] == "${local.families}"
    assert "local.tables" in policy["table"] or "google_bigtable_table.table" in policy["table"]
    # Both limits of a family apply as a union, as streamsim.runtime.provision.gc_rule builds them.
    assert '"union"' in policy["gc_rules"] and "max_age" in policy["gc_rules"]
    assert policy["deletion_policy"] == "ABANDON"


def test_the_instance_autoscales_and_the_app_profile_allows_transactional_writes(module_resources):
    instance = module_resources["google_bigtable_instance"]["this"]
    autoscaling = instance["cluster"][0]["autoscaling_config"][0]
    assert set(autoscaling) == {"min_nodes", "max_nodes", "cpu_target"}
    profile = module_resources["google_bigtable_app_profile"]["streamsim"]
    routing = profile["single_cluster_routing"][0]
    assert routing["allow_transactional_writes"] is True
    assert routing["cluster_id"] == "${local.cluster_id}"


def test_every_runtime_names_the_app_profile(module_resources):
    """The fold's CheckAndMutateRow needs the profile's transactional writes once the instance
    has a second cluster: every component passes it (``Settings.app_profile_id``)."""
    profile = "${google_bigtable_app_profile.streamsim.app_profile_id}"
    jobs = module_resources["google_cloud_run_v2_job"]
    for job in ("fold", "refresh"):
        args = jobs[job]["template"][0]["template"][0]["containers"][0]["args"]
        assert args[args.index("--app-profile-id") + 1] == profile, job
    service = module_resources["google_cloud_run_v2_service"]
    (serving,) = service.values()
    args = serving["template"][0]["containers"][0]["args"]
    assert args[args.index("--app-profile-id") + 1] == profile
    parameters = module_resources["google_dataflow_flex_template_job"]["fold"]["parameters"]
    assert "app_profile_id = google_bigtable_app_profile.streamsim.app_profile_id" in parameters
    batch = json.loads((MODULE / "definitions" / "refresh-batch.json").read_text())["pysparkBatch"]["args"]
    assert batch[batch.index("--app-profile-id") + 1] == "${app_profile}"


def test_topics_and_subscriptions_are_the_schemas_names(module_locals, module_resources):
    names = PubSubNames.for_prefix(DEFAULT_PREFIX)
    declared = {
        key: unquote_template(module_locals[key], prefix=DEFAULT_PREFIX)
        for key in ("events_topic", "events_subscription", "dead_letter_topic", "dead_letter_subscription")
    }
    assert declared == {
        "events_topic": names.events_topic,
        "events_subscription": names.events_subscription,
        "dead_letter_topic": names.dead_letter_topic,
        "dead_letter_subscription": names.dead_letter_subscription,
    }
    topics = module_resources["google_pubsub_topic"]
    subscriptions = module_resources["google_pubsub_subscription"]
    assert topics["events"]["name"] == "${local.events_topic}"
    assert topics["dead_letter"]["name"] == "${local.dead_letter_topic}"
    assert subscriptions["events"]["name"] == "${local.events_subscription}"
    assert subscriptions["events"]["topic"] == "${google_pubsub_topic.events.id}"
    assert subscriptions["dead_letter_keep"]["name"] == "${local.dead_letter_subscription}"
    assert subscriptions["dead_letter_keep"]["topic"] == "${google_pubsub_topic.dead_letter.id}"


def test_the_events_subscription_dead_letters_and_retries(module_resources):
    events = module_resources["google_pubsub_subscription"]["events"]
    policy = events["dead_letter_policy"][0]
    assert policy["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert 5 <= policy["max_delivery_attempts"] <= 100  # Pub/Sub's allowed range
    assert set(events["retry_policy"][0]) == {"minimum_backoff", "maximum_backoff"}
    # streamsim.runtime.provision.ACK_DEADLINE_SECONDS, as the local stack has it.
    assert events["ack_deadline_seconds"] == 60
    for name in ("events", "dead_letter_keep"):
        assert module_resources["google_pubsub_subscription"][name]["expiration_policy"][0]["ttl"] == ""


def test_the_pubsub_service_agent_may_dead_letter(module_resources, module_locals):
    assert "@gcp-sa-pubsub.iam.gserviceaccount.com" in module_locals["pubsub_agent"]
    publish = module_resources["google_pubsub_topic_iam_member"]["agent_publishes_dead_letters"]
    assert (publish["topic"], publish["role"], publish["member"]) == (
        "${google_pubsub_topic.dead_letter.name}",
        "roles/pubsub.publisher",
        "${local.pubsub_agent}",
    )
    ack = module_resources["google_pubsub_subscription_iam_member"]["agent_acks_forwarded"]
    assert (ack["subscription"], ack["role"], ack["member"]) == (
        "${google_pubsub_subscription.events.name}",
        "roles/pubsub.subscriber",
        "${local.pubsub_agent}",
    )


#: The least each account needs (deploy/README.md, "Accounts"). A change here is deliberate.
ROLES = {
    "fold": {
        "roles/pubsub.subscriber",
        "roles/pubsub.viewer",
        "roles/pubsub.publisher",
        "roles/bigtable.user",
        "roles/dataflow.worker",
        "roles/storage.objectAdmin",
        "roles/artifactregistry.reader",
    },
    "refresh": {
        "roles/bigtable.user",
        "roles/dataproc.worker",
        "roles/storage.objectAdmin",
        "roles/artifactregistry.reader",
    },
    "serving": {"roles/bigtable.reader"},
    "scheduler": {"roles/dataproc.editor", "roles/iam.serviceAccountUser", "roles/run.invoker"},
}


def _granted(module_resources) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for rtype, named in module_resources.items():
        if not rtype.endswith("_iam_member"):
            continue
        for body in named.values():
            text = f"{body.get('member', '')} {body.get('for_each', '')}"
            for account in re.findall(r"google_service_account\.(\w+)\.member", text):
                granted.setdefault(account, set()).add(body["role"])
    return granted


def test_each_component_account_has_exactly_its_least_roles(module_resources):
    assert set(module_resources["google_service_account"]) == set(ROLES)
    assert _granted(module_resources) == ROLES
    # Nothing at runtime administers Bigtable or Pub/Sub: the tables come from Terraform.
    every = set().union(*ROLES.values())
    assert not {r for r in every if r.startswith(("roles/bigtable.admin", "roles/pubsub.admin", "roles/pubsub.editor"))}
    assert not every & {"roles/owner", "roles/editor"}


def test_serving_reads_bigtable_and_nothing_else(module_resources):
    serving = module_resources["google_cloud_run_v2_service"]["serving"]
    assert serving["template"][0]["service_account"] == "${google_service_account.serving.email}"
    assert _granted(module_resources)["serving"] == {"roles/bigtable.reader"}


def test_profiles_choose_dataflow_and_dataproc_or_cloud_run_jobs(module_resources, module_variables):
    assert 'contains(["standard", "small"], var.profile)' in str(module_variables["profile"]["validation"])
    standard = [
        module_resources["google_dataflow_flex_template_job"]["fold"],
        module_resources["google_cloud_scheduler_job"]["refresh_batch"],
    ]
    small = [module_resources["google_cloud_run_v2_job"][name] for name in ("fold", "refresh")]
    assert all(r["count"] == "${local.standard ? 1 : 0}" for r in standard)
    assert all(r["count"] == "${local.small ? 1 : 0}" for r in small)
    fold_args = small[0]["template"][0]["template"][0]["containers"][0]["args"]
    refresh_args = small[1]["template"][0]["template"][0]["containers"][0]["args"]
    assert fold_args[:3] == ["stream", "--drain-exit", "60"]
    assert refresh_args[0] == "refresh"


_REFERENCE = re.compile(r"\b(var|local|data\.\w+|google_\w+|module)\.(\w+)")


def _declared(directory) -> dict[str, set[str]]:
    declared: dict[str, set[str]] = {
        "var": set(merged_blocks(directory, "variable")),
        "local": set(merged_blocks(directory, "locals")),
        "module": set(merged_blocks(directory, "module")),
    }
    for rtype, named in resources(directory).items():
        declared[rtype] = set(named)
    for rtype, named in resources(directory, "data").items():
        declared[f"data.{rtype}"] = set(named)
    return declared


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_reference_names_something_declared(directory):
    """The part of ``terraform validate`` that needs no provider schema."""
    declared = _declared(directory)
    unknown = sorted(
        {
            f"{kind}.{name}"
            for kind, name in _REFERENCE.findall(source_text(directory))
            if name not in declared.get(kind, set())
        }
    )
    assert unknown == []


def test_the_example_passes_every_required_module_variable_and_no_unknown_one(module_variables):
    call = merged_blocks(EXAMPLE, "module")["streamsim"]
    passed = set(call) - {"source"}
    required = {name for name, body in module_variables.items() if "default" not in body}
    assert required <= passed, f"missing: {sorted(required - passed)}"
    assert passed <= set(module_variables), f"unknown: {sorted(passed - set(module_variables))}"
