"""The same ``build()`` on Dataflow, translated offline: Beam's ``--dry_run`` builds the
job (the portable pipeline proto Dataflow would get) without submitting it."""

from __future__ import annotations

import apache_beam as beam

from schemas import Weights
from streaming import pipeline
from streaming.runner import pipeline_options
from streamsim.runtime.settings import Settings

DRY_RUN = [
    "--runner",
    "DataflowRunner",
    "--project",
    "streamsim-shop",
    "--region",
    "europe-west1",
    "--temp_location",
    "gs://streamsim-dry-run/tmp",
    "--staging_location",
    "gs://streamsim-dry-run/staging",
    "--no_auth",
    "--dry_run=True",
    "--sdk_location=container",
    "--job_name",
    "streamsim-fold",
]


def _transforms(beam_args: list[str], *, local: bool) -> dict[str, str]:
    p = beam.Pipeline(options=pipeline_options(beam_args))
    pipeline.build(p, Settings(project="streamsim-shop", instance="recs"), Weights(), local=local)
    proto = p.to_runner_api() if local else p.run().job.proto_pipeline
    return {t.unique_name: t.spec.urn for t in proto.components.transforms.values()}


def test_the_dataflow_job_has_the_keyed_stages_and_no_local_acks():
    stages = _transforms(DRY_RUN, local=False)
    keyed = {name: urn for name, urn in stages.items() if name.startswith("FoldIntoBigtable/")}
    # Key by user, batch per key (a stateful step), fold pairs; then batch per item and fold items.
    assert keyed["FoldIntoBigtable/KeyByUser"] == "beam:transform:pardo:v1"
    assert keyed["FoldIntoBigtable/BatchUsers"] == "beam:transform:group_into_batches:v1"
    assert keyed["FoldIntoBigtable/BatchItems"] == "beam:transform:group_into_batches:v1"
    assert "FoldIntoBigtable/FoldUsers" in keyed and "FoldIntoBigtable/FoldItems" in keyed
    assert stages["ReadEvents/ReadFromPubSub/Read"] == "beam:transform:pubsub_read:v1"
    assert not any(name.startswith("AckOnLocalRunner") for name in stages)


def test_only_the_local_graph_acknowledges_messages_itself():
    stages = _transforms([], local=True)
    assert any(name.startswith("AckOnLocalRunner") for name in stages)
    assert "FoldIntoBigtable/BatchUsers" in stages
