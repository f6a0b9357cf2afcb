"""The one place that reaches into Beam's local runner: its Pub/Sub read.

Beam 2.77's ``_PubSubReadEvaluator._read_from_pubsub`` pulls
``max_messages=10`` per call with a 30 s timeout and acks right away; one
bundle per pull capped the stock local path at about 135 events/s. We do not
copy that method: we hand it a subscriber client whose ``pull`` gathers up
to :data:`PULL_MAX_MESSAGES` (what the fold batches over; the emulator gives
at most 100 per call, so it tops up with more pulls), never blocks on an
empty subscription (the emulator would hold the pull until its timeout,
adding that to the lag and to a graceful stop), and returns nothing once
:data:`GATE` is closed, so a stop pulls no more messages. Its
``acknowledge`` does nothing: :class:`PullGate` acks a message only after
the pipeline wrote it (as Dataflow does), instead of at pull time.

:data:`GATE` also counts messages pulled and messages settled (folded or
dead-lettered) so the local entry point can stop once everything pulled is
written, and notes when a pull last brought backlog (a message published
``backlog_age`` or more seconds before it was pulled), so a scheduled run can
stop once it has caught up with a live stream.

:func:`check_compatible` fails loudly if Beam's code under the patch changes;
:func:`install` calls it. Dataflow does not use any of this.
"""

from __future__ import annotations

import collections
import inspect
import logging
import threading
import time

import apache_beam as beam

log = logging.getLogger(__name__)

#: Messages per pull: Pub/Sub's maximum, and the fold's batch size.
PULL_MAX_MESSAGES = 1000
PULL_TIMEOUT_SECONDS = 2.0
#: Ack ids per Acknowledge call (the request must stay under 512 KB).
ACK_CHUNK = 1000
TOP_UP_SECONDS = 0.1
#: Pause after an empty pull: bounds the lag it adds and the CPU an idle pipeline burns.
IDLE_POLL_SECONDS = 0.05

#: Text that must still be in Beam's ``_read_from_pubsub`` for the patch to mean what it says.
_EXPECTED_SOURCE = (
    "self._get_subscriber_client(self._applied_ptransform)",
    "sub_client.pull(",
    "max_messages=10",
    "sub_client.acknowledge(",
)


class BeamChanged(RuntimeError):
    """Beam's local Pub/Sub read is not the code this module patches."""


