"""Production tables come from Terraform: no runtime command calls an admin API on Google Cloud.

``streamsim up`` provisions the emulators through the admin API
(:mod:`streamsim.runtime.provision`); the runtime commands (``stream``, ``refresh``,
``serve``) never reach it, and their accounts hold no admin role (the Terraform's IAM,
tests/deploy/test_terraform_contract.py). Checked twice:

- statically: nothing the components import reaches the provisioning module or the admin client;
- running: each command runs as on Google Cloud (no Bigtable emulator host, credentials
  present) with ``cloud_guard/sitecustomize.py`` in every process it starts, which points
  the Cloud Bigtable data channel at the emulator and makes any admin endpoint, admin
  client or Pub/Sub create/delete call fail and leave a line in a log.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streaming import state
from streaming.publish import publish_file
from streamsim.app.localstack import free_port
from streamsim.runtime import seeding
from streamsim.runtime.clients import CLOUD_BIGTABLE
from tests.deploy.hcl import ROOT
from tests.test_layers import project_modules

pytestmark = pytest.mark.slow
GUARD = Path(__file__).resolve().parent / "cloud_guard"
TMALL = ROOT / "tests" / "data" / "tmall-head.csv.gz"
RUNTIME_ENTRY_POINTS = ("streaming.cli", "batch.cli", "serving.cli", "streaming.__main__", "batch.__main__")


def _imports(path: Path, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_no_runtime_command_imports_provisioning_or_the_admin_client():
    modules = project_modules()
    seen, todo = set(), list(RUNTIME_ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        path = modules[name]
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo += [m for m in _imports(path, package) if m in modules]
    assert {"streaming.pipeline", "batch.refresh", "serving.app", "streamsim.runtime.clients"} <= seen
    assert "streamsim.runtime.provision" not in seen
    callers = [m for m in seen if "bigtable_admin(" in modules[m].read_text(encoding="utf-8")]
    assert callers == ["streamsim.runtime.clients"]  # where it is defined, for `streamsim up` only


@pytest.fixture
def cloud(fresh_stack, tmp_path):
    """Environment and flags of a runtime command on "Google Cloud": Bigtable through the guard."""
    log = tmp_path / "guard.log"
    env = {k: v for k, v in os.environ.items() if k not in ("BIGTABLE_EMULATOR_HOST", "STREAMSIM_BIGTABLE_HOST")}
    env.update(
        STREAMSIM_GUARD_LOG=str(log),
        STREAMSIM_GUARD_BIGTABLE=fresh_stack.bigtable_host,
        STREAMSIM_GUARD_PROJECT=fresh_stack.project,
        # An empty state directory: no `streamsim up` record to fall back on.
        STREAMSIM_STATE_DIR=str(tmp_path / "state"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(GUARD), env.get("PYTHONPATH")])),
        PYSPARK_PYTHON=sys.executable,
    )
    flags = ["--project", fresh_stack.project, "--instance", fresh_stack.instance, "--prefix", fresh_stack.prefix]
    flags += ["--pubsub-host", fresh_stack.pubsub_host]  # Pub/Sub's library reads only the emulator variable
    return env, flags, log


def _assert_cloud_path_without_admin(log: Path):
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    assert not [line for line in lines if " ADMIN " in line]
    assert any(line.endswith(f"data endpoint {CLOUD_BIGTABLE}") for line in lines), "the command never used Cloud"


def _streamsim(env, *argv, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "streamsim", *argv], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_stream_on_cloud_calls_no_admin_api(fresh_stack, cloud):
    env, flags, log = cloud
    assert publish_file(fresh_stack, TMALL, limit=100).published > 80
    stream = _streamsim(env, "stream", *flags, "--idle-exit", "3")
    assert stream.returncode == 0, stream.stderr[-3000:]
    assert len(state.scan_users(fresh_stack)) > 10  # the fold wrote through the guarded channel
    _assert_cloud_path_without_admin(log)


def test_refresh_on_cloud_calls_no_admin_api(fresh_stack, cloud):
    env, flags, log = cloud
    seeding.write_scores(fresh_stack, {"u1": {"a": 1.0, "b": 2.0}, "u2": {"a": 1.0, "b": 1.0, "c": 1.0}})
    refresh = _streamsim(env, "refresh", *flags, "--json", "--partitions", "2")
    assert refresh.returncode == 0, refresh.stderr[-3000:]
    assert json.loads(refresh.stdout.splitlines()[-1])["flipped"] is True
    _assert_cloud_path_without_admin(log)


def test_serve_on_cloud_calls_no_admin_api(fresh_stack, cloud):
    env, flags, log = cloud
    seeding.write_scores(fresh_stack, {"u1": {"a": 1.0, "b": 2.0}, "u2": {"a": 1.0, "c": 1.0}})
    seeding.write_generation(fresh_stack, 1_700_000_000_000, {"a": [("b", 0.9), ("c", 0.5)]}, popular=[("a", 2.0)])
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamsim", "serve", *flags, "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                    status = answer.status
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert status == 200, server.stderr.read() if server.poll() is not None else "not ready in 60 s"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/recommendations?user=u1&n=5", timeout=5) as answer:
            assert [i["item"] for i in json.load(answer)["items"]] == ["c"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    _assert_cloud_path_without_admin(log)


def test_the_guard_catches_an_admin_call(fresh_stack, cloud):
    """The guard itself: a command that does provision (``up``'s code) is caught and logged."""
    env, _flags, log = cloud
    code = (
        "from streamsim.runtime.provision import provision_bigtable;"
        "from streamsim.runtime.settings import Settings;"
        f"provision_bigtable(Settings(project={fresh_stack.project!r}, instance={fresh_stack.instance!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ADMIN endpoint bigtableadmin.googleapis.com:443" in log.read_text(encoding="utf-8")
