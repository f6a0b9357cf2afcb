"""End to end on the emulators: publish (with duplicates, replays, malformed
messages) -> `streamsim stream` (local runner, supervised) -> Bigtable,
compared with an oracle computed here from the same source lines."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas import parse_event
from streaming import state
from streaming.publish import EventPublisher, publish_file
from streamsim.runtime.clients import subscriber_client
from streamsim.sources.formats import read_records
from tests.support.fold_oracle import fold_oracle
from tests.support.pubsub import drain

pytestmark = pytest.mark.slow
EVENTS = 2500
REPLAY_FILE = Path(__file__).resolve().parents[1] / "data" / "tmall-head.csv.gz"
ACK_DEADLINE_SECONDS = 10


@pytest.fixture(scope="module")
def replay_file() -> Path:
    """The first EVENTS rows of the Tmall set, gzipped, as a publisher would replay them
    (the repository's copy; tests/data/README.md says where it was cut from)."""
    with gzip.open(REPLAY_FILE, "rt") as src:
        rows = sum(1 for _ in src) - 1
    assert rows == EVENTS, f"{REPLAY_FILE} has {rows} data rows, the tests expect {EVENTS}"
    return REPLAY_FILE


def _connection(settings):
    return settings.to_argv()


def _streamsim(settings, *args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "streamsim", *args[:1], *_connection(settings), *args[1:]],
        capture_output=True,
        text=True,
        timeout=240,
        **kwargs,
    )


def _stream_until_idle(settings, *beam_args):
    done = _streamsim(settings, "stream", "--idle-exit", "3", *(["--", *beam_args] if beam_args else []))
    assert done.returncode == 0, done.stderr[-3000:]


def _oracle(path):
    return fold_oracle(parse_event(record.data) for record in read_records(path))


def _assert_matches_oracle(settings, path):
    scores, norms = _oracle(path)
    got = state.scan_users(settings)
    assert got.keys() == scores.keys()
    mismatched = [u for u in scores if got[u] != pytest.approx(scores[u], rel=1e-12)]
    assert not mismatched, mismatched[:5]
    items = state.scan_items(settings)
    assert {i: v["norm2"] for i, v in items.items()} == pytest.approx(norms, rel=1e-9)
    assert all(v["dirty"] for v in items.values())
    return scores, norms


MALFORMED = [
    (b"\xff\xfe not utf-8", "not_json"),
    (b"[1, 2]", "not_object"),
    (b'{"event_id":"x1","user":"u","item":"i","ts":1}', "missing_field"),
    (b'{"event_id":"x2","user":"u","item":"i","type":"like","ts":1}', "bad_type"),
    (b'{"event_id":"x3\\u0001","user":"u","item":"i","type":1,"ts":1}', "bad_id"),
    (b'{"event_id":"x4","user":"","item":"i","type":1,"ts":1}', "bad_field"),
    (b'{"event_id":"x5","user":"u","item":"i","type":1,"ts":"yesterday"}', "bad_timestamp"),
    (b'{"pad":"' + b"x" * 9000 + b'"}', "too_large"),
]


def test_publish_replay_duplicates_and_dead_letters(fresh_stack, replay_file):
    first = publish_file(fresh_stack, replay_file)
    assert first.published == EVENTS and not first.rejected
    # The whole file again (a replay), and a slice of it a third time (publisher retries).
    assert publish_file(fresh_stack, replay_file).published == EVENTS
    assert publish_file(fresh_stack, replay_file, limit=300).published == 300
    with EventPublisher(fresh_stack) as publisher:
        publisher.publish([data for data, _ in MALFORMED], origin="e2e")

    _stream_until_idle(fresh_stack)

    scores, norms = _assert_matches_oracle(fresh_stack, replay_file)
    letters = drain(fresh_stack, fresh_stack.pubsub.dead_letter_subscription)
    assert sorted((m.data, m.attributes["error"]) for m in letters) == sorted(MALFORMED)
    assert all(m.attributes["detail"] and m.attributes["origin"] == "e2e" for m in letters)

    user = max(scores, key=lambda u: len(scores[u]))
    shown = json.loads(_streamsim(fresh_stack, "inspect", "user", user, "--json").stdout)
    assert shown["user"] == user and shown["scores"] == pytest.approx(scores[user])
    assert shown["norm2"] == pytest.approx(sum(r * r for r in scores[user].values()))
    item = max(norms, key=norms.get)
    shown = json.loads(_streamsim(fresh_stack, "inspect", "item", item, "--json").stdout)
    assert shown["item"] == item and shown["norm2"] == pytest.approx(norms[item]) and shown["dirty"] is True
    assert shown["users"] == sum(1 for row in scores.values() if item in row)


def test_restart_between_halves_gives_the_same_state(fresh_stack, replay_file):
    half = EVENTS // 2
    assert publish_file(fresh_stack, replay_file, limit=half).published == half
    _stream_until_idle(fresh_stack)
    # The second run sees the rest plus a redelivery of the first half.
    assert publish_file(fresh_stack, replay_file).published == EVENTS
    _stream_until_idle(fresh_stack)
    _assert_matches_oracle(fresh_stack, replay_file)


def test_two_stream_processes_on_one_subscription_give_the_oracle(fresh_stack, replay_file):
    """An operator's second `streamsim stream`, or a job and its successor: both fold at once."""
    streams = [
        subprocess.Popen(
            [sys.executable, "-m", "streamsim", "stream", "--idle-exit", "4", *_connection(fresh_stack)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    # The same file twice, while both run: redeliveries race the deliveries.
    assert publish_file(fresh_stack, replay_file).published == EVENTS
    assert publish_file(fresh_stack, replay_file).published == EVENTS
    for stream in streams:
        _, err = stream.communicate(timeout=240)
        assert stream.returncode == 0, err[-3000:]
    _assert_matches_oracle(fresh_stack, replay_file)


def test_sigterm_drains_what_was_pulled(fresh_stack, replay_file):
    child = subprocess.Popen(
        [sys.executable, "-m", "streamsim", "stream", *_connection(fresh_stack), "-v"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        publish_file(fresh_stack, replay_file, rate=1500)
        deadline = time.monotonic() + 120
        while not state.scan_users(fresh_stack) and time.monotonic() < deadline:
            time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, stderr[-3000:]
    assert "stopped:" in stderr and "'accepted':" in stderr
    # Whatever the stopped run did not pull is still in the subscription.
    _stream_until_idle(fresh_stack)
    _assert_matches_oracle(fresh_stack, replay_file)


def test_hard_kill_loses_nothing_once_redelivered(fresh_stack, replay_file):
    # Acks follow writes, so what a SIGKILL interrupts comes back after the ack
    # deadline; a short deadline keeps the test short.
    subscriber = subscriber_client(fresh_stack)
    name = subscriber.subscription_path(fresh_stack.project, fresh_stack.pubsub.events_subscription)
    subscriber.delete_subscription(subscription=name)
    subscriber.create_subscription(
        request={
            "name": name,
            "topic": f"projects/{fresh_stack.project}/topics/{fresh_stack.pubsub.events_topic}",
            "ack_deadline_seconds": ACK_DEADLINE_SECONDS,
        }
    )
    assert publish_file(fresh_stack, replay_file).published == EVENTS
    child = subprocess.Popen(
        [sys.executable, "-m", "streaming", "--no-supervise", *_connection(fresh_stack)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not state.scan_users(fresh_stack) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
    time.sleep(ACK_DEADLINE_SECONDS + 1)
    _stream_until_idle(fresh_stack)
    _assert_matches_oracle(fresh_stack, replay_file)
