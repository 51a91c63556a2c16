import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openledger.canonical import canonical_bytes, parse_canonical


def test_sorted_compact_utf8() -> None:
    assert canonical_bytes({"b": 1, "a": {"é": [1, 2.5, None, True]}}) == '{"a":{"é":[1,2.5,null,true]},"b":1}'.encode()


def test_non_finite_floats_are_tagged_and_restored() -> None:
    data = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 1.0}
    encoded = canonical_bytes(data)
    assert encoded == b'{"inf":{"$float":"Infinity"},"nan":{"$float":"NaN"},"ninf":{"$float":"-Infinity"},"ok":1.0}'
    decoded = parse_canonical(encoded)
    assert math.isnan(decoded["nan"]) and decoded["inf"] == math.inf and decoded["ninf"] == -math.inf


def test_bare_nan_literal_is_not_canonical() -> None:
    # A payload spelling NaN as JSON's non-standard literal must not round-trip to the same bytes.
    assert canonical_bytes(parse_canonical(b'{"x":NaN}')) != b'{"x":NaN}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_round_trip_is_stable(value: object) -> None:
    encoded = canonical_bytes(value)
    assert canonical_bytes(parse_canonical(encoded)) == encoded


def test_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_canonical(b"\xff not json")
