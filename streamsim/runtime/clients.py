"""Connections to Google services, created once per process and closed at exit.

Bigtable: one gRPC channel per (process, endpoint), opened here directly (insecure
to an emulator, TLS with application-default credentials to Cloud Bigtable), so no
client object or environment variable is involved; the admin API (provisioning
only) gets a GAPIC client over its own channel the same way.

Pub/Sub: the Google library and Beam's Pub/Sub IO read ``PUBSUB_EMULATOR_HOST``
from the environment and offer no argument for it, so that variable is exported,
once, when the first Pub/Sub client of the process is built.

The cache key includes the process id: a channel must not cross a fork (Spark's
Python workers are forked).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import warnings

from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

# The Bigtable client warns on every construction that it talks to an emulator;
# with emulators that is the point, and `streamsim status` says so already.
warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator", category=RuntimeWarning)

CLOUD_BIGTABLE = "bigtable.googleapis.com:443"
CLOUD_BIGTABLE_ADMIN = "bigtableadmin.googleapis.com:443"
_SCOPES = ["https://www.googleapis.com/auth/bigtable.data", "https://www.googleapis.com/auth/bigtable.admin"]
CHANNEL_OPTIONS = [
    # gRPC's default reconnect backoff grows to 2 minutes; callers should be back
    # within a second or two of Bigtable.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Reads are bounded by the layout, but a batch of rows may exceed gRPC's 4 MiB default.
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
]

_lock = threading.Lock()
_open: dict[tuple, object] = {}
_closers: dict[tuple, callable] = {}


def _cached(kind: str, settings: Settings, make, close, *extra):
    key = (kind, os.getpid(), settings.project, settings.bigtable_host, settings.pubsub_host, *extra)
    with _lock:
        if key not in _open:
            _open[key] = make()
            _closers[key] = close
        return _open[key]


def close_all() -> None:
    """Close every connection this process opened (also run at exit)."""
    with _lock:
        items = [(k, v) for k, v in _open.items() if k[1] == os.getpid()]
        _open.clear()
        closers = dict(_closers)
        _closers.clear()
    for key, client in items:
        try:
            closers[key](client)
        except Exception as exc:  # noqa: BLE001 - closing at exit must not mask the real error
            log.debug("closing %s failed: %s", key[0], exc)


atexit.register(close_all)


def credentials_channel(target: str, *, aio: bool = False):
    """A TLS channel to a Google endpoint with application-default credentials."""
    import google.auth
    import google.auth.transport.grpc
    import google.auth.transport.requests
    import grpc

    credentials, _ = google.auth.default(scopes=_SCOPES)
    plugin = google.auth.transport.grpc.AuthMetadataPlugin(credentials, google.auth.transport.requests.Request())
    channel_credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(), grpc.metadata_call_credentials(plugin)
    )
    module = grpc.aio if aio else grpc
    return module.secure_channel(target, channel_credentials, options=CHANNEL_OPTIONS)


def open_bigtable_channel(settings: Settings, *, aio: bool = False):
    """A new channel to the data API (the caller owns it; ``grpc.aio`` binds to a loop)."""
    import grpc

    if settings.bigtable_host:
        module = grpc.aio if aio else grpc
        return module.insecure_channel(settings.bigtable_host, options=CHANNEL_OPTIONS)
    log.info("connecting to Cloud Bigtable at %s", CLOUD_BIGTABLE)
    return credentials_channel(CLOUD_BIGTABLE, aio=aio)


def bigtable_channel(settings: Settings):
    """This process's synchronous channel to the Bigtable data API."""
    return _cached("bigtable", settings, lambda: open_bigtable_channel(settings), lambda c: c.close())


def bigtable_admin(settings: Settings):
    """This process's Bigtable table-admin client (provisioning only)."""
    from google.cloud.bigtable_admin_v2 import BigtableTableAdminClient
    from google.cloud.bigtable_admin_v2.services.bigtable_table_admin.transports import (
        BigtableTableAdminGrpcTransport,
    )

    def make():
        if settings.bigtable_host:
            import grpc

            channel = grpc.insecure_channel(settings.bigtable_host, options=CHANNEL_OPTIONS)
        else:
            channel = credentials_channel(CLOUD_BIGTABLE_ADMIN)
        return BigtableTableAdminClient(transport=BigtableTableAdminGrpcTransport(channel=channel))

    return _cached("bigtable-admin", settings, make, lambda c: c.transport.close())


def export_emulator_env(settings: Settings) -> None:
    """Point the Pub/Sub library and Beam's Pub/Sub IO at the emulator, if there is one."""
    for name, value in settings.emulator_env().items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def publisher_client(settings: Settings, **kwargs):
    """A new publisher; the caller owns it and calls ``stop()`` (which flushes its batches)."""
    from google.cloud import pubsub_v1

    export_emulator_env(settings)
    return pubsub_v1.PublisherClient(**kwargs)


def subscriber_client(settings: Settings):
    """This process's subscriber client (admin calls and pulls)."""
    from google.cloud import pubsub_v1

    def make():
        export_emulator_env(settings)
        return pubsub_v1.SubscriberClient()

    return _cached("subscriber", settings, make, lambda c: c.close())


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
