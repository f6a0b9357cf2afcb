"""Create and list streamsim's tables, topics and subscriptions, idempotently.

Two halves, so that a caller with only a Bigtable emulator (serving tests, the
DIMSUM benchmark) creates tables without needing Pub/Sub: :func:`provision_bigtable`
and :func:`provision_pubsub`; :func:`provision` does both.
"""

from __future__ import annotations

import logging

from google.api_core import exceptions

from schemas.layout import FAMILIES, GcRule
from streamsim.runtime.clients import bigtable_admin, publisher_client, subscriber_client
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

#: Seconds Pub/Sub waits for an ack before redelivering; long enough for a
#: bundle to be folded and written.
ACK_DEADLINE_SECONDS = 60
#: How long one admin call may take before we call the backend unreachable.
ADMIN_TIMEOUT_SECONDS = 10


def gc_rule(rule: GcRule):
    """The layout's GC rule as the admin API's message."""
    from google.cloud.bigtable_admin_v2 import types
    from google.protobuf import duration_pb2

    parts = []
    if rule.max_versions is not None:
        parts.append(types.GcRule(max_num_versions=rule.max_versions))
    if rule.max_age is not None:
        parts.append(types.GcRule(max_age=duration_pb2.Duration(seconds=int(rule.max_age.total_seconds()))))
    # A union deletes a cell when any of its rules says so: both limits hold.
    return parts[0] if len(parts) == 1 else types.GcRule(union=types.GcRule.Union(rules=parts))


def _instance_path(settings: Settings) -> str:
    return f"projects/{settings.project}/instances/{settings.instance}"


def provision_bigtable(settings: Settings) -> dict[str, list[str]]:
    """Create missing tables and column families; returns what was created."""
    from google.cloud.bigtable_admin_v2 import types

    admin = bigtable_admin(settings)
    parent = _instance_path(settings)
    created: dict[str, list[str]] = {"tables": [], "families": []}
    existing = {t.name.rsplit("/", 1)[-1]: t for t in admin.list_tables(parent=parent, timeout=ADMIN_TIMEOUT_SECONDS)}
    for logical, table_id in settings.tables.as_dict().items():
        families = FAMILIES[logical]
        if table_id not in existing:
            table = types.Table(
                column_families={f: types.ColumnFamily(gc_rule=gc_rule(r)) for f, r in families.items()}
            )
            try:
                admin.create_table(parent=parent, table_id=table_id, table=table, timeout=ADMIN_TIMEOUT_SECONDS)
                created["tables"].append(table_id)
                continue
            except exceptions.AlreadyExists:  # another `up` raced us
                pass
        request = types.GetTableRequest(name=f"{parent}/tables/{table_id}", view=types.Table.View.SCHEMA_VIEW)
        present = admin.get_table(request=request, timeout=ADMIN_TIMEOUT_SECONDS).column_families
        missing = [f for f in families if f not in present]
        if missing:
            admin.modify_column_families(
                name=f"{parent}/tables/{table_id}",
                modifications=[
                    types.ModifyColumnFamiliesRequest.Modification(
                        id=f, create=types.ColumnFamily(gc_rule=gc_rule(families[f]))
                    )
                    for f in missing
                ],
                timeout=ADMIN_TIMEOUT_SECONDS,
            )
            created["families"] += [f"{table_id}:{f}" for f in missing]
    return created


def provision_pubsub(settings: Settings) -> dict[str, list[str]]:
    """Create missing topics and subscriptions; returns what was created."""
    created: dict[str, list[str]] = {"topics": [], "subscriptions": []}
    publisher = publisher_client(settings)
    try:
        for topic_id in settings.pubsub.topics().values():
            try:
                publisher.create_topic(
                    name=publisher.topic_path(settings.project, topic_id), timeout=ADMIN_TIMEOUT_SECONDS
                )
                created["topics"].append(topic_id)
            except exceptions.AlreadyExists:
                pass
    finally:
        publisher.stop()
    subscriber = subscriber_client(settings)
    for sub_id, topic_id in settings.pubsub.subscriptions().values():
        try:
            subscriber.create_subscription(
                request={
                    "name": subscriber.subscription_path(settings.project, sub_id),
                    "topic": f"projects/{settings.project}/topics/{topic_id}",
                    "ack_deadline_seconds": ACK_DEADLINE_SECONDS,
                },
                timeout=ADMIN_TIMEOUT_SECONDS,
            )
            created["subscriptions"].append(sub_id)
        except exceptions.AlreadyExists:
            pass
    return created


def provision(settings: Settings) -> dict[str, list[str]]:
    """Create whatever is missing, in Bigtable and Pub/Sub; returns what was created, by kind."""
    created = {**provision_bigtable(settings), **provision_pubsub(settings)}
    log.info("provisioned %s", {k: v for k, v in created.items() if v} or "nothing new")
    return created


def missing_resources(settings: Settings) -> list[str]:
    """Tables, topics and subscriptions of the layout that do not exist."""
    admin = bigtable_admin(settings)
    tables = {
        t.name.rsplit("/", 1)[-1]
        for t in admin.list_tables(parent=_instance_path(settings), timeout=ADMIN_TIMEOUT_SECONDS)
    }
    missing = [f"table:{t}" for t in settings.tables.as_dict().values() if t not in tables]
    publisher = publisher_client(settings)
    try:
        topics = {
            t.name.rsplit("/", 1)[-1]
            for t in publisher.list_topics(
                request={"project": f"projects/{settings.project}"}, timeout=ADMIN_TIMEOUT_SECONDS
            )
        }
    finally:
        publisher.stop()
    missing += [f"topic:{t}" for t in settings.pubsub.topics().values() if t not in topics]
    subscriber = subscriber_client(settings)
    subs = {
        s.name.rsplit("/", 1)[-1]
        for s in subscriber.list_subscriptions(
            request={"project": f"projects/{settings.project}"}, timeout=ADMIN_TIMEOUT_SECONDS
        )
    }
    missing += [f"subscription:{s}" for s, _ in settings.pubsub.subscriptions().values() if s not in subs]
    return missing
