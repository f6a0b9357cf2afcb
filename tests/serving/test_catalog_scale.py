"""The catalogue at shop scale, on real servers over the Bigtable emulator.

A hide written after 200,000 other changes is applied by the first poll that starts after
it, on every server (the follower read at most 20,000 log rows per poll, so it took
minutes); a reload of the whole catalogue runs beside the follower, never instead of it.
These are checked by counting polls, not by timing them.
"""

from __future__ import annotations

import asyncio

from schemas.events import CatalogUpdate
from serving import app as app_module
from serving.app import FOLLOWER, STORE
from serving.catalog import CatalogueFollower, CatalogueRead
from streamsim.runtime.bigtable import open_tables
from streamsim.runtime.catalog import write_catalog
from streamsim.runtime.seeding import write_generation, write_scores
from tests.serving.live import G1, items, serve, wait_for

SIZE = 200_000
#: As ``streamsim catalog`` writes: a batch of rows per call.
BATCH = 1000


def _shop(settings):
    write_scores(settings, {"u1": {"a": 1.0}, "u2": {"top": 1.0}})
    write_generation(settings, G1, {"a": [("b", 0.9)]}, popular=[("top", 10.0), ("next", 5.0)])
    write_catalog(open_tables(settings), [CatalogUpdate("top", "c1", True, 1_000)])


def _big_load(settings, ts_ms: int, size: int = SIZE) -> None:
    tables = open_tables(settings)
    updates = [CatalogUpdate(f"e{k}", f"c{k % 300}", True, ts_ms) for k in range(size)]
    for start in range(0, size, BATCH):
        write_catalog(tables, updates[start : start + BATCH])


def _polls_after_now(live, count: int = 2) -> bool:
    """Wait until ``count`` polls of the server's follower have started since now."""
    follower = live.app[FOLLOWER]
    start = follower.polls
    return wait_for(lambda: follower.polls >= start + count, timeout=120)


def test_a_hide_after_200k_changes_is_applied_by_the_next_poll_on_every_server(fresh_stack):
    _shop(fresh_stack)
    servers = [serve(fresh_stack), serve(fresh_stack)]
    try:
        for live in servers:
            assert items(live.get("/recommendations?user=nobody&n=1")[1]) == ["top"]
        _big_load(fresh_stack, 2_000)
        write_catalog(open_tables(fresh_stack), [CatalogUpdate("top", None, False, 3_000)])
        for live in servers:
            assert _polls_after_now(live)
        for live in servers:
            # No waiting here: the polls that began after the hide have applied it.
            assert live.app[FOLLOWER].catalogue.changes_applied >= SIZE + 1
            assert items(live.get("/recommendations?user=nobody&n=1")[1]) == ["next"]
            # A row per batch: about 201 rows decoded, not 200,001.
            assert live.app[FOLLOWER].log_batches < 2 * (SIZE // BATCH + 1)
            assert live.app[FOLLOWER].catalogue.loads == 1
    finally:
        for live in servers:
            live.stop()


def test_a_reload_never_stops_the_follower(fresh_stack):
    """A reload held in mid-read (as a big one under load is, for minutes): the follower goes on.
    (The size does not matter here: the hold stands for it.)"""
    _shop(fresh_stack)
    _big_load(fresh_stack, 2_000, size=20_000)
    live = serve(fresh_stack, catalog_reload_seconds=0.01)
    follower: CatalogueFollower = live.app[FOLLOWER]
    store = live.app[STORE]
    release = asyncio.Event()
    read_page = store.read_catalog_page
    pages = []

    async def held_page(*args):
        pages.append(args)
        if len(pages) > 1:  # past the first page of the reload (the start-up load has finished)
            await release.wait()
        return await read_page(*args)

    try:
        assert wait_for(lambda: follower.catalogue.loaded, timeout=120) and len(follower.catalogue) == 20_001
        store.read_catalog_page = held_page
        assert _polls_after_now(live)  # a reload has begun, and is held
        write_catalog(open_tables(fresh_stack), [CatalogUpdate("top", None, False, 3_000)])
        assert _polls_after_now(live)
        assert items(live.get("/recommendations?user=nobody&n=1")[1]) == ["next"]
        assert follower.catalogue.loads == 1  # applied by the follower, not by a reload
        live._loop.call_soon_threadsafe(release.set)
        assert wait_for(lambda: follower.catalogue.loads >= 2, timeout=120)
        assert _polls_after_now(live)
        assert items(live.get("/recommendations?user=nobody&n=1")[1]) == ["next"]
    finally:
        live.stop()


def test_a_change_the_reload_missed_is_applied_after_it_is_taken(fresh_stack):
    """The rows a reload read can predate a change the follower applied: taking the
    reload reads the log again from before it began."""
    _shop(fresh_stack)
    live = serve(fresh_stack)
    follower: CatalogueFollower = live.app[FOLLOWER]
    try:

        async def reload_then_take():
            read = await CatalogueRead(live.app[STORE]).run()  # reads "top" shown
            write_catalog(open_tables(fresh_stack), [CatalogUpdate("top", None, False, 3_000)])
            await follower.follow()
            assert "top" in follower.catalogue.hidden
            follower._take(read)
            assert "top" not in follower.catalogue.hidden  # the rows read before the hide
            await follower.follow()
            return "top" in follower.catalogue.hidden

        assert asyncio.run_coroutine_threadsafe(reload_then_take(), live._loop).result(60)
    finally:
        live.stop()


def test_a_server_listens_while_a_long_start_up_load_goes_on(fresh_stack, monkeypatch):
    """A catalogue that takes longer to read than a start may wait (a 1M-item one takes
    minutes; ``serve --workers N`` gives a worker 60 s to listen): the server listens, not
    ready, and the one load it began goes on to the end (a poll waits for it, never restarts it)."""
    _shop(fresh_stack)
    _big_load(fresh_stack, 2_000, size=20_000)
    monkeypatch.setattr(app_module, "START_LOAD_SECONDS", 0.01)
    live = serve(fresh_stack)
    follower: CatalogueFollower = live.app[FOLLOWER]
    try:
        status, answer = live.get("/readyz")
        assert status == 503 and "catalogue has not been read yet" in answer["detail"]
        assert live.get("/recommendations?user=nobody&n=1")[1]["error"] == "no_catalogue"
        assert wait_for(lambda: live.get("/readyz")[0] == 200, timeout=120)
        assert follower.catalogue.loads == 1 and len(follower.catalogue) == 20_001
        assert items(live.get("/recommendations?user=nobody&n=1")[1]) == ["top"]
    finally:
        live.stop()
