"""``streamsim backfill-norms`` while the fold runs: item rows written before ``n:enorm2`` existed
get Σ_u f(r_ui)² from their contributions, exactly, whatever folds commit meanwhile."""

from __future__ import annotations

import random
import threading

import pytest

from schemas import Event, EventType, Weights, layout
from streaming import backfill, state
from streaming.store import FoldStore, fold_batch
from streamsim.app.cli import main
from streamsim.runtime.bigtable import delete_cells, entry, open_tables
from tests.support.fold_oracle import entry_norms, fold_oracle

pytestmark = pytest.mark.slow


def _events(seed: int, count: int, first: int = 0) -> list[Event]:
    rnd = random.Random(seed)
    return [
        Event(f"e{n}", f"u{rnd.randrange(40)}", f"i{rnd.randrange(15)}", rnd.choice(list(EventType)), n * 1000)
        for n in range(first, first + count)
    ]


def _forget_entry_norms(settings) -> None:
    """What a deployment folded before the cell existed looks like: no ``n:enorm2`` anywhere."""
    items = open_tables(settings).items
    keys = [key for key, _ in items.read_rows()]
    items.mutate(entry(key, [delete_cells(layout.ITEM_STATS, layout.ENTRY_NORM2)]) for key in keys)


def test_backfill_racing_fold_writers_equals_the_oracle(fresh_stack):
    old, new = _events(1, 1500), _events(2, 1500, first=1500)
    store = FoldStore(fresh_stack)
    for offset in range(0, len(old), 100):
        fold_batch(store, old[offset : offset + 100], Weights())
    _forget_entry_norms(fresh_stack)
    scores, _ = fold_oracle(old + new)
    expected = entry_norms(scores)

    def fold_the_rest(seed: int) -> None:
        # Two writers, each batch delivered twice (a redelivery racing the delivery).
        writer, rnd = FoldStore(fresh_stack), random.Random(seed)
        for offset in range(0, len(new), 50):
            chunk = new[offset : offset + 50]
            fold_batch(writer, rnd.sample(chunk, len(chunk)), Weights())

    writers = [threading.Thread(target=fold_the_rest, args=(seed,)) for seed in (3, 4)]
    for thread in writers:
        thread.start()
    summaries = [backfill.entry_norm2(fresh_stack)]
    while any(thread.is_alive() for thread in writers):
        summaries.append(backfill.entry_norm2(fresh_stack))  # again and again, while the fold runs
    for thread in writers:
        thread.join()
    assert summaries[0].items == 15 and summaries[0].changed > 0
    got = {item: row["entry_norm2"] for item, row in state.scan_items(fresh_stack).items()}
    assert got == pytest.approx(expected, rel=1e-9)
    # Without the backfill the older contributions would be missing from every item's norm.
    assert all(value > 0 for value in got.values())


def test_backfill_is_idempotent_and_counts_what_it_changed(fresh_stack):
    fold_batch(FoldStore(fresh_stack), _events(5, 300), Weights())
    before = state.scan_items(fresh_stack)
    first = backfill.entry_norm2(fresh_stack)
    assert (first.items, first.changed, first.conflicts) == (15, 0, 0)  # the fold kept them right
    _forget_entry_norms(fresh_stack)
    assert all(row["entry_norm2"] == 0.0 for row in state.scan_items(fresh_stack).values())
    assert backfill.entry_norm2(fresh_stack).changed == 15
    after = state.scan_items(fresh_stack)
    assert {i: r["entry_norm2"] for i, r in after.items()} == pytest.approx(
        {i: r["entry_norm2"] for i, r in before.items()}, rel=1e-12
    )


def test_the_command_prints_a_summary(fresh_stack, capsys):
    fold_batch(FoldStore(fresh_stack), _events(6, 200), Weights())
    _forget_entry_norms(fresh_stack)
    assert main(["backfill-norms", *fresh_stack.to_argv()]) == 0
    out = capsys.readouterr().out
    assert "15 items" in out and "15 changed" in out
