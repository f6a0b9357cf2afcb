"""Recommendations from a history: the domain logic behind the HTTP routes.

score_i = sum_j w_j * s_ji over the neighbour lists of the history items j
(w_j = r_uj for a user, the event-type weights for a session), computed by
:mod:`serving.scoring`. History items and ``exclude`` are never returned;
a list shorter than n is filled from the generation's popularity list and
those entries say ``source = "popular"``. Equal scores are ordered by the
kernel's tie-break (vocabulary index: the order this process first saw the
items); popular fill keeps the stored popularity order.

The catalogue filters apply to every answer, fill included: an item the
catalogue hides is never returned, and ``categories`` keeps only items of those
categories (a short list is filled from those categories' most popular items,
see :mod:`serving.catalog`). The kernel checks each candidate against the
per-vocabulary arrays (:class:`serving.catalog.ItemFacts`), so the answer is the
unfiltered ranking with the filtered-out items removed, at the cost of a check
per candidate.

Merchandising rules (:mod:`serving.rules`, in the order documented there) apply to
every answer: excluded categories join the hidden check and the multipliers the
kernel's ranking (a popularity blend multiplies the blended score, session-kNN its
votes); the cap and the pins are a pass over the ranked list, with the fill between
them. The kernel is asked for a few more candidates when a cap or pins are set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Iterable
from datetime import timedelta

import numpy as np

from schemas import layout
from schemas.tuned import QueryKnobs
from serving import buy_again
from serving.blend import blend
from serving.catalog import NO_CATEGORY, Catalogue
from serving.generation import Generation, GenerationWatcher
from serving.history import HistoryReads
from serving.neighbours import NO_NEIGHBOURS, NeighbourCache, NeighbourRow
from serving.rules import NO_RULES, Rules, RulesFile, apply, arrange
from serving.scoring import Scorer, TopN
from serving.session_knn import SessionKnn, with_item_item
from serving.session_knn import top as top_votes
from serving.session_neighbours import SessionIndexReads, session_votes
from serving.store import BigtableStore

log = logging.getLogger(__name__)

SIMILAR = "similar"
POPULAR = "popular"
#: Items voted for by neighbour sessions (session-kNN).
SESSIONS = "sessions"
#: The user's own recently viewed items (``/users/{user}/recent``).
RECENT = "recent"
#: Items bought together with the query's (``batch.bought``), and items to buy again: the
#: routes' names (attribution, rules) and their entries' ``source``.
BOUGHT_TOGETHER = "bought-together"
BUY_AGAIN = "buy-again"
#: /similar scores one list with weight 1: the scores are the cosines.
_UNIT_WEIGHT = np.ones(1)
#: Neighbour candidates a popularity blend re-ranks (with the popular list's head).
BLEND_CANDIDATES = 100
#: Session-kNN candidates converted from the ranking at a time while the filters are applied.
_WALK_CHUNK = 64


def recency_factors(items: list[str], sequence: list[str], decay: float) -> np.ndarray:
    """decay^k for each of ``items``, k its rank from the most recently clicked in ``sequence``
    (oldest first); items not in it rank after all that are, in their given order."""
    last = {item: position for position, item in enumerate(sequence)}
    order = sorted(range(len(items)), key=lambda j: (-last.get(items[j], -1), j))
    rank = np.empty(len(items), dtype=np.float64)
    rank[order] = np.arange(len(items))
    return decay**rank


def current_session(user: str, recent: list[tuple[str, int]]) -> tuple[list[str], frozenset[str]]:
    """The user's clicks since the last gap of SESSION_GAP (oldest first), and the session keys
    the index files them under (so that the session is not its own neighbour)."""
    gap = layout.SESSION_GAP // timedelta(milliseconds=1)
    start = len(recent)
    while start > 0 and (start == len(recent) or recent[start][1] - recent[start - 1][1] <= gap):
        start -= 1
    session = recent[start:]
    return [item for item, _ in session], frozenset(layout.session_key(user, None, ts) for _, ts in session)


class NoGeneration(RuntimeError):
    """No similarity generation has been published (or read) yet, or the one served is gone."""


class NoCatalogue(RuntimeError):
    """The catalogue has not been read yet: answering could return a hidden item."""


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
        catalogue: Catalogue,
        histories: HistoryReads,
        *,
        max_history: int,
        vocabulary_limit: int,
        knobs: QueryKnobs = QueryKnobs(),  # noqa: B008 - frozen, immutable default
        sessions: SessionIndexReads | None = None,
        session_knn: SessionKnn | None = None,
        rules: RulesFile | None = None,
        bought_cache: NeighbourCache | None = None,
        repurchase_cache: buy_again.RepurchaseCache | None = None,
    ):
        self._store = store
        self._watcher = watcher
        self._cache = cache
        self._catalogue = catalogue
        self._histories = histories
        #: Answers per filter (``/metrics``); ``available``: the catalogue hid some item.
        self.filtered = {"available": 0, "category": 0, "same_category": 0}
        self._scorer = Scorer()
        self._max_history = max_history
        self._vocabulary_limit = vocabulary_limit
        self._knobs = knobs
        self._sessions = sessions
        self._session_knn = session_knn
        self._rules_file = rules
        #: Bought-together lists, cached like the neighbour lists (per generation view).
        self._bought_cache = bought_cache if bought_cache is not None else NeighbourCache(cache.max_rows)
        self._repurchase_cache = repurchase_cache or buy_again.RepurchaseCache(cache.max_rows)

    def rules(self) -> Rules:
        """The merchandising rules in force now (read once per answer)."""
        return NO_RULES if self._rules_file is None else self._rules_file.current

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
            self._bought_cache.drop_generation(current.cache_key)
            log.info("vocabulary of generation %d reached %d items: renewed", current.number, len(current.vocabulary))
            current = self._watcher.current
        if not self._catalogue.loaded:
            raise NoCatalogue("the catalogue has not been read yet")
        return current

    async def for_user(
        self, user: str, n: int, *, exclude: Iterable[str] = (), explain: bool = False, categories=()
    ) -> Answer:
        """Recommendations from the user's r_ui; an unknown user gets popular items.

        With a tuned recency decay d < 1 the user's ``recent`` sequence orders the history:
        the k-th most recently clicked item weighs d^k r_ui (items older than the sequence
        come last). With session-kNN configured, the user's current session (their recent
        events back to the first gap of SESSION_GAP) is scored by its neighbour sessions.
        """
        generation = await self.generation()
        ordered = self._knobs.recency_decay < 1.0 or self._session_knn is not None
        if ordered:
            (items, weights), recent = await asyncio.gather(self._histories.read(user), self._store.read_recent(user))
        else:
            items, weights = await self._histories.read(user)
        excluded = set(items).union(exclude)
        if self._session_knn is not None:
            clicks, own = current_session(user, recent)
            if clicks:
                history = dict(zip(items, weights.tolist()))
                session = {item: history.get(item, 0.0) for item in dict.fromkeys(clicks)}
                picked = await self._session_answer(
                    generation, clicks, session, n, excluded, explain, categories, own, "user"
                )
                return Answer(generation.number, picked)
        if self._knobs.recency_decay < 1.0 and items:
            weights = weights * recency_factors(items, [item for item, _ in recent], self._knobs.recency_decay)
        if len(items) > self._max_history:
            # Long histories: the strongest interactions carry the score; the
            # rest are still excluded.
            keep = np.sort(np.argsort(-weights, kind="stable")[: self._max_history])
            items = [items[k] for k in keep]
            weights = weights[keep]
        return await self._answer(generation, items, weights, n, excluded, explain, self._codes(categories), "user")

    async def for_session(
        self,
        session: dict[str, float],
        n: int,
        *,
        exclude: Iterable[str] = (),
        explain: bool = False,
        categories=(),
        allow_repeats: bool | None = None,
        clicks: list[str] | None = None,
        own: frozenset[str] = frozenset(),
    ) -> Answer:
        """Recommendations for ``{item: weight}`` (the seed's browsed/basket/purchased form).

        The session's items are in the order given, oldest first: with a tuned recency
        decay d the k-th newest weighs d^k more. ``allow_repeats`` (default: the tuned
        configuration's) lets the session's own items be recommended again. With
        session-kNN configured, ``clicks`` (the items in click order, repeats kept) are
        scored by the neighbour sessions of the stream's index, ``own`` (the session's own
        keys in the index) left out of them.
        """
        generation = await self.generation()
        repeats = self._knobs.allow_repeats if allow_repeats is None else allow_repeats
        if self._session_knn is not None and clicks:
            excluded = set(exclude) if repeats else set(clicks).union(exclude)
            picked = await self._session_answer(
                generation, clicks, session, n, excluded, explain, categories, own, "session"
            )
            return Answer(generation.number, picked)
        items = list(session)
        weights = np.array(list(session.values()), dtype=np.float64)
        decay = self._knobs.recency_decay
        if decay < 1.0:
            weights = weights * decay ** np.arange(len(weights) - 1, -1, -1, dtype=np.float64)
        excluded = set(exclude) if repeats else set(items).union(exclude)
        return await self._answer(generation, items, weights, n, excluded, explain, self._codes(categories), "session")

    async def session_clicks(self, session: str) -> list[str]:
        """A session's items in click order from the stream's index (empty: unknown)."""
        return (await self._store.read_session_items([session]))[session][0]

    async def _session_answer(
        self, generation, clicks, session, n, excluded, explain, categories, own, route
    ) -> list[dict]:
        """Session-kNN votes (blended with item-item scores if configured), the catalogue
        filters and the rules applied, best first; then the popular fill."""
        knn = self._session_knn
        rules = self.rules()
        vocabulary, votes = await session_votes(knn, clicks, self._sessions, own)
        codes = self._codes(categories)
        if knn.item_item > 0:
            items = list(session)
            weights = np.array(list(session.values()), dtype=np.float64)
            rows = await self._neighbour_lists(generation, items)
            others = self._score(
                generation, items, weights, rows, BLEND_CANDIDATES, excluded, False, codes, rules, boost=False
            )
            other = np.array([self._sessions.item_id(e["item"]) for e in others], dtype=np.int64)
            votes = with_item_item(knn, votes, other, np.array([e["score"] for e in others], dtype=np.float64))
        hidden = self._catalogue.hidden
        wanted = None if codes is None else set(codes.tolist())
        out_of = rules.excluded_categories
        category_of = self._catalogue.category_of
        if rules.boosts:
            factors = [rules.factor(vocabulary[j], category_of(vocabulary[j])) for j in votes.items.tolist()]
            votes = votes._replace(scores=votes.scores * np.array(factors, dtype=np.float64))
        # The whole ranking, walked best first until enough pass the filters: a filter check per
        # candidate taken or skipped, not per item voted for (thousands, most never shown).
        ranked, count = top_votes(votes, len(votes.items)), n + rules.extra(route, n)
        picked = []
        for start in range(0, len(ranked), _WALK_CHUNK):
            for j in ranked[start : start + _WALK_CHUNK].tolist():
                item = vocabulary[j]
                if (
                    item in excluded
                    or item in hidden
                    or (wanted is not None and self._catalogue.category_code(item) not in wanted)
                    or (out_of and category_of(item) in out_of)
                ):
                    continue
                entry = {"item": item, "score": float(votes.scores[np.searchsorted(votes.items, j)])}
                entry["source"] = SESSIONS
                if explain:
                    entry["because"] = []
                picked.append(entry)
                if len(picked) == count:
                    break
            if len(picked) == count:
                break
        return self._finish(generation, route, picked, n, excluded, explain, codes, rules)

    async def recent(self, user: str, n: int, *, exclude: Iterable[str] = (), categories=()) -> Answer:
        """The user's last ``n`` distinct items, most recently clicked first, from the stream's
        ``recent`` row (one read of at most RECENT_EVENTS cells). ``score`` is the time of the
        user's last click on the item (epoch seconds); hidden items, ``exclude`` and items outside
        ``categories`` are left out, and nothing fills a short list: it is the user's own history.
        Of the merchandising rules, the excluded categories and the cap per category apply; boosts
        and pins do not: they would reorder or add to what the user viewed.
        """
        generation = await self.generation()
        wanted = None if not categories else set(self._codes(categories).tolist())
        rules = self.rules()
        cap, out_of, per_category = rules.cap(RECENT), rules.excluded_categories, {}
        picked: list[dict] = []
        seen: set[str] = set(exclude)
        hidden = self._catalogue.hidden
        for item, ts in reversed(await self._store.read_recent(user)):
            if len(picked) == n:
                break
            if item in seen:
                continue
            seen.add(item)
            if item in hidden or (wanted is not None and self._catalogue.category_code(item) not in wanted):
                continue
            category = self._catalogue.category_of(item) if cap is not None or out_of else None
            if category is not None:
                if category in out_of or (cap is not None and per_category.get(category, 0) >= cap):
                    continue
                per_category[category] = per_category.get(category, 0) + 1
            picked.append({"item": item, "score": ts / 1000, "source": RECENT})
        return Answer(generation.number, picked)

    async def similar(self, item: str, n: int, *, exclude: Iterable[str] = (), same_category: bool = False) -> Answer:
        """The item's neighbours (cosine scores); :class:`UnknownItem` if it has no row.

        ``same_category``: only neighbours of the item's own category (none if it has none).
        """
        generation, row, codes = await self._item_query(item, same_category)
        excluded = {item, *exclude}
        rules = self.rules()
        picked = self._score(
            generation, [item], _UNIT_WEIGHT, [row], n + rules.extra(SIMILAR, n), excluded, False, codes, rules
        )
        if rules.reshapes:  # no popular fill: /similar lists neighbours only
            picked = arrange(rules, SIMILAR, picked, n, self._catalogue.category_of, self._eligible(excluded, codes))
        return Answer(generation.number, picked)

    async def _item_query(self, item: str, same_category: bool):
        """``(generation, the item's similarity row, the codes same_category keeps)``;
        :class:`UnknownItem` if the item has no similarity row."""
        generation = await self.generation()
        (row,) = await self._neighbour_lists(generation, [item])
        if row is NO_NEIGHBOURS:
            raise UnknownItem(f"the item has no similarity row in generation {generation.number}")
        codes = None
        if same_category:
            self.filtered["same_category"] += 1
            code = self._catalogue.category_code(item)
            codes = np.array([] if code == NO_CATEGORY else [code], dtype=np.int32)
        return generation, row, codes

    async def bought_together(
        self, item: str, n: int, *, exclude: Iterable[str] = (), same_category: bool = False
    ) -> Answer:
        """Items bought together with ``item`` (``batch.bought`` scores), then the popular fill.

        :class:`UnknownItem` exactly when :meth:`similar` raises it (no similarity row): an
        item known to the generation but never bought with another gets the fill only.
        """
        generation, _, codes = await self._item_query(item, same_category)
        return await self._bought(generation, [item], n, {item, *exclude}, codes)

    async def bought_with_basket(
        self, items: list[str], n: int, *, exclude: Iterable[str] = (), categories=()
    ) -> Answer:
        """The sum of the basket items' bought-together lists; basket items never come back;
        items without a list add nothing (an unknown one too); then the popular fill."""
        generation = await self.generation()
        basket = list(dict.fromkeys(items))
        return await self._bought(generation, basket, n, set(basket).union(exclude), self._codes(categories))

    async def _bought(self, generation, items, n, excluded, codes) -> Answer:
        rows = await self._neighbour_lists(generation, items, bought=True)
        weights = np.ones(len(items))
        rules = self.rules()
        wanted = n + rules.extra(BOUGHT_TOGETHER, n)
        picked = self._score(
            generation, items, weights, rows, wanted, excluded, False, codes, rules, source=BOUGHT_TOGETHER
        )
        picked = self._finish(generation, BOUGHT_TOGETHER, picked, n, excluded, False, codes, rules)
        return Answer(generation.number, picked)

    async def buy_again(
        self, user: str, n: int, *, exclude: Iterable[str] = (), categories=(), now_ms: int | None = None
    ) -> Answer:
        """The user's purchases worth buying again (``serving.buy_again``), best first; no fill."""
        generation = await self.generation()
        purchases = await self._store.read_purchases(user)
        hidden, skip = self._catalogue.hidden, set(exclude)
        codes = self._codes(categories)
        wanted = None if codes is None else set(codes.tolist())
        kept = [
            (item, ms)
            for item, ms in purchases
            if item not in hidden
            and item not in skip
            and (wanted is None or self._catalogue.category_code(item) in wanted)
        ]
        if not kept:
            return Answer(generation.number, [])
        stats = await self._repurchase(generation, list(dict.fromkeys(item for item, _ in kept)))
        now = int(time.time() * 1000) if now_ms is None else now_ms
        rules = self.rules()
        ranked = buy_again.rank(kept, stats, now, n if rules is NO_RULES else len(kept))
        picked = [
            {"item": item, "score": score, "source": BUY_AGAIN, "last_purchase_ms": ms} for item, score, ms in ranked
        ]
        if rules is not NO_RULES:
            # Pins may only name what the user bought and may buy again: the ranking itself.
            ranked_items = {entry["item"] for entry in picked}
            picked = apply(rules, BUY_AGAIN, picked, n, self._catalogue.category_of, ranked_items.__contains__)
        return Answer(generation.number, picked)

    async def _repurchase(self, generation: Generation, items: list[str]) -> dict[str, tuple[int, int, int]]:
        """The items' repurchase statistics as of the generation, cached (``buy_again.RepurchaseCache``)."""
        found, missing = self._repurchase_cache.lookup(generation.number, items)
        if missing:
            read = await self._store.read_repurchase(generation.number, missing)
            for item in missing:
                found[item] = read.get(item, buy_again.NO_STATS)
                self._repurchase_cache.store(generation.number, item, found[item])
        return found

    def _codes(self, categories) -> np.ndarray | None:
        if not categories:
            return None
        self.filtered["category"] += 1
        return self._catalogue.codes(categories)

    async def _answer(self, generation, items, weights, n, excluded, explain, codes, route) -> Answer:
        rows = await self._neighbour_lists(generation, items)
        w = self._knobs.popularity_blend
        rules = self.rules()
        wanted = n + rules.extra(route, n)
        if w > 0:
            # The multipliers apply to the blended score, not to the neighbour scores it normalises.
            picked = self._score(
                generation, items, weights, rows, BLEND_CANDIDATES, excluded, explain, codes, rules, boost=False
            )
            picked = self._blended(generation, picked, w, wanted, excluded, explain, codes, rules)
        else:
            picked = self._score(generation, items, weights, rows, wanted, excluded, explain, codes, rules)
        return Answer(generation.number, self._finish(generation, route, picked, n, excluded, explain, codes, rules))

    def _eligible(self, excluded, codes):
        """Whether a pinned item passes the answer's filters (the rules' exclusion is checked apart)."""
        hidden, wanted = self._catalogue.hidden, None if codes is None else set(codes.tolist())
        code = self._catalogue.category_code
        return lambda item: item not in excluded and item not in hidden and (wanted is None or code(item) in wanted)

    def _finish(self, generation, route, picked, n, excluded, explain, codes, rules) -> list[dict]:
        """The ranked candidates to the answer: the cap, the popular fill, the pins (``serving.rules``)."""
        if not rules.reshapes:
            picked = picked[:n]
            if len(picked) < n:
                taken = excluded | {entry["item"] for entry in picked}
                picked += self._popular_fill(generation, n - len(picked), taken, explain, codes)
            return picked
        fill = self._fill_entries(generation, excluded, explain, codes)
        picked = arrange(rules, route, picked, n, self._catalogue.category_of, self._eligible(excluded, codes), fill)
        if explain:
            for entry in picked:
                entry.setdefault("because", [])
        return picked

    async def _neighbour_lists(
        self, generation: Generation, items: list[str], *, bought: bool = False
    ) -> list[NeighbourRow]:
        """The items' similarity rows (``bought``: bought-together lists), cached per generation view."""
        key, cache = generation.cache_key, self._bought_cache if bought else self._cache
        found, missing = cache.lookup(key, items)
        if not missing:
            return found
        reader = self._store.read_bought if bought else self._store.read_neighbours
        read = await reader(generation.number, missing)
        vocabulary = generation.vocabulary
        fetched = {}
        for item in missing:
            pair = read.get(item)
            row = NO_NEIGHBOURS if pair is None else NeighbourRow(vocabulary.indices(pair[0]), pair[1])
            cache.store(key, item, row)
            fetched[item] = row
        return [fetched[item] if row is None else row for item, row in zip(items, found)]

    def _score(
        self,
        generation,
        items,
        weights,
        rows,
        n,
        excluded,
        explain,
        codes,
        rules=NO_RULES,
        *,
        boost=True,
        source=SIMILAR,
    ) -> list[dict]:
        """The kernel's n best, as entries of ``source``; under ``rules`` excluded categories are
        out and (with ``boost``) the scores multiplied."""
        if not rows:
            return []
        vocabulary = generation.vocabulary
        excluded = vocabulary.known(excluded)
        ruled = rules.excluded_categories or (boost and rules.boosts)
        if codes is None and not self._catalogue.hidden and not ruled:
            top = self._scorer.top_n_rows(rows, weights, n, excluded=excluded, explain=explain)
        else:
            top = self._filtered_top(
                generation, rows, weights, n, excluded, explain, codes, rules if ruled else None, boost
            )
        ids = vocabulary.ids
        if not explain:
            return [
                {"item": ids[index], "score": score, "source": source}
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
                    "source": source,
                    "because": [{"item": item, "contribution": value} for item, value in because],
                }
            )
        return picked

    def _filtered_top(self, generation, rows, weights, n, excluded, explain, codes, rules=None, boost=True) -> TopN:
        """The n best that pass the filters (the kernel checks each candidate), multiplied by the rules'."""
        if self._catalogue.hidden:
            self.filtered["available"] += 1
        vocabulary = generation.vocabulary
        factor = None
        if rules is None:
            category, hidden = generation.facts.arrays(vocabulary, self._catalogue)
        else:
            category, hidden, factor = generation.facts.ruled(vocabulary, self._catalogue, rules)
        size = len(vocabulary)
        if factor is not None:
            factor = factor[:size] if boost and rules.boosts else None
        return self._scorer.top_n_rows(
            rows,
            weights,
            n,
            excluded=excluded,
            explain=explain,
            category=category[:size],
            hidden=hidden[:size],
            codes=codes,
            factor=factor,
        )

    def _popular(self, generation: Generation, codes: np.ndarray | None):
        """(item, popularity) best first, within the categories if any (hidden ones included)."""
        if codes is None:
            return zip(generation.popular_items, generation.popular_scores.tolist())
        return self._catalogue.fill(codes)

    def _blended(
        self, generation, picked: list[dict], weight: float, n: int, excluded, explain, codes, rules=NO_RULES
    ) -> list[dict]:
        """:func:`serving.blend.blend` of the neighbour candidates (already filtered) and the
        head of the popular list that passes the same filters; the rules' multipliers on the result."""
        entries = {entry["item"]: entry for entry in picked}
        hidden = self._catalogue.hidden
        category_of = self._catalogue.category_of
        out_of = rules.excluded_categories
        # Hidden items leave before the blend normalises popularity by its head.
        visible = (
            (item, score)
            for item, score in self._popular(generation, codes)
            if item not in hidden and not (out_of and category_of(item) in out_of)
        )
        popular = list(itertools.islice(visible, BLEND_CANDIDATES))
        ranked = blend(
            list(entries),
            [entry["score"] for entry in picked],
            [item for item, _ in popular],
            [score for _, score in popular],
            weight,
            len(entries) + len(popular) if rules.boosts else n,  # multiplied before the n best are taken
            excluded,
        )
        out = []
        for item, score in ranked:
            entry = dict(entries.get(item) or {"item": item, "source": POPULAR, **({"because": []} if explain else {})})
            entry["score"] = score
            out.append(entry)
        if rules.boosts:
            for entry in out:
                entry["score"] *= rules.factor(entry["item"], category_of(entry["item"]))
            out.sort(key=lambda entry: -entry["score"])  # stable: ties keep the blend's order
        return out[:n]

    def _popular_fill(
        self, generation: Generation, count: int, excluded: set[str], explain: bool, codes: np.ndarray | None
    ) -> list[dict]:
        return list(itertools.islice(self._fill_entries(generation, excluded, explain, codes), count))

    def _fill_entries(self, generation: Generation, excluded, explain: bool, codes: np.ndarray | None):
        """The popular fill's entries, lazily: not excluded, not hidden, in the categories if any."""
        hidden = self._catalogue.hidden
        for item, score in self._popular(generation, codes):
            if item not in excluded and item not in hidden:
                entry = {"item": item, "score": score, "source": POPULAR}
                if explain:
                    entry["because"] = []
                yield entry
