"""What the images install: one lock, the Spark line of the Dataproc runtime, one Beam.

``deploy/constraints.txt`` pins the whole closure of the streaming, batch and serving extras
(made with ``uv pip compile``, see its header); every image installs from it.
"""

from __future__ import annotations

import ast
import re

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.deploy.hcl import ROOT

CONSTRAINTS = ROOT / "deploy" / "constraints.txt"
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
#: Dataproc Serverless runtime 2.3 LTS (supported to 2027-11) runs Spark 3.5.
DATAPROC_SPARK = "3.5"


def pinned() -> dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{line}: the lock pins exact versions"
            pins[requirement.name.lower()] = Version(spec.version)
    return pins


def setup_requirements() -> dict[str, list[Requirement]]:
    """setup.py's EXTRAS and its COMMON install_requires (as "common"), read without running it."""
    found = {}
    for node in ast.parse((ROOT / "setup.py").read_text(encoding="utf-8")).body:
        names = {getattr(t, "id", None) for t in getattr(node, "targets", ())}
        if "EXTRAS" in names:
            found.update(ast.literal_eval(node.value))
        elif "COMMON" in names:
            found["common"] = ast.literal_eval(node.value)
    assert {"common", "streaming", "batch", "serving"} <= set(found), "setup.py's COMMON or EXTRAS moved"
    return {name: [Requirement(r) for r in reqs] for name, reqs in found.items()}


def test_the_lock_has_spark_on_the_dataproc_runtimes_line():
    assert f"{pinned()['pyspark'].major}.{pinned()['pyspark'].minor}" == DATAPROC_SPARK


@pytest.mark.parametrize("extra", ["common", "streaming", "batch", "serving"])
def test_the_lock_satisfies_setup_py(extra):
    pins = pinned()
    for requirement in setup_requirements()[extra]:
        name = requirement.name.lower()
        assert name in pins, f"{name} ({extra} extra) is not in deploy/constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"deploy/constraints.txt pins {name}=={pins[name]}, outside setup.py's {requirement}"
        )


def _arg(dockerfile, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", dockerfile.read_text(encoding="utf-8"), re.M)
    assert match, f"{dockerfile.name} has no ARG {name}"
    return match.group(1)


def test_the_flex_template_image_runs_the_locked_beam():
    sdk = _arg(DOCKER / "dataflow.Dockerfile", "BEAM_SDK")
    image, _, tag = sdk.partition(":")
    assert image == "apache/beam_python3.11_sdk"
    assert Version(tag) == pinned()["apache-beam"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_is_python_3_11_installs_from_the_lock_and_runs_unprivileged(dockerfile):
    text = dockerfile.read_text(encoding="utf-8")
    # Python 3.11 everywhere: the Dataproc runtime's own Python differs, so the image brings it.
    assert _arg(dockerfile, "BASE").startswith("python:3.11-")
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs and all("-c deploy/constraints.txt" in line for line in installs), installs
    users = re.findall(r"^USER (\S+)$", text, re.M)
    if dockerfile.name != "dataflow.Dockerfile":  # Dataflow's SDK harness boots as the image's user
        assert users and users[-1].split(":")[0] not in ("root", "0")


def test_the_refresh_container_leaves_spark_to_the_runtime():
    text = (DOCKER / "refresh.Dockerfile").read_text(encoding="utf-8")
    # Dataproc Serverless mounts its own Spark; a pip pyspark in the image would shadow it.
    assert "pip uninstall -y pyspark py4j" in text
    assert "PYSPARK_PYTHON=/opt/venv/bin/python" in text
    assert re.search(r"^USER 1099(:1099)?$", text, re.M)
