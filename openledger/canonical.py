"""Deterministic JSON: the byte encoding that record ids and signatures are computed over.

Rules: keys sorted by code point, compact separators, UTF-8 (no ``\\u`` escapes for non-ASCII), no
insignificant whitespace. JSON has no NaN or infinities but MLflow metrics may be non-finite, so a
non-finite float is encoded as the one-key object ``{"$float": "NaN" | "Infinity" | "-Infinity"}`` and
decoded back into a float.

>>> canonical_bytes({"b": 1, "a": [float("nan")]})
b'{"a":[{"$float":"NaN"}],"b":1}'
>>> import math; math.isnan(parse_canonical(b'{"x":{"$float":"NaN"}}')["x"])
True
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["FLOAT_TAG", "canonical_bytes", "parse_canonical"]

FLOAT_TAG = "$float"
_NONFINITE_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_FLOAT_TAG_BYTES = b'"$float"'


def _float_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _tag_nonfinite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {FLOAT_TAG: _float_name(value)}
    if isinstance(value, dict):
        return {key: _tag_nonfinite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_nonfinite(item) for item in value]
    return value


_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical_bytes(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes."""
    try:
        text = _encode(value)
    except ValueError:
        # Only reached when a non-finite float is present: the common path pays nothing for the tagging walk.
        text = _encode(_tag_nonfinite(value))
    return text.encode("utf-8")


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and FLOAT_TAG in obj:
        name = obj[FLOAT_TAG]
        if name in _NONFINITE_NAMES:
            return _NONFINITE_NAMES[name]
    return obj


def parse_canonical(data: bytes) -> Any:
    """Parse JSON bytes written by :func:`canonical_bytes`, restoring tagged non-finite floats.

    Raises ``ValueError`` (including ``json.JSONDecodeError`` and ``UnicodeDecodeError``) on malformed input.
    """
    if _FLOAT_TAG_BYTES in data:
        return json.loads(data, object_hook=_untag)
    return json.loads(data)
