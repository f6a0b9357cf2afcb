"""Session-kNN on the stream's session index: what a session query reads, and its votes.

A query is a session's clicks, oldest first. It reads, in two round trips:

1. the holder lists of its distinct items, each item's newest m clicks
   (:meth:`serving.store.BigtableStore.read_session_holders`);
2. the items of the k neighbours :func:`serving.session_knn.neighbours` picks from them
   (:meth:`serving.store.BigtableStore.read_session_items`, each at most SESSION_EVENTS).

So a query reads at most (distinct items) x m cells plus k rows, whatever an item's popularity
or a session's length. Sessions are numbered for :mod:`serving.session_knn` by recency: a
session's newest click among the lists read (then its key), so one that clicked a current item
a second ago is the newest candidate. The query's own sessions (``own``) are never neighbours.

Both reads are cached per worker for ``ttl_seconds``: within that window a hot item's list is
read once, and a session published since is seen at the latest when it ends (no refresh is
involved: the fold writes the index, serving reads it). A session whose newest click is older
than SESSION_GAP is over for all but a rare late click: its items are kept ``closed_seconds``
(a late click shows in the neighbour's vote that much later; finding the session as a candidate
goes by the item lists, which keep ``ttl_seconds``). Concurrent misses of one key share one read.

Only similarities that need nothing but the lists are served: V-SKNN with ``vec``. Cosine
(and so STAN/VSTAN) divides by every candidate's length, which would cost a row read per
candidate (m of them), so the server refuses those settings.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

import numpy as np

from schemas import layout
from serving import session_knn
from serving.session_knn import SessionKnn, Votes
from serving.store import BigtableStore

_GAP_MS = layout.SESSION_GAP / timedelta(milliseconds=1)


def servable(knn: SessionKnn) -> SessionKnn:
    """``knn`` if the server can run it from the index alone, else ValueError saying why."""
    if knn.method != "vsknn" or knn.similarity != "vec" or knn.idf_weight:
        raise ValueError(
            "serving runs session-kNN as V-SKNN with vec similarity and no IDF: cosine (STAN, VSTAN) "
            "needs every candidate's length and IDF global counts, which the session index does not keep"
        )
    return knn


class _Expiring:
    """key -> value for ``ttl`` seconds, at most ``size`` keys (oldest dropped first);
    concurrent misses of one key share one load."""

    def __init__(self, ttl: float, size: int):
        self._ttl, self._size = ttl, size
        self._values: OrderedDict = OrderedDict()
        self._loading: dict = {}

    async def get(
        self, keys: Iterable, load: Callable[[list], Awaitable[dict]], ttl_of: Callable | None = None
    ) -> dict:
        """Values of ``keys``; ``ttl_of(value)``: that value's own ttl (default: the cache's)."""
        now = time.monotonic()
        found, missing, waits = {}, [], {}
        for key in keys:
            hit = self._values.get(key)
            if hit is not None and now < hit[0]:
                found[key] = hit[1]
            elif key in self._loading:
                waits[key] = self._loading[key]
            else:
                missing.append(key)
        if missing:
            future = asyncio.get_running_loop().create_future()
            for key in missing:
                self._loading[key] = future
            try:
                loaded = await load(missing)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: the waiters re-raise it themselves
                raise
            finally:
                for key in missing:
                    self._loading.pop(key, None)
            future.set_result(loaded)
            stamp = time.monotonic()
            for key in missing:
                ttl = self._ttl if ttl_of is None else ttl_of(loaded[key])
                self._values[key] = (stamp + ttl, loaded[key])
                self._values.move_to_end(key)
            while len(self._values) > self._size:
                self._values.popitem(last=False)
            found.update({key: loaded[key] for key in missing})
        for key, future in waits.items():
            found[key] = (await asyncio.shield(future))[key]
        return found


class SessionIndexReads:
    """The two reads of a query, cached per worker. Create it inside its event loop."""

    def __init__(
        self,
        store: BigtableStore,
        *,
        ttl_seconds: float = 1.0,
        closed_seconds: float = 60.0,
        max_entries: int = 100_000,
    ):
        self._store = store
        self._holders = _Expiring(ttl_seconds, max_entries)
        self._items = _Expiring(ttl_seconds, max_entries)
        self._ttl, self._closed = ttl_seconds, closed_seconds

    async def holders(self, items: list[str], limit: int) -> dict[str, list[tuple[str, int]]]:
        return await self._holders.get(
            ((item, limit) for item in items),
            lambda keys: self._keyed(self._store.read_session_holders([i for i, _ in keys], limit), keys),
        )

    async def items(self, sessions: list[str]) -> dict[str, list[str]]:
        found = await self._items.get(sessions, self._store.read_session_items, self._items_ttl)
        return {session: items for session, (items, _) in found.items()}

    def _items_ttl(self, value: tuple[list[str], int]) -> float:
        over = time.time() * 1000 - value[1] > _GAP_MS
        return self._closed if value[1] >= 0 and over else self._ttl

    @staticmethod
    async def _keyed(read: Awaitable[dict], keys: list) -> dict:
        found = await read
        return {(item, limit): found[item] for item, limit in keys}


async def session_votes(
    knn: SessionKnn, clicks: list[str], reads: SessionIndexReads, own: frozenset[str] = frozenset()
) -> tuple[list[str], Votes]:
    """(local vocabulary, votes over its indices) for ``clicks``: index j is vocabulary[j]."""
    clicks = clicks if knn.last is None else clicks[-knn.last :]
    vocabulary = list(dict.fromkeys(clicks))
    if not vocabulary:
        return vocabulary, session_knn.NO_VOTES
    lists = await reads.holders(vocabulary, knn.sample)
    recency: dict[str, int] = {}
    holders: list[list[str]] = []
    for item in vocabulary:
        sessions: dict[str, None] = {}
        for key, micros in lists[(item, knn.sample)]:
            if key in own:
                continue
            sessions[key] = None
            if micros > recency.get(key, -1):
                recency[key] = micros
        holders.append(list(sessions))
    ordered = sorted(recency, key=lambda key: (recency[key], key))
    number = {key: n for n, key in enumerate(ordered)}
    index = {item: j for j, item in enumerate(vocabulary)}
    current = np.array([index[item] for item in clicks], dtype=np.int64)
    found = session_knn.neighbours(
        knn, current, lambda j: np.array([number[key] for key in holders[j]], dtype=np.int64)
    )
    rows = await reads.items([ordered[s] for s in found.sessions.tolist()])

    def items_of(s: int) -> np.ndarray:
        return np.array([index.setdefault(item, len(index)) for item in rows[ordered[s]]], dtype=np.int64)

    votes = session_knn.item_scores(knn, current, found, items_of)
    return list(index), votes
