"""The server keeps the contract of its own ``/openapi.json``: schemathesis over every operation.

A real server on loopback over a seeded emulator deployment, so requests
reach Bigtable as in production. Requests are generated from the document
(the one served: ``test_api`` checks they are equal), valid ones and ones
that break it (``mode: all``), with a fixed seed and a bounded number per
operation. The checks: no 5xx, every status and body as documented, and
JSON everywhere but ``/metrics``.

The schema is loaded when the module is (``from_dict`` and the eager
``parametrize``): schemathesis' fixture-based loader sets ``Node._nodeid``,
which pytest 9.2 no longer has.

This is a regression test, not a search: a wider run (more examples, every
check) is ``schemathesis run http://127.0.0.1:PORT/openapi.json --checks all``.
"""

from __future__ import annotations

import dataclasses

import pytest
import schemathesis

from schemas.events import CatalogUpdate
from serving.openapi import document
from streamsim.runtime.bigtable import open_tables
from streamsim.runtime.catalog import write_catalog
from streamsim.runtime.provision import provision_bigtable
from streamsim.runtime.seeding import write_generation, write_scores
from tests.serving.live import G1, NEIGHBOURS, POPULAR, serve

#: Per operation and phase; the whole run stays well under a minute.
MAX_EXAMPLES = 20

CONFIG = {
    "seed": 20240601,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},  # the document declares no links
    },
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
    },
    "request-timeout": 10,
}


@pytest.fixture(scope="module")
def api(stack):
    """One server for every operation's examples, over a deployment of this module's own."""
    settings = dataclasses.replace(stack, prefix="contract-")
    provision_bigtable(settings)
    write_scores(settings, {"u1": {"a": 2.0, "b": 1.0}, "0": {"a": 1.0}})
    write_generation(
        settings,
        G1,
        {**NEIGHBOURS, "0": [("a", 0.5)]},
        popular=POPULAR,
        bought={"a": [("b", 0.5)], "0": [("a", 0.5)]},
        repurchase={"a": (4, 2, 86_400_000)},
    )
    # A catalogue, so that the filters have categories to match and items to hide.
    write_catalog(
        open_tables(settings),
        [CatalogUpdate("a", "0", True, 1), CatalogUpdate("b", "0", True, 1), CatalogUpdate("c", "x", False, 1)],
    )
    live = serve(settings)
    yield live
    live.stop()


schema = schemathesis.openapi.from_dict(document(), config=schemathesis.Config.from_dict(CONFIG))


@schema.parametrize()
def test_every_operation_keeps_the_documented_contract(case, api):
    response = case.call_and_validate(base_url=api.url)
    if case.path != "/metrics":  # Prometheus text, as documented
        assert response.headers["content-type"][0].split(";")[0] == "application/json", response.headers
