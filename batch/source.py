"""What a pass reads from Bigtable: the items' norms and dirty marks, and user rows by bucket.

User rows are read in parallel by key range. Ranges are unions of whole buckets of the
salted key space (``dimsum.bucket_of_key``) so that every bucket is read, in key order, by
exactly one Spark partition; the bucket, not the partition, is the unit of summation, which
keeps the result independent of the number of partitions.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping

import numpy as np
from scipy import sparse
from google.cloud.bigtable import row_filters

from batch import raw_reads
from batch.dimsum import MAX_BUCKETS, UserBlock, bucket_of_key, id_hashes
from schemas import codecs, layout
from streamsim.clients import bigtable_instance, export_emulator_env
from streamsim.settings import Settings

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


def read_items(settings: Settings) -> ItemTable:
    """Every item with a norm² (items the stream has not normed yet are left out)."""
    table = bigtable_instance(settings).table(settings.tables.items)
    chain = row_filters.RowFilterChain(
        [
            # Whole-family column ranges, not a family regex: the emulator evaluates a regex
            # per cell, and item rows also hold the c:<user> index (Tmall, 31k items: 11.3 s
            # with the regex vs 4.3 s with ranges).
            row_filters.RowFilterUnion(
                [row_filters.ColumnRangeFilter(layout.ITEM_STATS), row_filters.ColumnRangeFilter(layout.DIRTY)]
            ),
            row_filters.CellsColumnLimitFilter(1),
        ]
    )
    found = []
    # Raw messages: one small row per item, where the client's row objects cost most.
    for key, cells in raw_reads.read_rows(table, chain):
        stats = cells.get(layout.ITEM_STATS, {})
        if layout.NORM2 not in stats:
            continue
        users_cell = stats.get(layout.USERS)
        mark = cells.get(layout.DIRTY, {}).get(layout.DIRTY_MARK)
        found.append(
            (
                layout.id_from_row_key(key),
                codecs.decode_double(stats[layout.NORM2][0]),
                codecs.decode_int64(users_cell[0]) if users_cell else 0,
                # Bigtable stamps cells in ms: the same µs the client's datetime gave.
                mark[1] if mark else 0,
            )
        )
    found.sort()
    return ItemTable(
        ids=[f[0] for f in found],
        norm2=np.array([f[1] for f in found], dtype=np.float64),
        users=np.array([f[2] for f in found], dtype=np.int64),
        dirty_micros=np.array([f[3] for f in found], dtype=np.int64),
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
        table = bigtable_instance(settings).table(settings.tables.users)
        for sample in table.sample_row_keys():
            key = sample.row_key
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


# A family's column range rather than a family regex: cheaper on the emulator (see read_items).
_SCORE_FILTER = row_filters.RowFilterChain(
    [row_filters.ColumnRangeFilter(layout.SCORES), row_filters.CellsColumnLimitFilter(1)]
)


def _re2_literal(raw: bytes) -> bytes:
    """Escape a byte string for Bigtable's RE2 filters (ids may hold any punctuation)."""
    return b"".join(bytes([c]) if c >= 0x80 or chr(c).isalnum() else b"\\" + bytes([c]) for c in raw)


def holding_filter(items: list[str]) -> row_filters.RowFilter:
    """Rows with a score on any of ``items``; returns one stripped cell per row."""
    pattern = b"^(" + b"|".join(_re2_literal(i.encode("utf-8")) for i in items) + b")$"
    return row_filters.RowFilterChain(
        [
            row_filters.FamilyNameRegexFilter(f"^{layout.SCORES}$"),
            row_filters.ColumnQualifierRegexFilter(pattern),
            row_filters.StripValueTransformerFilter(True),
            row_filters.CellsRowLimitFilter(1),
        ]
    )


_HOLDERS_FILTER = row_filters.RowFilterChain(
    [
        row_filters.ColumnRangeFilter(layout.CONTRIBUTIONS),
        row_filters.CellsColumnLimitFilter(1),
        # Only the qualifiers (user ids) are needed.
        row_filters.StripValueTransformerFilter(True),
    ]
)


