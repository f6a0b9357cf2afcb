"""Table, topic and row-key naming."""

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import layout


def test_ids_carry_the_prefix():
    assert layout.TableIds.for_prefix("shop-").as_dict() == {
        "users": "shop-users",
        "items": "shop-items",
        "contributions": "shop-contributions",
        "similarities": "shop-similarities",
        "meta": "shop-meta",
        "recent": "shop-recent",
        "sessions": "shop-sessions",
    }
    names = layout.PubSubNames.for_prefix("shop-")
    assert names.topics() == {"events": "shop-events", "dead_letter": "shop-events-dead-letter"}
    assert names.subscriptions()["events"] == ("shop-events-fold", "shop-events")


@pytest.mark.parametrize("prefix", ["bad prefix ", "-x", "x" * 60])
def test_invalid_table_prefixes_are_refused(prefix):
    with pytest.raises(ValueError):
        layout.TableIds.for_prefix(prefix)


def test_pubsub_ids_must_start_with_a_letter():
    with pytest.raises(ValueError, match="start with a letter"):
        layout.PubSubNames.for_prefix("1-")


_ids = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=128)


@given(_ids, _ids)
def test_row_keys_are_salted_and_reversible(first, second):
    key = layout.item_row_key(first)
    assert layout.id_from_row_key(key) == first and key[4:5] == b"#"
    pair = layout.user_item_key(first, second)
    assert layout.ids_from_pair_key(pair) == (first, second)
    assert pair.startswith(layout.user_prefix(first)) and layout.user_prefix(first).startswith(key)
    assert layout.ids_from_pair_key(layout.item_user_key(first, second)) == (first, second)
    with pytest.raises(ValueError):
        layout.id_from_row_key(pair)


@given(_ids, _ids)
def test_a_prefix_names_exactly_one_entity(first, other):
    """A user's rows are exactly the keys under its prefix: no other id's rows fall in it."""
    if first != other:
        assert not layout.user_item_key(other, "x").startswith(layout.user_prefix(first))


def test_sequential_ids_spread_over_the_key_space():
    salts = {layout.item_row_key(str(n))[:1] for n in range(1000)}
    assert len(salts) == 16


def test_generation_cells_are_millisecond_timestamps():
    assert layout.generation_cell_micros(1_700_000_000_123) == 1_700_000_000_123_000
    assert layout.generation_of_cell(1_700_000_000_123_000) == 1_700_000_000_123
    assert layout.pass_row_key(5) < layout.pass_row_key(40)


def test_catalog_log_keys_sort_by_write_time_and_parse_back():
    early, late = layout.catalog_log_key(999, "b"), layout.catalog_log_key(1_000, "a")
    assert early < late and layout.catalog_log_start(1_000) <= late and layout.catalog_log_start(1_000) > early
    assert layout.parse_catalog_log_key(late) == (1_000, "a")
    assert layout.parse_catalog_log_key(layout.catalog_log_key(5, "0f3a#9")) == (5, "0f3a#9")
    with pytest.raises(ValueError):
        layout.parse_catalog_log_key(b"catalog#12#x")


@given(st.integers(0, 253402300799999), st.integers(0, 10**6), _ids, _ids)
def test_recent_cell_timestamps_keep_ms_granularity_and_event_order(ts_ms, later_by, first, second):
    micros = layout.recent_cell_micros(ts_ms, first)
    assert micros % 1000 == 0 and 0 <= micros < 2**63
    assert micros == layout.recent_cell_micros(ts_ms, first)  # a re-delivery rewrites the same cell
    if ts_ms + later_by <= layout._RECENT_MAX_MS:
        assert layout.recent_event_ms(micros) == ts_ms
        if later_by:
            assert layout.recent_cell_micros(ts_ms + later_by, second) > micros


def test_recent_row_keys_use_the_users_salt():
    assert layout.recent_row_key("u1") + layout.PAIR_SEPARATOR == layout.user_prefix("u1")


def test_salted_ranges_cover_every_key_in_order():
    ranges = layout.salted_ranges(16)
    assert ranges[0] == (b"", b"1") and ranges[-1] == (b"f", None) and len(ranges) == 16
    assert all(end == following for (_, end), (following, _) in zip(ranges, ranges[1:]))
    for item in ("a", "sku-1", "\u00e9t\u00e9", "z" * 128):
        key = layout.item_row_key(item)
        [(start, end)] = [(s, e) for s, e in layout.salted_ranges() if s <= key and (e is None or key < e)]
        assert key[:2] == start or start == b""
    with pytest.raises(ValueError):
        layout.salted_ranges(100)


def test_session_keys_and_rows():
    gap = layout.SESSION_GAP // timedelta(milliseconds=1)
    # A shop's session id is the session; without one, the user's window of event time.
    assert layout.session_key("u1", "visit-9", 5) == "visit-9"
    assert layout.session_key("u1", None, 5) == layout.session_key("u1", None, gap - 1)
    assert layout.session_key("u1", None, gap) != layout.session_key("u1", None, gap - 1)
    assert layout.session_key("u1", None, 5) != layout.session_key("u2", None, 5)
    # The item and the session of one id are different rows, and each key gives its id back.
    assert layout.item_sessions_key("x") != layout.session_row_key("x")
    implicit = layout.session_key("u1", None, 5)
    assert layout.id_from_sessions_key(layout.session_row_key(implicit)) == implicit
    assert layout.id_from_sessions_key(layout.item_sessions_key("sku-1")) == "sku-1"
    with pytest.raises(ValueError):
        layout.id_from_sessions_key(layout.item_row_key("sku-1"))
