"""Cell codecs: round trips and the golden bytes of the packed format."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import codecs


@given(st.floats(allow_nan=False))
def test_doubles_round_trip(x):
    assert codecs.decode_double(codecs.encode_double(x)) == x


@given(st.integers(-(2**63), 2**63 - 1))
def test_int64_round_trip(n):
    assert codecs.decode_int64(codecs.encode_int64(n)) == n


def test_int64_matches_bigtable_increment_encoding():
    # ReadModifyWrite increments 64-bit big-endian signed integers.
    assert codecs.encode_int64(1) == b"\x00" * 7 + b"\x01"
    assert codecs.encode_int64(-1) == b"\xff" * 8


def test_packed_neighbours_golden_bytes():
    packed = codecs.encode_neighbours([("b", 0.5), ("é", 0.25)])
    assert packed == bytes.fromhex("01000000023fe00000000000003fd000000000000000010002") + "bé".encode()
    assert codecs.decode_neighbours(packed) == [("b", 0.5), ("é", 0.25)]
    assert codecs.encode_neighbours([]) == b"\x01\x00\x00\x00\x00"


@given(st.lists(st.tuples(st.text(max_size=30), st.floats(allow_nan=False)), max_size=60))
def test_packed_neighbours_round_trip(pairs):
    decoded = codecs.decode_neighbours(codecs.encode_neighbours(pairs))
    assert [i for i, _ in decoded] == [i for i, _ in pairs]
    assert all(a == b or (math.isinf(a) and a == b) for (_, a), (_, b) in zip(decoded, pairs))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x02\x00\x00\x00\x00", b"\x01\x00\x00\x00\x01", codecs.encode_neighbours([("ab", 1.0)])[:-1]],
)
def test_bad_packed_data_is_rejected(data):
    with pytest.raises(ValueError):
        codecs.decode_neighbours(data)
