"""Deterministic JSON: the byte encoding that record ids and signatures are computed over.

Rules: object keys sorted by code point, no insignificant whitespace, UTF-8 (no ``\\u`` escapes except for
control characters), integers within 64 bits (-2**63 to 2**64 - 1), floats in their shortest round-trip form
(``0.1``, ``1e-7``, ``1e+16``), as orjson writes them. JSON has no NaN or infinities but MLflow metrics may
be non-finite, so a non-finite float is written as the one-key object
``{"$float": "NaN" | "Infinity" | "-Infinity"}`` and read back as a float (``$float`` is a reserved key).

Verifiers never need to re-encode (signatures cover the exact bytes); OpenLedger does, to refuse any
payload that is not in this one canonical spelling.

Nesting is limited to :data:`MAX_DEPTH` levels of arrays and objects, checked on the bytes before they are
parsed: a signed record of ``[[[[…`` must be a named bad record, not a ``RecursionError`` in whatever walks it.

>>> canonical_bytes({"b": 1, "a": [float("nan")]})
b'{"a":[{"$float":"NaN"}],"b":1}'
>>> import math; math.isnan(parse_canonical(b'{"x":{"$float":"NaN"}}')["x"])
True
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from openledger.errors import BadInputError

__all__ = ["FLOAT_TAG", "MAX_DEPTH", "FrozenDict", "FrozenList", "NestingError", "canonical_bytes", "check_depth",
           "frozen_json", "has_nonfinite", "parse_canonical", "tag_nonfinite", "untag_nonfinite"]

FLOAT_TAG = "$float"
_NONFINITE_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_FLOAT_TAG_BYTES = b'"$float"'
_OPTIONS = orjson.OPT_SORT_KEYS

#: How deeply arrays and objects may nest in a record's payload (the payload object itself is level 1).
MAX_DEPTH = 64
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_OPENERS = frozenset(b"[{")


class NestingError(ValueError):
    """JSON nested deeper than :data:`MAX_DEPTH` levels."""


def check_depth(data: bytes, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`NestingError` if the JSON in ``data`` nests arrays and objects deeper than ``limit``.

    Without recursion and in linear time: strings are cut out, then the brackets left are counted.

    >>> check_depth(b'{"a":[[1]],"s":"[[[["}', limit=3)
    >>> check_depth(b'[[[[]]]]', limit=3)
    Traceback (most recent call last):
    openledger.store.canonical.NestingError: JSON nested deeper than 3 levels
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return
    depth = 0
    for byte in _NOT_BRACKET.sub(b"", _STRING.sub(b"", data)):
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                raise NestingError(f"JSON nested deeper than {limit} levels")
        else:
            depth -= 1


def _float_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


_FINITE_TYPES = frozenset({str, int, bool, type(None)})


def has_nonfinite(value: Any) -> bool:
    """Whether a non-finite float is anywhere in ``value``. A container of strings and numbers other than floats
    (a report's million record ids) is passed over at C speed."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return False
    return not set(map(type, items)) <= _FINITE_TYPES and any(map(has_nonfinite, items))


def tag_nonfinite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its ``{"$float": ...}`` tag (JSON-safe)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {FLOAT_TAG: _float_name(value)}
    if isinstance(value, dict):
        return {key: tag_nonfinite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [tag_nonfinite(item) for item in value]
    return value


def untag_nonfinite(value: Any) -> Any:
    """The inverse of :func:`tag_nonfinite`: every ``{"$float": ...}`` tag back to its float."""
    if isinstance(value, dict):
        untagged = {key: untag_nonfinite(item) for key, item in value.items()}
        return _untag(untagged)
    if isinstance(value, list):
        return [untag_nonfinite(item) for item in value]
    return value


def _unsupported(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def canonical_bytes(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes; raises BadInputError for what JSON cannot hold."""
    try:
        encoded = orjson.dumps(value, option=_OPTIONS, default=_unsupported)
        # orjson writes a non-finite float as null: only output with a null can hide one.
        if b"null" in encoded and has_nonfinite(value):
            encoded = orjson.dumps(tag_nonfinite(value), option=_OPTIONS, default=_unsupported)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise BadInputError(f"cannot encode as JSON: {exc}") from None
    return encoded


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and FLOAT_TAG in obj:
        name = obj[FLOAT_TAG]
        if name in _NONFINITE_NAMES:
            return _NONFINITE_NAMES[name]
    return obj


def parse_canonical(data: bytes) -> Any:
    """Parse JSON bytes written by :func:`canonical_bytes`, restoring tagged non-finite floats.

    Raises ``ValueError`` on malformed input (``orjson.JSONDecodeError`` is one; :class:`NestingError` for
    input nested deeper than :data:`MAX_DEPTH`).
    """
    check_depth(data)
    if _FLOAT_TAG_BYTES in data:
        return json.loads(data, object_hook=_untag)
    return orjson.loads(data)


def _read_only(self: object, *args: object, **kwargs: object) -> Any:
    raise TypeError(f"{type(self).__name__} is read-only: a record's body is what was signed")


class FrozenDict(dict):  # type: ignore[type-arg]
    """A JSON object that cannot change: a record's body, and every object inside it. Still a ``dict`` (JSON
    Schema validators, orjson and ``isinstance`` checks read it as one); every method that would change it
    raises ``TypeError``."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


class FrozenList(list):  # type: ignore[type-arg]
    """A JSON array that cannot change (see :class:`FrozenDict`)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = clear = extend = insert = pop = remove = reverse = sort = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))


_SCALARS = frozenset({str, int, float, bool, type(None)})


def frozen_json(value: Any) -> Any:
    """A deep, read-only copy of a JSON value (objects become :class:`FrozenDict`, arrays :class:`FrozenList`).

    >>> body = frozen_json({"tags": ["a"]})
    >>> body["tags"].append("b")
    Traceback (most recent call last):
    ...
    TypeError: FrozenList is read-only: a record's body is what was signed
    """
    kind = type(value)
    # Most objects and arrays hold only scalars: checked by type in C, they are copied in one step (a third of
    # the cost of appending a record was this copy). Subclasses take the item-by-item path.
    if kind is dict or kind is FrozenDict:
        if _SCALARS.issuperset(map(type, value.values())):
            return FrozenDict(value)
    elif (kind is list or kind is tuple or kind is FrozenList) and _SCALARS.issuperset(map(type, value)):
        return FrozenList(value)
    if isinstance(value, dict):
        return FrozenDict({key: frozen_json(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return FrozenList([frozen_json(item) for item in value])
    return value
