"""Item-to-item scoring: weighted neighbour lists in, the top n items out.

For a history of items j with weights w_j (r_uj for a user, the event-type
weight for a session) and their neighbour lists (i, s_ji)::

    score_i = sum_j w_j * s_ji

over every item i that appears in some neighbour list and is not excluded.
An item listed twice in one neighbour list counts twice. Results are ordered
by score descending, then by item index ascending (the deterministic
tie-break); fewer than n come back when there are fewer candidates.

Items are ints: indices into a vocabulary the caller keeps (see
:class:`serving.neighbours.Vocabulary`). Lists come concatenated with offsets
(:meth:`Scorer.top_n`) or as :class:`NeighbourRow` objects checked once when
built (:meth:`Scorer.top_n_rows`, what serving uses per request). The heavy lifting is the Cython
kernel in ``_scoring.pyx``; this module checks dtypes, shapes and ranges so
the kernel can trust its inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from serving._scoring import Accumulator, NeighbourRow

__all__ = ["MAX_N", "NeighbourRow", "Scorer", "TopN"]

#: The API's upper bound for n; the kernel allocates n result slots.
MAX_N = 1000


class TopN(NamedTuple):
    """Best items first. ``contributions[k, j]`` is w_j * s_j,items[k] (explain only)."""

    items: np.ndarray  # int32
    scores: np.ndarray  # float64
    contributions: np.ndarray | None = None  # float64, (len(items), history)


class Scorer:
    """Scores histories against neighbour lists; holds reusable scratch space.

    One instance serves one thread: the kernel releases the GIL, and the
    scratch arrays must not be shared by two calls at once.
    """

    def __init__(self, capacity: int = 0):
        self._accumulator = Accumulator(capacity)

    def top_n(
        self,
        items: np.ndarray,
        scores: np.ndarray,
        offsets: np.ndarray,
        weights: np.ndarray,
        n: int,
        *,
        excluded: np.ndarray | None = None,
        explain: bool = False,
    ) -> TopN:
        """The n best items.

        ``items`` (int32 >= 0) and ``scores`` (float64, finite) are the
        neighbour lists of all history items concatenated; the list of history
        item j is ``items[offsets[j]:offsets[j + 1]]``, so ``offsets`` (int64)
        has one more entry than ``weights`` (float64, finite), starts at 0 and
        never decreases. ``excluded`` are item indices never returned.
        """
        items = _array(items, np.int32, "items")
        scores = _array(scores, np.float64, "scores")
        offsets = _array(offsets, np.int64, "offsets")
        weights = _array(weights, np.float64, "weights")
        excluded = _NO_ITEMS if excluded is None else _array(excluded, np.int32, "excluded")
        _check_n(n)
        if items.shape != scores.shape:
            raise ValueError(f"items {items.shape} and scores {scores.shape} differ in shape")
        # Ranges (indices >= 0, offsets monotonic, finite numbers) are checked
        # by the kernel in the same C pass that sizes its scratch space.
        best, best_scores, contributions = self._accumulator.top_n(
            items, scores, offsets, weights, excluded, int(n), bool(explain)
        )
        return TopN(best, best_scores, contributions)

    def top_n_rows(
        self,
        rows: list[NeighbourRow],
        weights: np.ndarray,
        n: int,
        *,
        excluded: np.ndarray | None = None,
        explain: bool = False,
        category: np.ndarray | None = None,
        hidden: np.ndarray | None = None,
        codes: np.ndarray | None = None,
        factor: np.ndarray | None = None,
    ) -> TopN:
        """:meth:`top_n` with the history's lists as :class:`NeighbourRow` objects.

        The serving path: rows are checked once when built (and then cached),
        so a request pays neither concatenation nor a scan of the inputs.
        Catalogue filters: ``category`` (int32) and ``hidden`` (bool) by item index,
        of one length, drop hidden items and, with ``codes`` (int32), keep only
        items of those categories; the n best that pass come back. ``factor`` (float64,
        finite and > 0, by item index, of the facts' length: merchandising rules)
        multiplies each candidate's score before the ranking; scores come back multiplied
        (``contributions`` do not).
        """
        weights = _array(weights, np.float64, "weights")
        excluded = _NO_ITEMS if excluded is None else _array(excluded, np.int32, "excluded")
        _check_n(n)
        if hidden is not None:
            hidden = _array(hidden, np.bool_, "hidden").view(np.uint8)
        if category is not None:
            category = _array(category, np.int32, "category")
        if codes is not None:
            codes = _array(codes, np.int32, "codes")
        if factor is not None:
            factor = _array(factor, np.float64, "factor")
        best, best_scores, contributions = self._accumulator.top_n_rows(
            rows, weights, excluded, int(n), bool(explain), category, hidden, codes, factor
        )
        return TopN(best, best_scores, contributions)


def _check_n(n) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= MAX_N:
        raise ValueError(f"n must be an int in 0..{MAX_N}, got {n!r}")


_NO_ITEMS = np.empty(0, dtype=np.int32)


def _array(value, dtype, name: str) -> np.ndarray:
    if type(value) is np.ndarray and value.dtype == dtype and value.ndim == 1 and value.flags.c_contiguous:
        return value  # the common case, kept cheap: this runs on every request
    array = np.ascontiguousarray(value)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype != dtype:
        # Only lossless conversions: an int64 index that fits, never a float.
        if array.size and not np.can_cast(array.dtype, dtype, casting="same_kind"):
            raise ValueError(f"{name} must be {np.dtype(dtype).name}, got {array.dtype}")
        converted = array.astype(dtype)
        if array.size and np.issubdtype(dtype, np.integer) and not np.array_equal(converted, array):
            raise ValueError(f"{name} does not fit {np.dtype(dtype).name}")
        array = converted
    return array
