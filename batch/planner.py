"""Which mode a pass runs: the estimated work of an incremental pass against a full one.

Estimated before any user row is read, from counts the pass has anyway: the dirty marks
and each item's ``n:users`` (the ``items`` table), the affected set A, and the previous
full pass's statistics. Pure NumPy; the pass records :meth:`Choice.record` in its stats.

The work of a pass, in the units of :data:`UNIT_COSTS`:

- full: every (user, item) row (Σ_i users_i), the Gram of every user (Σ_u m_u² entries),
  every row written;
- incremental: the ``contributions`` keys of A (Σ_{a∈A} users_a, or a scan of every user
  row when A is over ``max_index_fraction`` of the items), the rows of the users holding A,
  their Gram entries on A (also the candidates merged into clean rows), the
  previous-generation rows of the items co-held with A (less those a warm loop has
  cached) and every row rewritten.

Users holding an item hold more items than the average user (size bias): the pass uses
m* = Σ_u m_u² / Σ_u m_u, which the last full pass's ``pairs_exact`` (Σ_u C(m_u, 2))
gives exactly: Σ_u m_u² = 2·pairs_exact + Σ_u m_u. Without such a pass every holder is
assumed to hold the whole catalogue (so the estimate stays an upper bound). Estimates are
upper bounds of distinct counts (overlaps are not subtracted), capped by the totals.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Relative cost of one unit of work, in (user, item) rows read. From the phase times of
#: both modes on the Bigtable emulator (benchmarks/dimsum.py --only-bigtable, Tmall):
#: a packed top-K row costs several pair rows to read or write; a key of ``contributions``
#: (values stripped) about half of one; a Gram entry a small fraction (a sparse product),
#: a candidate score of an incremental merge more (collected to the driver, merged per row).
UNIT_COSTS: dict[str, float] = {
    "user_rows": 1.0,
    "holder_keys": 0.5,
    "gram_entries": 0.02,
    "candidates": 0.05,
    "similarity_rows_read": 6.0,
    "rows_written": 6.0,
}


@dataclasses.dataclass(frozen=True)
class Work:
    """Estimated work of one mode, per unit of :data:`UNIT_COSTS`."""

    user_rows: float = 0.0
    holder_keys: float = 0.0
    gram_entries: float = 0.0
    candidates: float = 0.0
    similarity_rows_read: float = 0.0
    rows_written: float = 0.0

    @property
    def cost(self) -> float:
        return sum(UNIT_COSTS[name] * value for name, value in dataclasses.asdict(self).items())

    def record(self) -> dict:
        return {**{k: int(round(v)) for k, v in dataclasses.asdict(self).items()}, "cost": int(round(self.cost))}


@dataclasses.dataclass(frozen=True)
class Choice:
    mode: str
    reason: str
    full: Work
    incremental: Work | None

    def record(self) -> dict:
        """What the pass's statistics keep under ``cost_model``."""
        return {
            "full": self.full.record(),
            "incremental": None if self.incremental is None else self.incremental.record(),
            "units": UNIT_COSTS,
        }


def size_biased_items_per_user(pairs: float, full_stats: dict | None) -> float | None:
    """m* from the last full pass (module docstring), or None without one."""
    if not full_stats or pairs <= 0 or full_stats.get("pairs_exact") is None:
        return None
    return (2.0 * float(full_stats["pairs_exact"]) + pairs) / pairs


def full_work(item_users: np.ndarray, m_star: float | None) -> Work:
    pairs = float(item_users.sum())
    return Work(
        user_rows=pairs,
        gram_entries=pairs * (m_star if m_star is not None else len(item_users)),
        rows_written=float(len(item_users)),
    )


def incremental_work(
    item_users: np.ndarray,
    affected: np.ndarray,
    m_star: float | None,
    *,
    max_index_fraction: float,
    cached_rows: int = 0,
) -> Work:
    """Work of an incremental pass recomputing the rows of ``affected`` (bool per item)."""
    n, pairs = len(item_users), float(item_users.sum())
    n_affected = int(affected.sum())
    on_affected = float(item_users[affected].sum())
    per_holder = m_star if m_star is not None else float(n)
    scan = n_affected > max_index_fraction * n
    co_held = min(float(n - n_affected), on_affected * max(per_holder - 1.0, 0.0))
    # Each holder's entries pair with its entries on A (rows of A only); those scores are
    # also the candidates the clean rows are merged with.
    on_rows_of_a = min(pairs * per_holder, on_affected * per_holder)
    return Work(
        user_rows=pairs if scan else min(pairs, on_affected * per_holder),
        holder_keys=0.0 if scan else on_affected,
        gram_entries=on_rows_of_a,
        candidates=on_rows_of_a,
        similarity_rows_read=max(0.0, co_held - cached_rows),
        rows_written=n_affected + co_held,
    )


def choose(
    item_users: np.ndarray,
    affected: np.ndarray,
    full_stats: dict | None,
    *,
    max_index_fraction: float,
    forced: str | None = None,
    cached_rows: int = 0,
) -> Choice:
    """The cheaper mode (a tie goes full: nothing to merge), or ``forced`` ("full"/"incremental").

    Both estimates are kept either way, for the pass's statistics.
    """
    m_star = size_biased_items_per_user(float(item_users.sum()), full_stats)
    full = full_work(item_users, m_star)
    inc = incremental_work(item_users, affected, m_star, max_index_fraction=max_index_fraction, cached_rows=cached_rows)
    ratio = inc.cost / full.cost if full.cost > 0 else 0.0
    figures = f"{int(affected.sum())} affected items, estimated {ratio:.2f}x the work of a full pass"
    if forced is not None:
        return Choice(forced, f"--{forced} ({figures})", full, inc)
    if inc.cost < full.cost:
        return Choice("incremental", figures, full, inc)
    return Choice("full", f"cheaper than incremental ({figures})", full, inc)
