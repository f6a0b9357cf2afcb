"""The fold's stage names are the contract of an in-place update (Dataflow ``--update``).

Dataflow matches the running job's steps to the replacement's by transform name; a step
whose name changed is a new step, and its state (the ``GroupIntoBatches`` buffers) would be
left behind, so the update is refused unless the rename is mapped. ``deploy/dataflow/
stages.json`` records the names of the job as deployed; ``transform_name_mapping.json``
maps old name prefixes to new ones ("" drops a step) and is passed to the update
(deploy/README.md, "Updating the fold"). The graph is translated offline as
tests/streaming/test_dataflow_graph.py does.
"""

from __future__ import annotations

import json

import pytest

from tests.deploy.hcl import ROOT
from tests.streaming.test_dataflow_graph import DRY_RUN, _transforms

DATAFLOW = ROOT / "deploy" / "dataflow"


def recorded() -> list[str]:
    return json.loads((DATAFLOW / "stages.json").read_text(encoding="utf-8"))


def mapping() -> dict[str, str]:
    return json.loads((DATAFLOW / "transform_name_mapping.json").read_text(encoding="utf-8"))


def mapped(stage: str, renames: dict[str, str]) -> str:
    """The stage's name after the renames (Dataflow maps name prefixes, the longest first)."""
    for old in sorted(renames, key=len, reverse=True):
        if stage == old or stage.startswith(old + "/"):
            return renames[old] + stage[len(old) :] if renames[old] else ""
    return stage


def update_problems(deployed: list[str], current: set[str], renames: dict[str, str]) -> list[str]:
    """Why an update from ``deployed`` to ``current`` would lose state or the record is stale."""
    problems = []
    images = set()
    for stage in deployed:
        new = mapped(stage, renames)
        images.add(new)
        if new and new not in current:
            problems.append(f"stage {stage!r} is gone without a mapping in transform_name_mapping.json")
    problems += [f"new stage {s!r} is not recorded in stages.json" for s in sorted(current - images)]
    return problems


@pytest.fixture(scope="module")
def current() -> set[str]:
    # The ref_AppliedPTransform_* root is Beam's impulse, not a named step.
    return {name for name in _transforms(DRY_RUN, local=False) if not name.startswith("ref_")}


def test_the_deployed_stages_all_reach_the_current_job(current):
    assert update_problems(recorded(), current, mapping()) == []


def test_every_mapping_names_a_recorded_stage_and_a_current_one(current):
    for old, new in mapping().items():
        assert any(s == old or s.startswith(old + "/") for s in recorded()), f"{old!r} was never deployed"
        assert new == "" or any(s == new or s.startswith(new + "/") for s in current), f"{new!r} is not in the job"


def test_a_rename_without_a_mapping_is_caught_and_a_mapping_settles_it():
    deployed = ["FoldIntoBigtable", "FoldIntoBigtable/BatchUsers", "ReadEvents"]
    renamed = {"Fold", "Fold/BatchUsers", "ReadEvents"}
    assert update_problems(deployed, renamed, {}) == [
        "stage 'FoldIntoBigtable' is gone without a mapping in transform_name_mapping.json",
        "stage 'FoldIntoBigtable/BatchUsers' is gone without a mapping in transform_name_mapping.json",
        "new stage 'Fold' is not recorded in stages.json",
        "new stage 'Fold/BatchUsers' is not recorded in stages.json",
    ]
    assert update_problems(deployed, renamed, {"FoldIntoBigtable": "Fold"}) == []
    # A dropped step is mapped to "".
    assert update_problems(deployed, {"ReadEvents"}, {"FoldIntoBigtable": ""}) == []


def test_the_job_has_the_stages_the_fold_is_built_from(current):
    # Guards the recorder itself: an empty or foreign graph would pass the tests above.
    assert {"ReadEvents/ReadFromPubSub/Read", "FoldIntoBigtable/BatchUsers", "PublishDeadLetters"} <= current