class PullGate:
    """Process-wide pull/settle bookkeeping of the local runner.

    Acks wait for the write: Beam acks a pull at once, so the patched client
    swallows that ack and keeps each message's ack id here until the pipeline
    reports the message settled (folded or dead-lettered) by its Pub/Sub
    message id. A hard kill then loses nothing: what was not settled is
    redelivered after the ack deadline, and the fold skips what it already has.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.pulled = 0
        self.settled = 0
        #: None until the first pull returns: start-up is not idleness.
        self.last_message_at: float | None = None
        #: A message at least this old (seconds since its publish time) when pulled is
        #: backlog; None: not tracked (reading publish times costs a little per message).
        self.backlog_age: float | None = None
        self.last_backlog_at: float | None = None
        self._ack_ids: dict[str, str] = {}
        #: accepted / duplicates / dead_lettered / written in this process.
        self.counts: collections.Counter = collections.Counter()
        self._subscriber = None
        self._subscription = None

    def close(self) -> None:
        self._closed.set()

    def count(self, **deltas: int) -> None:
        with self._lock:
            self.counts.update(deltas)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def record_pulled(self, received_messages, subscriber=None, subscription=None) -> None:
        with self._lock:
            self.pulled += len(received_messages)
            now = time.monotonic()
            if received_messages or self.last_message_at is None:
                self.last_message_at = now
            if self.last_backlog_at is None or (
                self.backlog_age is not None and _oldest_age(received_messages) >= self.backlog_age
            ):
                self.last_backlog_at = now
            if subscriber is not None:
                self._subscriber, self._subscription = subscriber, subscription
                for received in received_messages:
                    self._ack_ids[received.message.message_id] = received.ack_id

    def record_settled(self, message_ids: list[str]) -> None:
        """Messages written for good: ack them (when this process pulled them)."""
        with self._lock:
            self.settled += len(message_ids)
            ack_ids = [a for a in (self._ack_ids.pop(m, None) for m in message_ids) if a]
            subscriber, subscription = self._subscriber, self._subscription
        for start in range(0, len(ack_ids), ACK_CHUNK):
            try:
                subscriber.acknowledge(subscription=subscription, ack_ids=ack_ids[start : start + ACK_CHUNK])
            except Exception as exc:  # noqa: BLE001 - an unacked message is redelivered and deduplicated
                log.warning("ack of %d messages failed (%s); they will be redelivered", len(ack_ids), exc)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self.pulled - self.settled

    def idle_seconds(self) -> float:
        """Seconds since a pull last returned messages (0 before the first pull)."""
        if self.last_message_at is None:
            return 0.0
        return time.monotonic() - self.last_message_at

    def caught_up_seconds(self) -> float:
        """Seconds since a pull last brought backlog (0 before the first pull): how long
        everything pulled has been fresh, or nothing was pulled at all."""
        if self.last_backlog_at is None:
            return 0.0
        return time.monotonic() - self.last_backlog_at


def _oldest_age(received_messages) -> float:
    """Seconds since the earliest publish time among ``received_messages`` (0 if none).

    Publish times are the Pub/Sub server's clock, compared with ours: skew between
    Google's NTP-synchronised clocks is far below the seconds this is measured in.
    """
    if not received_messages:
        return 0.0
    earliest = min(r.message.publish_time.timestamp() for r in received_messages)
    return time.time() - earliest


GATE = PullGate()


class _BatchingSubscriber:
    """Stands in for the subscriber client Beam's read evaluator pulls from."""

    def __init__(self, client):
        self._client = client

    def pull(self, subscription, max_messages=None, timeout=None, **kwargs):
        from google.api_core import exceptions
        from google.pubsub_v1.types import PullResponse

        if GATE.closed:
            time.sleep(0.05)  # the runner polls again at once; do not spin
            return PullResponse()
        # Non-blocking, then a short sleep when empty: a blocking pull on the
        # emulator waits out its whole timeout, which showed up as a 2 s lag p99.
        try:
            response = self._client.pull(
                subscription=subscription,
                max_messages=PULL_MAX_MESSAGES,
                return_immediately=True,
                timeout=PULL_TIMEOUT_SECONDS,
            )
        except exceptions.DeadlineExceeded:
            response = PullResponse()
        if not response.received_messages:
            time.sleep(IDLE_POLL_SECONDS)
        # The emulator hands out at most 100 messages per pull: top the batch
        # up with non-blocking pulls while a backlog is waiting, but not for
        # longer than TOP_UP_SECONDS, which would add to the lag at a steady rate.
        deadline = time.monotonic() + TOP_UP_SECONDS
        while (
            response.received_messages
            and len(response.received_messages) < PULL_MAX_MESSAGES
            and time.monotonic() < deadline
        ):
            more = self._client.pull(
                subscription=subscription,
                max_messages=PULL_MAX_MESSAGES - len(response.received_messages),
                return_immediately=True,
                timeout=PULL_TIMEOUT_SECONDS,
            )
            if not more.received_messages:
                break
            response.received_messages.extend(more.received_messages)
        GATE.record_pulled(response.received_messages, self._client, subscription)
        log.debug("pulled %d messages", len(response.received_messages))
        return response

    def acknowledge(self, subscription, ack_ids, **kwargs):
        # Deferred: GATE acks each message once the pipeline has written it.
        pass

    def __getattr__(self, name):
        return getattr(self._client, name)


def check_compatible() -> None:
    from apache_beam.runners.direct.transform_evaluator import _PubSubReadEvaluator

    for name in ("_get_subscriber_client", "_read_from_pubsub"):
        if not hasattr(_PubSubReadEvaluator, name):
            raise BeamChanged(f"_PubSubReadEvaluator.{name} is gone: revisit streaming/direct_pubsub.py")
    source = inspect.getsource(_PubSubReadEvaluator._read_from_pubsub)
    missing = [text for text in _EXPECTED_SOURCE if text not in source]
    if missing:
        raise BeamChanged(
            f"Beam's _PubSubReadEvaluator._read_from_pubsub changed (no {missing}): revisit streaming/direct_pubsub.py"
        )


_installed = False


def install() -> None:
    """Patch the local runner's Pub/Sub read (idempotent)."""
    global _installed
    if _installed:
        return
    check_compatible()
    from apache_beam.runners.direct.transform_evaluator import _PubSubReadEvaluator

    original = _PubSubReadEvaluator._get_subscriber_client.__func__

    def _get_subscriber_client(cls, transform):
        return _BatchingSubscriber(original(cls, transform))

    _PubSubReadEvaluator._get_subscriber_client = classmethod(_get_subscriber_client)
    _installed = True
    log.info("local Pub/Sub read patched: %d messages per pull", PULL_MAX_MESSAGES)


class _AckSettledFn(beam.DoFn):
    def process(self, settled):
        GATE.count(**dict(settled.counts))
        if settled.message_ids:
            GATE.record_settled(list(settled.message_ids))


class AckSettled(beam.PTransform):
    """The local runner's last step: count and acknowledge what the pipeline settled
    (``streaming.fold_stages.Settled``). Only the local entry point adds it."""

    def expand(self, settled):
        return settled | beam.ParDo(_AckSettledFn())
