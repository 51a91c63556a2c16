"""DSSE envelopes (the in-toto / Sigstore signing envelope) in OpenLedger's canonical form.

A record is stored as exactly one envelope, encoded as canonical JSON::

    {"payload":"<base64>","payloadType":"application/vnd.openledger.record.v1+json",
     "signatures":[{"keyid":"ed25519:<hex>","sig":"<base64>"}]}

The signature is Ed25519 over ``PAE(payloadType, payload)``, the DSSE pre-authentication encoding, so a
verifier in any language checks bytes and never re-serialises JSON.

>>> pae("t", b"hi")
b'DSSEv1 1 t 2 hi'
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass

import pybase64

from openledger.errors import IntegrityError
from openledger.store.canonical import NestingError, check_depth
from openledger.store.files import MAX_ENVELOPE_BYTES

__all__ = ["PAYLOAD_TYPE", "Envelope", "encode_envelope", "envelope_payload", "envelope_payload_v1", "pae",
           "parse_envelope"]

PAYLOAD_TYPE = "application/vnd.openledger.record.v1+json"
_PAYLOAD_TYPE_PREFIX = "application/vnd.openledger.record.v"

# The canonical envelope is a fixed template around three values, so a well-formed object is parsed by
# slicing (the payload's base64 alphabet is checked by the strict decoder); anything else takes the slow
# path, which explains what is wrong.
_HEAD = b'{"payload":"'
_MIDDLE = b'","payloadType":"application/vnd.openledger.record.v1+json","signatures":[{"keyid":"'
_TAIL_LENGTH = 72 + len(b'","sig":"') + 88 + len(b'"}]}')
_ENVELOPE_DEPTH = 3  # {"signatures": [{…}]}
_SIGNATURE_PART = re.compile(rb'(ed25519:[0-9a-f]{64})","sig":"([A-Za-z0-9+/]{86}==)"\}\]\}')


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope: the exact payload bytes, the claimed key id and the raw signature."""

    payload: bytes
    keyid: str
    signature: bytes
    payload_type: str = PAYLOAD_TYPE


def encode_envelope(payload: bytes, keyid: str, signature: bytes) -> bytes:
    """The canonical envelope bytes for a signed payload."""
    return b'{"payload":"%s","payloadType":"%s","signatures":[{"keyid":"%s","sig":"%s"}]}' % (
        pybase64.b64encode(payload),
        PAYLOAD_TYPE.encode(),
        keyid.encode(),
        pybase64.b64encode(signature),
    )


# The base64 characters whose 6 bits end in 4 (before "==") or 2 (before "=") zero bits: a decoder ignores
# those spare bits, so only these spell a last quantum canonically.
_SPARE4_ZERO = frozenset(b"AQgw")
_SPARE2_ZERO = frozenset(b"AEIMQUYcgkosw048")


def _b64decode_strict(text: str | bytes, what: str) -> bytes:
    if isinstance(text, str):
        text = text.encode("ascii", "replace")  # a non-ASCII character becomes "?", which is not base64
    try:
        # pybase64 (SIMD) decodes a record's payload in a quarter of binascii's time, with the same strictness
        # (tests/test_records.py holds it to the standard library's canonical spelling)
        raw = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IntegrityError(f"{what} is not valid base64") from exc
    # Base64 has spare bits in its last character that decoders ignore: only the canonical spelling is
    # accepted, so every byte of a stored object is covered by a check. The length says which quantum is
    # padded (strict mode checks where padding may stand): 4 spare bits before "==", 2 before "=".
    padding = len(raw) % 3
    if (len(text) != (len(raw) + 2) // 3 * 4  # a decoder may let a stray "=" follow a whole quantum
            or (padding == 1 and text[-3] not in _SPARE4_ZERO) or (padding == 2 and text[-2] not in _SPARE2_ZERO)):
        raise IntegrityError(f"{what} is not canonical base64")
    return raw


