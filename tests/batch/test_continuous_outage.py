"""The continuous loop's outage policy, fast: retry whatever a wait can fix, stop on what it cannot.

The real thing (a Bigtable emulator killed for 40 s under both loops) is
``tests/app/test_outage.py``; here the backend probe, the dirty marks and the pass
are stand-ins, so the schedule and the policy are checked in milliseconds.
"""

from __future__ import annotations

import threading

import pytest
from google.api_core import exceptions

from batch import continuous
from streamsim.runtime import outage
from streamsim.runtime.settings import Settings


def test_the_retry_schedule_doubles_to_a_minute_and_stays_there():
    assert [outage.retry_delay(n) for n in range(1, 9)] == [2, 4, 8, 16, 32, 60, 60, 60]


@pytest.mark.parametrize(
    ("error", "fixable"),
    [
        (exceptions.ServiceUnavailable("down"), True),
        (exceptions.DeadlineExceeded("slow"), True),
        (exceptions.NotFound("table t-items"), True),  # an emulator restarted empty, before `up` provisions it
        (ConnectionError("the Bigtable emulator at 127.0.0.1:1 is not reachable"), True),
        (RuntimeError("a Spark task failed"), True),
        (exceptions.PermissionDenied("no"), False),
        (exceptions.Unauthenticated("who"), False),
        (exceptions.InvalidArgument("bad"), False),
    ],
)
def test_what_retrying_cannot_fix(error, fixable):
    assert (outage.unfixable(error) is None) == fixable


def run_loop(monkeypatch, failures: list[Exception]):
    """The loop over stand-ins: the pass fails with ``failures`` in turn, then succeeds once and stops."""
    stop, attempts, passes = threading.Event(), [], []
    monkeypatch.setattr(continuous, "backend_error", lambda settings: None)
    monkeypatch.setattr(continuous.source, "read_marks", lambda settings: ["item"])
    monkeypatch.setattr(outage, "retry_delay", lambda n: 0.0)

    def run_pass(spark, settings, options, warm):
        attempts.append(1)
        if len(attempts) <= len(failures):
            raise failures[len(attempts) - 1]
        return {"wall_seconds": 1.0, "flipped": True, "generation": 7}

    def on_pass(stats):
        passes.append(stats)
        stop.set()

    summary = continuous.run_continuous(
        None, Settings(), None, stop=stop, min_interval=0.0, on_pass=on_pass, run_pass=run_pass
    )
    return summary, attempts, passes


def test_ten_failed_passes_in_a_row_are_waited_out(monkeypatch, caplog):
    summary, attempts, passes = run_loop(monkeypatch, [exceptions.ServiceUnavailable("down")] * 10)
    assert len(attempts) == 11 and summary.published == 1 and summary.outages == 1
    assert passes[0]["outage"]["failed_attempts"] == 10
    assert "refresh pass failed (10 in a row" in caplog.text
    assert "refresh pass succeeded again after 10 failures" in caplog.text


def test_a_configuration_error_stops_the_loop_at_once(monkeypatch):
    with pytest.raises(exceptions.PermissionDenied):
        run_loop(monkeypatch, [exceptions.ServiceUnavailable("down"), exceptions.PermissionDenied("no")])
