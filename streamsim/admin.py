"""Create and list streamsim's tables, topics and subscriptions, idempotently."""
from __future__ import annotations

import logging

from google.api_core import exceptions

from schemas.layout import FAMILIES, GcRule
from streamsim.clients import bigtable_instance, publisher_client, subscriber_client
from streamsim.settings import Settings

log = logging.getLogger(__name__)

#: Seconds Pub/Sub waits for an ack before redelivering; long enough for a
#: bundle to be folded and written.
ACK_DEADLINE_SECONDS = 60
#: How long one admin call may take before we call the backend unreachable.
ADMIN_TIMEOUT_SECONDS = 10


def _gc_rule(rule: GcRule):
    from google.cloud.bigtable import column_family

    parts = []
    if rule.max_versions is not None:
        parts.append(column_family.MaxVersionsGCRule(rule.max_versions))
    if rule.max_age is not None:
        parts.append(column_family.MaxAgeGCRule(rule.max_age))
    # A union deletes a cell when any of its rules says so: both limits hold.
    return parts[0] if len(parts) == 1 else column_family.GCRuleUnion(parts)


def provision(settings: Settings) -> dict[str, list[str]]:
    """Create whatever is missing; returns what was created, by kind."""
    created: dict[str, list[str]] = {"tables": [], "families": [], "topics": [], "subscriptions": []}
    instance = bigtable_instance(settings, admin=True)
    existing = {t.table_id for t in instance.list_tables()}
    for logical, table_id in settings.tables.as_dict().items():
        families = FAMILIES[logical]
        table = instance.table(table_id)
        if table_id not in existing:
            try:
                table.create(column_families={f: _gc_rule(r) for f, r in families.items()})
                created["tables"].append(table_id)
                continue
            except exceptions.AlreadyExists:  # another `up` raced us
                pass
        present = table.list_column_families()
        for family, rule in families.items():
            if family not in present:
                table.column_family(family, _gc_rule(rule)).create()
                created["families"].append(f"{table_id}:{family}")

    publisher = publisher_client(settings)
    for topic_id in settings.pubsub.topics().values():
        try:
            publisher.create_topic(
                name=publisher.topic_path(settings.project, topic_id), timeout=ADMIN_TIMEOUT_SECONDS
            )
            created["topics"].append(topic_id)
        except exceptions.AlreadyExists:
            pass
    subscriber = subscriber_client(settings)
    with subscriber:
        for sub_id, topic_id in settings.pubsub.subscriptions().values():
            try:
                subscriber.create_subscription(
                    request={
                        "name": subscriber.subscription_path(settings.project, sub_id),
                        "topic": publisher.topic_path(settings.project, topic_id),
                        "ack_deadline_seconds": ACK_DEADLINE_SECONDS,
                    },
                    timeout=ADMIN_TIMEOUT_SECONDS,
                )
                created["subscriptions"].append(sub_id)
            except exceptions.AlreadyExists:
                pass
    log.info("provisioned %s", {k: v for k, v in created.items() if v} or "nothing new")
    return created


def missing_resources(settings: Settings) -> list[str]:
    """Tables, topics and subscriptions of the layout that do not exist."""
    missing = []
    instance = bigtable_instance(settings, admin=True)
    tables = {t.table_id for t in instance.list_tables()}
    missing += [f"table:{t}" for t in settings.tables.as_dict().values() if t not in tables]
    publisher = publisher_client(settings)
    topics = {
        t.name.rsplit("/", 1)[-1]
        for t in publisher.list_topics(
            request={"project": f"projects/{settings.project}"}, timeout=ADMIN_TIMEOUT_SECONDS
        )
    }
    missing += [f"topic:{t}" for t in settings.pubsub.topics().values() if t not in topics]
    subscriber = subscriber_client(settings)
    with subscriber:
        subs = {
            s.name.rsplit("/", 1)[-1]
            for s in subscriber.list_subscriptions(
                request={"project": f"projects/{settings.project}"}, timeout=ADMIN_TIMEOUT_SECONDS
            )
        }
    missing += [
        f"subscription:{s}" for s, _ in settings.pubsub.subscriptions().values() if s not in subs
    ]
    return missing