def parse_envelope(data: bytes) -> Envelope:
    """Parse canonical envelope bytes.

    Raises :class:`IntegrityError` for anything that is not exactly a canonical single-signature envelope;
    the message says what is wrong. A newer ``payloadType`` version is reported as such so the caller can
    tell "written by a newer OpenLedger" from corruption.
    """
    template = _template(data)
    if template is not None:
        middle, match = template
        payload = _b64decode_strict(data[len(_HEAD):middle], "payload")
        signature = _b64decode_strict(match.group(2), "signature")
        return Envelope(payload=payload, keyid=match.group(1).decode(), signature=signature)
    return _parse_envelope_slow(data)


def envelope_payload(data: bytes) -> bytes:
    """The payload bytes of canonical envelope bytes, for reads that do not check the signature.

    The same checks as :func:`parse_envelope`, except that the signature's base64 is only matched against
    the canonical spelling's pattern, not decoded: skipping that decode and the :class:`Envelope` saves a
    sixth of a report's scan of 100k records. The one thing decoding adds, that the last character's spare
    bits are zero, is checked with the signature itself by :meth:`Ledger.get` and ``verify``.
    """
    template = _template(data)
    if template is not None:
        return _b64decode_strict(data[len(_HEAD):template[0]], "payload")
    return parse_envelope(data).payload


def envelope_payload_v1(data: bytes) -> tuple[bytes, bytes]:
    """The payload and the signer's key id of an envelope in exactly the canonical v1 form (the fast path of
    :func:`envelope_payload`); IntegrityError for anything else, even a well-formed envelope of another type."""
    template = _template(data)
    if template is None:
        raise IntegrityError("not a canonical v1 envelope")
    return _b64decode_strict(data[len(_HEAD):template[0]], "payload"), template[1].group(1)


def _template(data: bytes) -> tuple[int, re.Match[bytes]] | None:
    """Where the payload ends and the signature part, when ``data`` has the canonical envelope's shape.

    Every reading of an envelope starts here, so here is where one larger than a record may be is refused.
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise IntegrityError(f"envelope of {len(data):,} bytes, more than the {MAX_ENVELOPE_BYTES:,} a record may have",
                             code="oversized")
    middle = len(data) - _TAIL_LENGTH - len(_MIDDLE)
    if data.startswith(_HEAD) and data.startswith(_MIDDLE, middle):
        match = _SIGNATURE_PART.fullmatch(data, middle + len(_MIDDLE))
        if match is not None:
            return middle, match
    return None


def _parse_envelope_slow(data: bytes) -> Envelope:
    try:
        check_depth(data, _ENVELOPE_DEPTH)
    except NestingError:
        raise IntegrityError("object is not a DSSE envelope (nested too deeply)") from None
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError("object is not JSON") from exc
    if not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}:
        raise IntegrityError("object is not a DSSE envelope (expected payload, payloadType, signatures)")
    payload_type = obj["payloadType"]
    if not isinstance(payload_type, str) or not payload_type.startswith(_PAYLOAD_TYPE_PREFIX):
        raise IntegrityError(f"unexpected payloadType {payload_type!r}")
    signatures = obj["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1 or not isinstance(signatures[0], dict):
        raise IntegrityError("envelope must carry exactly one signature")
    sig = signatures[0]
    if set(sig) != {"keyid", "sig"} or not all(isinstance(v, str) for v in sig.values()):
        raise IntegrityError("signature entry must have string keyid and sig")
    if not isinstance(obj["payload"], str):
        raise IntegrityError("payload must be a base64 string")
    payload = _b64decode_strict(obj["payload"], "payload")
    signature = _b64decode_strict(sig["sig"], "signature")
    envelope = Envelope(payload=payload, keyid=sig["keyid"], signature=signature, payload_type=payload_type)
    if payload_type == PAYLOAD_TYPE:
        # Well-formed but not the canonical spelling (whitespace, key order, key id form, signature length).
        if not re.fullmatch(r"ed25519:[0-9a-f]{64}", sig["keyid"]):
            raise IntegrityError(f"malformed key id {sig['keyid']!r}")
        if len(signature) != 64:
            raise IntegrityError("signature is not 64 bytes")
        raise IntegrityError("envelope is not in canonical form")
    return envelope
