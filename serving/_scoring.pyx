# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Private scoring kernel; use :mod:`serving.scoring`, which checks dtypes and shapes.

The accumulator is dense over a vocabulary of item indices: scratch arrays of
the vocabulary's size are kept between calls and only the touched entries are
visited, so a call costs O(neighbour entries + candidates * log n) and never
O(vocabulary). ``stamp[i] == epoch`` means "entry i belongs to this call",
which makes resetting the scratch free.

Neighbour lists come either concatenated with offsets (:meth:`top_n`) or as
:class:`NeighbourRow` objects checked once when built (:meth:`top_n_rows`,
the serving path: no concatenation per request). Both feed one C core.

The serving path may also pass catalogue filters (:meth:`top_n_rows`'s
``category``/``codes``/``hidden``): per vocabulary index a category code and a
hidden flag, and the codes allowed. They are checked per candidate as it
meets the heap, so a filter costs O(candidates * codes), never O(vocabulary),
and the answer is the unfiltered ranking without the items filtered out.

Merchandising rules add ``factor``: a multiplier per vocabulary index (boost > 1,
bury < 1) applied to a candidate's score before it meets the heap, so the ranking
is of the multiplied scores at the cost of one multiplication per candidate.
"""
cimport cython
from libc.stdint cimport int32_t, int64_t
from libc.math cimport isfinite
from libc.stdlib cimport malloc, free

import numpy as np
cimport numpy as cnp

cnp.import_array()

# An empty ``codes`` still filters (nothing passes): a non-NULL pointer with n_codes 0.
cdef int32_t _NO_CODE_STORAGE = -2
cdef const int32_t* _NO_CODE = &_NO_CODE_STORAGE

_PROBLEMS = {
    1: "offsets must have len(weights) + 1 entries, start at 0, end at len(items) and never decrease",
    2: "item indices must be >= 0",
    3: "scores and weights must be finite",
}


cdef inline bint _better(double score_a, int32_t item_a, double score_b, int32_t item_b) noexcept nogil:
    # The result order: score descending, then item index ascending.
    return score_a > score_b or (score_a == score_b and item_a < item_b)


cdef void _sift_down(double* score, int32_t* item, Py_ssize_t size, Py_ssize_t pos) noexcept nogil:
    # Min-heap on the result order: the root is the worst kept candidate.
    cdef Py_ssize_t child
    cdef double s = score[pos]
    cdef int32_t it = item[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _better(score[child], item[child], score[child + 1], item[child + 1]):
            child += 1
        if _better(s, it, score[child], item[child]):
            score[pos] = score[child]
            item[pos] = item[child]
            pos = child
        else:
            break
    score[pos] = s
    item[pos] = it


cdef void _sift_up(double* score, int32_t* item, Py_ssize_t pos) noexcept nogil:
    cdef Py_ssize_t parent
    cdef double s = score[pos]
    cdef int32_t it = item[pos]
    while pos > 0:
        parent = (pos - 1) // 2
        if _better(score[parent], item[parent], s, it):
            score[pos] = score[parent]
            item[pos] = item[parent]
            pos = parent
        else:
            break
    score[pos] = s
    item[pos] = it


cdef class NeighbourRow:
    """One item's neighbour list: int32 item indices and finite float64 scores.

    Checked once here, so the kernel can trust it on every request.
    """

    cdef readonly object items
    cdef readonly object scores
    cdef readonly Py_ssize_t size
    cdef readonly int32_t largest
    cdef const int32_t[::1] _items
    cdef const double[::1] _scores

    def __init__(self, items, scores):
        items = np.ascontiguousarray(items)
        scores = np.ascontiguousarray(scores)
        if items.ndim != 1 or items.dtype != np.int32:
            raise ValueError(f"items must be a 1-d int32 array, got {items.dtype} {items.shape}")
        if scores.ndim != 1 or scores.dtype != np.float64:
            raise ValueError(f"scores must be a 1-d float64 array, got {scores.dtype} {scores.shape}")
        if items.shape[0] != scores.shape[0]:
            raise ValueError(f"items ({items.shape[0]}) and scores ({scores.shape[0]}) differ in length")
        if items.size and items.min() < 0:
            raise ValueError(_PROBLEMS[2])
        if not np.isfinite(scores).all():
            raise ValueError(_PROBLEMS[3])
        self.items, self.scores = items, scores
        self._items, self._scores = items, scores
        self.size = items.shape[0]
        self.largest = items.max() if items.size else -1

    def __len__(self):
        return self.size


cdef class Accumulator:
    """Scratch space for one vocabulary size; not safe for concurrent calls."""

    cdef double[::1] acc
    cdef int32_t[::1] stamp
    cdef int32_t[::1] slot
    cdef int32_t[::1] touched
    cdef int32_t epoch

    def __init__(self, Py_ssize_t capacity=0):
        self._allocate(max(capacity, 1))

    def _allocate(self, Py_ssize_t capacity):
        self.acc = np.zeros(capacity, dtype=np.float64)
        self.stamp = np.zeros(capacity, dtype=np.int32)
        self.slot = np.full(capacity, -1, dtype=np.int32)
        self.touched = np.zeros(capacity, dtype=np.int32)
        self.epoch = 0

    @property
    def capacity(self):
        return self.acc.shape[0]

    def reserve(self, Py_ssize_t capacity):
        """Make room for item indices below ``capacity`` (grows geometrically)."""
        if capacity > self.acc.shape[0]:
            self._allocate(max(capacity, 2 * self.acc.shape[0]))

    cdef Py_ssize_t _top(
        self, Py_ssize_t history, const int32_t** items, const double** scores, const Py_ssize_t* sizes,
        const double* weights, const int32_t* excluded, Py_ssize_t n_excluded, Py_ssize_t n,
        int32_t* heap_item, double* heap_score,
        const int32_t* category, const unsigned char* hidden, Py_ssize_t n_facts,
        const int32_t* codes, Py_ssize_t n_codes, const double* factor,
    ) noexcept nogil:
        """The core: fills heap_item/heap_score best first; returns how many.

        Filters (facts of indices below n_facts; an index beyond has category -1
        and is shown): ``hidden`` (may be NULL) drops hidden items, ``codes``
        (NULL: no category filter) keeps only items whose category is one of them;
        ``factor`` (may be NULL) multiplies the score of an index below n_facts.
        """
        cdef Py_ssize_t j, e, k, q, count = 0, kept = 0
        cdef int32_t it, epoch, code
        cdef bint allowed
        cdef double w, s
        cdef double* acc = &self.acc[0]
        cdef int32_t* stamp = &self.stamp[0]
        cdef int32_t* touched = &self.touched[0]
        if n <= 0:
            return 0  # heap_item/heap_score may be NULL
        if self.epoch == 2147483647:
            for k in range(self.stamp.shape[0]):
                stamp[k] = 0
            self.epoch = 0
        self.epoch += 1
        epoch = self.epoch
        # Excluded items are claimed for this call without being touched,
        # so their sums are never candidates.
        for k in range(n_excluded):
            stamp[excluded[k]] = epoch
        for j in range(history):
            w = weights[j]
            for e in range(sizes[j]):
                it = items[j][e]
                if stamp[it] != epoch:
                    stamp[it] = epoch
                    acc[it] = w * scores[j][e]
                    touched[count] = it
                    count += 1
                else:
                    acc[it] += w * scores[j][e]
        for k in range(count):
            it = touched[k]
            if hidden != NULL and it < n_facts and hidden[it]:
                continue
            if codes != NULL:
                code = category[it] if it < n_facts else -1
                allowed = False
                for q in range(n_codes):
                    if codes[q] == code:
                        allowed = True
                        break
                if not allowed:
                    continue
            s = acc[it]
            if factor != NULL and it < n_facts:
                s = s * factor[it]
            if kept < n:
                heap_score[kept] = s
                heap_item[kept] = it
                kept += 1
                _sift_up(heap_score, heap_item, kept - 1)
            elif _better(s, it, heap_score[0], heap_item[0]):
                heap_score[0] = s
                heap_item[0] = it
                _sift_down(heap_score, heap_item, kept, 0)
        # Heap sort in place: repeatedly move the worst to the end.
        k = kept
        while k > 1:
            k -= 1
            w = heap_score[0]
            it = heap_item[0]
            heap_score[0] = heap_score[k]
            heap_item[0] = heap_item[k]
            heap_score[k] = w
            heap_item[k] = it
            _sift_down(heap_score, heap_item, k, 0)
        return kept

    cdef void _explain(
        self, Py_ssize_t history, const int32_t** items, const double** scores, const Py_ssize_t* sizes,
        const double* weights, const int32_t* best, Py_ssize_t kept, double* contrib,
    ) noexcept nogil:
        """contrib[k * history + j] = w_j * s_j,best[k] (summed over duplicates)."""
        cdef Py_ssize_t j, e, k
        cdef int32_t* slot = &self.slot[0]
        for k in range(kept):
            slot[best[k]] = <int32_t>k
        for j in range(history):
            for e in range(sizes[j]):
                k = slot[items[j][e]]
                if k >= 0:
                    contrib[k * history + j] += weights[j] * scores[j][e]
        for k in range(kept):
            slot[best[k]] = -1

    cdef tuple _run(
        self, Py_ssize_t history, const int32_t** items, const double** scores, const Py_ssize_t* sizes,
        const double[::1] weights, const int32_t[::1] excluded, Py_ssize_t n, bint explain,
        const int32_t* category=NULL, const unsigned char* hidden=NULL, Py_ssize_t n_facts=0,
        const int32_t* codes=NULL, Py_ssize_t n_codes=0, const double* factor=NULL,
    ):
        out_items = np.empty(n, dtype=np.int32)
        out_scores = np.empty(n, dtype=np.float64)
        cdef int32_t[::1] best = out_items
        cdef double[::1] best_scores = out_scores
        cdef Py_ssize_t kept
        cdef const double* w = &weights[0] if history else NULL
        cdef const int32_t* ex = &excluded[0] if excluded.shape[0] else NULL
        cdef int32_t* best_ptr = &best[0] if n else NULL
        cdef double* best_scores_ptr = &best_scores[0] if n else NULL
        with nogil:
            kept = self._top(
                history, items, scores, sizes, w, ex, excluded.shape[0], n, best_ptr, best_scores_ptr,
                category, hidden, n_facts, codes, n_codes, factor,
            )
        if kept < n:
            out_items, out_scores = out_items[:kept], out_scores[:kept]
        if not explain:
            return out_items, out_scores, None
        contributions = np.zeros((kept, history), dtype=np.float64)
        cdef double[:, ::1] contrib = contributions
        if kept and history:
            with nogil:
                self._explain(history, items, scores, sizes, w, best_ptr, kept, &contrib[0, 0])
        return out_items, out_scores, contributions

    def top_n(
        self,
        const int32_t[::1] items,
        const double[::1] scores,
        const int64_t[::1] offsets,
        const double[::1] weights,
        const int32_t[::1] excluded,
        Py_ssize_t n,
        bint explain,
    ):
        """Concatenated lists: list j is ``items[offsets[j]:offsets[j + 1]]``."""
        cdef Py_ssize_t history = weights.shape[0]
        cdef Py_ssize_t j, e, k
        cdef int32_t largest = -1
        cdef int problem = 0
        if n < 0:
            raise ValueError("n must be >= 0")
        # One cheap pass so that the core can index the scratch arrays
        # without bounds checks.
        with nogil:
            if offsets.shape[0] != history + 1 or offsets[0] != 0 or offsets[history] != items.shape[0]:
                problem = 1
            else:
                for j in range(history):
                    if offsets[j + 1] < offsets[j]:
                        problem = 1
                    if not isfinite(weights[j]):
                        problem = 3
            for e in range(items.shape[0]):
                if items[e] < 0:
                    problem = 2
                elif items[e] > largest:
                    largest = items[e]
                if not isfinite(scores[e]):
                    problem = 3
            for k in range(excluded.shape[0]):
                if excluded[k] < 0:
                    problem = 2
                elif excluded[k] > largest:
                    largest = excluded[k]
        if problem:
            raise ValueError(_PROBLEMS[problem])
        self.reserve(largest + 1)
        cdef const int32_t** item_ptrs = <const int32_t**>malloc((history + 1) * sizeof(int32_t*))
        cdef const double** score_ptrs = <const double**>malloc((history + 1) * sizeof(double*))
        cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc((history + 1) * sizeof(Py_ssize_t))
        if item_ptrs == NULL or score_ptrs == NULL or sizes == NULL:
            free(item_ptrs); free(score_ptrs); free(sizes)
            raise MemoryError()
        try:
            for j in range(history):
                sizes[j] = offsets[j + 1] - offsets[j]
                # Pointer arithmetic, not &items[offset]: an empty tail list
                # may start at len(items).
                item_ptrs[j] = (&items[0] + offsets[j]) if items.shape[0] else NULL
                score_ptrs[j] = (&scores[0] + offsets[j]) if items.shape[0] else NULL
            return self._run(history, item_ptrs, score_ptrs, sizes, weights, excluded, n, explain)
        finally:
            free(item_ptrs); free(score_ptrs); free(sizes)

    def top_n_rows(
        self,
        list rows,
        const double[::1] weights,
        const int32_t[::1] excluded,
        Py_ssize_t n,
        bint explain,
        const int32_t[::1] category=None,
        const unsigned char[::1] hidden=None,
        const int32_t[::1] codes=None,
        const double[::1] factor=None,
    ):
        """Lists as :class:`NeighbourRow` objects, one per weight; optional catalogue filters.

        ``category`` and ``hidden`` (uint8, 1 = hidden) are by item index and of one
        length; ``codes`` (None: any category) are the categories allowed; ``factor``
        (None: 1), of that length too, multiplies each candidate's score.
        """
        cdef Py_ssize_t history = len(rows)
        cdef Py_ssize_t j, k
        cdef Py_ssize_t n_facts = 0
        cdef int32_t largest = -1
        cdef NeighbourRow row
        # A tuple the caller cannot change while the GIL is released.
        cdef tuple held = tuple(rows)
        if weights.shape[0] != history:
            raise ValueError(f"{history} rows but {weights.shape[0]} weights")
        if n < 0:
            raise ValueError("n must be >= 0")
        for j in range(history):
            if not isfinite(weights[j]):
                raise ValueError(_PROBLEMS[3])
            row = <NeighbourRow?>held[j]
            if row.largest > largest:
                largest = row.largest
        for k in range(excluded.shape[0]):
            if excluded[k] < 0:
                raise ValueError(_PROBLEMS[2])
            if excluded[k] > largest:
                largest = excluded[k]
        if (category is None) != (hidden is None) or (category is not None and category.shape[0] != hidden.shape[0]):
            raise ValueError("category and hidden come together, of one length")
        if codes is not None and category is None:
            raise ValueError("a category filter needs the category array")
        if factor is not None and (category is None or factor.shape[0] != category.shape[0]):
            raise ValueError("factor needs the category array, of its length")
        if category is not None:
            n_facts = category.shape[0]
        self.reserve(largest + 1)
        cdef const int32_t** item_ptrs = <const int32_t**>malloc((history + 1) * sizeof(int32_t*))
        cdef const double** score_ptrs = <const double**>malloc((history + 1) * sizeof(double*))
        cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc((history + 1) * sizeof(Py_ssize_t))
        if item_ptrs == NULL or score_ptrs == NULL or sizes == NULL:
            free(item_ptrs); free(score_ptrs); free(sizes)
            raise MemoryError()
        try:
            for j in range(history):
                row = <NeighbourRow>held[j]
                sizes[j] = row.size
                item_ptrs[j] = &row._items[0] if row.size else NULL
                score_ptrs[j] = &row._scores[0] if row.size else NULL
            # `held` keeps the rows (and their buffers) alive for the call.
            return self._run(
                history, item_ptrs, score_ptrs, sizes, weights, excluded, n, explain,
                &category[0] if category is not None and category.shape[0] else NULL,
                &hidden[0] if hidden is not None and hidden.shape[0] else NULL,
                n_facts,
                NULL if codes is None else (&codes[0] if codes.shape[0] else _NO_CODE),
                codes.shape[0] if codes is not None else 0,
                &factor[0] if factor is not None and factor.shape[0] else NULL,
            )
        finally:
            free(item_ptrs); free(score_ptrs); free(sizes)
