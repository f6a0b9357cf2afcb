"""Attribution: tokens, the event field, and the stream's per-arm counts (exactly once with
racing writers on the real emulator), and the report built from them."""

from __future__ import annotations

import dataclasses
import random

import pytest

from schemas import Event, EventError, EventType, attribution, parse_event
from streaming import state
from streamsim.app import report_command
from tests.support.fold_workers import race, redelivery_plans

TOKEN = attribution.Attribution("user", 1_700_000_000_000, "tuned-b", "B", "0123456789abcdef", 1_700_000_000_123)


def test_a_token_names_its_answer_and_any_change_is_refused():
    token = attribution.encode(TOKEN)
    assert attribution.decode(token) == TOKEN
    assert len(token) <= attribution.MAX_TOKEN_CHARS and token.isascii() and "=" not in token
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for bad in (flipped, token[:-2], "", "x" * 300, 42, None, token + "é"):
        with pytest.raises(attribution.AttributionError):
            attribution.decode(bad)
    # Another deployment's key: refused.
    with pytest.raises(attribution.AttributionError):
        attribution.decode(attribution.encode(TOKEN, key=b"another"))
    with pytest.raises(attribution.AttributionError):
        attribution.Attribution("carousel", 0, "c", "A", "0123456789abcdef", 0)


def test_the_event_contract_takes_an_attribution_and_dead_letters_a_bad_one():
    token = attribution.encode(TOKEN)
    event = Event("e1", "u1", "i1", EventType.BASKET, 5, attribution=token)
    assert parse_event(event.to_json()) == event
    with pytest.raises(EventError) as caught:
        parse_event(b'{"event_id":"e1","user":"u1","item":"i1","type":"browse","ts":5,"attribution":"made-up"}')
    assert caught.value.code == "bad_attribution"


def _attributed_stream(seed: int, events: int = 3000) -> list[Event]:
    rnd = random.Random(seed)
    tokens = [
        attribution.encode(dataclasses.replace(TOKEN, arm=arm, route=route, request_id=f"{n:016x}"))
        for n, (arm, route) in enumerate((a, r) for a in ("A", "B") for r in attribution.ROUTES)
    ]
    return [
        Event(
            f"e{n}",
            f"u{rnd.randrange(25)}",
            f"i{rnd.randrange(10)}",
            rnd.choice(list(EventType)),
            n,
            attribution=rnd.choice(tokens) if rnd.random() < 0.6 else None,
        )
        for n in range(events)
    ]


def _oracle(events: list[Event]) -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = {}
    for e in {e.event_id: e for e in events}.values():
        if e.attribution is not None:
            token = attribution.decode(e.attribution)
            key = (token.arm, token.route, e.type.value)
            counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.slow
def test_attributed_counts_are_exactly_once_with_racing_writers_and_redeliveries(fresh_stack):
    events = _attributed_stream(seed=1)
    totals = race(fresh_stack, redelivery_plans(events, seed=2, writers=4))
    assert totals.conflicts > 0 and totals.duplicates > 0
    assert state.scan_attributed(fresh_stack) == _oracle(events)


def test_the_report_rates_each_arm_with_an_interval():
    metrics = "\n".join(
        [
            "# TYPE streamsim_serving_answers_total counter",
            'streamsim_serving_answers_total{arm="A",route="user"} 300.0',
            'streamsim_serving_answers_total{arm="A",route="similar"} 100.0',
            'streamsim_serving_answers_total{arm="B",route="user"} 400.0',
            'streamsim_serving_requests_total{route="/healthz",method="GET",status="200"} 9.0',
        ]
    )
    served = report_command.answers_served(metrics)
    assert served == {"A": 400, "B": 400}
    attributed = {("A", "user", "browse"): 40, ("A", "similar", "purchase"): 4, ("B", "user", "browse"): 80}
    rows = report_command.build(served, attributed)
    assert [(r["arm"], r["answers"], r["browse"], r["purchase"]) for r in rows] == [
        ("A", 400, 40, 4),
        ("B", 400, 80, 0),
    ]
    a_browse = rows[0]["rates"]["browse"]
    assert a_browse["rate"] == 0.1 and a_browse["low"] < 0.1 < a_browse["high"]
    # B browses twice as often, and the intervals say the difference is real.
    assert rows[1]["rates"]["browse"]["low"] > a_browse["high"]
    table = report_command.render(rows)
    assert table.splitlines()[2].startswith("| A | 400 | 40 | 0 | 4 | 10.0 [")
