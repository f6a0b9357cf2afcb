"""The synthetic clickstream: seeded, shop-shaped, with a few broken messages."""

import collections

from schemas import EventError, parse_event
from streamsim.sources.synthetic import ClickstreamShape, clickstream, write_jsonl


def parsed(shape):
    events, errors = [], collections.Counter()
    for message in clickstream(shape):
        try:
            events.append(parse_event(message))
        except EventError as error:
            errors[error.code] += 1
    return events, errors


def test_same_seed_same_stream_other_seed_other_stream():
    shape = ClickstreamShape(events=500)
    assert list(clickstream(shape)) == list(clickstream(shape))
    assert list(clickstream(shape)) != list(clickstream(ClickstreamShape(events=500, seed=8)))


def test_shape_of_the_stream():
    shape = ClickstreamShape(events=20_000, malformed_rate=0.01)
    events, errors = parsed(shape)
    assert len(events) + sum(errors.values()) == 20_000
    assert set(errors) == {"not_json", "missing_field", "bad_type", "bad_timestamp"}
    types = collections.Counter(e.type.value for e in events)
    assert 0.80 < types["browse"] / len(events) < 0.92
    assert types["purchase"] < types["basket"] < types["browse"]
    # Power law: the top 10% of items draw most of the events.
    per_item = sorted(collections.Counter(e.item for e in events).values(), reverse=True)
    assert sum(per_item[: shape.items // 10]) > 0.5 * len(events)
    # Lognormal activity: the busiest user has far more events than the median one.
    per_user = sorted(collections.Counter(e.user for e in events).values())
    assert per_user[-1] > 10 * per_user[len(per_user) // 2]
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)
    assert len({e.event_id for e in events}) == len(events)


def test_jsonl_has_one_message_per_line(tmp_path):
    path = tmp_path / "clicks.jsonl"
    count = write_jsonl(str(path), ClickstreamShape(events=300, malformed_rate=0.05))
    lines = path.read_bytes().splitlines()
    assert count == len(lines) == 300
    assert lines == [m.replace(b"\n", b" ") for m in clickstream(ClickstreamShape(events=300, malformed_rate=0.05))]
