"""`streamsim demo` end to end on a small synthetic stream: the report matches the state."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from batch.generations import Generations
from schemas import EventError, parse_event
from streamsim.app.localstack import free_port
from streamsim.runtime.clients import reachable
from streamsim.sources.synthetic import ClickstreamShape, clickstream

EVENTS = 3000


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _broken(message: bytes) -> bool:
    try:
        parse_event(message)
        return False
    except EventError:
        return True


@pytest.mark.slow
def test_demo_report_matches_bigtable_and_leaves_nothing_running(fresh_stack):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSIM_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamsim",
            "demo",
            "--limit",
            str(EVENTS),
            "--port",
            str(port),
            "--exit-after-report",
            "--ab",
            "--json",
            "--refresh-every",
            "1",
            "--project",
            fresh_stack.project,
            "--instance",
            fresh_stack.instance,
            "--prefix",
            fresh_stack.prefix,
            "--state-dir",
            str(fresh_stack.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    # The oracle: the same synthetic stream, parsed here.
    messages = list(clickstream(ClickstreamShape(events=EVENTS)))
    valid = [parse_event(m) for m in messages if not _broken(m)]
    malformed = len(messages) - len(valid)
    assert malformed > 0
    assert report["events_folded"] == len(valid)
    assert report["dead_lettered"] == malformed
    assert report["items"] == len({e.item for e in valid})
    assert report["generation"] == Generations(fresh_stack).current()
    # The pass that took the tail in: the cheaper mode by its estimates, which it records.
    after_tail = report["refresh_after_tail"]
    model = after_tail["cost_model"]
    cheaper = "incremental" if model["incremental"]["cost"] < model["full"]["cost"] else "full"
    assert after_tail["mode"] == cheaper and after_tail["generation"] > report["first_refresh"]["generation"]
    assert 0 < after_tail["items_recomputed"] <= report["items"]
    # The demo replays 90% of the messages before it picks the ids to try.
    first_part = {parse_event(m).event_id for m in messages[: int(len(messages) * 0.9)] if not _broken(m)}
    busiest = Counter(e.user for e in valid if e.event_id in first_part).most_common(1)[0][0]
    assert f"user={busiest}&" in report["try"][0]
    assert report["try_answered"][:3] == [10, 10, 10]  # each curl line was tried and answered
    # The scenario routes offered answered something: bought together (with the popular fill)
    # and the busiest user's recently viewed always do.
    assert all(count > 0 for count in report["try_answered"])
    offered = " ".join(report["try"])
    assert "/bought-together?n=10" in offered and f"/users/{busiest}/recent?n=10" in offered
    assert report["changed_recommendation"] is not None
    # --ab: two arms answered, and each tail event tagged with an answer's token counted once.
    ab = report["ab"]
    assert [row["arm"] for row in ab["rows"]] == ["control", "popular-blend"]
    assert all(row["answers"] > 0 for row in ab["rows"])
    assert ab["tagged"] > 0
    assert sum(row[kind] for row in ab["rows"] for kind in ("browse", "basket", "purchase")) == ab["tagged"]

    # Nothing it started is left: no listener on the API port, no process of this run.
    assert not reachable(f"127.0.0.1:{port}")
    assert processes_mentioning(f"--prefix\x00{fresh_stack.prefix}\x00") == []
    # The stack it found running is left running.
    assert reachable(fresh_stack.bigtable_host)
