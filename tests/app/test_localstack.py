"""`streamsim up / status / down` against the real emulators, as a user runs them."""

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from schemas import layout
from streamsim.app import localstack
from streamsim.runtime import provision
from streamsim.runtime.bigtable import entry, open_tables, set_cell
from streamsim.runtime.cli import connection_parser
from streamsim.runtime.clients import publisher_client, reachable
from streamsim.runtime.processes import process_running
from streamsim.runtime.settings import Settings, StackStateError, read_stack_state

CORRUPT = r"stack.json is corrupt: .*; delete it or run `streamsim down`$"
STATUS_KEYS = {"project", "instance", "bigtable", "pubsub", "tables", "topics", "subscriptions"}


def streamsim(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "streamsim", *args], env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture
def cli_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSIM_") and not k.endswith("_EMULATOR_HOST")}
    env.update(STREAMSIM_STATE_DIR=str(tmp_path), STREAMSIM_PROJECT="lifecycle", STREAMSIM_TABLE_PREFIX="life-")
    return env


@pytest.mark.emulator
def test_up_status_down_lifecycle(cli_env):
    ports = [str(localstack.free_port()), str(localstack.free_port())]
    first = streamsim("up", "--bigtable-port", ports[0], "--pubsub-port", ports[1], env=cli_env)
    assert first.returncode == 0, first.stderr
    assert "7 tables, 2 topics, 2 subscriptions" in first.stdout

    again = streamsim("up", env=cli_env)
    assert again.returncode == 0 and "nothing new" in again.stdout

    status = streamsim("status", "--json", env=cli_env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert STATUS_KEYS <= report.keys()
    assert report["project"] == "lifecycle"
    assert report["bigtable"] == {"host": f"127.0.0.1:{ports[0]}", "reachable": True}
    assert report["pubsub"] == {"host": f"127.0.0.1:{ports[1]}", "reachable": True}
    assert report["tables"] == {
        "users": "life-users",
        "items": "life-items",
        "contributions": "life-contributions",
        "similarities": "life-similarities",
        "meta": "life-meta",
        "recent": "life-recent",
        "sessions": "life-sessions",
    }
    assert report["topics"] == {"events": "life-events", "dead_letter": "life-events-dead-letter"}
    assert report["subscriptions"]["events"] == "life-events-fold"
    assert report["missing"] == []
    pids = [report["managed"][name]["pid"] for name in ("bigtable", "pubsub")]
    assert all(process_running(pid) for pid in pids)

    down = streamsim("down", env=cli_env)
    assert down.returncode == 0 and down.stdout.count("stopped") == 1 and "pubsub" in down.stdout
    assert not any(process_running(pid) for pid in pids)  # the java process included
    assert not any(reachable(f"127.0.0.1:{port}") for port in ports)

    after = streamsim("status", "--json", env=cli_env)
    assert after.returncode == 1
    assert json.loads(after.stdout)["bigtable"]["reachable"] is False
    assert "nothing to stop" in streamsim("down", env=cli_env).stdout


def test_a_missing_emulator_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(localstack, "sdk_roots", lambda: [tmp_path])
    with pytest.raises(localstack.StackError, match="apt-get install google-cloud-cli-bigtable-emulator"):
        localstack.emulator_command("bigtable", 9000)
    with pytest.raises(localstack.StackError, match="gcloud components install"):
        localstack.emulator_command("pubsub", 9000)


def test_status_of_a_stack_that_is_not_up_is_fast_and_says_so(cli_env):
    result = streamsim("status", env=cli_env)
    assert result.returncode == 1
    assert "NOT reachable" in result.stdout


def _pull(settings, subscription: str, timeout: float = 20.0) -> list[bytes]:
    """Messages pulled (not acked) from one subscription, waiting up to ``timeout`` for the first."""
    from streamsim.runtime.clients import subscriber_client

    subscriber = subscriber_client(settings)
    path = subscriber.subscription_path(settings.project, subscription)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=10)
        if response.received_messages:
            return [m.message.data for m in response.received_messages]
    return []


