"""The fold's Bigtable I/O: batched reads, conditional writes, correct with any number of writers.

Work per event is bounded: a batch reads, by key, the ``users`` row of each (user, item)
pair it touches (at most MAX_FOLDED_PER_PAIR event ids), the small ``items`` stats row
of each item (with at most 93 trending counter cells: a qualifier range per family) and
the ``contributions`` row of each (item, user) pair. Nothing reads an item's users or a
user's items.

Why no event is lost or counted twice, whatever runs at the same time (two pipelines
on one subscription, a Dataflow bundle retried on another worker, a drained job and
its successor) and wherever a writer crashes:

1. **Pairs.** A pair's r_ui, its event count and the ids folded into it live in one
   row, with a version. :meth:`FoldStore.fold_users` reads the row, folds the new
   events (:func:`streaming.fold.fold_pair`) and writes the result with a
   CheckAndMutateRow whose predicate is "the version is still the one I read". Row
   mutations are atomic, so an event's mark and its weight land together or not at
   all; a writer that lost the race re-reads and folds again, and then finds the
   other writer's events marked. So each event id is added to r_ui once per pair
   (within the dedup bound, ``schemas.layout.MAX_FOLDED_PER_PAIR``).
2. **Items.** The stats row (norm², the transformed entries' norm², counts, version) moves by deltas, so it must see
   each pair's change once. :meth:`FoldStore.fold_items` first completes every intent
   left in the stats row (below), then reads the incoming users' contributions rows,
   computes the deltas (:func:`streaming.fold.fold_item`) and commits the new stats
   with a version-checked CheckAndMutateRow that also stores an *intent*: the
   (user, r_ui, events) it is about to write to ``contributions``. Then it writes
   those rows and deletes the intent. The deltas are computed against contributions
   that include every committed intent, and the version check orders commits, so
   each contribution's delta is applied exactly once. A crash after the commit
   leaves the intent behind; the next fold of that item writes it for the dead
   writer. A contribution cell's timestamp is its event count, so a late write of an
   older value can never hide a newer one: no ordering between writers is needed.
3. **Crashes before a commit** lose nothing: messages are acknowledged only after
   both steps, so Pub/Sub redelivers them; the pair step then finds the events
   marked and hands on the stored absolute values, which the item step applies
   if (and only if) they are not applied yet.

4. **Recent sequences.** :meth:`FoldStore.append_recent` writes each event of the batch
   as one cell of its user's ``recent`` row, before the pairs: a blind write whose
   timestamp and value are functions of the event alone (``schemas.layout`` argues why
   that is correct with any number of writers). Every delivered event is written, not
   only those the pair step accepts: a batch redelivered after a crash finds its events
   marked as duplicates, and still (re)writes their identical cells. A purchase also gets
   a cell in the row's purchase index (``p:e``), in the same row mutation and of the same
   shape, so the same argument holds for it (and the index and the sequence agree).
5. **Session index.** :meth:`FoldStore.append_sessions` writes each event as one cell of its
   session's row and one cell of its item's holder row in ``sessions``, blind and
   idempotent in the same way (``schemas.layout``). Session rows go first: a session an
   item lists already holds that click when a reader follows the list.
6. **Trending counters** (``streaming.trending``): per-minute, hour and day event counts in
   the ``items`` row, written in step 2's version-checked write from the same deltas as
   ``n:events``, so exactly once for the same reason; then blind board cells in ``meta``.
7. **Erasures** (``streaming.forget``). Pair versions and contribution stamps carry the
   user's erasure epoch; a batch reads its users' tombstones before folding (events at or
   before an erasure are dropped) and again after writing, and item folds honour the
   items' erasure marks. ``streaming.forget`` argues why no erased state comes back.

Retried bundles write the same absolute values again, and a conditional write whose
answer was lost reads as a conflict, which re-reads: both are safe by the above.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Iterable

from schemas import Event, Weights, layout, trending
from schemas.codecs import encode_contribution, encode_double, encode_int64, encode_intent
from schemas.events import EventType
from schemas.rows import ItemRow, PairRow, decode_contribution, decode_item, decode_pair
from streaming.fold import Contribution, ItemFold, PairFold, fold_item, fold_pair
from streaming.trending import board_entries, count_events
from streamsim.runtime.bigtable import (
    Conditional,
    WriteError,
    delete_cells,
    delete_family,
    entry,
    filters,
    open_tables,
    set_cell,
)
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)

#: Re-read-and-retry rounds of one batch before giving up on a row that keeps
#: changing under it (far above what overlapping writers of one key produce).
MAX_CONFLICT_ROUNDS = 50
_NEWEST = filters.newest()
_VERSION = filters.column(layout.SCORES, layout.VERSION)
_ITEM_VERSION = filters.column(layout.ITEM_STATS, layout.ITEM_VERSION)
_ERASURE_MARKS = filters.chain(filters.family(layout.ERASED), filters.newest())
_RESOLUTION = {r.family: r for r in trending.RESOLUTIONS}
#: The families of a pair row that hold sets (ids, counts) rather than one value.
_PAIR_SETS = (layout.FOLDED, layout.ATTRIBUTED)


@dataclasses.dataclass
class FoldStats:
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    pairs_written: int = 0
    items_written: int = 0
    #: Conditional writes that found the row changed since it was read (then re-read).
    conflicts: int = 0
    #: Intents of other (crashed or concurrent) item folds this batch completed.
    intents_completed: int = 0
    #: Events dropped because their user was forgotten after them (``streaming.forget``).
    forgotten: int = 0
    #: What the batch's reads returned: response bytes and cell chunks (bounded per event).
    bytes_read: int = 0
    cells_read: int = 0
    #: Its Bigtable operations: rows read, rows written blind, CheckAndMutateRow calls (docs/cost.md).
    rows_read: int = 0
    rows_written: int = 0
    rows_checked: int = 0
    #: Trending board cells written (``streaming.trending``).
    board_cells: int = 0

    def add(self, other: FoldStats) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def _versioned(key: bytes, version_column, version: int, mutations: list) -> Conditional:
    """Apply ``mutations`` only if the row's version is still ``version`` (0: no row yet)."""
    if version == 0:
        # No version cell may exist: the mutations go in the "no match" branch.
        return Conditional(key, version_column, otherwise=mutations)
    predicate = filters.chain(version_column, _NEWEST, filters.value_equals(encode_int64(version)))
    return Conditional(key, predicate, if_matched=mutations)


