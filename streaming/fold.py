"""The fold itself: pure functions from (events, stored rows) to absolute new state.

The stream keeps two kinds of small rows (``schemas.layout``): a ``users`` row per
(user, item) pair holding r_ui, its event count and the pair's folded event ids, and
per item a stats row (norm², user and event counts) plus a ``contributions`` row per
(item, user) pair. Each function here turns what one step read into what it writes:

1. :func:`fold_pair`: the batch's events of one (user, item) pair against the stored
   pair row. Event ids already folded are dropped; the result is the new absolute
   r_ui and event count, the ids to mark and the oldest ids to forget (the dedup
   state is bounded per pair), and the pair's counts of attributed events per arm, route
   and type (``schemas.attribution``): they are written with the pair, so they count each
   event once exactly as r_ui does. Deterministic, so a retried write writes the same bytes.
2. :func:`fold_item`: absolute per-user contributions ``(r_ui, events)`` against the
   stored contributions of those users and the item's stats. A contribution whose
   event count is not above the stored one is a duplicate or stale redelivery and
   changes nothing; the others move norm² and the counts by ``new - old``, and the
   norm² of the transformed entries (``schemas.entries.FOLDED``) by f(r_new)² - f(r_old)².
   An erasure (``streaming.forget``) is one more such step, r_old -> 0, applied once.
   Neither norm is additive in events (r² and f(r)² of a sum are not sums), but both
   deltas are functions of the two absolute values alone, which is all the store's
   exactly-once argument needs: each committed (r_old -> r_new) step is applied once.

Why that is exactly-once with any number of writers is :mod:`streaming.store`'s job:
it applies these results with conditional row mutations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from schemas import Event, Weights, attribution, entries, layout
from schemas.layout import MAX_FOLDED_PER_PAIR
from schemas.rows import ItemRow, PairRow

#: (r_ui, stamp) absolute: stamp = ``layout.contribution_stamp(u's erasure epoch, events of u on i)``.
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
    #: Attributed-event counts that grew: counter key -> absolute count.
    attributed: dict[bytes, int] = dataclasses.field(default_factory=dict)

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
    attributed: dict[bytes, int] = {}
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
        if event.attribution is not None:
            token = attribution.decode(event.attribution)
            key = attribution.counter_key(token.arm, token.route, event.type.value)
            attributed[key] = attributed.get(key, row.attributed.get(key, 0)) + 1
    # Keep the newest ids: the stored ones are oldest first, this batch's are newer.
    excess = len(row.folded) + len(new_ids) - MAX_FOLDED_PER_PAIR
    stored = list(row.folded)
    forget = stored[: max(0, min(excess, len(stored)))]
    marked = new_ids[max(0, excess - len(stored)) :]
    return PairFold(user, item, r, n, marked, forget, duplicates, attributed)


@dataclasses.dataclass(frozen=True)
class ItemFold:
    item: str
    #: The item's new absolute statistics.
    norm2: float
    users: int
    events: int
    #: Σ_u f(r_ui)² for ``entries.FOLDED``.
    entry_norm2: float
    #: The contributions rows to (re)write: the users whose stamp grew.
    writes: dict[str, Contribution]
    #: Users whose contributions older than an epoch are out of the stats: user -> epoch
    #: (the mark to set, and the cells below it to delete).
    erased: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Events this fold adds to the item, per user: stamp_events(new) - stamp_events(old) where
    #: positive (``streaming.trending`` counts them; an erasure's r -> 0 step takes none away).
    added: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.writes or self.erased)


def fold_item(
    item: str,
    incoming: Mapping[str, Contribution],
    stored: Mapping[str, Contribution],
    stats: ItemRow,
    erase: Mapping[str, int] | None = None,
) -> ItemFold:
    """Apply absolute per-user contributions to an item's stored norm and counts.

    ``stored`` holds the contributions rows of the incoming users (missing: never seen).
    Within an epoch a user's r_ui only grows (weights are positive) and its event count
    with it, so an incoming stamp not above the stored one is a stale redelivery and is
    ignored rather than allowed to roll the item back.

    Erasure (``streaming.forget``): ``erase`` asks to take out each user's contributions
    older than an epoch. A contribution older than the item's mark for its user is not in
    the stats (an erasure took it out): stored, it reads as absent; incoming, it is a stale
    pre-erasure update and is dropped. A stored one older than a newer epoch (asked, or the
    incoming contribution's) comes out of the norms and counts, and the mark moves up.
    """
    erase = erase or {}
    norm2, users, events, entry_norm2 = stats.norm2, stats.users, stats.events, stats.entry_norm2
    writes: dict[str, Contribution] = {}
    erased: dict[str, int] = {}
    added: dict[str, int] = {}
    for user in sorted(incoming.keys() | erase.keys()):
        marked = stats.erased.get(layout.user_token(user), 0)
        r_old, s_old = stored.get(user, (0.0, 0))
        if layout.stamp_epoch(s_old) < marked:
            r_old, s_old = 0.0, 0
        new = incoming.get(user)
        if new is not None and layout.stamp_epoch(new[1]) < marked:
            new = None
        epoch = max(erase.get(user, 0), layout.stamp_epoch(new[1]) if new is not None else 0)
        if epoch > marked:
            erased[user] = epoch
            if s_old and layout.stamp_epoch(s_old) < epoch:
                norm2 -= r_old * r_old
                entry_norm2 -= entries.FOLDED.square(r_old)
                events -= layout.stamp_events(s_old)
                users -= 1
                r_old, s_old = 0.0, 0
        if new is None or new[1] <= s_old:
            continue
        r_new, s_new = new
        norm2 += r_new * r_new - r_old * r_old
        entry_norm2 += entries.FOLDED.square(r_new) - entries.FOLDED.square(r_old)
        more = layout.stamp_events(s_new) - layout.stamp_events(s_old)
        events += more
        if more > 0:
            added[user] = more
        if s_old == 0:
            users += 1
        writes[user] = new
    return ItemFold(item, max(norm2, 0.0), users, events, max(entry_norm2, 0.0), writes, erased, added)
