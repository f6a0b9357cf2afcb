"""Forgetting a user: every row of the user erased, the item norms without them, and a receipt.

``streamsim forget USER`` and a ``{"kind": "forget", "user": U, "ts": T}`` message on the
events topic both end in :func:`forget_user`. It

1. writes U's **tombstone** (``meta forget#<token>``, keyed by a pseudonym of U,
   ``layout.user_token``): the erasure time T and U's *epoch*, the number of times U was
   forgotten, raised by one with a CheckAndMutateRow on the epoch it read;
2. **erases** (:func:`erase_user`): every item of U's ``users`` rows loses U's
   contributions of older epochs through the item fold (``FoldStore.fold_items(erase=)``:
   version-checked commit with an intent, exactly like a fold, so the norms, the
   transformed norms and the counts move once and the item is marked dirty); the item
   row keeps an *erasure mark* (``items x:<token>`` = the epoch); then U's older-epoch
   ``users`` rows are deleted, each only if its version is the one read; then U's
   ``recent`` cells dated at or before T (its sequence and its purchase index), and U's
   clicks in the ``sessions`` index dated at or before T (the sessions the stream cut by
   time, found under U's key prefix, and their holder cells on U's items);
3. writes the **receipt** (``meta forget#<token> f:receipt``): when it was asked, what was
   removed, when the erasure completed. The first generation computed without U is the
   first complete refresh pass that started after that (:func:`receipt`, filled in once
   that pass has published).

Everything U's writers store carries the epoch they saw: a pair row's version is
``layout.pair_version(epoch, n)`` and a contribution's stamp (its cell timestamp)
``layout.contribution_stamp(epoch, events)``. Events dated after T are new data, folded in
the new epoch; events dated at or before T are dropped by the pair step, whenever they
arrive (a redelivery, a late event, a replay).

Why nothing of U survives and nothing is taken out twice, with any number of writers
(folds, forgets, helpers) and a crash between any two writes:

- **Pair step.** A fold reads the batch's tombstones, drops covered events, folds the rest
  on rows of its epoch (a row of an older epoch is replaced, not added to: its version
  differs, so the conditional write fails if anyone touched it since), then re-reads the
  tombstones (``FoldStore._after_erasures``). If U's epoch moved, it erases U itself
  (step 2 is idempotent) and folds U's events again under the new epoch. Either the
  re-read sees the tombstone, or the tombstone was written after every write of that
  fold, hence before the forget's scan of U's rows, which then finds them: the "write,
  then read the other's flag" handshake that leaves no stale write unseen by both.
  Versions never repeat across epochs, so a writer that read a row before an erasure
  can never match the predicate of a row written after it.
- **Item step.** An item's mark for U orders the erasure among the item's folds (it is
  committed with the stats, version-checked): a stored contribution older than the mark
  is not in the stats and reads as absent; an incoming one older than the mark is a
  pre-erasure update still in flight and is dropped; an incoming one of a newer epoch
  whose stored contribution is older takes the old one out first (the erasure may not
  have reached this item yet). So each contribution enters and leaves the stats once.
- **Contribution cells** are written blind from intents, so a writer that committed
  before the erasure may write its cell after the erasure deleted it. After writing, each
  writer reads the marks of the items it wrote and deletes its own cells older than a
  mark: the same handshake against the mark's commit, which precedes the erasure's delete.
  A newer epoch's cell has a higher timestamp, so a stale one can never hide it.
- **Recent and session cells** are written blind by the pair step: a stale one lands either
  before the forget's delete (deleted) or is seen by its writer's tombstone re-read (deleted
  again).
- **Crashes.** Each step is idempotent and re-runnable: the forget message is acked only
  after the receipt is written (a redelivered one finds the tombstone at or after its T and
  only re-runs step 2); a crashed item erasure leaves its intent, completed by the next
  fold of the item.

What it does not cover: the rows of sessions the shop named with its own ``session`` ids (the
index keys them by that id, which names no user; their holder cells on U's recent clicks go),
the similarity rows of generations computed before the erasure, which stay readable until they
age out (``KEEP_GENERATIONS``; a rollback could serve one), Pub/Sub's retained messages, dead
letters, logs and backups.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable

from schemas import layout
from schemas.codecs import decode_int64, encode_int64
from schemas.rows import decode_pair
from streaming.store import MAX_CONFLICT_ROUNDS, FoldStats, FoldStore, _applied, _versioned
from streamsim.runtime.bigtable import WriteError, delete_cells, delete_row, entry, filters, set_cell
from streamsim.runtime.settings import Settings

_NEWEST = filters.newest()
_EPOCH = filters.column(layout.FORGET, layout.FORGOTTEN_EPOCH)
_VERSION = filters.column(layout.SCORES, layout.VERSION)


@dataclasses.dataclass(frozen=True)
class Tombstone:
    """A user's last erasure: its time (ms; -1 never) and the user's epoch (erasures so far)."""

    at_ms: int = -1
    epoch: int = 0

    def covers(self, event) -> bool:
        """True if the event happened at or before the erasure: it must not come back."""
        return event.ts_ms <= self.at_ms


NEVER = Tombstone()


def _tombstone(row) -> Tombstone:
    cells = row.get(layout.FORGET, {})
    at, epoch = cells.get(layout.FORGOTTEN_AT), cells.get(layout.FORGOTTEN_EPOCH)
    if epoch is None:
        return NEVER
    return Tombstone(decode_int64(at.value) if at is not None else -1, decode_int64(epoch.value))


def read_tombstones(meta, users: Iterable[str]) -> dict[str, Tombstone]:
    """The tombstones of ``users`` that have one (one read of at most one small row per user)."""
    keys = {layout.forget_row_key(u): u for u in users}
    if not keys:
        return {}
    return {
        keys[key]: _tombstone(row)
        for key, row in meta.read_rows(keys, row_filter=filters.chain(filters.family(layout.FORGET), _NEWEST))
    }


def erase_user(store: FoldStore, user: str, tombstone: Tombstone) -> dict:
    """Step 2 (module docstring): idempotent; returns what this call removed."""
    rows = {
        layout.ids_from_pair_key(key)[1]: decode_pair(row)
        for key, row in store.users.read_rows(prefix=layout.user_prefix(user), row_filter=_NEWEST)
    }
    if rows:
        store.fold_items({}, FoldStats(), erase={item: {user: tombstone.epoch} for item in rows})
    stale = {item: row for item, row in rows.items() if layout.version_epoch(row.version) < tombstone.epoch}
    removed = {"pairs": 0, "events": 0, "items": len(rows), "recent_events": 0}
    for _ in range(MAX_CONFLICT_ROUNDS):
        if not stale:
            break
        keys = {item: layout.user_item_key(user, item) for item in stale}
        conditionals = [_versioned(keys[item], _VERSION, row.version, [delete_row()]) for item, row in stale.items()]
        matched = store.users.check_and_mutate_many(conditionals)
        changed = []
        for (item, row), conditional, ok in zip(stale.items(), conditionals, matched):
            if _applied(conditional, ok):
                removed["pairs"] += 1
                removed["events"] += row.events
            else:
                changed.append(item)
        reread = store.read_pairs((user, item) for item in changed)
        stale = {
            item: row
            for (_, item), row in reread.items()
            if row.version and layout.version_epoch(row.version) < tombstone.epoch
        }
    else:
        raise WriteError(f"the users rows of a forgotten user kept changing during {MAX_CONFLICT_ROUNDS} rounds")
    if tombstone.at_ms >= 0:
        key = layout.recent_row_key(user)
        until = layout.recent_micros_after(tombstone.at_ms)
        # What a reader saw: the newest RECENT_EVENTS cells (GC is lazy), those at or before T.
        cells = [c for _, cs in store.recent.read_cells([key], row_filter=filters.recent_events()) for c in cs]
        removed["recent_events"] = sum(c.timestamp_micros < until for c in cells)
        bought = [c for _, cs in store.recent.read_cells([key], row_filter=filters.purchases()) for c in cs]
        removed["purchases"] = sum(c.timestamp_micros < until for c in bought)
        # The purchase index goes in the same row mutation as the sequence (one atomic write).
        store.recent.mutate(
            [
                entry(
                    key,
                    [
                        delete_cells(layout.ORDER, layout.RECENT, before_micros=until),
                        delete_cells(layout.PURCHASES, layout.RECENT, before_micros=until),
                    ],
                )
            ]
        )
        removed["session_clicks"] = _erase_sessions(store, user, set(rows), cells, until)
    return removed


def _erase_sessions(store: FoldStore, user: str, items: set[str], recent: list, until: int) -> int:
    """U's clicks dated before ``until`` (cell micros) out of the session index: the rows of U's
    time-cut sessions (under U's key prefix), and on U's items every holder cell that names one
    of them or stamps one of U's ``recent`` clicks (a session the shop named); returns the
    clicks removed from session rows."""
    prefix = layout.user_sessions_prefix(user)
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    sessions = list(store.sessions.read_cells(start=prefix, end=end, row_filter=filters.session_events()))
    clicks = {(c.value.decode("utf-8"), c.timestamp_micros) for _, cells in sessions for c in cells}
    clicks = {click for click in clicks if click[1] < until}
    stamps = {ts for _, ts in clicks} | {c.timestamp_micros for c in recent if c.timestamp_micros < until}
    own = user + layout.PAIR_SEPARATOR.decode()  # a time-cut session's key (layout.session_key)
    holder_rows = [layout.item_sessions_key(i) for i in items | {item for item, _ in clicks}]
    mutations = []
    for key, cells in store.sessions.read_cells(holder_rows, row_filter=filters.session_holders()):
        doomed = sorted(
            {
                c.timestamp_micros
                for c in cells
                if c.timestamp_micros < until
                and (c.timestamp_micros in stamps or c.value.decode("utf-8").startswith(own))
            }
        )
        if doomed:
            # Cell times are whole milliseconds (layout.recent_cell_micros): [ts, ts + 1 ms) is one click.
            deletes = [
                delete_cells(layout.HOLDERS, layout.HOLDER, after_micros=t, before_micros=t + 1000) for t in doomed
            ]
            mutations.append(entry(key, deletes))
    mutations += [entry(key, [delete_cells(layout.ORDER, layout.RECENT, before_micros=until)]) for key, _ in sessions]
    if mutations:
        store.sessions.mutate(mutations)
    return len(clicks)


def _raise_tombstone(meta, user: str, at_ms: int) -> tuple[Tombstone, bool]:
    """Step 1: the user's tombstone at ``at_ms``; True if this call raised the epoch (a new
    erasure), False if one at or after ``at_ms`` was there (a repeated request)."""
    key = layout.forget_row_key(user)
    for _ in range(MAX_CONFLICT_ROUNDS):
        current = _tombstone(meta.read_row(key, filters.chain(filters.family(layout.FORGET), _NEWEST)))
        if current.epoch and current.at_ms >= at_ms:
            return current, False
        raised = Tombstone(at_ms, current.epoch + 1)
        receipt = {"requested_ms": at_ms, "epoch": raised.epoch, "state": "erasing"}
        mutations = [
            set_cell(layout.FORGET, layout.FORGOTTEN_AT, encode_int64(raised.at_ms)),
            set_cell(layout.FORGET, layout.FORGOTTEN_EPOCH, encode_int64(raised.epoch)),
            set_cell(layout.FORGET, layout.RECEIPT, json.dumps(receipt).encode()),
        ]
        conditional = _versioned(key, _EPOCH, current.epoch, mutations)
        if _applied(conditional, meta.check_and_mutate_many([conditional])[0]):
            return raised, True
    raise WriteError(f"the tombstone of a user kept changing during {MAX_CONFLICT_ROUNDS} rounds")


def forget_user(settings: Settings, user: str, at_ms: int | None = None, *, store: FoldStore | None = None) -> dict:
    """Forget ``user`` as of ``at_ms`` (default now): steps 1-3; returns the receipt."""
    store = store or FoldStore(settings)
    at_ms = int(time.time() * 1000) if at_ms is None else at_ms
    tombstone, raised = _raise_tombstone(store.meta, user, at_ms)
    removed = erase_user(store, user, tombstone)
    previous = _receipt_cell(store.meta, user) or {}
    if not raised and previous.get("state") == "complete":
        return previous
    receipt = {
        "requested_ms": tombstone.at_ms,
        "epoch": tombstone.epoch,
        "state": "complete",
        "completed_ms": int(time.time() * 1000),
        "removed": removed,
        "first_generation": None,
    }
    _write_receipt(store.meta, user, receipt)
    return receipt


def _receipt_cell(meta, user: str) -> dict | None:
    row = meta.read_row(
        layout.forget_row_key(user), filters.chain(filters.column(layout.FORGET, layout.RECEIPT), _NEWEST)
    )
    cell = row.get(layout.FORGET, {}).get(layout.RECEIPT)
    return json.loads(cell.value) if cell is not None else None


def _write_receipt(meta, user: str, receipt: dict) -> None:
    value = json.dumps(receipt, separators=(",", ":")).encode()
    meta.mutate([entry(layout.forget_row_key(user), [set_cell(layout.FORGET, layout.RECEIPT, value)])])


def first_generation_after(meta, completed_ms: int) -> int | None:
    """The oldest complete pass that started after ``completed_ms`` (its generation), if any."""
    start, end = layout.pass_row_key(completed_ms + 1), b"pass$"
    for _, row in meta.read_rows(
        start=start, end=end, row_filter=filters.chain(filters.family(layout.PASS_STATS), _NEWEST)
    ):
        stats = json.loads(row[layout.PASS_STATS][layout.STATS].value)
        if stats.get("state") == "complete":
            return int(stats["generation"])
    return None


def receipt(settings: Settings, user: str) -> dict | None:
    """The user's receipt (None: never forgotten), with ``first_generation`` filled in (and
    stored) once a pass that started after the erasure completed has published."""
    store = FoldStore(settings)
    found = _receipt_cell(store.meta, user)
    if found is None or found.get("state") != "complete" or found.get("first_generation"):
        return found
    generation = first_generation_after(store.meta, found["completed_ms"])
    if generation is not None:
        found["first_generation"] = generation
        _write_receipt(store.meta, user, found)
    return found
