"""A whole training set of sessions held in arrays, read the way serving reads the stream's index.

Sessions are numbered in file order, oldest first (the data sets have no times: the training
files list sessions by date), which is what :mod:`serving.session_knn` takes as recency. Per item
only its ``keep`` most recent sessions are kept: lossless for candidate sampling with m <= keep
(see :mod:`serving.session_knn`), and the bound the stream's per-item lists keep too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse


class SessionIndex:
    def __init__(self, sequences: Sequence[np.ndarray], n_items: int, keep: int):
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        self._flat = np.concatenate(list(sequences)) if len(sequences) else np.empty(0, np.int64)
        self._starts = np.concatenate(([0], np.cumsum(lengths)))
        owners = np.repeat(np.arange(len(sequences)), lengths)
        held = sparse.csr_matrix(
            (np.ones(len(self._flat)), (owners, self._flat)), shape=(len(sequences), n_items)
        ).tocsc()
        held.sum_duplicates()
        held.sort_indices()
        self._by_item, self._item_starts = held.indices.astype(np.int64), held.indptr
        self._keep = keep
        #: Distinct items per session (cosine's |N|).
        self.distinct = np.diff(held.tocsr().indptr).astype(np.int64)
        # session-rec's idf: ln(sessions / events of the item).
        events = np.bincount(self._flat, minlength=n_items).astype(np.float64)
        with np.errstate(divide="ignore"):
            self.idf = np.where(events > 0, np.log(max(len(sequences), 1) / np.maximum(events, 1)), 0.0)
        self.sessions = len(sequences)

    def sessions_of(self, item: int) -> np.ndarray:
        """The item's ``keep`` most recent sessions, oldest first."""
        end = self._item_starts[item + 1]
        return self._by_item[max(self._item_starts[item], end - self._keep) : end]

    def items_of(self, session: int) -> np.ndarray:
        return self._flat[self._starts[session] : self._starts[session + 1]]

    def lengths(self, sessions: np.ndarray) -> np.ndarray:
        return self.distinct[sessions]

    def ages(self, sessions: np.ndarray) -> np.ndarray:
        """How many sessions came after each one (the files carry no time: age counts sessions)."""
        return (self.sessions - 1 - sessions).astype(np.float64)

    def idf_of(self, items: np.ndarray) -> np.ndarray:
        return self.idf[items]