def _applied(conditional: Conditional, matched: bool) -> bool:
    return matched if conditional.if_matched else not matched


def _contribution_cells(item: str, user: str, contribution: Contribution | None, erased_below: int):
    """One contributions row's mutation: the cells of epochs below ``erased_below`` deleted
    (0: none), then the new contribution if any."""
    mutations = []
    if erased_below:
        below = layout.contribution_stamp(erased_below, 0) * 1000
        mutations.append(delete_cells(layout.CONTRIBUTIONS, layout.CONTRIBUTION, before_micros=below))
    if contribution is not None:
        r, stamp = contribution
        # Timestamp = stamp (ms granularity): the newest cell is the highest count of the newest epoch.
        mutations.append(
            set_cell(layout.CONTRIBUTIONS, layout.CONTRIBUTION, encode_contribution(r, stamp), stamp * 1000)
        )
    return entry(layout.item_user_key(item, user), mutations)


def newest_event_ms(events: Iterable[Event]) -> dict[tuple[str, str], int]:
    """(item, user) -> the event time of the pair's newest event: the trending bucket hint."""
    newest: dict[tuple[str, str], int] = {}
    for e in events:
        key = (e.item, e.user)
        newest[key] = max(newest.get(key, e.ts_ms), e.ts_ms)
    return newest


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class FoldStore:
    def __init__(self, settings: Settings):
        #: The item fold's "now" (ms): trending buckets and board cells (tests set it).
        self.clock = _wall_clock_ms
        tables = open_tables(settings)
        self.users = tables.users
        self.items = tables.items
        self.contributions = tables.contributions
        self.recent = tables.recent
        self.sessions = tables.sessions
        self.meta = tables.meta

    _IO = ("bytes_read", "cells_read", "rows_read", "rows_written", "rows_checked")

    def _read_so_far(self) -> tuple[int, ...]:
        tables = (self.users, self.items, self.contributions, self.recent)
        return tuple(sum(getattr(t, name) for t in tables) for name in self._IO)

    def _count_reads(self, stats: FoldStats, before: tuple[int, ...]) -> None:
        for name, old, new in zip(self._IO, before, self._read_so_far()):
            setattr(stats, name, getattr(stats, name) + new - old)

    # --- step 1: pairs ---------------------------------------------------------
    def read_pairs(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], PairRow]:
        """The stored row of each (user, item) pair (missing: an empty row)."""
        keys = {layout.user_item_key(u, i): (u, i) for u, i in pairs}
        found = {pair: PairRow() for pair in keys.values()}
        for key, row in self.users.read_rows(keys, row_filter=_NEWEST):
            found[keys[key]] = decode_pair(row)
        return found

    def fold_users(self, events: list[Event], weights: Weights, stats: FoldStats) -> dict[str, dict[str, Contribution]]:
        """Fold events into their pairs; the absolute contribution of every touched pair, by item."""
        before = self._read_so_far()
        try:
            return self._fold_users(events, weights, stats)
        finally:
            self._count_reads(stats, before)

    def append_recent(self, events: list[Event]) -> None:
        """Each event as a cell of its user's ``recent`` row, and each purchase as a cell of
        the row's purchase index (blind and idempotent: module docstring, 4)."""
        by_user: dict[str, list[Event]] = {}
        for event in events:
            by_user.setdefault(event.user, []).append(event)
        self.recent.mutate(
            entry(
                layout.recent_row_key(user),
                _click_cells(layout.ORDER, layout.RECENT, _items(user_events))
                + _click_cells(
                    layout.PURCHASES,
                    layout.RECENT,
                    _items([e for e in user_events if e.type is EventType.PURCHASE]),
                ),
            )
            for user, user_events in by_user.items()
        )

    def append_sessions(self, events: list[Event]) -> None:
        """Each event in its session's row, then in its item's holders (module docstring, 5)."""
        by_session: dict[str, list[Event]] = {}
        by_item: dict[str, list[tuple[bytes, Event]]] = {}
        for e in events:
            key = layout.session_key(e.user, e.session, e.ts_ms)
            by_session.setdefault(key, []).append(e)
            by_item.setdefault(e.item, []).append((key.encode("utf-8"), e))
        self.sessions.mutate(
            entry(layout.session_row_key(key), _click_cells(layout.ORDER, layout.RECENT, _items(session_events)))
            for key, session_events in by_session.items()
        )
        self.sessions.mutate(
            entry(layout.item_sessions_key(item), _click_cells(layout.HOLDERS, layout.HOLDER, holders))
            for item, holders in by_item.items()
        )

    def _fold_users(self, events, weights, stats):
        from streaming import forget  # it erases through this store

        tombstones = forget.read_tombstones(self.meta, {e.user for e in events})
        kept = [e for e in events if not tombstones.get(e.user, forget.NEVER).covers(e)]
        stats.forgotten += len(events) - len(kept)
        self.append_recent(kept)
        self.append_sessions(kept)
        by_pair: dict[tuple[str, str], list[Event]] = {}
        for event in kept:
            by_pair.setdefault((event.user, event.item), []).append(event)
        rows = self.read_pairs(by_pair)
        contributions: dict[str, dict[str, Contribution]] = {}
        todo = list(by_pair)
        for _ in range(MAX_CONFLICT_ROUNDS):
            epochs = {u: tombstones.get(u, forget.NEVER).epoch for u, _ in todo}
            # A row of a newer epoch than the tombstone read: an erasure since; re-read it.
            newer = {(u, i) for u, i in todo if layout.version_epoch(rows[u, i].version) > epochs[u]}
            folds = [
                fold_pair(u, i, by_pair[u, i], self._pair_base(rows[u, i], epochs[u]), weights)
                for u, i in todo
                if (u, i) not in newer
            ]
            writes = [
                (fold, self._pair_write(rows[fold.user, fold.item], fold, epochs[fold.user]))
                for fold in folds
                if fold.changed
            ]
            matched = self.users.check_and_mutate_many([conditional for _, conditional in writes])
            conflicted = newer | {
                (fold.user, fold.item)
                for (fold, conditional), ok in zip(writes, matched)
                if not _applied(conditional, ok)
            }
            for fold in folds:
                if (fold.user, fold.item) in conflicted:
                    continue
                stats.accepted += len(by_pair[fold.user, fold.item]) - fold.duplicates
                stats.duplicates += fold.duplicates
                stats.pairs_written += fold.changed
                if fold.events:
                    stamp = layout.contribution_stamp(epochs[fold.user], fold.events)
                    contributions.setdefault(fold.item, {})[fold.user] = (fold.r, stamp)
            if not conflicted:
                return self._after_erasures(forget, events, tombstones, contributions, weights, stats)
            stats.conflicts += len(conflicted)
            todo = sorted(conflicted)
            rows.update(self.read_pairs(todo))
            if newer:
                tombstones.update(forget.read_tombstones(self.meta, {u for u, _ in newer}))
                for pair in todo:
                    by_pair[pair] = [e for e in by_pair[pair] if not tombstones.get(pair[0], forget.NEVER).covers(e)]
        raise WriteError(f"{len(todo)} pairs kept changing during {MAX_CONFLICT_ROUNDS} rounds, e.g. {todo[0]}")

    def _after_erasures(self, forget, events, tombstones, contributions, weights, stats):
        """Re-read the batch's tombstones after its writes (``streaming.forget``, step 3): a user
        forgotten meanwhile is erased again here and the user's events folded anew."""
        now = forget.read_tombstones(self.meta, {e.user for e in events})
        moved = {u for u, t in now.items() if t.epoch > tombstones.get(u, forget.NEVER).epoch}
        if not moved:
            return contributions
        for user in sorted(moved):
            forget.erase_user(self, user, now[user])
        for per_item in contributions.values():
            for user in moved:
                per_item.pop(user, None)
        again = self._fold_users([e for e in events if e.user in moved], weights, stats)
        for item, per_user in again.items():
            contributions.setdefault(item, {}).update(per_user)
        return {item: per_user for item, per_user in contributions.items() if per_user}

    @staticmethod
    def _pair_base(row: PairRow, epoch: int) -> PairRow:
        """What a fold adds to: the stored row, or nothing if it is from before the user's last erasure."""
        return row if layout.version_epoch(row.version) == epoch else PairRow()

    @staticmethod
    def _pair_write(row: PairRow, fold: PairFold, epoch: int) -> Conditional:
        same_epoch = layout.version_epoch(row.version) == epoch
        version = row.version + 1 if same_epoch else layout.pair_version(epoch, 1)
        # A row from before an erasure is replaced whole: its folded ids and counts go with it.
        mutations = [] if same_epoch or not row.version else [delete_family(f) for f in _PAIR_SETS]
        mutations += [
            set_cell(layout.SCORES, layout.SCORE, encode_double(fold.r)),
            set_cell(layout.SCORES, layout.COUNT, encode_int64(fold.events)),
            set_cell(layout.SCORES, layout.VERSION, encode_int64(version)),
        ]
        mutations += [set_cell(layout.FOLDED, layout.folded_qualifier(e), b"") for e in fold.new_ids]
        mutations += [delete_cells(layout.FOLDED, layout.folded_qualifier(e)) for e in fold.forget_ids]
        mutations += [set_cell(layout.ATTRIBUTED, key, encode_int64(n)) for key, n in fold.attributed.items()]
        return _versioned(layout.user_item_key(fold.user, fold.item), _VERSION, row.version, mutations)

    # --- step 2: items ---------------------------------------------------------
    def read_items(self, items: Iterable[str], now_ms: int | None = None) -> dict[str, ItemRow]:
        """The items' rows, with the trending buckets a fold at ``now_ms`` may use (bounded)."""
        keys = {layout.item_row_key(item): item for item in items}
        found = {item: ItemRow() for item in keys.values()}
        row_filter = filters.item_fold_row(self.clock() if now_ms is None else now_ms)
        for key, row in self.items.read_rows(keys, row_filter=row_filter):
            found[keys[key]] = decode_item(row)
        return found

    def read_contributions(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Contribution]:
        """(item, user) -> stored (r_ui, events); missing pairs are absent."""
        keys = {layout.item_user_key(i, u): (i, u) for i, u in pairs}
        return {
            keys[key]: decode_contribution(row) for key, row in self.contributions.read_rows(keys, row_filter=_NEWEST)
        }

    def fold_items(
        self,
        incoming: dict[str, dict[str, Contribution]],
        stats: FoldStats,
        erase: dict[str, dict[str, int]] | None = None,
        event_ms: dict[tuple[str, str], int] | None = None,
    ) -> None:
        """Apply absolute contributions to their items, exactly once each (module docstring);
        ``erase``: item -> {user: epoch}, take out the user's contributions older than the epoch;
        ``event_ms``: (item, user) -> the newest event time behind the contribution (the trending
        bucket hint, :func:`newest_event_ms`; missing: now)."""
        before = self._read_so_far()
        try:
            self._fold_items(incoming, erase or {}, stats, event_ms or {})
        finally:
            self._count_reads(stats, before)

    def _fold_items(self, incoming, erase, stats, event_ms):
        todo = sorted(incoming.keys() | erase.keys())
        now_ms = self.clock()  # one clock per call: every round reads and writes the same buckets
        rows = self.read_items(todo, now_ms)
        for _ in range(MAX_CONFLICT_ROUNDS):
            stats.intents_completed += self._complete_intents({item: rows[item] for item in todo})
            users = {item: incoming.get(item, {}).keys() | erase.get(item, {}).keys() for item in todo}
            stored = self.read_contributions((item, user) for item in todo for user in users[item])
            folds = [
                fold_item(
                    item,
                    incoming.get(item, {}),
                    {u: stored[item, u] for u in users[item] if (item, u) in stored},
                    rows[item],
                    erase.get(item),
                )
                for item in todo
            ]
            writes = [(fold, uuid.uuid4().hex) for fold in folds if fold.changed]
            grown = {
                fold.item: count_events(
                    rows[fold.item].counters,
                    [(event_ms.get((fold.item, user), now_ms), n) for user, n in fold.added.items()],
                    now_ms,
                )
                for fold, _ in writes
            }
            conditionals = [self._item_write(rows[fold.item], fold, token, grown[fold.item]) for fold, token in writes]
            matched = self.items.check_and_mutate_many(conditionals)
            committed = [(f, t) for (f, t), c, ok in zip(writes, conditionals, matched) if _applied(c, ok)]
            conflicted = sorted({f.item for (f, _), c, ok in zip(writes, conditionals, matched) if not _applied(c, ok)})
            self._write_intents(committed)
            stats.board_cells += self._write_board(
                {fold.item: (rows[fold.item].counters, grown[fold.item]) for fold, _ in committed}, now_ms
            )
            stats.items_written += len(committed)
            if not conflicted:
                return
            stats.conflicts += len(conflicted)
            todo = conflicted
            rows.update(self.read_items(todo, now_ms))
        raise WriteError(f"{len(todo)} items kept changing during {MAX_CONFLICT_ROUNDS} rounds, e.g. {todo[0]}")

    def _write_board(self, counted: dict[str, tuple], now_ms: int) -> int:
        """Blind board cells of the committed items (``streaming.trending``); how many."""
        rows: dict[bytes, list] = {}
        for item, (before, grown) in sorted(counted.items()):
            for window, count, expected in board_entries(before, grown, now_ms):
                rows.setdefault(window.board_key(trending.board_shard(item)), []).append(
                    set_cell(
                        window.board_family,
                        item.encode("utf-8"),
                        trending.encode_entry(count, expected),
                        now_ms * 1000,
                    )
                )
        if rows:
            self.meta.mutate(entry(key, cells) for key, cells in rows.items())
        return sum(len(cells) for cells in rows.values())

    @staticmethod
    def _item_write(row: ItemRow, fold: ItemFold, token: str, grown: dict | None = None) -> Conditional:
        erasures = [(user, 0.0, -epoch) for user, epoch in sorted(fold.erased.items())]
        intent = encode_intent(erasures + [(user, r, n) for user, (r, n) in sorted(fold.writes.items())])
        mutations = [
            set_cell(layout.ITEM_STATS, layout.NORM2, encode_double(fold.norm2)),
            set_cell(layout.ITEM_STATS, layout.ENTRY_NORM2, encode_double(fold.entry_norm2)),
            set_cell(layout.ITEM_STATS, layout.USERS, encode_int64(fold.users)),
            set_cell(layout.ITEM_STATS, layout.EVENTS, encode_int64(fold.events)),
            set_cell(layout.ITEM_STATS, layout.ITEM_VERSION, encode_int64(row.version + 1)),
            set_cell(layout.DIRTY, layout.DIRTY_MARK, b""),
            set_cell(layout.INTENTS, token.encode("ascii"), intent),
        ]
        mutations += [
            set_cell(layout.ERASED, layout.user_token(user), encode_int64(epoch)) for user, epoch in fold.erased.items()
        ]
        # Trending counters: what was read with this version, plus this fold's events.
        mutations += [
            set_cell(family, _RESOLUTION[family].qualifier(bucket), encode_int64(n))
            for (family, bucket), n in sorted((grown or {}).items())
        ]
        return _versioned(layout.item_row_key(fold.item), _ITEM_VERSION, row.version, mutations)

    def _write_intents(self, committed: list[tuple[ItemFold, str]]) -> None:
        """Write committed folds' contributions, then drop their intents (both idempotent), then
        delete what an erasure committed meanwhile made stale (``streaming.forget``, step 4)."""
        self.contributions.mutate(
            _contribution_cells(fold.item, user, fold.writes.get(user), fold.erased.get(user, 0))
            for fold, _ in committed
            for user in fold.writes.keys() | fold.erased.keys()
        )
        self.items.mutate(
            entry(layout.item_row_key(fold.item), [delete_cells(layout.INTENTS, token.encode("ascii"))])
            for fold, token in committed
        )
        written = {fold.item: fold.writes for fold, _ in committed if fold.writes}
        if not written:
            return
        marks = {
            layout.id_from_row_key(key): decode_item(row).erased
            for key, row in self.items.read_rows(
                [layout.item_row_key(item) for item in written], row_filter=_ERASURE_MARKS
            )
        }
        self.contributions.mutate(
            _contribution_cells(item, user, None, marks[item][layout.user_token(user)])
            for item, writes in written.items()
            for user, (_, stamp) in writes.items()
            if marks.get(item, {}).get(layout.user_token(user), 0) > layout.stamp_epoch(stamp)
        )

    def _complete_intents(self, rows: dict[str, ItemRow]) -> int:
        """Write what committed folds of other writers left in ``rows``' intents; how many."""
        left = [
            (
                ItemFold(
                    item,
                    row.norm2,
                    row.users,
                    row.events,
                    row.entry_norm2,
                    {u: (r, n) for u, r, n in ws if n >= 0},
                    {u: -n for u, _, n in ws if n < 0},
                ),
                token,
            )
            for item, row in rows.items()
            for token, ws in row.intents.items()
        ]
        if left:
            log.info("completing %d item folds left by other writers", len(left))
            self._write_intents(left)
        return len(left)


def fold_batch(store: FoldStore, events: list[Event], weights: Weights) -> FoldStats:
    """Both steps for one batch (tests, benchmarks; the pipeline runs them as two keyed stages)."""
    stats = FoldStats(events=len(events))
    store.fold_items(store.fold_users(events, weights, stats), stats, event_ms=newest_event_ms(events))
    return stats


def _items(events: list[Event]) -> list[tuple[bytes, Event]]:
    return [(e.item.encode("utf-8"), e) for e in events]


def _click_cells(family: str, qualifier: bytes, clicks: list[tuple[bytes, Event]]) -> list:
    """One cell per click, stamped by the event alone (``layout.recent_cell_micros``): a
    redelivered event rewrites the same cell."""
    return [set_cell(family, qualifier, value, layout.recent_cell_micros(e.ts_ms, e.event_id)) for value, e in clicks]
