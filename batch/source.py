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
from schemas import layout
from schemas.rows import decode_item
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

    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)


#: Item stats and dirty marks: whole-family column ranges (``filters``), because item rows
#: also hold the ``c:<user>`` index, which this read must not bring back.
_ITEMS_FILTER = filters.chain(filters.families(layout.ITEM_STATS, layout.DIRTY), filters.newest())


def read_items(settings: Settings) -> ItemTable:
    """Every item with a norm² (items the stream has not normed yet are left out)."""
    found = []
    for key, row in open_tables(settings).items.read_rows(row_filter=_ITEMS_FILTER):
        if layout.NORM2 not in row.get(layout.ITEM_STATS, {}):
            continue
        item = decode_item(row)
        found.append((layout.id_from_row_key(key), item.norm2, item.users, item.dirty_micros))
    found.sort()
    return ItemTable(
        ids=[f[0] for f in found],
        norm2=np.array([f[1] for f in found], dtype=np.float64),
        users=np.array([f[2] for f in found], dtype=np.int64),
        dirty_micros=np.array([f[3] for f in found], dtype=np.int64),
    )


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


_SCORE_FILTER = filters.newest_in(layout.SCORES)
#: The ``c:<user>`` index of an item: only the qualifiers (user ids) are needed.
_HOLDERS_FILTER = filters.chain(filters.family(layout.CONTRIBUTIONS), filters.newest(), filters.strip_values())


def read_holders(settings: Settings, items: list[str]) -> tuple[set[str], list[str]]:
    """The users holding any of ``items``, from the stream's inverted index (``c:<user>``).

    Returns (user ids, items without any ``c`` cell). An item that has a norm but no
    index cells was written before the index existed: the caller cannot trust the user
    set then and must scan.
    """
    users: set[str] = set()
    indexed: set[str] = set()
    keys = {layout.item_row_key(item) for item in items}
    for key, row in open_tables(settings).items.read_rows(keys, row_filter=_HOLDERS_FILTER):
        qualifiers = row.get(layout.CONTRIBUTIONS, {})
        if qualifiers:
            indexed.add(layout.id_from_row_key(key))
            users.update(q.decode("utf-8") for q in qualifiers)
    return users, sorted(set(items) - indexed)


def _user_rows(table, start_key, end_key, holding: list[str] | None, keys: list[bytes] | None):
    """(row key, row) of the users to read, in key order."""
    if keys is not None:
        yield from table.read_rows(keys, row_filter=_SCORE_FILTER)
        return
    if holding is None:
        yield from table.read_rows(start=start_key, end=end_key, row_filter=_SCORE_FILTER)
        return
    # Two reads: the server filters the (cheap, valueless) key scan, then the full rows of
    # the matching users come back in key order.
    holds = filters.any_qualifier_of(layout.SCORES, [layout.score_qualifier(item) for item in holding])
    found = [key for key, _ in table.read_rows(start=start_key, end=end_key, row_filter=holds)]
    yield from table.read_rows(found, row_filter=_SCORE_FILTER)


def read_user_blocks(
    settings: Settings,
    bucket_range: tuple[int, int],
    buckets: int,
    item_index: Mapping[str, int],
    holding: list[str] | None = None,
    keys: list[bytes] | None = None,
) -> Iterator[UserBlock]:
    """The users of buckets [start, end), one :class:`UserBlock` per non-empty bucket.

    With ``holding``, only users with a score on one of those items (all their scores):
    exactly the users that contribute to those items' rows of the Gram. With ``keys``
    (sorted user row keys, all inside the range), only those rows, read by key. Runs in a Spark
    executor, over that process's channel (``open_tables``). Scores of items the pass does
    not know (no norm yet) are left out; they count in the next pass.
    """
    table = open_tables(settings).users
    start, end = bucket_range
    start_key = bucket_start_key(start, buckets) if start > 0 else None
    end_key = bucket_start_key(end, buckets) if end < buckets else None
    current, users, indptr, indices, raw, skipped = None, [], [0], [], [], 0

    def flush():
        values = np.frombuffer(b"".join(raw), dtype=">f8").astype(np.float64)
        return UserBlock(
            current, id_hashes(users), np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int32), values
        )

    for row_key, row in _user_rows(table, start_key, end_key, holding, keys):
        try:
            bucket = bucket_of_key(row_key, buckets)
            user = layout.id_from_row_key(row_key)
        except ValueError:
            skipped += 1
            continue
        if bucket != current:
            if users:
                yield flush()
            current, users, indptr, indices, raw = bucket, [], [0], [], []
        for qualifier, cell in row.get(layout.SCORES, {}).items():
            position = item_index.get(qualifier.decode("utf-8"))
            if position is not None:
                indices.append(position)
                raw.append(cell.value)
        users.append(user)
        indptr.append(len(indices))
    if users:
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
    keys = [layout.user_row_key(u) for u in users]
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
