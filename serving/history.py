"""User histories read together: concurrent requests share one ReadRows call.

A user query's cost is mostly its history read, one prefix scan per request. Reads
that arrive within ``window_seconds`` of the first one waiting (or until
``max_batch`` are waiting, whichever comes first) go out as one ReadRows call with one
range per user (:meth:`streamsim.runtime.bigtable.aio.AsyncTables.read_prefixes`), so
under load the per-request cost falls toward the store's batched rate. The delay a read
adds is bounded by the window; with ``window_seconds=0`` it is one turn of the event
loop (only reads started in the same turn are merged).

Each answer is exactly what a read of its own would have been: the same first
MAX_HISTORY_ITEMS rows in key order. A failed call fails every read in it (503).
"""

from __future__ import annotations

import asyncio

import numpy as np

from serving.store import BigtableStore

History = tuple[list[str], np.ndarray]


class HistoryReads:
    """Create it inside the event loop that uses it."""

    def __init__(self, store: BigtableStore, *, window_seconds: float = 0.001, max_batch: int = 64):
        if window_seconds < 0 or max_batch < 1:
            raise ValueError("the history batch needs a window >= 0 and room for at least one read")
        self._store = store
        self.window_seconds = window_seconds
        self.max_batch = max_batch
        #: user -> the future every waiting request for that user shares.
        self._waiting: dict[str, asyncio.Future] = {}
        self._timeouts: list[float] = []
        self._timer: asyncio.TimerHandle | None = None
        self._calls: set[asyncio.Task] = set()  # referenced until done
        #: ReadRows calls made and histories read through them (``/metrics``).
        self.calls = 0
        self.reads = 0

    async def read(self, user: str) -> History:
        waiting = self._waiting.get(user)
        if waiting is None:
            loop = asyncio.get_running_loop()
            waiting = self._waiting[user] = loop.create_future()
            self._timeouts.append(self._store.remaining())
            if len(self._waiting) >= self.max_batch:
                self._flush()
            elif self._timer is None:
                self._timer = loop.call_later(self.window_seconds, self._flush)
        # shield: one request that gives up must not cancel the others' read.
        return await asyncio.shield(waiting)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, timeouts = self._waiting, self._timeouts
        self._waiting, self._timeouts = {}, []
        if batch:
            # The longest budget of the batch: a request whose own is shorter waits
            # no longer than the RPC deadline (its middleware budget still applies).
            task = asyncio.get_running_loop().create_task(self._read(batch, max(timeouts)))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _read(self, batch: dict[str, asyncio.Future], timeout: float) -> None:
        self.calls += 1
        self.reads += len(batch)
        try:
            found = await self._store.read_histories(list(batch), timeout)
        except asyncio.CancelledError:  # the server is stopping
            for future in batch.values():
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request (503)
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for user, future in batch.items():
            if not future.done():
                future.set_result(found[user])
