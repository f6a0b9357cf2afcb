"""Shared fixtures: real emulators on free loopback ports, a local Spark session.

Tests that use ``stack``/``fresh_stack`` are marked ``emulator`` and tests that
use ``spark`` are marked ``spark`` automatically, so ``-m "not spark"`` works.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys

import pytest

from streamsim.app import localstack
from streamsim.runtime import provision
from streamsim.runtime.clients import export_emulator_env
from streamsim.runtime.settings import Settings

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Settings:
    """Both emulators, started for this test session and stopped after it."""
    state_dir = tmp_path_factory.mktemp("stack")
    base = Settings(project="streamsim-test", instance="test", prefix="t-", state_dir=state_dir)
    state = localstack.up(base, bigtable_port=localstack.free_port(), pubsub_port=localstack.free_port())
    settings = dataclasses.replace(base, bigtable_host=state["bigtable"]["host"], pubsub_host=state["pubsub"]["host"])
    export_emulator_env(settings)
    yield settings
    localstack.down(base)


@pytest.fixture
def fresh_stack(stack) -> Settings:
    """Empty, provisioned tables and topics of this test's own (a unique prefix)."""
    settings = dataclasses.replace(stack, prefix=f"t{next(_prefixes)}-")
    provision.provision(settings)
    return settings


@pytest.fixture(scope="session")
def spark():
    """Spark ``local[2]`` on loopback, UI off."""
    # Executors must import the project: point them at this interpreter.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("streamsim-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def pytest_collection_modifyitems(items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & {"stack", "fresh_stack"}:
            item.add_marker(pytest.mark.emulator)
        if "spark" in fixtures:
            item.add_marker(pytest.mark.spark)