def read_holders(settings: Settings, items: list[str]) -> tuple[set[str], list[str]]:
    """The users holding any of ``items``, from the stream's inverted index (``c:<user>``).

    Returns (user ids, items without any ``c`` cell). An item that has a norm but no
    index cells was written before the index existed: the caller cannot trust the user
    set then and must scan.
    """
    table = bigtable_instance(settings).table(settings.tables.items)
    users: set[str] = set()
    indexed: set[str] = set()
    keys = sorted({layout.item_row_key(item) for item in items})
    for key, cells in raw_reads.read_rows(table, _HOLDERS_FILTER, keys=keys):
        qualifiers = cells.get(layout.CONTRIBUTIONS, {})
        if qualifiers:
            indexed.add(layout.id_from_row_key(key))
            users.update(q.decode("utf-8") for q in qualifiers)
    return users, sorted(set(items) - indexed)


def _user_rows(table, start_key, end_key, holding: list[str] | None, keys: list[bytes] | None):
    """(row key, cells) of the users to read, in key order (raw messages: see ``raw_reads``)."""
    if keys is not None:
        yield from raw_reads.read_rows(table, _SCORE_FILTER, keys=keys)
        return
    if holding is None:
        yield from raw_reads.read_rows(table, _SCORE_FILTER, start_key=start_key, end_key=end_key)
        return
    # Two reads: the server filters the (cheap, valueless) key scan, then the full rows of
    # the matching users come back in key order.
    found = [key for key, _ in raw_reads.read_rows(table, holding_filter(holding), start_key=start_key,
                                                   end_key=end_key)]
    yield from raw_reads.read_rows(table, _SCORE_FILTER, keys=found)


def read_user_blocks(settings: Settings, bucket_range: tuple[int, int], buckets: int,
                     item_index: Mapping[str, int], holding: list[str] | None = None,
                     keys: list[bytes] | None = None) -> Iterator[UserBlock]:
    """The users of buckets [start, end), one :class:`UserBlock` per non-empty bucket.

    With ``holding``, only users with a score on one of those items (all their scores):
    exactly the users that contribute to those items' rows of the Gram. With ``keys``
    (sorted user row keys, all inside the range), only those rows, read by key. Runs in a Spark
    executor: builds its own client. Scores of items the pass does not know (no norm
    yet) are left out; they count in the next pass.
    """
    export_emulator_env(settings)
    table = bigtable_instance(settings).table(settings.tables.users)
    start, end = bucket_range
    start_key = bucket_start_key(start, buckets) if start > 0 else None
    end_key = bucket_start_key(end, buckets) if end < buckets else None
    current, users, indptr, indices, raw, skipped = None, [], [0], [], [], 0

    def flush():
        values = np.frombuffer(b"".join(raw), dtype=">f8").astype(np.float64)
        return UserBlock(current, id_hashes(users), np.asarray(indptr, dtype=np.int64),
                         np.asarray(indices, dtype=np.int32), values)

    for row_key, cells in _user_rows(table, start_key, end_key, holding, keys):
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
        for qualifier, (value, _) in cells.get(layout.SCORES, {}).items():
            position = item_index.get(qualifier.decode("utf-8"))
            if position is not None:
                indices.append(position)
                raw.append(value)
        users.append(user)
        indptr.append(len(indices))
    if users:
        yield flush()
    if skipped:
        log.warning("skipped %d user rows whose keys are not streamsim keys", skipped)


def blocks_from_scores(scores: Mapping[str, Mapping[str, float]], item_index: Mapping[str, int],
                       buckets: int) -> list[UserBlock]:
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
        blocks.append(UserBlock(int(bucket_of[lo]), hashes[lo:hi], part.indptr.astype(np.int64),
                                part.indices.astype(np.int32), part.data.astype(np.float64)))
    return blocks
