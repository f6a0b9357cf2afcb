"""The generation pointer: it only moves forward, except by an explicit rollback (emulator, no Spark)."""

from __future__ import annotations

import random
import threading

import grpc
import pytest

from batch.generations import GenerationError, Generations
from schemas import codecs, layout
from streamsim.runtime.bigtable import entry, set_cell
from streamsim.runtime.bigtable.table import Table
from tests.support.flaky_calls import AnswerLost, Failed


class _Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "injected by the test"


def _record_complete(gens: Generations, *generations: int) -> None:
    for generation in generations:
        gens.finish_pass({"generation": generation})


def test_the_pointer_never_moves_to_an_older_generation(fresh_stack):
    gens = Generations(fresh_stack)
    assert gens.current() is None
    assert gens.flip_pointer(2000) is True
    assert gens.flip_pointer(1000) is False  # an older pass finishing last
    assert gens.current() == 2000
    assert gens.flip_pointer(2000) is True  # already there: nothing to do, and it is not a failure
    assert gens.flip_pointer(3000) is True and gens.current() == 3000


def test_racing_flips_end_on_the_newest_generation_and_never_go_back(fresh_stack):
    gens = Generations(fresh_stack)
    generations = list(range(1_000, 1_000 + 8 * 12))
    random.Random(0).shuffle(generations)
    start = threading.Barrier(9)
    seen, failures = [], []

    def flipper(mine):
        start.wait()
        for generation in mine:
            try:
                Generations(fresh_stack).flip_pointer(generation)
            except Exception as exc:  # noqa: BLE001 - reported by the main thread
                failures.append(exc)

    threads = [threading.Thread(target=flipper, args=(generations[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(t.is_alive() for t in threads):
        seen.append(gens.current())
    for thread in threads:
        thread.join()
    assert failures == []
    assert gens.current() == max(generations)
    observed = [g for g in seen if g is not None]
    assert observed == sorted(observed)  # a reader never saw the pointer go back


def test_a_negative_pointer_value_is_overwritten(fresh_stack):
    gens = Generations(fresh_stack)
    # Signed big-endian: -1 is b"\xff"*8, which sorts after every positive value as bytes.
    gens.meta.mutate(
        [entry(layout.GENERATION_ROW, [set_cell(layout.GENERATION, layout.CURRENT, codecs.encode_int64(-1))])]
    )
    assert gens.current() == -1
    assert gens.flip_pointer(5) is True and gens.current() == 5


def _flaky_check_and_mutate(monkeypatch, *, apply_first: bool) -> list[str]:
    """The next CheckAndMutateRow on the pointer row fails with UNAVAILABLE once,
    after being applied if ``apply_first`` (its answer lost)."""
    state = []
    real_start = Table._start_check_and_mutate

    def flaky(self, request):
        if not state and request.row_key == layout.GENERATION_ROW:
            state.append("failed once")
            return AnswerLost(real_start(self, request), _Unavailable()) if apply_first else Failed(_Unavailable())
        return real_start(self, request)

    monkeypatch.setattr(Table, "_start_check_and_mutate", flaky)
    return state


@pytest.mark.parametrize("apply_first", [False, True], ids=["not-applied", "applied-answer-lost"])
def test_a_flip_retried_after_a_transient_failure_reports_the_truth(fresh_stack, monkeypatch, apply_first):
    Generations(fresh_stack).flip_pointer(1000)
    state = _flaky_check_and_mutate(monkeypatch, apply_first=apply_first)
    gens = Generations(fresh_stack)
    assert gens.flip_pointer(2000) is True
    assert state == ["failed once"] and gens.current() == 2000


def test_rollback_moves_back_explicitly_to_the_newest_served_pass(fresh_stack):
    gens = Generations(fresh_stack)
    _record_complete(gens, 1000, 2000)
    gens.finish_pass({"generation": 2500}, state="not_flipped")  # written, never served
    for generation in (1000, 2000, 2500):
        gens.flip_pointer(generation)  # (2500 only to have something to roll back from)
    assert gens.rollback() == (2500, 2000) and gens.current() == 2000
    assert gens.rollback() == (2000, 1000) and gens.current() == 1000
    with pytest.raises(GenerationError, match="oldest"):
        gens.rollback()


def test_a_pass_that_flips_while_rolling_back_wins(fresh_stack, monkeypatch):
    gens = Generations(fresh_stack)
    _record_complete(gens, 1000, 2000, 3000)
    gens.flip_pointer(1000)
    gens.flip_pointer(2000)
    real_current = Generations.current
    reads = []

    def read_then_a_pass_flips(self):
        reads.append(real_current(self))
        if len(reads) == 1:
            monkeypatch.setattr(Generations, "current", real_current)
            assert Generations(fresh_stack).flip_pointer(3000)  # lands just after the rollback read 2000
        return reads[0]

    monkeypatch.setattr(Generations, "current", read_then_a_pass_flips)
    with pytest.raises(GenerationError, match="moved from 2000 to 3000"):
        gens.rollback()
    assert gens.current() == 3000


@pytest.mark.parametrize("apply_first", [False, True], ids=["not-applied", "applied-answer-lost"])
def test_a_rollback_retried_after_a_transient_failure_succeeds(fresh_stack, monkeypatch, apply_first):
    gens = Generations(fresh_stack)
    _record_complete(gens, 1000, 2000)
    gens.flip_pointer(1000)
    gens.flip_pointer(2000)
    state = _flaky_check_and_mutate(monkeypatch, apply_first=apply_first)
    assert Generations(fresh_stack).rollback() == (2000, 1000)
    assert state == ["failed once"] and gens.current() == 1000
