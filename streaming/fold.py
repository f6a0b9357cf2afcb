"""The fold itself: pure functions from (events, stored state) to absolute new state.

Exactly-once rests on two single-writer, absolute-value steps, each one
atomic Bigtable row mutation:

1. **User row.** For the batch's events of one user, the stored row tells
   which event ids are already folded (``e:<id>``) and the current r_ui and
   event count of each touched item. :func:`fold_user` drops folded ids and
   returns the new absolute scores, the ids to mark, and the user's norm².
   It also returns the absolute ``(r_ui, events)`` of *every* touched item,
   duplicates included, so that a crash after step 1 heals when Pub/Sub
   redelivers: step 2 then sees the same absolute values again.
2. **Item row.** Each item keeps ``c:<user> = (r_ui, events)``.
   :func:`fold_item` compares the incoming absolute values with those cells,
   so norm² and the counts move by ``new - old``; replaying the same input
   moves them by zero.

Both steps are deterministic functions of what they read, so a retried
bundle writes the same bytes again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from schemas import Event, Weights
from schemas.rows import ItemRow, UserRow

#: (r_ui, events of u on i), absolute.
Contribution = tuple[float, int]


@dataclasses.dataclass(frozen=True)
class UserFold:
    user: str
    #: New absolute r_ui / event count of the items that got new events.
    scores: dict[str, float]
    counts: dict[str, int]
    #: Event ids to mark as folded (empty: nothing to write).
    new_ids: list[str]
    norm2: float
    events: int
    #: item -> absolute (r_ui, events) for every item the batch touched.
    contributions: dict[str, Contribution]
    duplicates: int

    @property
    def changed(self) -> bool:
        return bool(self.new_ids)


def fold_user(user: str, events: Iterable[Event], state: UserRow, weights: Weights) -> UserFold:
    """Fold one user's events (any order, repeats allowed) into its stored state."""
    scores: dict[str, float] = {}
    counts: dict[str, int] = {}
    new_ids: list[str] = []
    seen: set[str] = set(state.folded)
    touched: set[str] = set()
    duplicates = 0
    for event in events:
        if event.user != user:
            raise ValueError(f"event {event.event_id} of user {event.user!r} folded into {user!r}")
        touched.add(event.item)
        if event.event_id in seen:
            duplicates += 1
            continue
        seen.add(event.event_id)
        new_ids.append(event.event_id)
        scores[event.item] = scores.get(event.item, state.scores.get(event.item, 0.0)) + weights.of(event.type)
        counts[event.item] = counts.get(event.item, state.counts.get(event.item, 0)) + 1
    norm2 = state.norm2 + sum(r * r - state.scores.get(item, 0.0) ** 2 for item, r in scores.items())
    contributions = {
        item: (scores.get(item, state.scores.get(item, 0.0)), counts.get(item, state.counts.get(item, 0)))
        for item in touched
    }
    return UserFold(
        user=user,
        scores=scores,
        counts=counts,
        new_ids=new_ids,
        norm2=max(norm2, 0.0),
        events=state.events + len(new_ids),
        contributions=contributions,
        duplicates=duplicates,
    )


@dataclasses.dataclass(frozen=True)
class ItemFold:
    item: str
    norm2: float
    users: int
    events: int
    #: The c:<user> cells to (re)write: those whose value changed.
    contributions: dict[str, Contribution]
    #: Whether the norm moved (sets the dirty mark).
    norm_changed: bool

    @property
    def changed(self) -> bool:
        return bool(self.contributions)


def fold_item(item: str, incoming: Mapping[str, Contribution], state: ItemRow) -> ItemFold:
    """Apply absolute per-user contributions to an item's stored norm and counts.

    A user's r_ui only grows (weights are positive), so an incoming value lower
    than the stored one is a stale redelivery and is ignored rather than
    allowed to roll the item back.
    """
    norm2, users, events = state.norm2, state.users, state.events
    changed: dict[str, Contribution] = {}
    for user, (r_new, n_new) in incoming.items():
        old = state.contributions.get(user)
        r_old, n_old = old if old is not None else (0.0, 0)
        if n_new <= n_old:
            continue
        norm2 += r_new * r_new - r_old * r_old
        events += n_new - n_old
        if old is None:
            users += 1
        changed[user] = (r_new, n_new)
    return ItemFold(
        item=item,
        norm2=max(norm2, 0.0),
        users=users,
        events=events,
        contributions=changed,
        norm_changed=bool(changed),
    )
