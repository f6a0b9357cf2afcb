"""The fold itself: pure functions from (events, stored rows) to absolute new state.

The stream keeps two kinds of small rows (``schemas.layout``): a ``users`` row per
(user, item) pair holding r_ui, its event count and the pair's folded event ids, and
per item a stats row (norm², user and event counts) plus a ``contributions`` row per
(item, user) pair. Each function here turns what one step read into what it writes:

1. :func:`fold_pair`: the batch's events of one (user, item) pair against the stored
   pair row. Event ids already folded are dropped; the result is the new absolute
   r_ui and event count, the ids to mark and the oldest ids to forget (the dedup
   state is bounded per pair). Deterministic, so a retried write writes the same bytes.
2. :func:`fold_item`: absolute per-user contributions ``(r_ui, events)`` against the
   stored contributions of those users and the item's stats. A contribution whose
   event count is not above the stored one is a duplicate or stale redelivery and
   changes nothing; the others move norm² and the counts by ``new - old``, and the
   norm² of the transformed entries (``schemas.entries.FOLDED``) by f(r_new)² - f(r_old)².
   Neither norm is additive in events (r² and f(r)² of a sum are not sums), but both
   deltas are functions of the two absolute values alone, which is all the store's
   exactly-once argument needs: each committed (r_old -> r_new) step is applied once.

Why that is exactly-once with any number of writers is :mod:`streaming.store`'s job:
it applies these results with conditional row mutations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from schemas import Event, Weights, entries
from schemas.layout import MAX_FOLDED_PER_PAIR
from schemas.rows import ItemRow, PairRow

#: (r_ui, events of u on i), absolute.
Contribution = tuple[float, int]


@dataclasses.dataclass(frozen=True)
class PairFold:
    user: str
    item: str
    #: The pair's absolute r_ui and event count after the fold.
    r: float
    events: int
    #: Event ids to mark as folded (empty: nothing to write).
    new_ids: list[str]
    #: The oldest stored ids to forget, so that at most MAX_FOLDED_PER_PAIR stay.
    forget_ids: list[str]
    duplicates: int

    @property
    def changed(self) -> bool:
        return bool(self.new_ids)

    @property
    def contribution(self) -> Contribution:
        return self.r, self.events


def fold_pair(user: str, item: str, events: Iterable[Event], row: PairRow, weights: Weights) -> PairFold:
    """Fold one pair's events (any order, repeats allowed) into its stored row."""
    seen = set(row.folded)
    new_ids: list[str] = []
    r, n, duplicates = row.r, row.events, 0
    for event in events:
        if event.user != user or event.item != item:
            raise ValueError(
                f"event {event.event_id} of ({event.user!r}, {event.item!r}) folded into ({user!r}, {item!r})"
            )
        if event.event_id in seen:
            duplicates += 1
            continue
        seen.add(event.event_id)
        new_ids.append(event.event_id)
        r += weights.of(event.type)
        n += 1
    # Keep the newest ids: the stored ones are oldest first, this batch's are newer.
    excess = len(row.folded) + len(new_ids) - MAX_FOLDED_PER_PAIR
    stored = list(row.folded)
    forget = stored[: max(0, min(excess, len(stored)))]
    marked = new_ids[max(0, excess - len(stored)) :]
    return PairFold(user, item, r, n, marked, forget, duplicates)


@dataclasses.dataclass(frozen=True)
class ItemFold:
    item: str
    #: The item's new absolute statistics.
    norm2: float
    users: int
    events: int
    #: Σ_u f(r_ui)² for ``entries.FOLDED``.
    entry_norm2: float
    #: The contributions rows to (re)write: the users whose event count grew.
    writes: dict[str, Contribution]

    @property
    def changed(self) -> bool:
        return bool(self.writes)


def fold_item(
    item: str, incoming: Mapping[str, Contribution], stored: Mapping[str, Contribution], stats: ItemRow
) -> ItemFold:
    """Apply absolute per-user contributions to an item's stored norm and counts.

    ``stored`` holds the contributions rows of the incoming users (missing: never seen).
    A user's r_ui only grows (weights are positive) and its event count with it, so an
    incoming count not above the stored one is a stale redelivery and is ignored
    rather than allowed to roll the item back.
    """
    norm2, users, events, entry_norm2 = stats.norm2, stats.users, stats.events, stats.entry_norm2
    writes: dict[str, Contribution] = {}
    for user, (r_new, n_new) in incoming.items():
        r_old, n_old = stored.get(user, (0.0, 0))
        if n_new <= n_old:
            continue
        norm2 += r_new * r_new - r_old * r_old
        entry_norm2 += entries.FOLDED.square(r_new) - entries.FOLDED.square(r_old)
        events += n_new - n_old
        if n_old == 0:
            users += 1
        writes[user] = (r_new, n_new)
    return ItemFold(item, max(norm2, 0.0), users, events, max(entry_norm2, 0.0), writes)
