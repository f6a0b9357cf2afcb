"""Coalesced history reads: the same answers as reads of their own, in fewer ReadRows calls."""

from __future__ import annotations

import asyncio

import numpy as np

from schemas import layout
from serving.history import HistoryReads
from serving.store import _HISTORY, BigtableStore
from streamsim.runtime.bigtable.aio import AsyncTables
from streamsim.runtime.seeding import write_scores

HISTORIES = {f"u{k}": {f"i{j}": float(k + j) for j in range(k % 6)} for k in range(24)}


def _same(a, b) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1])


def test_read_prefixes_equals_one_read_per_prefix_with_its_own_limit(fresh_stack):
    write_scores(fresh_stack, HISTORIES)

    async def check():
        tables = AsyncTables(fresh_stack)
        try:
            prefixes = [layout.user_prefix(user) for user in HISTORIES] + [layout.user_prefix("nobody")]
            for limit in (1, 3, 1000):
                together = await tables.read_prefixes(
                    tables.ids.users, prefixes, _HISTORY, limit_each=limit, timeout=10
                )
                for prefix in prefixes:
                    alone = await tables.read_prefix(tables.ids.users, prefix, _HISTORY, limit=limit, timeout=10)
                    assert list(together[prefix]) == list(alone), (limit, prefix)
        finally:
            await tables.close()

    asyncio.run(check())


def test_concurrent_reads_share_calls_and_answer_as_single_reads(fresh_stack):
    write_scores(fresh_stack, HISTORIES)

    async def check():
        store = BigtableStore(fresh_stack, deadline_seconds=10)
        try:
            alone = {user: await store.read_history(user) for user in HISTORIES}
            # A window no test would wait out: these batches go when they are full.
            reads = HistoryReads(store, window_seconds=3600, max_batch=8)
            users = list(HISTORIES)[:16]
            got = await asyncio.gather(*(reads.read(user) for user in users))
            assert all(_same(answer, alone[user]) for user, answer in zip(users, got))
            assert (reads.calls, reads.reads) == (2, 16)
            # The same user twice in a batch is read once.
            got = await asyncio.gather(*(reads.read(user) for user in ["u5"] * 4 + list(HISTORIES)[16:23]))
            assert all(_same(answer, alone["u5"]) for answer in got[:4])
            assert (reads.calls, reads.reads) == (3, 24)

            # A lone read waits for the window and no longer: the flush is
            # scheduled window_seconds after it arrived.
            reads = HistoryReads(store, window_seconds=0.002, max_batch=8)
            loop = asyncio.get_running_loop()
            pending = asyncio.ensure_future(reads.read("u7"))
            await asyncio.sleep(0)
            arrived = loop.time()
            assert reads._timer is not None and reads._timer.when() - arrived <= 0.002
            assert _same(await pending, alone["u7"]) and reads.calls == 1
            # window 0: only the reads started in the same turn of the loop are merged.
            reads = HistoryReads(store, window_seconds=0, max_batch=64)
            got = await asyncio.gather(*(reads.read(user) for user in HISTORIES))
            assert reads.calls == 1 and all(_same(a, alone[u]) for u, a in zip(HISTORIES, got))
        finally:
            await store.close()

    asyncio.run(check())
