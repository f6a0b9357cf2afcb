"""What a pass reads from Bigtable (the items' norms and dirty marks, user rows by bucket),
and the dirty marks it clears. Every call goes through the Bigtable gateway.

User rows are read in parallel by key range. Ranges are unions of whole buckets of the
salted key space (``dimsum.bucket_of_key``) so that every bucket is read, in key order, by
exactly one Spark partition; the bucket, not the partition, is the unit of summation, which
keeps the result independent of the number of partitions.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from scipy import sparse

from batch.dimsum import MAX_BUCKETS, UserBlock, bucket_of_key, id_hashes
from schemas import entries, layout
from schemas.rows import decode_item, decode_purchases, decode_recent
from streamsim.runtime.bigtable import delete_cells, entry, filters, open_tables
from streamsim.runtime.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ItemTable:
    """The items of a pass, sorted by id: position i is item ``ids[i]`` everywhere."""

    ids: list[str]
    norm2: np.ndarray
    users: np.ndarray  # users with r_ui > 0, int64
    #: Cell time (µs) of each item's dirty mark, 0 if unmarked.
    dirty_micros: np.ndarray
    #: Σ_u f(r_ui)² for ``entries.FOLDED`` (``n:enorm2``).
    entry_norm2: np.ndarray

    def entry_norms(self, transform: entries.EntryTransform) -> np.ndarray | None:
        """Σ_u f(r_ui)² per item as the stream folds it: for raw scores and for
        ``entries.FOLDED``; None for any other transform (a pass must sum its own entries)."""
        if transform == entries.RAW:
            return self.norm2
        if transform == entries.FOLDED:
            return self.entry_norm2
        return None

    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)


#: Item stats and dirty marks (not the intents of item folds in flight).
_ITEMS_FILTER = filters.chain(filters.families(layout.ITEM_STATS, layout.DIRTY), filters.newest())


def read_items(settings: Settings) -> ItemTable:
    """Every item with a norm² (items the stream has not normed yet are left out)."""
    found = []
    for key, row in open_tables(settings).items.read_rows(row_filter=_ITEMS_FILTER):
        if layout.NORM2 not in row.get(layout.ITEM_STATS, {}):
            continue
        item = decode_item(row)
        found.append((layout.id_from_row_key(key), item.norm2, item.users, item.dirty_micros, item.entry_norm2))
    found.sort()
    return ItemTable(
        ids=[f[0] for f in found],
        norm2=np.array([f[1] for f in found], dtype=np.float64),
        users=np.array([f[2] for f in found], dtype=np.int64),
        dirty_micros=np.array([f[3] for f in found], dtype=np.int64),
        entry_norm2=np.array([f[4] for f in found], dtype=np.float64),
    )


#: Only the dirty marks (their cell times), without values: the rows of changed items.
_MARKS_FILTER = filters.chain(filters.column(layout.DIRTY, layout.DIRTY_MARK), filters.newest(), filters.strip_values())


def read_marks(settings: Settings) -> dict[str, int]:
    """Item -> cell time (µs) of its dirty mark, for the marked items only.

    A scan filtered to one small column: the server skips clean rows, so what comes back
    grows with the items changed, not with the catalogue.
    """
    return {
        layout.id_from_row_key(key): row[layout.DIRTY][layout.DIRTY_MARK].timestamp_micros
        for key, row in open_tables(settings).items.read_rows(row_filter=_MARKS_FILTER)
    }


def read_some_items(settings: Settings, item_ids: Iterable[str]) -> dict[str, tuple[float, int, int, float]]:
    """Item -> (norm², users, dirty mark µs, entry norm²) of ``item_ids`` that have a norm, read by key."""
    found = {}
    keys = [layout.item_row_key(item) for item in item_ids]
    for key, row in open_tables(settings).items.read_rows(keys, row_filter=_ITEMS_FILTER):
        if layout.NORM2 in row.get(layout.ITEM_STATS, {}):
            item = decode_item(row)
            found[layout.id_from_row_key(key)] = (item.norm2, item.users, item.dirty_micros, item.entry_norm2)
    return found


def clear_marks(settings: Settings, item_ids: Iterable[str], before_micros: int) -> int:
    """Delete the dirty marks of ``item_ids`` stamped before ``before_micros``; returns rows written.

    Only older cells: a mark the stream set after ``before_micros`` (while a pass ran)
    survives for the next pass.
    """
    return open_tables(settings).items.mutate(
        entry(layout.item_row_key(item), [delete_cells(layout.DIRTY, layout.DIRTY_MARK, before_micros=before_micros)])
        for item in item_ids
    )


def bucket_start_key(bucket: int, buckets: int) -> bytes:
    return b"%04x" % (bucket * (MAX_BUCKETS // buckets))


def bucket_ranges(settings: Settings, buckets: int, partitions: int) -> list[tuple[int, int]]:
    """Contiguous bucket ranges [start, end), about ``partitions`` of them.

    Boundaries come from the table's sampled row keys (tablet boundaries, where the load
    splits on a real cluster), snapped to buckets and thinned to ``partitions`` ranges;
    with too few samples (a small table) the buckets are split evenly.
    """
    partitions = max(1, min(partitions, buckets))
    cuts = set()
    try:
        for key in open_tables(settings).users.sample_row_keys():
            try:
                cuts.add(bucket_of_key(key, buckets))
            except ValueError:
                continue
    except Exception as exc:  # noqa: BLE001 - sampling is an optimisation; even splits always work
        log.warning("sample_row_keys failed (%s); splitting the key space evenly", exc)
    cuts = sorted(c for c in cuts if 0 < c < buckets)
    if len(cuts) + 1 < partitions:
        cuts = [round(i * buckets / partitions) for i in range(1, partitions)]
    elif len(cuts) + 1 > partitions:
        # More tablets than partitions wanted: keep evenly spaced tablet boundaries.
        cuts = [cuts[round(i * len(cuts) / partitions) - 1] for i in range(1, partitions)]
    bounds = [0, *sorted(set(cuts)), buckets]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if a < b]


_SCORE_FILTER = filters.chain(filters.column(layout.SCORES, layout.SCORE), filters.newest())
#: Only the keys of an item's contributions rows are needed: they name its users.
_HOLDERS_FILTER = filters.chain(filters.family(layout.CONTRIBUTIONS), filters.newest(), filters.strip_values())


def read_holders(settings: Settings, items: list[str]) -> set[str]:
    """The users holding any of ``items``: prefix scans of the stream's ``contributions``."""
    rows = open_tables(settings).contributions.read_rows(
        prefixes=[layout.item_prefix(item) for item in items], row_filter=_HOLDERS_FILTER
    )
    return {layout.ids_from_pair_key(key)[1] for key, _ in rows}


