"""The offline linters of the deploy kit: ``terraform fmt``, hadolint, checkov.

Each tool must be there (``make install`` brings hadolint and checkov; Terraform is on the
machine image): a missing tool fails with what to install, it does not skip. ``terraform
validate`` is not here: it needs the Google provider, which only the Terraform registry
serves (deploy/README.md, "What is checked where"); test_terraform_contract.py checks
what it can without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.hcl import ROOT, TERRAFORM

DOCKERFILES = sorted((ROOT / "deploy" / "docker").glob("*.Dockerfile"))


def _tool(name: str, *candidates: Path) -> str:
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (see deploy/README.md, 'What is checked where')")
    return found


def terraform() -> str:
    return _tool("terraform", Path("/usr/local/bin/terraform"))


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def test_terraform_is_formatted():
    result = _run([terraform(), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_fmt_catches_a_misformatted_file(tmp_path):
    (tmp_path / "main.tf").write_text('variable "x" {\ntype=string\n}\n')
    assert _run([terraform(), "fmt", "-check", str(tmp_path)]).returncode == 3


def hadolint() -> str:
    return _tool("hadolint", Path(sys.executable).parent / "hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile):
    result = _run([hadolint(), "--no-color", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_an_unpinned_install(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:12\nRUN apt-get update && apt-get install -y curl\n")
    result = _run([hadolint(), "--no-color", str(bad)])
    assert result.returncode != 0 and "DL3008" in result.stdout


def checkov() -> str:
    # make install gives checkov a venv of its own beside the project's (deploy/checks/checkov.txt).
    return _tool("checkov", Path(sys.prefix) / "checkov" / "bin" / "checkov")


def _json_documents(text: str) -> list[dict]:
    """checkov prints one JSON document per directory (a report, or a list of reports)."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        document, at = decoder.raw_decode(text, at)
        documents += document if isinstance(document, list) else [document]
    return documents


def test_checkov_finds_nothing_in_the_terraform_and_the_container_files():
    module = TERRAFORM / "modules" / "streamsim"
    docker = ROOT / "deploy" / "docker"
    argv = [checkov(), "-d", str(module), "-d", str(docker), "--framework", "terraform", "dockerfile"]
    # --skip-download and BC_SKIP_MAPPING: no platform calls, only the checks bundled with checkov.
    argv += ["--skip-download", "--compact", "-o", "json"]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    )
    reports = _json_documents(result.stdout)
    assert {r["check_type"] for r in reports} == {"terraform", "dockerfile"}
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})" for r in reports for c in r["results"]["failed_checks"]
    ]
    assert failed == []
    assert all(r["summary"]["parsing_errors"] == 0 and r["summary"]["passed"] > 10 for r in reports)
    # A skip is a decision: each says why, in the file, next to what it skips.
    for report in reports:
        for check in report["results"]["skipped_checks"]:
            assert check["check_result"].get("suppress_comment", "").strip(), check["check_id"]
