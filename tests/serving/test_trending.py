"""``GET /trending`` on a real server over the emulators: a burst on a cold item tops the 15m
board while a steadily popular item does not; hidden items never come back; the category
filter; 400 on a bad window, 503 without Bigtable; and the burst through the real stream."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from schemas import CatalogUpdate, Event, EventType, Weights, trending
from serving.app import CATALOGUE
from streaming.publish import EventPublisher
from streaming.store import FoldStore, fold_batch
from streamsim.app import localstack
from streamsim.runtime.bigtable import open_tables
from streamsim.runtime.catalog import write_catalog
from tests.serving.live import items, serve, wait_for

HOUR_MS = trending.HOUR_MS


def _steady_history(settings, now_ms: int) -> None:
    """'steady': one browse every 2 minutes for the past 24 hours (30 an hour), each its own user,
    so the last 15 minutes hold what its baseline expects (~7.5): a ratio of about 1."""
    events = [Event(f"s{k}", f"su{k}", "steady", EventType.BROWSE, now_ms - k * 120_000) for k in range(1, 24 * 30 + 1)]
    fold_batch(FoldStore(settings), events, Weights())


def _burst(item: str, size: int, now_ms: int, tag: str = "") -> list[Event]:
    return [Event(f"{item}{tag}{k}", f"{item}{tag}u{k}", item, EventType.BROWSE, now_ms - k) for k in range(size)]


def _catalog(settings, **items) -> None:
    now = int(time.time() * 1000)
    updates = [CatalogUpdate(item, category, available, now) for item, (category, available) in items.items()]
    write_catalog(open_tables(settings), updates)


def test_a_burst_tops_the_board_and_hidden_items_never_come_back(fresh_stack):
    now = int(time.time() * 1000)
    _steady_history(fresh_stack, now)
    _catalog(fresh_stack, cold=("shoes", True), other=("hats", True), gone=("shoes", False), steady=("shoes", True))
    store = FoldStore(fresh_stack)
    fold_batch(store, _burst("cold", 30, now) + _burst("other", 25, now) + _burst("gone", 40, now), Weights())
    fold_batch(store, _burst("steady", 8, now, "n"), Weights())  # steady keeps its rate up too
    live = serve(fresh_stack)
    try:
        # The catalogue (gone: hidden) is loaded before the first answer counts.
        wait_for(lambda: live.app[CATALOGUE].loaded)
        status, answer = live.get("/trending?window=15m")
        assert status == 200, answer
        assert items(answer)[:2] == ["cold", "other"]
        assert "gone" not in items(answer)
        top = answer["items"][0]
        assert top["count"] == 30 and top["expected"] == 0.0 and top["source"] == "trending"
        assert top["score"] == pytest.approx((30 + 5) / 5)
        assert answer["window"] == "15m" and answer["arm"] and answer["attribution"]
        # The steady item is not ahead of the burst (at a ratio of ~1 it is not trending at all).
        assert "steady" not in items(answer)[:2]
        # Category and n.
        assert items(live.get("/trending?window=15m&category=hats")[1]) == ["other"]
        assert items(live.get("/trending?window=1h&n=1")[1]) == ["cold"]
        assert items(live.get("/trending?window=15m&category=nothing")[1]) == []
        # The hidden item rises further; it still never comes back, in any window.
        fold_batch(store, _burst("gone", 200, int(time.time() * 1000), "again"), Weights())
        time.sleep(1.2)  # past the board cache (a freshness wait, not a timed assertion)
        for window in trending.WINDOWS:
            assert "gone" not in items(live.get(f"/trending?window={window}&n=100")[1])
        # A bad window or parameter is a JSON 400.
        for query in ("window=5m", "window=", "n=0", "colour=red", "window=15m&window=1h"):
            status, error = live.get(f"/trending?{query}")
            assert (status, error["error"]) == (400, "bad_parameter"), (query, error)
    finally:
        live.stop()


def test_without_bigtable_trending_is_503(fresh_stack):
    nowhere = dataclasses.replace(fresh_stack, bigtable_host=f"127.0.0.1:{localstack.free_port()}")
    live = serve(nowhere)
    try:
        status, error = live.get("/trending?window=1h")
        assert (status, error["error"]) == (503, "backend_unavailable"), error
    finally:
        live.stop()


@pytest.mark.slow
def test_a_burst_published_to_the_stream_tops_trending_within_a_minute(fresh_stack):
    """Publish -> `streamsim stream` (local runner) -> board -> /trending: the latency is measured."""
    now = int(time.time() * 1000)
    _steady_history(fresh_stack, now)
    stream = subprocess.Popen(
        [sys.executable, "-m", "streamsim", "stream", *fresh_stack.to_argv(), "--idle-exit", "120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    live = serve(fresh_stack)
    store = FoldStore(fresh_stack)
    try:
        with EventPublisher(fresh_stack) as publisher:
            # Warm-up: the stream folds a steady event before the burst is published.
            publisher.publish([Event("warm", "wu", "steady", EventType.BROWSE, int(time.time() * 1000))])
            folded = wait_for(lambda: store.read_items(["steady"])["steady"].events > 24 * 30, timeout=180)
            assert folded, "the stream did not start folding"
            published = time.monotonic()
            publisher.publish(_burst("cold", 30, int(time.time() * 1000)))

        def on_top():
            answer = live.get("/trending?window=15m")[1]
            return answer["items"] and answer["items"][0]["item"] == "cold" and answer

        answer = wait_for(on_top, timeout=60)
        latency = time.monotonic() - published
        assert answer, live.get("/trending?window=15m")
        assert answer["items"][0]["count"] == 30
        assert "steady" not in items(answer)[:1]
        print(f"\ntrending burst latency (publish -> top of /trending?window=15m): {latency:.2f} s")
    finally:
        live.stop()
        stream.send_signal(signal.SIGINT)
        try:
            stream.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(stream.pid, signal.SIGKILL)
            stream.wait()


def test_concurrent_requests_share_one_board_read():
    """The board is read once per window per second however many requests miss at once."""
    from serving.catalog import Catalogue
    from serving.trending import TrendingBoards, TrendingQuery

    class CountingStore:
        reads = 0

        async def read_board(self, window, now_ms):
            self.reads += 1
            await asyncio.sleep(0.05)
            return [("a", (30, 0.0)), ("b", (3, 0.0)), ("c", (40, 100.0))]

    store, clock = CountingStore(), [1000.0]
    boards = TrendingBoards(store, Catalogue(), clock=lambda: clock[0])
    query = TrendingQuery(trending.WINDOWS["15m"], 10)

    async def burst():
        return await asyncio.gather(*(boards.top(query) for _ in range(50)))

    answers = asyncio.run(burst())
    # b is under the minimum count and c below its baseline: only a is trending.
    assert store.reads == 1 and all([e["item"] for e in a] == ["a"] for a in answers)
    asyncio.run(burst())
    assert store.reads == 1  # cached
    clock[0] += 1.5
    asyncio.run(burst())
    assert store.reads == 2  # expired: read again, once