def user_order(users: Iterable[str]) -> list[str]:
    """Users in the order a key-range read of ``users`` returns them."""
    return sorted(users, key=layout.user_prefix)


def read_user_blocks(
    settings: Settings,
    bucket_range: tuple[int, int],
    buckets: int,
    item_index: Mapping[str, int],
    users: list[str] | None = None,
) -> Iterator[UserBlock]:
    """The users of buckets [start, end), one :class:`UserBlock` per non-empty bucket.

    With ``users`` (in :func:`user_order`, all inside the range), only their rows, read by
    prefix. Runs in a Spark executor, over that process's channel (``open_tables``).
    Scores of items the pass does not know (no norm yet) are left out; they count in the
    next pass.
    """
    table = open_tables(settings).users
    start, end = bucket_range
    if users is not None:
        rows = table.read_rows(prefixes=[layout.user_prefix(u) for u in users], row_filter=_SCORE_FILTER)
    else:
        start_key = bucket_start_key(start, buckets) if start > 0 else None
        end_key = bucket_start_key(end, buckets) if end < buckets else None
        rows = table.read_rows(start=start_key, end=end_key, row_filter=_SCORE_FILTER)
    current, user, names, indptr, indices, raw, skipped = None, None, [], [0], [], [], 0

    def flush():
        values = np.frombuffer(b"".join(raw), dtype=">f8").astype(np.float64)
        return UserBlock(
            current, id_hashes(names), np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int32), values
        )

    # Rows come in key order: a user's (user, item) rows are contiguous, in item order.
    for row_key, row in rows:
        try:
            bucket = bucket_of_key(row_key, buckets)
            row_user, item = layout.ids_from_pair_key(row_key)
        except ValueError:
            skipped += 1
            continue
        if row_user != user:
            if user is not None:
                indptr.append(len(indices))
            if bucket != current:
                if names:
                    yield flush()
                current, names, indptr, indices, raw = bucket, [], [0], [], []
            user = row_user
            names.append(user)
        position = item_index.get(item)
        cell = row.get(layout.SCORES, {}).get(layout.SCORE)
        if position is not None and cell is not None:
            indices.append(position)
            raw.append(cell.value)
    if names:
        indptr.append(len(indices))
        yield flush()
    if skipped:
        log.warning("skipped %d user rows whose keys are not streamsim keys", skipped)


