"""Dead letters fit Cloud Pub/Sub's attribute limits whatever the bad message carried:
the pure attribute builder (property tests), the publish step with a recording
client, and the real pipeline on the emulator (which enforces none of the limits,
so the tests check them explicitly)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from schemas.events import ERROR_CODES
from streaming.dead_letters import (
    DETAIL,
    DROPPED_ATTRIBUTES,
    DROPPED_KEYS,
    ERROR,
    MAX_ATTRIBUTES,
    MAX_KEY_BYTES,
    MAX_PUBLISH_REQUEST_BYTES,
    MAX_VALUE_BYTES,
    OWN_KEYS,
    PUBLISH_PARAMETERS,
    REPLAY_KEYS,
    attributes_wire_size,
    dead_letter_attributes,
    publish_attribute_budget,
)
from streaming.pipeline import DeadLetter, PublishDeadLettersFn
from streamsim.runtime.settings import Settings
from tests.support.pubsub import drain

# --- strategies ----------------------------------------------------------------
# Keys and values that are fine, over a limit in bytes but not in characters,
# colliding with the dead letter's own names or publish()'s parameters, Pub/Sub's
# reserved prefix, and lone surrogates (not UTF-8: protobuf cannot serialize them).
SPECIAL_KEYS = sorted(
    {*OWN_KEYS, *PUBLISH_PARAMETERS, *REPLAY_KEYS, "googclient_schemaname", "GOOGfoo", "goo", "origin", ""}
)
_surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
_multibyte = st.sampled_from("aé€😀")
keys = st.one_of(
    st.sampled_from(SPECIAL_KEYS),
    st.text(max_size=10),
    st.text(_multibyte, min_size=60, max_size=200),  # 60-800 bytes, around the 256-byte limit
    st.builds(lambda a, b: a + b, st.text(max_size=3), _surrogates),
)
values = st.one_of(
    st.text(max_size=10),
    st.text(_multibyte, min_size=250, max_size=700),  # 250-2800 bytes, around the 1024-byte limit
    st.builds(lambda a, b: a + b, st.text(max_size=3), _surrogates),
)
# Up to 160 plain attributes, so that the count limit binds often, plus awkward ones.
attributes_strategy = st.builds(
    lambda n, extra: {**{f"k{i:03d}": f"v{i}" for i in range(n)}, **extra},
    st.one_of(st.integers(0, 5), st.integers(95, 102), st.integers(0, 160)),
    st.dictionaries(keys, values, max_size=12),
)
errors = st.sampled_from(sorted(ERROR_CODES))
details = st.one_of(
    st.text(max_size=100),
    st.text(_multibyte, min_size=250, max_size=1200),
    st.builds(lambda a, b: a + b, st.text(max_size=300), _surrogates),
)


# --- what the properties check -------------------------------------------------
def _publishable(key, value) -> bool:
    """The spec, written out independently of the module."""
    if key in OWN_KEYS or key in PUBLISH_PARAMETERS or key.lower().startswith("goog"):
        return False
    try:
        return len(key.encode()) <= MAX_KEY_BYTES and len(value.encode()) <= MAX_VALUE_BYTES
    except UnicodeEncodeError:
        return False


def _in_order(keys_):
    """Replay keys first, in their order, then the rest by key."""
    return sorted(keys_, key=lambda k: (REPLAY_KEYS.index(k) if k in REPLAY_KEYS else len(REPLAY_KEYS), k))


def assert_fits_pubsub(result: dict) -> None:
    assert len(result) <= MAX_ATTRIBUTES
    for key, value in result.items():
        assert isinstance(key, str) and isinstance(value, str)
        assert len(key.encode("utf-8")) <= MAX_KEY_BYTES  # strict: raises on a lone surrogate
        assert len(value.encode("utf-8")) <= MAX_VALUE_BYTES
        assert not key.lower().startswith("goog") and key not in PUBLISH_PARAMETERS
    assert ERROR in result and DETAIL in result


def assert_originals_unchanged(result: dict, attributes: dict) -> None:
    for key, value in result.items():
        if key not in OWN_KEYS:
            assert attributes[key] == value


def _readable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


# --- the pure function -----------------------------------------------------------
@given(attributes_strategy, errors, details, st.randoms(use_true_random=False))
@hyp_settings(max_examples=300, deadline=None)
def test_any_input_gives_publishable_attributes(attributes, error, detail, rnd):
    result = dead_letter_attributes(attributes, error, detail)

    assert_fits_pubsub(result)
    assert_originals_unchanged(result, attributes)
    assert result[ERROR] == error
    # detail: the longest prefix (of its readable form) within the value limit.
    readable = _readable(detail).encode("utf-8")
    got = result[DETAIL].encode("utf-8")
    assert readable.startswith(got)
    assert got == readable or len(readable) > MAX_VALUE_BYTES >= len(got) > MAX_VALUE_BYTES - 4

    eligible = _in_order(k for k, v in attributes.items() if _publishable(k, v))
    if len(eligible) == len(attributes) <= MAX_ATTRIBUTES - 2:
        # Everything fits: all of it, unchanged, and no bookkeeping.
        assert result == {**attributes, ERROR: error, DETAIL: result[DETAIL]}
    else:
        # As many as fit, the first ones in the documented order; the rest recorded.
        slots = MAX_ATTRIBUTES - 4
        assert [k for k in result if k not in OWN_KEYS] == eligible[:slots]
        dropped = _in_order(k for k in attributes if k not in eligible[:slots])
        assert result[DROPPED_ATTRIBUTES] == str(len(dropped)) != "0"
        listed = json.loads(result[DROPPED_KEYS])
        # Compared as JSON: two lone surrogates that form a pair come back as one character.
        assert [json.dumps(k) for k in listed] == [json.dumps(k) for k in dropped[: len(listed)]]
        if len(listed) < len(dropped):  # cut only where the next key would not fit
            assert len(result[DROPPED_KEYS]) + 1 + len(json.dumps(dropped[len(listed)])) > MAX_VALUE_BYTES

    # Deterministic: the input's order does not matter.
    items = list(attributes.items())
    rnd.shuffle(items)
    assert dead_letter_attributes(dict(items), error, detail) == result


@given(
    attributes_strategy,
    errors,
    details,
    st.text(st.sampled_from("ab-/é"), min_size=1, max_size=300),
    st.one_of(
        st.integers(0, 2000),
        st.integers(MAX_PUBLISH_REQUEST_BYTES - 150_000, MAX_PUBLISH_REQUEST_BYTES),
        st.integers(MAX_PUBLISH_REQUEST_BYTES - 3000, MAX_PUBLISH_REQUEST_BYTES),  # the budget binds
    ),
)
@hyp_settings(max_examples=150, deadline=None)
def test_the_publish_request_stays_under_its_limit(attributes, error, detail, topic, data_bytes):
    from google.pubsub_v1 import types

    budget = publish_attribute_budget(topic, data_bytes)
    result = dead_letter_attributes(attributes, error, detail, budget_bytes=budget)

    assert_fits_pubsub(result)
    assert_originals_unchanged(result, attributes)
    assert attributes_wire_size(result) == types.PubsubMessage(attributes=result)._pb.ByteSize()
    request = types.PublishRequest(
        topic=topic, messages=[types.PubsubMessage(data=b"x" * data_bytes, attributes=result)]
    )
    floor = attributes_wire_size({ERROR: error, DETAIL: "", DROPPED_ATTRIBUTES: str(len(attributes))})
    if budget >= floor:
        assert request._pb.ByteSize() <= MAX_PUBLISH_REQUEST_BYTES
    if budget >= 200_000:  # far from the limit: the budget changes nothing
        assert result == dead_letter_attributes(attributes, error, detail)


def test_hundred_attributes_keep_ninety_six_and_count_the_rest():
    attributes = {f"k{i:03d}": f"v{i}" for i in range(100)}
    result = dead_letter_attributes(attributes, "not_json", "bad bytes")
    assert len(result) == MAX_ATTRIBUTES
    assert {k: result[k] for k in result if k not in OWN_KEYS} == {f"k{i:03d}": f"v{i}" for i in range(96)}
    assert result[DROPPED_ATTRIBUTES] == "4"
    assert json.loads(result[DROPPED_KEYS]) == ["k096", "k097", "k098", "k099"]
    assert (result[ERROR], result[DETAIL]) == ("not_json", "bad bytes")


def test_ninety_eight_attributes_all_fit():
    attributes = {f"k{i:03d}": "v" for i in range(98)}
    result = dead_letter_attributes(attributes, "not_json", "d")
    assert result == {**attributes, ERROR: "not_json", DETAIL: "d"}


def test_event_fields_are_kept_first():
    attributes = {f"a{i:03d}": "v" for i in range(150)} | {"ts": "1", "event_id": "e-1", "zz": "z"}
    result = dead_letter_attributes(attributes, "bad_type", "type 'like'")
    assert result["event_id"] == "e-1" and result["ts"] == "1" and "zz" not in result
    assert result[DROPPED_ATTRIBUTES] == str(153 - 96)


def test_publisher_attributes_named_like_ours_are_recorded_not_overwritten():
    attributes = {"error": "theirs", "detail": "theirs", "dropped_attributes": "7", "origin": "app"}
    result = dead_letter_attributes(attributes, "not_object", "got JSON list")
    assert result == {
        "origin": "app",
        ERROR: "not_object",
        DETAIL: "got JSON list",
        DROPPED_ATTRIBUTES: "3",
        DROPPED_KEYS: '["detail","dropped_attributes","error"]',
    }


def test_keys_pubsub_or_the_client_refuse_are_left_out():
    attributes = {"googclient_schemaname": "s", "topic": "t", "ordering_key": "o", "timeout": "9", "k" * 257: "v"}
    result = dead_letter_attributes(attributes, "not_json", "x")
    assert set(result) == {ERROR, DETAIL, DROPPED_ATTRIBUTES, DROPPED_KEYS}
    assert result[DROPPED_ATTRIBUTES] == "5"


def test_detail_is_cut_in_bytes_at_a_character_boundary():
    detail = "😀" * 500  # 500 characters, 2000 bytes: the old 500-character cut let it through
    result = dead_letter_attributes({}, "bad_id", detail)
    assert result[DETAIL] == "😀" * 256 and len(result[DETAIL].encode()) == MAX_VALUE_BYTES
    assert dead_letter_attributes({}, "bad_id", "é" * 600)[DETAIL] == "é" * 512


def test_a_long_dropped_key_list_stays_one_bounded_value():
    attributes = {f"{'x' * 200}{i:03d}": "v" for i in range(120)}
    result = dead_letter_attributes(attributes, "not_json", "x")
    assert_fits_pubsub(result)
    assert result[DROPPED_ATTRIBUTES] == "24"
    assert 0 < len(json.loads(result[DROPPED_KEYS])) < 24


def test_no_room_left_keeps_error_and_an_empty_detail():
    result = dead_letter_attributes({"a": "b"}, "too_large", "big", budget_bytes=0)
    assert result == {ERROR: "too_large", DETAIL: "", DROPPED_ATTRIBUTES: "1"}


def test_publish_parameters_are_those_of_the_client():
    from google.cloud.pubsub_v1 import PublisherClient

    named = {p.name for p in inspect.signature(PublisherClient.publish).parameters.values() if p.kind != p.VAR_KEYWORD}
    assert named == PUBLISH_PARAMETERS


# --- the publish step, with a client that records what it is given ---------------
class _RecordingPublisher:
    """Takes arguments exactly as ``PublisherClient.publish`` does, and checks Pub/Sub's limits."""

    def __init__(self):
        from google.cloud.pubsub_v1 import PublisherClient

        self._signature = inspect.signature(PublisherClient.publish)
        self.published = []

    def publish(self, *args, **kwargs):
        bound = self._signature.bind(self, *args, **kwargs)  # TypeError on an attribute named "topic"
        assert set(bound.arguments) == {"self", "topic", "data", "attrs"}, "an attribute landed in a parameter"
        self.published.append((bound.arguments["data"], dict(bound.arguments["attrs"])))

        class Done:
            def result(self, timeout=None):
                return "id"

        return Done()


