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
    """The two reads of a query, cached per worker as arrays. Create it inside its event loop.

    Session keys and item ids are numbered per worker (interned) when a read is cached, so a
    query works on int arrays; the numbering starts afresh (with empty caches) past
    ``max_interned`` ids, and :attr:`epoch` counts those restarts.
    """

    def __init__(
        self,
        store: BigtableStore,
        *,
        ttl_seconds: float = 2.0,
        closed_seconds: float = 60.0,
        max_entries: int = 100_000,
        max_interned: int = 2_000_000,
    ):
        self._store = store
        self._ttl, self._closed, self._entries, self._max_interned = (
            ttl_seconds,
            closed_seconds,
            max_entries,
            max_interned,
        )
        self.epoch = -1
        self._restart()

    def _restart(self) -> None:
        self.epoch += 1
        self._holders = _Expiring(self._ttl, self._entries)
        self._items = _Expiring(self._ttl, self._entries)
        self.sessions: list[str] = []
        self._session_ids: dict[str, int] = {}
        self.items_by_id: list[str] = []
        self._item_ids: dict[str, int] = {}

    def _intern(self, names: dict[str, int], table: list[str], name: str) -> int:
        number = names.get(name)
        if number is None:
            number = names[name] = len(table)
            table.append(name)
        return number

    def item_id(self, item: str) -> int:
        return self._intern(self._item_ids, self.items_by_id, item)

    def session_id(self, session: str) -> int | None:
        return self._session_ids.get(session)

    async def holders(self, items: list[str], limit: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each item's sessions (ids, newest first, each once) and their newest click on it."""
        if len(self._session_ids) > self._max_interned or len(self._item_ids) > self._max_interned:
            self._restart()
        epoch = self.epoch

        async def load(keys: list) -> dict:
            found = await self._store.read_session_holders([item for item, _ in keys], limit)
            if epoch != self.epoch:
                raise _Restarted
            loaded = {}
            for item, _ in keys:
                newest: dict[int, int] = {}
                for session, micros in found[item]:
                    number = self._intern(self._session_ids, self.sessions, session)
                    if number not in newest:
                        newest[number] = micros
                loaded[(item, limit)] = (
                    np.fromiter(newest.keys(), np.int64, len(newest)),
                    np.fromiter(newest.values(), np.int64, len(newest)),
                )
            return loaded

        found = await self._holders.get(((item, limit) for item in items), load)
        return {item: found[(item, limit)] for item in items}

    async def items(self, sessions: list[int]) -> dict[int, np.ndarray]:
        """Each session's item ids in click order (sessions by id)."""
        epoch = self.epoch

        async def load(keys: list) -> dict:
            found = await self._store.read_session_items([self.sessions[k] for k in keys])
            if epoch != self.epoch:
                raise _Restarted
            return {
                k: (
                    np.array([self.item_id(item) for item in found[self.sessions[k]][0]], np.int64),
                    found[self.sessions[k]][1],
                )
                for k in keys
            }

        found = await self._items.get(sessions, load, self._items_ttl)
        return {k: items for k, (items, _) in found.items()}

    def _items_ttl(self, value: tuple[np.ndarray, int]) -> float:
        over = time.time() * 1000 - value[1] > _GAP_MS
        return self._closed if value[1] >= 0 and over else self._ttl


class _Restarted(Exception):
    """The numbering restarted while a read was out: the query starts again."""


async def session_votes(
    knn: SessionKnn, clicks: list[str], reads: SessionIndexReads, own: frozenset[str] = frozenset()
) -> tuple[list[str], Votes]:
    """(item names by id, votes over item ids) for ``clicks`` (oldest first)."""
    for _ in range(3):
        try:
            return await _votes(knn, clicks, reads, own)
        except _Restarted:
            continue
    raise RuntimeError("the session index numbering kept restarting under this query")


async def _votes(knn, clicks, reads, own):
    clicks = clicks if knn.last is None else clicks[-knn.last :]
    distinct = list(dict.fromkeys(clicks))
    if not distinct:
        return reads.items_by_id, session_knn.NO_VOTES
    lists = await reads.holders(distinct, knn.sample)
    epoch = reads.epoch
    ids = [lists[item][0] for item in distinct]
    sizes = np.array([len(x) for x in ids])
    held, micros = np.concatenate(ids), np.concatenate([lists[item][1] for item in distinct])
    mine = [n for n in (reads.session_id(session) for session in own) if n is not None]
    keep = ~np.isin(held, mine) if mine else np.ones(len(held), dtype=bool)
    sessions, where = np.unique(held, return_inverse=True)
    newest = np.full(len(sessions), -1, np.int64)
    np.maximum.at(newest, where[keep], micros[keep])
    # Sessions numbered by recency: the newest click on an item of the query, then the id.
    order = np.lexsort((sessions, newest))
    rank = np.empty(len(sessions), np.int64)
    rank[order] = np.arange(len(sessions))
    numbered = rank[where]
    owners = np.repeat(np.arange(len(distinct)), sizes)
    per_item = [numbered[(owners == j) & keep] for j in range(len(distinct))]
    current = np.array([reads.item_id(item) for item in clicks], dtype=np.int64)
    position = {reads.item_id(item): j for j, item in enumerate(distinct)}
    found = session_knn.neighbours(knn, current, lambda i: per_item[position[i]])
    neighbour_ids = sessions[order[found.sessions]]
    rows = await reads.items(neighbour_ids.tolist())
    if epoch != reads.epoch:
        raise _Restarted
    by_rank = dict(zip(found.sessions.tolist(), neighbour_ids.tolist()))
    votes = session_knn.item_scores(knn, current, found, lambda s: rows[by_rank[s]])
    return reads.items_by_id, votes
