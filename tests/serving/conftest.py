"""Serving fixtures: a seeded deployment of this test's own, and a live server over it."""

from __future__ import annotations

import pytest

from streamsim.runtime.seeding import write_generation, write_scores
from streamsim.runtime.settings import Settings
from tests.serving.live import G1, NEIGHBOURS, POPULAR, serve
from tests.serving.shop import build_shop


@pytest.fixture
def seeded(fresh_stack) -> Settings:
    write_scores(fresh_stack, {"u1": {"a": 2.0, "b": 1.0}})
    write_generation(fresh_stack, G1, NEIGHBOURS, popular=POPULAR)
    return fresh_stack


@pytest.fixture
def server(seeded):
    live = serve(seeded)
    yield live
    live.stop()


@pytest.fixture
def shop(fresh_stack) -> Settings:
    """A seeded deployment with a catalogue: ``tests.serving.shop``."""
    return build_shop(fresh_stack)


@pytest.fixture
def shop_server(shop):
    live = serve(shop)
    yield live
    live.stop()