def _publish_step(letters):
    fn = PublishDeadLettersFn(Settings())
    fn._client, fn._topic = _RecordingPublisher(), "projects/p/topics/t-dead-letters"
    fn.start_bundle()
    for letter in letters:
        fn.process(letter)
    (settled,) = [windowed.value for windowed in fn.finish_bundle()]
    # Settled once published: the local runner acks exactly these messages.
    assert settled.message_ids == tuple(letter.message_id for letter in letters)
    assert dict(settled.counts)["dead_lettered"] == len(letters)
    return fn._client.published


def test_publish_step_sends_bytes_untouched_within_the_limits():
    letters = [
        DeadLetter(b"\xff not json", "not_json", "x", {f"k{i:03d}": "v" for i in range(100)}, "m1"),
        DeadLetter(b"[1]", "not_object", "y" * 3000, {"topic": "t", "ordering_key": "o", "error": "e"}, "m2"),
        DeadLetter(b"[2]", "not_object", "😀" * 500, {"origin": "app"}, "m3"),
    ]
    published = _publish_step(letters)
    assert [data for data, _ in published] == [b"\xff not json", b"[1]", b"[2]"]
    for (_, attributes), letter in zip(published, letters):
        assert_fits_pubsub(attributes)
        assert_originals_unchanged(attributes, letter.attributes)
        assert attributes[ERROR] == letter.error
    assert published[2][1]["origin"] == "app"


