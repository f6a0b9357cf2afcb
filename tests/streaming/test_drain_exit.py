"""``stream --drain-exit S``: the backlog is drained once, for S seconds, nothing pulled was S old.

A scheduled run (the small-shop profile's fold job) must end while a live stream still
trickles in; ``--idle-exit`` waits for silence, which a live stream never gives. The
whole job is exercised end to end in ``tests/app/test_small_shop.py``.
"""

from __future__ import annotations

import datetime

from google.pubsub_v1.types import PubsubMessage, ReceivedMessage

from streaming import direct_pubsub


class Clock:
    """Wall and monotonic time the gate reads, moved by hand."""

    def __init__(self):
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


def received(clock: Clock, age: float, n: int = 0) -> ReceivedMessage:
    published = datetime.datetime.fromtimestamp(clock.now - age, tz=datetime.timezone.utc)
    return ReceivedMessage(ack_id=f"a{n}", message=PubsubMessage(message_id=f"m{n}", publish_time=published))


def test_the_gate_is_caught_up_once_only_fresh_messages_or_none_were_pulled_for_the_window(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(direct_pubsub, "time", clock)
    gate = direct_pubsub.PullGate()
    gate.backlog_age = 60
    assert gate.caught_up_seconds() == 0  # before the first pull

    gate.record_pulled([received(clock, age=900), received(clock, age=1, n=1)])  # last run's backlog
    clock.now += 30
    gate.record_pulled([received(clock, age=120)])  # still backlog: the window starts again
    clock.now += 59
    gate.record_pulled([received(clock, age=0.5, n=n) for n in range(10)])  # a live trickle
    gate.record_pulled([])
    assert gate.caught_up_seconds() == 59
    clock.now += 1
    assert gate.caught_up_seconds() == 60
    # Silence counts as caught up too; idleness alone is what --idle-exit waits for.
    assert gate.idle_seconds() == 1


def test_without_a_drain_window_no_publish_time_is_read(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(direct_pubsub, "time", clock)
    monkeypatch.setattr(direct_pubsub, "_oldest_age", lambda messages: (_ for _ in ()).throw(AssertionError))
    gate = direct_pubsub.PullGate()
    gate.record_pulled([received(clock, age=900)])
    clock.now += 5
    gate.record_pulled([received(clock, age=900)])
    assert gate.caught_up_seconds() == 5 and gate.pulled == 2
