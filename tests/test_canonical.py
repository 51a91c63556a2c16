import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openledger.store.canonical import canonical_bytes, has_nonfinite, parse_canonical, tag_nonfinite
from openledger_cli._common import to_json


def test_sorted_compact_utf8() -> None:
    assert canonical_bytes({"b": 1, "a": {"é": [1, 2.5, None, True]}}) == '{"a":{"é":[1,2.5,null,true]},"b":1}'.encode()


def test_non_finite_floats_are_tagged_and_restored() -> None:
    data = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 1.0}
    encoded = canonical_bytes(data)
    assert encoded == b'{"inf":{"$float":"Infinity"},"nan":{"$float":"NaN"},"ninf":{"$float":"-Infinity"},"ok":1.0}'
    decoded = parse_canonical(encoded)
    assert math.isnan(decoded["nan"]) and decoded["inf"] == math.inf and decoded["ninf"] == -math.inf


def test_bare_nan_literal_is_not_json() -> None:
    # JSON has no NaN literal; a payload spelling it so is refused rather than read.
    with pytest.raises(ValueError):
        parse_canonical(b'{"x":NaN}')


@pytest.mark.parametrize(
    ("value", "spelling"),
    [(1e-7, b"1e-7"), (1e16, b"1e+16"), (0.1, b"0.1"), (1.0, b"1.0"), (-0.0, b"-0.0"),
     (2**63 - 1, b"9223372036854775807"), ("\x1f\u2028é", '"\\u001f\u2028é"'.encode())],
)
def test_spellings(value: object, spelling: bytes) -> None:
    assert canonical_bytes(value) == spelling


def test_what_json_cannot_hold_is_bad_input() -> None:
    from openledger import BadInputError

    for value in [2**64, {1: "int key"}, {"x": object()}, b"bytes"]:
        with pytest.raises(BadInputError):
            canonical_bytes(value)


def test_none_does_not_trigger_tagging() -> None:
    assert canonical_bytes({"a": None, "b": 1.5}) == b'{"a":null,"b":1.5}'
    assert canonical_bytes({"a": None, "b": math.inf}) == b'{"a":null,"b":{"$float":"Infinity"}}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(),
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


@pytest.mark.parametrize("value", [
    {"ids": ["sha256:" + "a" * 64] * 3, "share": 2.7e-05, "none": None, "flag": True, "n": 3},
    {"nested": [{"x": float("nan")}, [1.0, float("-inf")]], "none": None},
    {"big": 2**70, "none": None},
    {"text": "lone \ud800 surrogate", "none": None},
    {"keys": {1: "int keys", 2: "as json writes them"}, "b": [], "c": {}},
    {"float keys": {1e-07: "json writes 1e-07"}, "none": None},
    {"infinite key": {float("inf"): 1}},
])
def test_cli_json_is_what_json_writes_read_back(value: Any) -> None:
    """The CLI's JSON (orjson, json where orjson would write something else) reads back as json's does."""
    expected = json.dumps(tag_nonfinite(value), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    written = to_json(value)
    assert json.loads(written) == json.loads(expected)
    assert has_nonfinite(value) == (written == expected and "$float" in written)


def _frozen_the_long_way(value: Any) -> Any:
    """frozen_json before its one-step copy of flat containers: the reference its fast path must agree with."""
    from openledger.store.canonical import FrozenDict, FrozenList

    if isinstance(value, dict):
        return FrozenDict({key: _frozen_the_long_way(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return FrozenList([_frozen_the_long_way(item) for item in value])
    return value


def _shape(value: Any) -> Any:
    """Every container's exact type, and the scalars, so that two frozen copies can be compared strictly."""
    if isinstance(value, dict):
        return (type(value).__name__, [(key, _shape(item)) for key, item in value.items()])
    if isinstance(value, list):
        return (type(value).__name__, [_shape(item) for item in value])
    return (type(value).__name__, repr(value))


class _Tagged(str):
    """A str subclass (an enum member, say): not one of the scalar types the fast path copies in one step."""


class _Mapping(dict):  # type: ignore[type-arg]
    pass


containers = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
    | st.builds(_Tagged, st.text(max_size=3)),
    lambda children: (st.lists(children, max_size=4) | st.lists(children, max_size=3).map(tuple)
                      | st.dictionaries(st.text(max_size=4), children, max_size=4)
                      | st.dictionaries(st.text(max_size=4), children, max_size=3).map(_Mapping)),
    max_leaves=25,
)


@given(containers)
def test_frozen_json_fast_path_agrees_with_the_long_way(value: Any) -> None:
    """Flat objects and arrays are copied in one step; the copy has the same types, order and items as the
    item-by-item copy, owns every container (the caller's cannot change it), and cannot itself change."""
    from openledger.store.canonical import frozen_json

    frozen = frozen_json(value)
    assert _shape(frozen) == _shape(_frozen_the_long_way(value))
    assert _shape(frozen_json(frozen)) == _shape(frozen)

    def walk(original: Any, copy: Any) -> None:
        if isinstance(original, dict | list | tuple):
            assert copy is not original
            with pytest.raises(TypeError):
                copy.clear()
            items = original.values() if isinstance(original, dict) else original
            copied = copy.values() if isinstance(copy, dict) else copy
            for a, b in zip(items, copied, strict=True):
                walk(a, b)

    walk(value, frozen)
