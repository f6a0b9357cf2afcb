"""Session-neighbour scoring (session-kNN): the sessions most like the current one vote for their items.

The current session is ``c = c_1 .. c_L`` (item indices in click order, repeats kept); ``C`` its
distinct items; ``lp(i)`` the 1-based position of i's last click. Past sessions are ints numbered
oldest first (a larger number is a more recent session), each with its ordered items.

1. Candidates: the ``sample`` (m) most recent sessions that share an item with c. Each item's
   list of sessions may be cut to its m most recent without changing this set: a session among
   the m most recent of the union has fewer than m newer sessions in any one list.
2. Similarity of a candidate n (distinct items N), with position weights w(i) = f(lp(i), L):

   - V-SKNN (``vsknn``): ``sim = sum_{i in C∩N} w(i) / |C|`` (session-rec's ``vec``), or with
     ``cosine`` ``sum w(i) / (sqrt(sum_{i in C} w(i)^2) * sqrt(|N|))``; f from :data:`POSITION_WEIGHTS`.
   - STAN / VSTAN (``vstan``): cosine with ``w(i) = exp((lp(i) - L) / spw)``, times
     ``exp(-age / snh)`` when ages are known and ``snh`` is set.

3. Neighbours: the ``k`` most similar candidates (ties: the more recent first).
4. Item scores, summed over neighbours n, for each distinct item i of n:

   - V-SKNN: ``sim_n * g(p) * (1 + idf_weight * idf(i))``, where p is the step (1 = the newest
     click) of the newest click of c that n holds, and g from :data:`STEP_DECAYS`;
   - VSTAN: ``sim_n * exp(-|pos_n(i) - p*| / inh) * exp((q* - L) / ipw) * (1 + idf_weight * idf(i))``,
     where pos_n(i) is i's last position in n, p* the last position in n of any item of C, and q*
     the position in c of the newest click n shares (STAN: ``ipw`` and ``idf_weight`` off).

Items of c are scored like any other (repeats allowed); the caller excludes what it must. The
same two calls serve an HTTP request (on the rows it read) and ``streamsim evaluate`` (on a
whole training set held in arrays), so offline figures are the server's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

#: Position weight f(j, L) of the current session's j-th click (V-SKNN), as session-rec names them.
POSITION_WEIGHTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "same": lambda j, n: np.ones(len(j)),
    "div": lambda j, n: j / n,
    "quadratic": lambda j, n: (j / n) ** 2,
    "log": lambda j, n: 1.0 / np.log10(n - j + 1.7),
}
#: Decay g(p) of a neighbour whose newest shared click is p steps back (1: the last click).
STEP_DECAYS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "same": lambda p: np.ones(len(p)),
    "div": lambda p: 1.0 / p,
    "quadratic": lambda p: 1.0 / (p * p),
    "log": lambda p: 1.0 / np.log10(p + 1.7),
    "linear": lambda p: np.where(p <= 100, 1.0 - 0.1 * p, 0.0),
}
METHODS = ("vsknn", "vstan")


@dataclasses.dataclass(frozen=True)
class SessionKnn:
    """A session-kNN method and its parameters (session-rec's defaults for V-SKNN)."""

    method: str = "vsknn"
    #: Neighbours that vote.
    k: int = 100
    #: Most recent candidate sessions compared (m).
    sample: int = 1000
    #: V-SKNN: position weights, ``vec`` or ``cosine`` similarity, step decay.
    weighting: str = "div"
    similarity: str = "vec"
    decay: str = "div"
    #: λ of the IDF factor (1 + λ·idf); 0: off.
    idf_weight: float = 0.0
    #: VSTAN: position weight, item-distance, shared-position and session-age lengths.
    spw: float = 1.02
    inh: float = 2.05
    ipw: float | None = 1.02
    snh: float | None = None
    #: Only the last clicks of the current session count (None: all of them).
    last: int | None = None
    #: w in (1-w)·score/max score + w·item-item score/max item-item score (0: session-kNN alone).
    item_item: float = 0.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"session method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.k < 1 or self.sample < 1:
            raise ValueError("session-kNN needs k >= 1 and sample >= 1")
        if self.weighting not in POSITION_WEIGHTS or self.decay not in STEP_DECAYS:
            raise ValueError(f"unknown weighting {self.weighting!r} or decay {self.decay!r}")
        if self.similarity not in ("vec", "cosine"):
            raise ValueError(f"session similarity {self.similarity!r} is not vec or cosine")
        for name in ("spw", "inh", "ipw", "snh"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        if self.idf_weight < 0 or (self.last is not None and self.last < 1):
            raise ValueError("idf_weight must be >= 0 and last >= 1")
        if not 0.0 <= self.item_item <= 1.0:
            raise ValueError(f"item_item must be within [0, 1], not {self.item_item!r}")

    def current(self, session: np.ndarray) -> np.ndarray:
        """The clicks that count: the last ``last`` of them."""
        return session if self.last is None else session[-self.last :]


#: Named settings (``evaluate``'s methods, ``serve --session-method``): session-rec's V-SKNN
#: defaults, and VSTAN as session-rec tuned it for MRR on a DIGINETICA split.
PRESETS = {
    "v-sknn": SessionKnn(),
    "vstan": SessionKnn(method="vstan", k=1500, sample=5000, spw=1.25, inh=10.0, ipw=10.0, idf_weight=10.0),
}


class Neighbours(NamedTuple):
    """The k neighbours (session numbers, most similar first) with what scoring needs of them."""

    sessions: np.ndarray  # int64
    similarity: np.ndarray  # float64
    #: Position in c (1-based) of the newest click each neighbour shares.
    newest_shared: np.ndarray  # int64
    length: int  # L


_NONE = Neighbours(np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64), 0)


def last_positions(session: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct items ascending, the 1-based position of each one's last click)."""
    items, first = np.unique(session[::-1], return_index=True)
    return items, len(session) - first


def neighbours(
    knn: SessionKnn,
    session: np.ndarray,
    sessions_of: Callable[[int], np.ndarray],
    lengths: Callable[[np.ndarray], np.ndarray] | None = None,
    ages: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Neighbours:
    """The k nearest past sessions of ``session`` (its clicks, :meth:`SessionKnn.current` applied).

    ``sessions_of(item)``: the distinct sessions holding the item (its m most recent suffice).
    ``lengths(sessions)``: their numbers of distinct items (cosine only); ``ages(sessions)``:
    how long ago each ended, in snh's unit (VSTAN with snh only; None: no age decay).
    """
    session = knn.current(np.asarray(session, dtype=np.int64))
    length = len(session)
    if not length:
        return _NONE
    items, last = last_positions(session)
    lists = [np.asarray(sessions_of(int(i)), dtype=np.int64) for i in items]
    sizes = np.array([len(x) for x in lists])
    if not sizes.sum():
        return _NONE
    if knn.method == "vsknn":
        w = POSITION_WEIGHTS[knn.weighting](last.astype(np.float64), length)
    else:
        w = np.exp((last - length) / knn.spw)
    held = np.concatenate(lists)
    candidates, owner = np.unique(held, return_inverse=True)  # oldest first
    dot = np.bincount(owner, weights=np.repeat(w, sizes), minlength=len(candidates))
    newest = np.zeros(len(candidates), np.int64)
    np.maximum.at(newest, owner, np.repeat(last, sizes))
    keep = slice(max(0, len(candidates) - knn.sample), None)
    candidates, dot, newest = candidates[keep], dot[keep], newest[keep]
    if knn.method == "vsknn" and knn.similarity == "vec":
        sim = dot / len(items)
    else:
        if lengths is None:
            raise ValueError("cosine similarity needs the candidates' lengths")
        sim = dot / (math.sqrt(float(np.dot(w, w))) * np.sqrt(np.asarray(lengths(candidates), dtype=np.float64)))
    if knn.method == "vstan" and knn.snh is not None and ages is not None:
        sim = sim * np.exp(-np.asarray(ages(candidates), dtype=np.float64) / knn.snh)
    # Most similar first; among equals the more recent (candidates are oldest first).
    order = np.lexsort((-np.arange(len(candidates)), -sim))[: knn.k]
    order = order[sim[order] > 0]
    return Neighbours(candidates[order], sim[order], newest[order], length)


class Votes(NamedTuple):
    """What the neighbours vote for: items ascending, their scores, and the most recent
    neighbour holding each (the tie-break: among equal scores, what was clicked most recently)."""

    items: np.ndarray  # int64
    scores: np.ndarray  # float64
    newest: np.ndarray  # int64, a session number


NO_VOTES = Votes(np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))


def item_scores(
    knn: SessionKnn,
    session: np.ndarray,
    found: Neighbours,
    items_of: Callable[[int], np.ndarray],
    idf: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Votes:
    """The items the neighbours vote for.

    ``items_of(session)``: a neighbour's items in click order; ``idf(items)``: their idf
    (needed when ``idf_weight`` > 0).
    """
    if not len(found.sessions):
        return NO_VOTES
    lists = [np.asarray(items_of(int(s)), dtype=np.int64) for s in found.sessions]
    sizes = np.array([len(x) for x in lists])
    flat = np.concatenate(lists)
    if not len(flat):
        return NO_VOTES
    owner = np.repeat(np.arange(len(lists)), sizes)
    position = np.arange(len(flat)) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1
    # One entry per (neighbour, item): its last position in the neighbour.
    span = int(flat.max()) + 1
    key = owner * span + flat
    order = np.lexsort((position, key))
    last_of_key = np.r_[key[order][1:] != key[order][:-1], True]
    pick = order[last_of_key]
    owner_u, item_u, pos_u = owner[pick], flat[pick], position[pick]
    weight = found.similarity[owner_u]
    if knn.method == "vsknn":
        step = found.length - found.newest_shared + 1
        weight = weight * STEP_DECAYS[knn.decay](step.astype(np.float64))[owner_u]
    else:
        current = knn.current(np.asarray(session, dtype=np.int64))
        shared = np.isin(flat, current)
        p_star = np.zeros(len(lists), np.int64)
        np.maximum.at(p_star, owner[shared], position[shared])
        weight = weight * np.exp(-np.abs(pos_u - p_star[owner_u]) / knn.inh)
        if knn.ipw is not None:
            weight = weight * np.exp((found.newest_shared - found.length) / knn.ipw)[owner_u]
    if knn.idf_weight > 0:
        if idf is None:
            raise ValueError("idf_weight needs the items' idf")
        weight = weight * (1.0 + knn.idf_weight * np.asarray(idf(item_u), dtype=np.float64))
    items, where = np.unique(item_u, return_inverse=True)
    newest = np.zeros(len(items), np.int64)
    np.maximum.at(newest, where, found.sessions[owner_u])
    return Votes(items, np.bincount(where, weights=weight, minlength=len(items)), newest)


def with_item_item(knn: SessionKnn, votes: Votes, other: np.ndarray, other_scores: np.ndarray) -> Votes:
    """The votes blended with item-item scores (each divided by its maximum) over both
    candidate sets; an item only item-item found has no neighbour (newest -1)."""
    w = knn.item_item
    union = np.union1d(votes.items, other)
    blended = np.zeros(len(union))
    for part, values, share in ((votes.items, votes.scores, 1.0 - w), (other, other_scores, w)):
        peak = float(values.max(initial=0.0))
        if len(part) and peak > 0 and share > 0:
            blended[np.searchsorted(union, part)] += share * values / peak
    newest = np.full(len(union), -1, np.int64)
    newest[np.searchsorted(union, votes.items)] = votes.newest
    return Votes(union, blended, newest)


def top(votes: Votes, n: int, excluded: np.ndarray | None = None) -> np.ndarray:
    """The n best items: score descending, then the most recent neighbour, then item ascending;
    ``excluded`` left out."""
    items, scores, newest = votes
    if excluded is not None and len(excluded):
        keep = ~np.isin(items, excluded)
        items, scores, newest = items[keep], scores[keep], newest[keep]
    order = np.lexsort((items, -newest, -scores))[:n]
    return items[order]