def _kill_hard(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_running(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    assert not process_running(pid)


@pytest.mark.emulator
def test_up_restarts_only_the_dead_emulator_and_keeps_the_live_ones_state(tmp_path, monkeypatch):
    base = Settings(project="partial", instance="partial", prefix="p-", state_dir=tmp_path)
    first = localstack.up(base, bigtable_port=localstack.free_port(), pubsub_port=localstack.free_port())
    try:
        settings = dataclasses.replace(
            base, bigtable_host=first["bigtable"]["host"], pubsub_host=first["pubsub"]["host"]
        )
        # The Google Pub/Sub library reads the emulator host from the environment.
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", settings.pubsub_host)
        publisher = publisher_client(settings)
        try:
            topic = publisher.topic_path(settings.project, settings.pubsub.topics()["events"])
            publisher.publish(topic, b"unacked event").result(timeout=30)
        finally:
            publisher.stop()

        _kill_hard(first["bigtable"]["pid"])
        second = localstack.up(base)
        assert second["pubsub"]["pid"] == first["pubsub"]["pid"] and process_running(second["pubsub"]["pid"])
        # The Pub/Sub backlog survived: the event published before the crash is still there.
        assert _pull(settings, settings.pubsub.subscriptions()["events"][0]) == [b"unacked event"]
        assert second["bigtable"]["pid"] != first["bigtable"]["pid"]
        # On its old port, so clients that hold the host reconnect by themselves (unless another
        # process took that port meanwhile: on a shared machine it may, and up says so).
        moved = [note for note in second["notes"] if "is taken by another process" in note]
        assert (second["bigtable"]["host"] == first["bigtable"]["host"]) != bool(moved)
        settings = dataclasses.replace(settings, bigtable_host=second["bigtable"]["host"])
        assert provision.missing_resources(settings) == []  # the empty new emulator got its tables
        assert sorted(second["created"]["tables"]) == sorted(settings.tables.as_dict().values())
        assert second["created"]["topics"] == second["created"]["subscriptions"] == []
        assert read_stack_state(tmp_path)["bigtable"]["pid"] == second["bigtable"]["pid"]
        # What up did, per emulator, for the command to print.
        assert first["actions"] == {"bigtable": "started", "pubsub": "started"}
        assert second["actions"] == {"bigtable": "started", "pubsub": "kept"}
        assert any("had died" in note and str(first["bigtable"]["pid"]) in note for note in second["notes"])

        # The other way round: Bigtable's rows survive a Pub/Sub restart.
        meta = open_tables(settings).meta
        meta.mutate([entry(b"probe", [set_cell(layout.GENERATION, b"x", b"kept")])])
        _kill_hard(second["pubsub"]["pid"])
        third = localstack.up(base)
        assert third["actions"] == {"bigtable": "kept", "pubsub": "started"}
        assert third["bigtable"]["pid"] == second["bigtable"]["pid"]
        assert third["created"]["tables"] == [] and len(third["created"]["topics"]) == 2
        assert meta.read_row(b"probe")[layout.GENERATION][b"x"].value == b"kept"

        again = localstack.up(base)
        assert again["actions"] == {"bigtable": "kept", "pubsub": "kept"} and again["notes"] == []
        assert not any(again["created"].values())
    finally:
        localstack.down(base)


def test_a_corrupt_state_file_is_one_clear_error_and_up_down_status_recover(tmp_path):
    base = Settings(project="corrupt", instance="corrupt", prefix="c-", state_dir=tmp_path)
    state_file = tmp_path / "stack.json"
    # A live process the file names, without the start time that would identify it as ours.
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        for text in ("{not json", "[1, 2]", '{"bigtable": []}', json.dumps({"bigtable": {"pid": bystander.pid}})):
            state_file.write_text(text)
            if text.startswith('{"bigtable": {"pid"'):
                assert read_stack_state(tmp_path)["bigtable"]["pid"] == bystander.pid  # parseable, but not ours
            else:
                with pytest.raises(StackStateError, match=CORRUPT):
                    read_stack_state(tmp_path)
            report = localstack.status(base)
            assert "stack.json" in report["state_error"] and "corrupt" in report["state_error"]
            assert report["managed"] == {}
            args = connection_parser().parse_args(["--state-dir", str(tmp_path), "--project", "corrupt"])
            assert localstack.stack_settings(args) == dataclasses.replace(
                Settings.resolve(project="corrupt", state_dir=tmp_path / "none"), state_dir=tmp_path
            )
            assert localstack.down(base) == []
            assert not state_file.exists()
        assert bystander.poll() is None  # never signalled
    finally:
        bystander.kill()
        bystander.wait()


def test_a_state_dir_that_is_a_file_is_a_clear_error(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StackStateError, match="is not a directory"):
        read_stack_state(not_a_dir)
    with pytest.raises(StackStateError, match="is not a directory"):
        Settings.resolve(state_dir=not_a_dir, environ={})
    args = connection_parser().parse_args(["--state-dir", str(not_a_dir)])
    with pytest.raises(Exception, match="is not a directory"):  # noqa: B017 - a one-line error of either layer
        localstack.stack_settings(args)
    settings = Settings(state_dir=not_a_dir)
    with pytest.raises(localstack.StackError, match="is not a directory"):
        localstack.up(settings)
    assert "is not a directory" in localstack.status(settings)["state_error"]


@pytest.mark.emulator
def test_up_replaces_a_corrupt_state_file_with_a_new_stack(tmp_path):
    base = Settings(project="corrupt", instance="corrupt", prefix="c-", state_dir=tmp_path)
    (tmp_path / "stack.json").write_text('{"bigtable": {"pid": 1, "host": "127.0.0.1:1"}, "pubsub": 7}')
    state = localstack.up(base, bigtable_port=localstack.free_port(), pubsub_port=localstack.free_port())
    try:
        assert state["actions"] == {"bigtable": "started", "pubsub": "started"}
        assert len(state["notes"]) == 1 and "was corrupt" in state["notes"][0]
        assert "bigtable pid 1, left alone" in state["notes"][0]
        assert read_stack_state(tmp_path)["pubsub"]["pid"] == state["pubsub"]["pid"]
        assert process_running(1)  # init, named by the corrupt file: untouched
    finally:
        localstack.down(base)
