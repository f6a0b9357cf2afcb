"""Google Cloud without a cloud, for the runtime commands tests/deploy/test_no_admin.py runs.

Python imports this module at start-up in every process whose PYTHONPATH names this folder
(the command, the stream supervisor's pipeline child, Spark's Python workers). It is inert
unless STREAMSIM_GUARD_LOG is set. Then:

- Google credentials exist (anonymous), so the commands take their Google Cloud path;
- a channel to Cloud Bigtable's data API is a channel to the emulator named by
  STREAMSIM_GUARD_BIGTABLE instead (the emulator speaks the same API);
- every Google endpoint asked for is appended to the log, and an admin one, or any
  Bigtable admin client, or a Pub/Sub create/delete call, is logged as ``ADMIN ...`` and
  raises, so the command fails if it reaches for the admin API.
"""

import os

if os.environ.get("STREAMSIM_GUARD_LOG"):
    import google.auth
    import google.auth.credentials

    def _log(line: str) -> None:
        with open(os.environ["STREAMSIM_GUARD_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {line}\n")

    def _default(scopes=None, **_kwargs):
        return google.auth.credentials.AnonymousCredentials(), os.environ.get("STREAMSIM_GUARD_PROJECT")

    google.auth.default = _default

    from streamsim.runtime import clients

    def _credentials_channel(target: str, *, aio: bool = False):
        if target != clients.CLOUD_BIGTABLE:
            _log(f"ADMIN endpoint {target}")
            raise RuntimeError(f"a runtime command asked for {target}")
        _log(f"data endpoint {target}")
        import grpc

        module = grpc.aio if aio else grpc
        return module.insecure_channel(os.environ["STREAMSIM_GUARD_BIGTABLE"], options=clients.CHANNEL_OPTIONS)

    clients.credentials_channel = _credentials_channel

    def _refuse(what: str):
        def refuse(*_args, **_kwargs):
            _log(f"ADMIN {what}")
            raise RuntimeError(f"a runtime command called {what}")

        return refuse

    from google.cloud import bigtable_admin_v2, pubsub_v1

    for name in ("BigtableTableAdminClient", "BigtableInstanceAdminClient"):
        setattr(bigtable_admin_v2, name, _refuse(name))
    for cls, methods in (
        (pubsub_v1.PublisherClient, ("create_topic", "delete_topic")),
        (pubsub_v1.SubscriberClient, ("create_subscription", "delete_subscription")),
    ):
        for method in methods:
            setattr(cls, method, _refuse(f"{cls.__name__}.{method}"))