def blocks_from_scores(
    scores: Mapping[str, Mapping[str, float]], item_index: Mapping[str, int], buckets: int
) -> list[UserBlock]:
    """The blocks a pass would read, from in-memory rows (tests, benchmarks)."""
    users = list(scores)
    indptr, indices, values = [0], [], []
    for user in users:
        for item, r in scores[user].items():
            if item in item_index:
                indices.append(item_index[item])
                values.append(r)
        indptr.append(len(indices))
    matrix = sparse.csr_matrix((values, indices, indptr), shape=(len(users), max(item_index.values(), default=-1) + 1))
    return blocks_from_csr(users, matrix, buckets)


def blocks_from_csr(users: list[str], matrix: sparse.csr_matrix, buckets: int) -> list[UserBlock]:
    """Users x items (columns = item positions) as the per-bucket blocks Bigtable would give.

    Users are ordered by row key and grouped by bucket exactly as a key-range read returns them.
    """
    keys = [layout.user_prefix(u) for u in users]
    order = sorted(range(len(users)), key=keys.__getitem__)
    matrix = sparse.csr_matrix(matrix)[order]
    matrix.sort_indices()
    bucket_of = np.array([bucket_of_key(keys[k], buckets) for k in order], dtype=np.int64)
    hashes = id_hashes(users[k] for k in order)
    cuts = np.flatnonzero(np.diff(bucket_of)) + 1
    blocks = []
    for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(order)]):
        if lo == hi:
            continue
        part = matrix[lo:hi]
        blocks.append(
            UserBlock(
                int(bucket_of[lo]),
                hashes[lo:hi],
                part.indptr.astype(np.int64),
                part.indices.astype(np.int32),
                part.data.astype(np.float64),
            )
        )
    return blocks


_RECENT_FILTER = filters.recent_events()


def read_sequences(
    settings: Settings, bucket_range: tuple[int, int], buckets: int, item_index: Mapping[str, int]
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """The ``recent`` sequences of buckets [start, end): ``(bucket, [item positions, oldest
    first, per user])`` per non-empty bucket, read by key range as :func:`read_user_blocks`
    reads ``users``. A user's row holds at most RECENT_EVENTS cells, read with that limit.
    Items the pass does not know (no norm yet) are left out of the sequence.
    """
    start, end = bucket_range
    rows = open_tables(settings).recent.read_cells(
        start=bucket_start_key(start, buckets) if start > 0 else None,
        end=bucket_start_key(end, buckets) if end < buckets else None,
        row_filter=_RECENT_FILTER,
    )
    current, sequences, skipped = None, [], 0
    for row_key, cells in rows:
        try:
            bucket = bucket_of_key(row_key, buckets)
        except ValueError:
            skipped += 1
            continue
        if bucket != current:
            if sequences:
                yield current, sequences
            current, sequences = bucket, []
        positions = [item_index[item] for item in decode_recent(cells) if item in item_index]
        if positions:
            sequences.append(np.asarray(positions, dtype=np.int64))
    if sequences:
        yield current, sequences
    if skipped:
        log.warning("skipped %d recent rows whose keys are not streamsim keys", skipped)


_PURCHASES_FILTER = filters.purchases()


def read_purchases(settings: Settings, bucket_range: tuple[int, int], buckets: int) -> Iterator[list[tuple[str, int]]]:
    """Every purchase index of buckets [start, end) (``recent`` p:e, read by key range as
    :func:`read_sequences` reads o:e): ``[(item, event ms)]`` per user with purchases, oldest
    first, at most PURCHASES_KEPT each (``batch.bought``)."""
    start, end = bucket_range
    rows = open_tables(settings).recent.read_cells(
        start=bucket_start_key(start, buckets) if start > 0 else None,
        end=bucket_start_key(end, buckets) if end < buckets else None,
        row_filter=_PURCHASES_FILTER,
    )
    for _, cells in rows:
        purchases = decode_purchases(cells)
        if purchases:
            yield purchases
