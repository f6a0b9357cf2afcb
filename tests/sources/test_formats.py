"""Replay formats, deterministic ids, and the guard on the patched Beam code."""

from __future__ import annotations

import gzip
import inspect
import json

import pytest

from schemas import parse_event
from streaming import direct_pubsub
from streamsim.sources.formats import FormatError, detect_format, read_records, source_event_id


def _write(tmp_path, name, text, gz=False):
    path = tmp_path / name
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def _events(path, fmt="auto"):
    return [parse_event(r.data) for r in read_records(path, fmt, now_ms=lambda: 5) if r.data]


def test_seed_export_repeated_rows_are_distinct_events_and_replays_are_stable(tmp_path):
    text = "user,productSku,type\nu1,SKU1,1\nu1,SKU1,1\nu2,SKU2,3\n"
    path = _write(tmp_path, "seed.csv", text)
    events = _events(path)
    assert [(e.user, e.item, e.type.value, e.ts_ms) for e in events] == [
        ("u1", "SKU1", "browse", 5),
        ("u1", "SKU1", "browse", 5),
        ("u2", "SKU2", "purchase", 5),
    ]
    assert len({e.event_id for e in events}) == 3
    # Same content under another name (and gzipped): same ids.
    again = _events(_write(tmp_path, "other.csv.gz", text, gz=True))
    assert [e.event_id for e in again] == [e.event_id for e in events]
    assert events[0].event_id == source_event_id(0, "u1,SKU1,1")


def test_retailrocket_and_taobao_map_behaviours(tmp_path):
    rr = _write(
        tmp_path,
        "events.csv",
        (
            "timestamp,visitorid,event,itemid,transactionid\n"
            "1433221332117,257597,view,355908,\n1433224214164,992329,addtocart,248676,\n"
            "1433224214165,992329,transaction,248676,4000\n1433224214166,1,wink,2,\n"
        ),
    )
    records = list(read_records(rr))
    assert [parse_event(r.data).type.value for r in records if r.data] == ["browse", "basket", "purchase"]
    assert [(r.position, r.error) for r in records if not r.data] == [(3, "bad_type")]
    assert parse_event(records[0].data).ts_ms == 1433221332117

    tb = _write(
        tmp_path,
        "tb.csv",
        "timestamp,user,item,behavior\n1511539200,1,2,fav\n1511539201,1,3,cart\n1511539202,1,3,buy\n",
    )
    assert [(e.type.value, e.ts_ms) for e in _events(tb)] == [
        ("browse", 1511539200000),
        ("basket", 1511539201000),
        ("purchase", 1511539202000),
    ]
    raw = _write(tmp_path, "UserBehavior.csv", "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n")
    assert [(e.user, e.item, e.type.value) for e in _events(raw)] == [
        ("1", "2268318", "browse"),
        ("1", "2333346", "purchase"),
    ]


def test_jsonl_keeps_ids_and_rejects_bad_lines(tmp_path):
    lines = [
        {"event_id": "mine", "user": "u", "item": "i", "type": "basket", "ts": "2026-11-22T10:00:00Z"},
        {"user": "u", "item": "i", "type": 3, "ts": 1},
    ]
    path = _write(tmp_path, "e.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n{broken\n[1]\n")
    records = list(read_records(path))
    ids = [parse_event(r.data).event_id for r in records if r.data]
    assert ids[0] == "mine" and ids[1].startswith("src-1-")
    assert [r.error for r in records if not r.data] == ["not_json", "not_object"]


def test_bad_rows_and_unknown_files(tmp_path):
    path = _write(tmp_path, "s.csv", "user,productSku,type\nu1,SKU1\nu1,SKU1,9\n")
    assert [r.error for r in read_records(path)] == ["bad_row", "bad_type"]
    with pytest.raises(FormatError, match="cannot tell"):
        detect_format("a;b;c")
    with pytest.raises(FormatError, match="header"):
        list(read_records(path, "taobao"))


def test_patched_beam_code_is_what_we_expect():
    # Fails loudly when a Beam upgrade changes the local Pub/Sub read.
    direct_pubsub.check_compatible()


def test_guard_notices_a_changed_beam(monkeypatch):
    real = inspect.getsource
    monkeypatch.setattr(
        direct_pubsub.inspect, "getsource", lambda obj: real(obj).replace("max_messages=10", "max_messages=50")
    )
    with pytest.raises(direct_pubsub.BeamChanged, match="max_messages=10"):
        direct_pubsub.check_compatible()
