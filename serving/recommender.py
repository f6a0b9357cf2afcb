"""Recommendations from a history: the domain logic behind the HTTP routes.

score_i = sum_j w_j * s_ji over the neighbour lists of the history items j
(w_j = r_uj for a user, the event-type weights for a session), computed by
:mod:`serving.scoring`. History items and ``exclude`` are never returned;
a list shorter than n is filled from the generation's popularity list and
those entries say ``source = "popular"``. Equal scores are ordered by the
kernel's tie-break (vocabulary index: the order this process first saw the
items); popular fill keeps the stored popularity order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import numpy as np

from schemas.tuned import QueryKnobs
from serving.blend import blend
from serving.generation import Generation, GenerationWatcher
from serving.neighbours import NO_NEIGHBOURS, NeighbourCache, NeighbourRow
from serving.scoring import Scorer
from serving.store import BigtableStore

log = logging.getLogger(__name__)

SIMILAR = "similar"
POPULAR = "popular"
#: /similar scores one list with weight 1: the scores are the cosines.
_UNIT_WEIGHT = np.ones(1)
#: Neighbour candidates a popularity blend re-ranks (with the popular list's head).
BLEND_CANDIDATES = 100


class NoGeneration(RuntimeError):
    """No similarity generation has been published (or read) yet, or the one served is gone."""


class UnknownItem(LookupError):
    """The item has no similarity row in the generation served."""


@dataclasses.dataclass(frozen=True)
class Answer:
    """Items best first, as plain dicts ready for JSON (no per-field conversion
    on the hot path): ``{"item", "score", "source"}``, plus with explain
    ``"because"``: ``[{"item": history item, "contribution": w_j * s_ji}]``,
    largest first."""

    generation: int
    items: list[dict]


class Recommender:
    def __init__(
        self,
        store: BigtableStore,
        watcher: GenerationWatcher,
        cache: NeighbourCache,
        *,
        max_history: int,
        vocabulary_limit: int,
        knobs: QueryKnobs = QueryKnobs(),  # noqa: B008 - frozen, immutable default
    ):
        self._store = store
        self._watcher = watcher
        self._cache = cache
        self._scorer = Scorer()
        self._max_history = max_history
        self._vocabulary_limit = vocabulary_limit
        self._knobs = knobs

    async def generation(self) -> Generation:
        current = self._watcher.current
        if current is None:
            # Before the first successful poll: try once now rather than 503
            # every request until the next tick.
            current = await self._watcher.refresh()
            if current is None:
                raise NoGeneration(self._watcher.missing)
        if len(current.vocabulary) > self._vocabulary_limit:
            renewed = current.renewed()
            self._watcher.replace(current, renewed)
            self._cache.drop_generation(current.cache_key)
            log.info("vocabulary of generation %d reached %d items: renewed", current.number, len(current.vocabulary))
            current = self._watcher.current
        return current

    async def for_user(self, user: str, n: int, *, exclude: Iterable[str] = (), explain: bool = False) -> Answer:
        """Recommendations from the user's r_ui; an unknown user gets popular items."""
        generation = await self.generation()
        items, weights = await self._store.read_history(user)
        excluded = set(items).union(exclude)
        if len(items) > self._max_history:
            # Long histories: the strongest interactions carry the score; the
            # rest are still excluded.
            keep = np.sort(np.argsort(-weights, kind="stable")[: self._max_history])
            items = [items[k] for k in keep]
            weights = weights[keep]
        return await self._answer(generation, items, weights, n, excluded, explain)

    async def for_session(
        self,
        session: dict[str, float],
        n: int,
        *,
        exclude: Iterable[str] = (),
        explain: bool = False,
        allow_repeats: bool | None = None,
    ) -> Answer:
        """Recommendations for ``{item: weight}`` (the seed's browsed/basket/purchased form).

        The session's items are in the order given, oldest first: with a tuned recency
        decay d the k-th newest weighs d^k more. ``allow_repeats`` (default: the tuned
        configuration's) lets the session's own items be recommended again.
        """
        generation = await self.generation()
        items = list(session)
        weights = np.array(list(session.values()), dtype=np.float64)
        decay = self._knobs.recency_decay
        if decay < 1.0:
            weights = weights * decay ** np.arange(len(weights) - 1, -1, -1, dtype=np.float64)
        repeats = self._knobs.allow_repeats if allow_repeats is None else allow_repeats
        excluded = set(exclude) if repeats else set(items).union(exclude)
        return await self._answer(generation, items, weights, n, excluded, explain)

    async def similar(self, item: str, n: int, *, exclude: Iterable[str] = ()) -> Answer:
        """The item's neighbours (cosine scores); :class:`UnknownItem` if it has no row."""
        generation = await self.generation()
        (row,) = await self._neighbour_lists(generation, [item])
        if row is NO_NEIGHBOURS:
            raise UnknownItem(f"item {item!r} has no similarity row in generation {generation.number}")
        excluded = {item, *exclude}
        picked = self._score(generation, [item], _UNIT_WEIGHT, [row], n, excluded, explain=False)
        return Answer(generation.number, picked)

    async def _answer(self, generation, items, weights, n, excluded, explain) -> Answer:
        rows = await self._neighbour_lists(generation, items)
        w = self._knobs.popularity_blend
        picked = self._score(generation, items, weights, rows, BLEND_CANDIDATES if w > 0 else n, excluded, explain)
        if w > 0:
            picked = self._blended(generation, picked, w, n, excluded, explain)
        if len(picked) < n:
            picked += self._popular_fill(
                generation, n - len(picked), excluded | {entry["item"] for entry in picked}, explain
            )
        return Answer(generation.number, picked)

    async def _neighbour_lists(self, generation: Generation, items: list[str]) -> list[NeighbourRow]:
        key = generation.cache_key
        found, missing = self._cache.lookup(key, items)
        if not missing:
            return found
        read = await self._store.read_neighbours(generation.number, missing)
        vocabulary = generation.vocabulary
        fetched = {}
        for item in missing:
            pair = read.get(item)
            row = NO_NEIGHBOURS if pair is None else NeighbourRow(vocabulary.indices(pair[0]), pair[1])
            self._cache.store(key, item, row)
            fetched[item] = row
        return [fetched[item] if row is None else row for item, row in zip(items, found)]

    def _score(self, generation, items, weights, rows, n, excluded, explain) -> list[dict]:
        if not rows:
            return []
        vocabulary = generation.vocabulary
        top = self._scorer.top_n_rows(rows, weights, n, excluded=vocabulary.known(excluded), explain=explain)
        ids = vocabulary.ids
        if not explain:
            return [
                {"item": ids[index], "score": score, "source": SIMILAR}
                for index, score in zip(top.items.tolist(), top.scores.tolist())
            ]
        picked = []
        for k, (index, score) in enumerate(zip(top.items.tolist(), top.scores.tolist())):
            contributions = top.contributions[k]
            because = sorted(
                ((items[j], float(contributions[j])) for j in np.flatnonzero(contributions)),
                key=lambda pair: (-pair[1], pair[0]),
            )
            picked.append(
                {
                    "item": ids[index],
                    "score": score,
                    "source": SIMILAR,
                    "because": [{"item": item, "contribution": value} for item, value in because],
                }
            )
        return picked

    @staticmethod
    def _blended(generation: Generation, picked: list[dict], weight: float, n: int, excluded, explain) -> list[dict]:
        """:func:`serving.blend.blend` of the neighbour candidates and the popular list."""
        entries = {entry["item"]: entry for entry in picked}
        ranked = blend(
            list(entries),
            [entry["score"] for entry in picked],
            generation.popular_items,
            generation.popular_scores.tolist(),
            weight,
            n,
            excluded,
        )
        out = []
        for item, score in ranked:
            entry = dict(entries.get(item) or {"item": item, "source": POPULAR, **({"because": []} if explain else {})})
            entry["score"] = score
            out.append(entry)
        return out

    @staticmethod
    def _popular_fill(generation: Generation, count: int, excluded: set[str], explain: bool) -> list[dict]:
        fill = []
        for item, score in zip(generation.popular_items, generation.popular_scores.tolist()):
            if len(fill) == count:
                break
            if item not in excluded:
                entry = {"item": item, "score": score, "source": POPULAR}
                if explain:
                    entry["because"] = []
                fill.append(entry)
        return fill