# --- the real pipeline on the emulators --------------------------------------------
def _publish_raw(settings, messages):
    """Publish with the GAPIC client: ``PublisherClient.publish(**attrs)`` cannot send an
    attribute named ``topic`` or ``ordering_key``, which publishers in other languages can."""
    import grpc
    from google.pubsub_v1 import PublisherClient, PubsubMessage
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    channel = grpc.insecure_channel(settings.pubsub_host)
    try:
        client = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        topic = client.topic_path(settings.project, settings.pubsub.events_topic)
        client.publish(topic=topic, messages=[PubsubMessage(data=d, attributes=a) for d, a in messages], timeout=30)
    finally:
        channel.close()


def _stream_until_idle(settings):
    # Unsupervised: a failing pipeline shows at once instead of after the supervisor's restarts.
    done = subprocess.run(
        [sys.executable, "-m", "streaming", "--no-supervise", *settings.to_argv(), "--idle-exit", "3"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_pipeline_dead_letters_a_message_with_100_attributes(fresh_stack):
    hundred = {f"k{i:03d}": f"v{i}" for i in range(100)}
    data = b"\xff\xfe not utf-8"
    _publish_raw(fresh_stack, [(data, hundred)])

    _stream_until_idle(fresh_stack)

    [letter] = drain(fresh_stack, fresh_stack.pubsub.dead_letter_subscription)
    attributes = dict(letter.attributes)
    assert letter.data == data
    assert len(attributes) <= MAX_ATTRIBUTES  # the emulator would take 102
    assert_fits_pubsub(attributes)
    assert_originals_unchanged(attributes, hundred)
    assert attributes[ERROR] == "not_json" and attributes[DETAIL]
    assert attributes[DROPPED_ATTRIBUTES] == "4"


@pytest.mark.slow
def test_pipeline_dead_letters_attributes_the_publish_call_cannot_take(fresh_stack):
    # Fine on the way in; today's copy + error/detail broke publish() or Pub/Sub's rules.
    awkward = {"topic": "t", "ordering_key": "o", "error": "theirs", "googclient_schemaname": "s", "origin": "app"}
    _publish_raw(fresh_stack, [(b"[1, 2]", awkward), (b"not json", {"origin": "app"})])

    _stream_until_idle(fresh_stack)

    letters = {m.data: dict(m.attributes) for m in drain(fresh_stack, fresh_stack.pubsub.dead_letter_subscription)}
    assert set(letters) == {b"[1, 2]", b"not json"}
    for attributes in letters.values():
        assert_fits_pubsub(attributes)
        assert attributes["origin"] == "app"
    assert letters[b"[1, 2]"][ERROR] == "not_object"
    assert letters[b"[1, 2]"][DROPPED_ATTRIBUTES] == "4"
    assert json.loads(letters[b"[1, 2]"][DROPPED_KEYS]) == ["error", "googclient_schemaname", "ordering_key", "topic"]
