"""`streamsim up / status / down` against the real emulators, as a user runs them."""

import json
import os
import subprocess
import sys

import pytest

from streamsim.app import localstack
from streamsim.runtime.clients import reachable
from streamsim.runtime.processes import process_running

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
    assert "4 tables, 2 topics, 2 subscriptions" in first.stdout

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
        "similarities": "life-similarities",
        "meta": "life-meta",
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
