"""Replay formats, deterministic ids, and the guard on the patched Beam code."""

from __future__ import annotations

import gzip
import inspect
import io
import itertools
import json
import os

import pytest

from schemas import parse_event
from streaming import direct_pubsub
from streamsim.sources.formats import (
    MAX_LINE_CHARS,
    CorruptSourceError,
    FormatError,
    detect_format,
    read_records,
    source_event_id,
)


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


# --- bad input: every way a file can be wrong is one clear error or a counted rejection ---

GOOD = "1511539200,1,2,pv\n"
TAOBAO_HEADER = "timestamp,user,item,behavior\n"


def test_a_huge_line_between_good_ones_is_rejected_and_never_held_whole(tmp_path):
    import tracemalloc

    path = tmp_path / "huge.csv"
    with open(path, "w") as f:
        f.write(TAOBAO_HEADER + GOOD)
        for _ in range(320):  # a 20 MiB line without a newline
            f.write("x" * 65536)
        f.write("\n" + GOOD + "1511539201,1,3,buy\n")
    tracemalloc.start()
    try:
        records = list(read_records(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(r.position, r.error) for r in records] == [(0, None), (1, "too_large"), (2, None), (3, None)]
    assert str(MAX_LINE_CHARS) in records[1].detail
    assert peak < 2 * 1024 * 1024, f"reading held {peak:,} bytes at once"
    # The rows after it keep the ids they had: positions count lines, the huge one too.
    assert parse_event(records[2].data).event_id == source_event_id(2, GOOD.strip())


def test_a_line_at_the_limit_is_read_and_one_past_it_is_not(tmp_path):
    body = '{"event_id":"e","user":"u","item":"i","type":"browse","ts":1,"pad":"'
    exact = body + "p" * (MAX_LINE_CHARS - len(body) - 2) + '"}'
    assert len(exact) == MAX_LINE_CHARS
    longer = exact[:-2] + 'p"}'
    path = _write(tmp_path, "edge.jsonl", f"{exact}\r\n{longer}\n{exact}")
    records = list(read_records(path))
    assert [r.error for r in records] == [None, "too_large", None]
    assert "line is longer" in records[1].detail


class _Endless(io.RawIOBase):
    """A stream of one good line, then ``fill`` bytes forever; counts what was read."""

    def __init__(self, head: bytes, fill: bytes = b"a"):
        self.head, self.fill, self.read_bytes = head, fill, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = len(buffer)
        chunk = (self.head + self.fill * n)[:n]
        self.head = self.head[n:]
        buffer[:n] = chunk
        self.read_bytes += n
        return n


def test_an_endless_line_costs_bounded_memory_and_a_limit_stops_at_it():
    source = _Endless(b'{"user":"u","item":"i","type":"browse","ts":1}\n')
    records = itertools.islice(read_records(source, "jsonl"), 2)
    assert [r.error for r in records] == [None, "too_large"]
    assert source.read_bytes < 256 * 1024  # the rest of the endless line was never asked for


def test_zeros_without_a_newline_are_refused_at_the_first_line():
    for fmt in ("auto", "jsonl", "taobao"):
        source = _Endless(b"", b"\0")
        with pytest.raises(FormatError, match=f"longer than {MAX_LINE_CHARS}"):
            read_records(source, fmt)
        assert source.read_bytes < 256 * 1024
    if os.path.exists("/dev/zero"):
        with pytest.raises(FormatError, match="/dev/zero"):
            read_records("/dev/zero")


def test_an_empty_file_is_an_error_and_a_header_only_one_has_no_records(tmp_path):
    empty = _write(tmp_path, "empty.csv", "")
    for fmt in ("auto", "taobao"):
        with pytest.raises(FormatError, match="empty.csv is empty"):
            read_records(empty, fmt)
    with pytest.raises(FormatError, match="is empty"):
        read_records(_write(tmp_path, "empty.csv.gz", "", gz=True))
    assert list(read_records(_write(tmp_path, "header.csv", TAOBAO_HEADER))) == []


def test_errors_are_raised_when_the_file_is_opened_not_when_it_is_read(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "nope.csv")
    with pytest.raises(FormatError, match="cannot tell"):
        read_records(_write(tmp_path, "w.csv", "a,b,c\n"))


def test_format_errors_say_what_was_asked(tmp_path):
    wrong = _write(tmp_path, "wrong.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(FormatError, match=r"wrong.csv: cannot tell the format .*'a,b,c'.*pass --format") as auto:
        read_records(wrong)
    with pytest.raises(FormatError, match=r"wrong.csv is not taobao: .*'a,b,c'.*neither a taobao header") as given:
        read_records(wrong, "taobao")
    assert "pass --format" not in str(given.value) and "expected 4 or 5 columns, got 3" in str(given.value)
    assert "pass --format" in str(auto.value)
    with pytest.raises(FormatError, match="not json|neither a jsonl header"):
        read_records(wrong, "jsonl")
    seed = _write(tmp_path, "seed.csv", "user,productSku,type\nu1,SKU1,1\n")
    with pytest.raises(FormatError, match="has a seed header, not taobao"):
        read_records(seed, "taobao")


def test_a_given_format_reads_a_file_without_a_header(tmp_path):
    # The seed export without its header line: nothing to detect, but --format seed says what it is.
    path = _write(tmp_path, "noheader.csv", "u1,SKU1,1\nu2,SKU2,3\n")
    with pytest.raises(FormatError, match="cannot tell"):
        read_records(path)
    events = _events(path, "seed")
    assert [(e.user, e.type.value) for e in events] == [("u1", "browse"), ("u2", "purchase")]
    # A first row of the right shape with a bad value is a rejected row, not a wrong format.
    odd = _write(tmp_path, "odd.csv", "u1,SKU1,9\nu2,SKU2,3\n")
    assert [r.error for r in read_records(odd, "seed")] == ["bad_type", None]


def test_a_corrupt_or_truncated_gzip_names_the_file(tmp_path):
    fake = tmp_path / "fake.gz"
    fake.write_bytes(b"\x1f\x8bgarbage, not deflate")
    with pytest.raises(CorruptSourceError, match="fake.gz is not a readable gzip file"):
        read_records(fake)
    whole = gzip.compress((TAOBAO_HEADER + "".join(f"{1511539200 + n},{n},2,pv\n" for n in range(5000))).encode())
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    records = read_records(truncated)
    read = []
    with pytest.raises(CorruptSourceError, match=r"truncated.csv.gz is corrupt or truncated after line [\d,]+"):
        for record in records:
            read.append(record)
    assert len(read) > 100 and all(r.data for r in read[:-1])
