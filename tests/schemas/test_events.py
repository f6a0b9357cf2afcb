"""The event contract: what parses, what is rejected with which code."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    ERROR_CODES,
    MAX_EVENT_BYTES,
    MAX_ID_CHARS,
    Event,
    EventError,
    EventType,
    Weights,
    id_problem,
    is_valid_id,
    parse_event,
)

GOOD = {"event_id": "e-1", "user": "u42", "item": "sku-7", "type": "basket", "ts": "2026-11-22T10:00:00Z"}


def body(**changes) -> bytes:
    fields = {**GOOD, **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


def test_a_good_event_parses():
    event = parse_event(body())
    assert event == Event("e-1", "u42", "sku-7", EventType.BASKET, 1795341600000)


@pytest.mark.parametrize(
    "code, data",
    [
        ("too_large", body(item="x" * 10) + b" " * MAX_EVENT_BYTES),
        ("not_json", b"{not json"),
        ("not_json", b"\xff\xfe{}"),
        ("not_json", b"[" * 5000),
        ("not_object", b"[1, 2]"),
        ("missing_field", body(user=...)),
        ("missing_field", body(ts=...)),
        ("bad_id", body(event_id="")),
        ("bad_id", body(event_id="x" * 129)),
        ("bad_id", body(event_id=7)),
        ("bad_field", body(user="a\nb")),
        ("bad_field", body(item=["sku"])),
        ("bad_field", body(user="")),
        ("bad_field", b'{"event_id":"e","user":"\\ud800","item":"i","type":1,"ts":0}'),
        ("bad_type", body(type="view")),
        ("bad_type", body(type=4)),
        ("bad_type", body(type=True)),
        ("bad_timestamp", body(ts="2026-11-22")),
        ("bad_timestamp", body(ts="2026-11-22T10:00:00")),
        ("bad_timestamp", body(ts="yesterday")),
        ("bad_timestamp", body(ts=-1)),
        ("bad_timestamp", body(ts=None)),
    ],
)
def test_contract_breaches_carry_their_code(code, data):
    with pytest.raises(EventError) as raised:
        parse_event(data)
    assert raised.value.code == code
    assert raised.value.detail


@pytest.mark.parametrize(
    "given_type, expected", [(1, "browse"), ("2", "basket"), (3, "purchase"), ("PURCHASE", "purchase")]
)
def test_seed_codes_and_names_are_accepted(given_type, expected):
    assert parse_event(body(type=given_type)).type.value == expected


@pytest.mark.parametrize(
    "ts, ms",
    [
        (1511539200000, 1511539200000),
        ("2017-11-24T16:00:00Z", 1511539200000),
        ("2017-11-24T18:00:00+02:00", 1511539200000),
        ("2017-11-24 16:00:00.5z", 1511539200500),
    ],
)
def test_timestamps_are_rfc3339_or_epoch_ms(ts, ms):
    assert parse_event(body(ts=ts)).ts_ms == ms


def test_attributes_fill_envelope_fields_but_the_body_wins():
    data = body(event_id=..., ts=...)
    event = parse_event(data, {"event_id": "from-attr", "ts": "1000"})
    assert event.event_id == "from-attr" and event.ts_ms == 1000
    assert parse_event(body(), {"event_id": "ignored"}).event_id == "e-1"


def test_extra_fields_are_ignored():
    assert parse_event(body(page="/p/1")) == parse_event(body())


event_strategy = st.builds(
    Event,
    event_id=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128),
    user=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128),
    item=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128),
    type=st.sampled_from(EventType),
    ts_ms=st.integers(0, 253402300799999),
    session=st.none() | st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128),
)


def test_the_session_field_is_optional_and_an_id():
    assert parse_event(body()).session is None
    assert parse_event(body(session="visit-9")).session == "visit-9"
    assert parse_event(body(), {"session": "from-attr"}).session == "from-attr"
    for bad in ("", "a\nb", 7):
        with pytest.raises(EventError) as caught:
            parse_event(body(session=bad))
        assert caught.value.code == "bad_field"


@given(event_strategy)
def test_canonical_form_round_trips(event):
    # C1 controls (\x80-\x9f) are category Cc too, so every drawn id is valid.
    assert parse_event(event.to_json()) == event


@settings(max_examples=500)
@given(
    st.one_of(st.binary(max_size=300), st.builds(lambda e: e.to_json(), event_strategy).map(lambda b: b[: len(b) // 2]))
)
def test_arbitrary_bytes_yield_an_event_or_the_contract_error(data):
    try:
        assert isinstance(parse_event(data), Event)
    except EventError as error:
        assert error.code in ERROR_CODES


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    )
)
def test_arbitrary_json_yields_an_event_or_the_contract_error(value):
    fields = {**GOOD, "ts": value} if isinstance(value, (int, float, str)) else value
    data = json.dumps(fields).encode()
    try:
        parse_event(data)
    except EventError as error:
        assert error.code in ERROR_CODES


def test_weights_default_to_the_seed_and_are_configurable():
    assert (Weights().of(EventType.BROWSE), Weights().of("basket"), Weights().of("purchase")) == (0.5, 2.0, 6.0)
    assert Weights.parse("browse=1, purchase=5") == Weights(browse=1.0, basket=2.0, purchase=5.0)
    assert Weights.from_env({"STREAMSIM_WEIGHTS": "basket=3"}).basket == 3.0
    assert Weights.from_env({}) == Weights()
    for bad in ("view=1", "browse=x", "browse=-1", "browse"):
        with pytest.raises(ValueError):
            Weights.parse(bad)


@given(st.text(max_size=130), st.text(max_size=130))
def test_accepted_ids_are_always_storable_as_utf8(user, item):
    try:
        event = parse_event(body(user=user, item=item))
    except EventError as error:
        assert error.code == "bad_field"
    else:
        assert event.user.encode("utf-8") and event.item.encode("utf-8")


@pytest.mark.parametrize("value", ["u42", "sku-7", "x", "x" * MAX_ID_CHARS, "caf\u00e9", "\U0001f600", "a b,c"])
def test_valid_ids(value):
    assert is_valid_id(value) and id_problem(value) is None


@pytest.mark.parametrize(
    "value, reason",
    [
        ("", "non-empty"),
        (None, "non-empty"),
        (7, "non-empty"),
        (b"u42", "non-empty"),
        ("x" * (MAX_ID_CHARS + 1), f"limit is {MAX_ID_CHARS}"),
        ("a\nb", "control"),
        ("\x00", "control"),
        ("a\x85", "control"),  # C1 controls count too
        ("\ud800", "surrogate"),
        ("\udc80", "surrogate"),
        ("a\ud800b", "surrogate"),
        ("\udfff", "surrogate"),
    ],
)
def test_invalid_ids_and_why(value, reason):
    assert not is_valid_id(value)
    assert reason in id_problem(value)


def test_a_surrogate_pair_spelled_in_json_is_one_valid_character():
    # "\ud83d\ude00" in JSON is U+1F600, not two lone surrogates.
    assert is_valid_id(json.loads('"\\ud83d\\ude00"'))


# st.characters() never draws surrogates; mix them (and controls) in.
_id_chars = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=[]),
    st.sampled_from("\x00\x1f\x7f\x85\x9f"),
)


@given(st.text(_id_chars, max_size=MAX_ID_CHARS + 2))
def test_valid_ids_are_exactly_those_utf8_can_encode_without_controls(value):
    def encodable(text):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True

    expected = (
        1 <= len(value) <= MAX_ID_CHARS
        and encodable(value)
        and not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value)
    )
    assert is_valid_id(value) == expected
    # parse_event applies the same rule to user and item.
    try:
        parse_event(body(user=value))
    except EventError as error:
        assert not expected and error.code == "bad_field"
    else:
        assert expected


# --- catalogue updates ----------------------------------------------------------


def _catalog(**fields) -> bytes:
    base = {"kind": "catalog", "item": "sku-1", "category": "shoes", "available": False, "ts": 5}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_a_catalog_message_is_a_catalog_update_and_round_trips():
    from schemas.events import CatalogUpdate, parse_message

    update = parse_message(_catalog())
    assert update == CatalogUpdate("sku-1", "shoes", False, 5)
    assert parse_message(update.to_json()) == update
    assert parse_message(_catalog(category=...)) == CatalogUpdate("sku-1", None, False, 5)
    assert parse_message(_catalog(available=...)).available is None
    # Events, with or without an unrelated kind, still parse as events.
    assert isinstance(parse_message(body()), Event)
    assert parse_message(body(kind="pageview")) == parse_event(body())


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"category": ..., "available": ...}, "bad_catalog"),
        ({"available": "no"}, "bad_catalog"),
        ({"category": 12}, "bad_catalog"),
        ({"category": "x\x00"}, "bad_catalog"),
        ({"item": ...}, "missing_field"),
        ({"item": ""}, "bad_field"),
        ({"ts": ...}, "missing_field"),
        ({"ts": "yesterday"}, "bad_timestamp"),
    ],
)
def test_malformed_catalog_updates_are_rejected_with_a_code(fields, code):
    from schemas.events import parse_message

    with pytest.raises(EventError) as caught:
        parse_message(_catalog(**fields))
    assert caught.value.code == code


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=140), max_size=6))
def test_the_one_pass_list_check_agrees_with_the_id_rule(values):
    from schemas.events import all_valid_ids, id_problem

    assert all_valid_ids(values) == all(id_problem(v) is None for v in values)


@pytest.mark.parametrize("kind", ["event", "catalog"])
def test_a_ts_beyond_the_clock_skew_is_refused_when_the_clock_is_given(kind):
    from schemas.events import MAX_CLOCK_SKEW_MS, parse_message

    now = 1_765_000_000_000

    def message(ts):
        return _catalog(ts=ts) if kind == "catalog" else body(ts=ts)

    assert parse_message(message(now + MAX_CLOCK_SKEW_MS), now_ms=now).ts_ms == now + MAX_CLOCK_SKEW_MS
    assert parse_message(message(now - 10**12), now_ms=now).ts_ms == now - 10**12  # the past is not bounded
    for ahead in (now + MAX_CLOCK_SKEW_MS + 1, "9999-12-31T00:00:00Z"):
        with pytest.raises(EventError) as caught:
            parse_message(message(ahead), now_ms=now)
        assert caught.value.code == "future_timestamp" and "ahead of now" in caught.value.detail
        assert parse_message(message(ahead)).ts_ms > now  # without a clock: the contract's range only
    if kind == "event":
        with pytest.raises(EventError, match="ahead of now"):
            parse_event(message(now + MAX_CLOCK_SKEW_MS + 1), now_ms=now)
