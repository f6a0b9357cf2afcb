"""An item with 300,000 users: the fold on top of it reads a bounded number of bytes
per event (the old layout read the item's whole row, one cell per user, and died
past gRPC's 4 MiB response limit at 78,200 users)."""

from __future__ import annotations

import pytest

from schemas import Event, EventType, Weights
from streaming import state
from streaming.store import FoldStore, fold_batch
from streamsim.runtime.seeding import write_scores

pytestmark = pytest.mark.slow
HOLDERS = 300_000
#: Bytes read per event at most: a pair row, the item's stats row and a contributions
#: row are each well under this, whatever the item's popularity.
MAX_BYTES_PER_EVENT = 2048


def test_a_hot_item_folds_with_bounded_reads(fresh_stack):
    # Seeded straight through the layout (one browse each): seconds, not a replay.
    write_scores(fresh_stack, {f"u{k}": {"hot": 0.5} for k in range(HOLDERS)}, mark_dirty=False)
    events = [Event(f"e{k}", f"u{k * 97 % HOLDERS}", "hot", EventType.BASKET, k) for k in range(2000)]
    events += [Event(f"n{k}", f"new{k}", "hot", EventType.BROWSE, k) for k in range(1000)]
    events += [Event(f"o{k}", f"u{k}", f"other{k % 50}", EventType.PURCHASE, k) for k in range(1000)]
    store = FoldStore(fresh_stack)
    stats = fold_batch(store, events, Weights())
    assert stats.accepted == len(events)
    assert stats.bytes_read / len(events) < MAX_BYTES_PER_EVENT, stats
    hot = state.read_item(fresh_stack, "hot")
    basket = Weights().of(EventType.BASKET)
    touched = {k * 97 % HOLDERS for k in range(2000)}
    expected = (HOLDERS - len(touched)) * 0.25 + len(touched) * (0.5 + basket) ** 2 + 1000 * 0.25
    assert hot["users"] == HOLDERS + 1000 and hot["norm2"] == pytest.approx(expected, rel=1e-12)
    assert hot["events"] == HOLDERS + 3000 and hot["dirty"]
