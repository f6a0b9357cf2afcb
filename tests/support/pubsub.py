"""Pub/Sub helpers for tests: read what landed on a subscription."""

from __future__ import annotations

from streamsim.runtime.clients import subscriber_client


def drain(settings, subscription: str) -> list:
    """Pull and acknowledge every message waiting on ``subscription``."""
    subscriber = subscriber_client(settings)
    path = subscriber.subscription_path(settings.project, subscription)
    messages = []
    while True:
        response = subscriber.pull(subscription=path, max_messages=100, return_immediately=True, timeout=10)
        if not response.received_messages:
            return messages
        messages += [m.message for m in response.received_messages]
        subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in response.received_messages])
