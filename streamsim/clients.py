"""Google client factories that honour the emulator hosts in :class:`Settings`.

The Google libraries read ``BIGTABLE_EMULATOR_HOST`` / ``PUBSUB_EMULATOR_HOST``
from the process environment when a client is built (Beam's Pub/Sub IO does
too), and offer no argument for it; so the factories export them first.
"""
from __future__ import annotations

import os
import socket
import warnings

from streamsim.settings import Settings

# The Bigtable client warns on every construction that it talks to an emulator;
# with emulators that is the point, and `streamsim status` says so already.
warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator", category=RuntimeWarning)


def export_emulator_env(settings: Settings) -> None:
    os.environ.update(settings.emulator_env())


def bigtable_client(settings: Settings, *, admin: bool = False):
    from google.cloud import bigtable

    export_emulator_env(settings)
    return bigtable.Client(project=settings.project, admin=admin)


def bigtable_instance(settings: Settings, *, admin: bool = False):
    return bigtable_client(settings, admin=admin).instance(settings.instance)


def publisher_client(settings: Settings, **kwargs):
    from google.cloud import pubsub_v1

    export_emulator_env(settings)
    return pubsub_v1.PublisherClient(**kwargs)


def subscriber_client(settings: Settings, **kwargs):
    from google.cloud import pubsub_v1

    export_emulator_env(settings)
    return pubsub_v1.SubscriberClient(**kwargs)


def reachable(host: str | None, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at "host:port".

    A quick probe before any gRPC call: gRPC against a dead port retries
    until its deadline, which would make ``status`` hang.
    """
    if not host:
        return False
    name, _, port = host.rpartition(":")
    try:
        with socket.create_connection((name.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False
