"""Records: signed, content-addressed JSON payloads in DSSE envelopes.

A :class:`Payload` is validated once, at construction, against ``schemas/payload.json`` and its kind's body
schema. :func:`sign_record` turns a payload into a :class:`Record` (id = ``sha256:`` of the canonical
payload bytes; envelope signed over ``PAE``). :func:`open_record` is the inverse and the one place where
stored bytes are checked: canonical envelope, id, signature by the payload's own actor, schema.

>>> from openledger.store.keys import generate_signer
>>> signer = generate_signer(feed="demo")
>>> payload = Payload(kind="feedback", actor=signer.keyid, feed="demo", seq=0, prev=(),
...                   time="2026-01-01T00:00:00Z", links=(), body={"target": "x", "label": "ok"})
>>> record = sign_record(payload, signer)
>>> open_record(record.envelope, expected_id=record.id).payload == payload
True
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache, lru_cache
from importlib import resources
from itertools import pairwise
from typing import Any, Protocol

import fastjsonschema

from openledger.errors import BadInputError, HashMismatchError, IntegrityError, SignatureError, UnsupportedVersionError
from openledger.store import ed25519
from openledger.store.canonical import (
    MAX_DEPTH,
    NestingError,
    canonical_bytes,
    check_depth,
    frozen_json,
    parse_canonical,
    tag_nonfinite,
)
from openledger.store.dsse import PAYLOAD_TYPE, Envelope, encode_envelope, pae, parse_envelope
from openledger.store.files import MAX_PAYLOAD_BYTES

# The public surface. The store's own plumbing (assemble_record, decode_stored, record_id_of, sorted_unique,
# validate_payload_json, public_key_of) is importable by the ledger and verify, and not exported.
__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "Payload",
    "Record",
    "RecordSigner",
    "format_time",
    "load_schema",
    "open_record",
    "sign_record",
]

SCHEMA_VERSION = 1
_PAYLOAD_FIELDS = ("v", "kind", "actor", "feed", "seq", "prev", "time", "links", "body")
KINDS = (
    "identity",
    "revocation",
    "dataset",
    "stage",
    "run",
    "model",
    "review",
    "feedback",
    "commit",
    "checkpoint",
    "cosignature",
    "anchor",
    "attribution",
)


class RecordSigner(Protocol):
    """What signing needs: a key id, a feed and a detached Ed25519 signature."""

    @property
    def keyid(self) -> str: ...

    @property
    def feed(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, the only time format records use."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema shipped in the package for ``payload`` or a kind's body."""
    text = resources.files("openledger").joinpath("schemas", f"{name}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(name: str) -> Callable[[Any], Any]:
    validate: Callable[[Any], Any] = fastjsonschema.compile(load_schema(name))
    return validate


def _validate(name: str, data: Any, label: str) -> None:
    try:
        _validator(name)(data)
    except fastjsonschema.JsonSchemaException as exc:
        text = getattr(exc, "message", str(exc))
        message = text.replace("data.", f"{label}.", 1).replace("data ", f"{label} ", 1)
        if message.endswith("cannot be validated by any definition"):
            message = load_schema(name).get("x-requirement", message)
        raise BadInputError(f"invalid {label}: {message}") from None


def public_key_of(keyid: str) -> bytes:
    """The raw Ed25519 public key a key id names (``ed25519:<hex>``)."""
    return bytes.fromhex(keyid.partition(":")[2])


def record_id_of(payload_bytes: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload_bytes).hexdigest()


_KIND_SET = frozenset(KINDS)
_PAYLOAD_FIELD_SET = frozenset(_PAYLOAD_FIELDS)
_RECORD_ID = re.compile(r"sha256:[0-9a-f]{64}")
_KEYID = re.compile(r"ed25519:[0-9a-f]{64}")
_FEED = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
_DIGEST = re.compile(r"[a-z0-9]+:[0-9a-f]{16,128}(\.dir)?")


def _sorted_strings(values: Any, pattern: re.Pattern[str]) -> bool:
    if type(values) is tuple and len(values) < 2:  # the common case: one prev, at most one link
        return not values or (isinstance(values[0], str) and pattern.fullmatch(values[0]) is not None)
    return (
        isinstance(values, tuple)
        and all(isinstance(v, str) and pattern.fullmatch(v) for v in values)
        and all(a < b for a, b in pairwise(values))
    )


def _common_field_problem(kind: Any, actor: Any, feed: Any, seq: Any, prev: Any, time: Any, links: Any,
                          body: Any) -> str | None:
    """Why the common fields break ``schemas/payload.json`` (plus sorting), or None.

    Hand-written because it runs on every append and every verified record: the compiled JSON Schema costs
    as much as the signature. A test checks the two agree.
    """
    if not isinstance(kind, str) or kind not in _KIND_SET:  # a list or object is not hashable
        return f"unknown kind {kind!r} (one of {', '.join(KINDS)})"
    if not isinstance(actor, str) or not _KEYID.fullmatch(actor):
        return "actor must be a key id (ed25519:<64 hex>)"
    if not isinstance(feed, str) or not _FEED.fullmatch(feed):
        return "feed must be 1-64 characters of A-Z a-z 0-9 . _ -"
    if type(seq) is not int or seq < 0:
        return "seq must be a non-negative integer"
    if not _sorted_strings(prev, _RECORD_ID):
        return "prev must be sorted, unique record ids"
    if (seq == 0) != (not prev):
        return "a record has prev exactly when its seq is above 0"
    if not isinstance(time, str) or not _TIME.fullmatch(time):
        return "time must be RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)"
    if not _sorted_strings(links, _DIGEST):
        return "links must be sorted, unique digests (algorithm:hex)"
    if not isinstance(body, dict):
        return "body must be a JSON object"
    return None


def _check_structure(data: Any) -> dict[str, Any]:
    """The shape every decoded payload must have before its fields are read: an object with exactly the v1
    fields, ``prev`` and ``links`` arrays; a newer version is reported as such (not as corruption)."""
    if not isinstance(data, dict):
        raise BadInputError("record payload must be a JSON object")
    version = data.get("v")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise UnsupportedVersionError(
            f"record schema version {version} is newer than this OpenLedger reads ({SCHEMA_VERSION})",
            hint="upgrade openledger-mlops",
        )
    if data.keys() != _PAYLOAD_FIELD_SET:
        missing = [name for name in _PAYLOAD_FIELDS if name not in data]
        extra = sorted(set(data) - set(_PAYLOAD_FIELDS))
        raise BadInputError(f"invalid record: missing {missing}, unexpected {extra}")
    if version != SCHEMA_VERSION:
        raise BadInputError(f"invalid record: unknown schema version {version!r}")
    if not isinstance(data["prev"], list) or not isinstance(data["links"], list):
        raise BadInputError("invalid record: prev and links must be arrays")
    return data


def validate_payload_json(data: Any) -> None:
    """Check a decoded payload against the v1 schema without building a :class:`Payload` (verify's path)."""
    data = _check_structure(data)
    problem = _common_field_problem(data["kind"], data["actor"], data["feed"], data["seq"], tuple(data["prev"]),
                                    data["time"], tuple(data["links"]), data["body"])
    if problem:
        raise BadInputError(f"invalid record: {problem}")
    _validate(data["kind"], data["body"], f"{data['kind']} body")


@dataclass(frozen=True, slots=True)
class Payload:
    """The signed content of a record.

    Invariants (checked at construction): every field matches ``schemas/payload.json``; ``body`` matches the
    kind's schema; ``prev`` and ``links`` are sorted and unique; ``seq`` is 0 exactly when ``prev`` is empty;
    ``body`` is a deep read-only copy of the mapping given (see :func:`~openledger.store.canonical.frozen_json`).
    """

    kind: str
    actor: str
    feed: str
    seq: int
    prev: tuple[str, ...]
    time: str
    links: tuple[str, ...]
    body: Mapping[str, Any] = field(hash=False)
    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.v != SCHEMA_VERSION:
            raise UnsupportedVersionError(
                f"record schema version {self.v} is not supported (this OpenLedger reads version "
                f"{SCHEMA_VERSION})",
                hint="upgrade openledger-mlops",
            )
        problem = _common_field_problem(
            self.kind, self.actor, self.feed, self.seq, self.prev, self.time, self.links, self.body
        )
        if problem:
            raise BadInputError(f"invalid record: {problem}")
        _validate(self.kind, self.body, f"{self.kind} body")
        # The payload owns a read-only copy: a caller changing its dict later cannot make the body disagree
        # with the bytes that were signed.
        object.__setattr__(self, "body", frozen_json(self.body))

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "kind": self.kind,
            "actor": self.actor,
            "feed": self.feed,
            "seq": self.seq,
            "prev": list(self.prev),
            "time": self.time,
            "links": list(self.links),
            "body": self.body,
        }

    @classmethod
    def from_json(cls, data: Any) -> Payload:
        data = _check_structure(data)  # the fields' own checks run once, in __post_init__
        return cls(
            v=data["v"],
            kind=data["kind"],
            actor=data["actor"],
            feed=data["feed"],
            seq=data["seq"],
            prev=tuple(data["prev"]),
            time=data["time"],
            links=tuple(data["links"]),
            body=data["body"],
        )

    def encode(self) -> bytes:
        """The canonical bytes that are signed; a payload beyond the limits a reader enforces is refused here,
        before anything is written (:data:`~openledger.store.files.MAX_PAYLOAD_BYTES`,
        :data:`~openledger.store.canonical.MAX_DEPTH`)."""
        data = canonical_bytes(self.to_json())
        if len(data) > MAX_PAYLOAD_BYTES:
            raise BadInputError(f"a {self.kind} record of {len(data):,} bytes is larger than the "
                                f"{MAX_PAYLOAD_BYTES:,} a record may have",
                                hint="record what describes the work (paths, digests); keep the data in DVC or MLflow")
        try:
            check_depth(data)
        except NestingError:
            raise BadInputError(f"a {self.kind} record may nest arrays and objects {MAX_DEPTH} levels deep at "
                                "most") from None
        return data


@dataclass(frozen=True, slots=True)
class Record:
    """A signed record as stored: its id, payload, the exact payload bytes and the envelope bytes."""

    id: str
    payload: Payload
    payload_bytes: bytes = field(repr=False)
    envelope: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    @property
    def kind(self) -> str:
        return self.payload.kind

    @property
    def actor(self) -> str:
        return self.payload.actor

    @property
    def feed(self) -> str:
        return self.payload.feed

    @property
    def seq(self) -> int:
        return self.payload.seq

    @property
    def prev(self) -> tuple[str, ...]:
        return self.payload.prev

    @property
    def time(self) -> str:
        return self.payload.time

    @property
    def links(self) -> tuple[str, ...]:
        return self.payload.links

    @property
    def body(self) -> Mapping[str, Any]:
        return self.payload.body

    def to_json(self) -> dict[str, Any]:
        """The decoded record as ``log --format json`` prints it (non-finite floats stay tagged)."""
        data = tag_nonfinite(self.payload.to_json())
        return {
            "id": self.id,
            "kind": data["kind"],
            "actor": data["actor"],
            "feed": data["feed"],
            "seq": data["seq"],
            "prev": data["prev"],
            "time": data["time"],
            "links": data["links"],
            "body": data["body"],
        }


def sign_record(payload: Payload, signer: RecordSigner) -> Record:
    if payload.actor != signer.keyid:
        raise BadInputError("a record must be signed by its actor's key")
    payload_bytes = payload.encode()
    signature = signer.sign(pae(PAYLOAD_TYPE, payload_bytes))
    return assemble_record(payload, payload_bytes, record_id_of(payload_bytes), signature)


def assemble_record(payload: Payload, payload_bytes: bytes, record_id: str, signature: bytes) -> Record:
    """A record from a payload, its canonical bytes and id, and the actor's signature over their PAE."""
    return Record(
        id=record_id,
        payload=payload,
        payload_bytes=payload_bytes,
        envelope=encode_envelope(payload_bytes, payload.actor, signature),
        signature=signature,
    )


_public_key = lru_cache(maxsize=4096)(public_key_of)  # a ledger has a few signers; a hostile one, not a million


def _check_signature(keyid: str, payload_type: str, payload: bytes, signature: bytes) -> None:
    try:
        valid = ed25519.verify(_public_key(keyid), pae(payload_type, payload), signature)
    except (ValueError, TypeError) as exc:  # a key id that is not an Ed25519 key
        raise SignatureError("signature does not verify against its key") from exc
    if not valid:
        raise SignatureError("signature does not verify against its key")


def decode_stored(data: bytes, *, expected_id: str | None = None) -> tuple[str, Envelope, dict[str, Any]]:
    """Check stored envelope bytes up to the decoded payload: canonical envelope, id, signature by the
    payload's actor, canonical payload JSON. Returns (record id, envelope, decoded payload); the payload's
    schema is checked by the caller (:func:`open_record` or :func:`validate_payload_json`).

    Raises :class:`IntegrityError` (corrupt, non-canonical, id mismatch), :class:`SignatureError` (bad
    signature, signer is not the actor) or :class:`UnsupportedVersionError` (validly signed data written
    by a newer OpenLedger).
    """
    envelope = parse_envelope(data)
    record_id = record_id_of(envelope.payload)
    if expected_id is not None and record_id != expected_id:
        raise HashMismatchError(f"content hash is {record_id}, not the id it is stored under")
    if envelope.payload_type != PAYLOAD_TYPE:
        if envelope.keyid.startswith("ed25519:") and len(envelope.keyid) == 72:
            _check_signature(envelope.keyid, envelope.payload_type, envelope.payload, envelope.signature)
        raise UnsupportedVersionError(
            f"record uses {envelope.payload_type}, which this OpenLedger cannot read",
            hint="upgrade openledger-mlops",
        )
    _check_signature(envelope.keyid, PAYLOAD_TYPE, envelope.payload, envelope.signature)
    if len(envelope.payload) > MAX_PAYLOAD_BYTES:
        raise IntegrityError(f"payload of {len(envelope.payload):,} bytes, more than the {MAX_PAYLOAD_BYTES:,} a "
                             "record may have", code="oversized")
    try:
        decoded = parse_canonical(envelope.payload)
        canonical = canonical_bytes(decoded)
    except NestingError as exc:
        raise IntegrityError(f"payload is {exc}", code="too-deep") from None
    except (ValueError, BadInputError) as exc:
        raise IntegrityError("payload is not JSON") from exc
    if not isinstance(decoded, dict):
        raise IntegrityError("payload is not a JSON object")
    if canonical != envelope.payload:
        raise IntegrityError("payload is not in canonical form")
    if decoded.get("actor") != envelope.keyid:
        raise SignatureError(f"signed by {envelope.keyid}, but the record's actor is {decoded.get('actor')}")
    return record_id, envelope, decoded


def open_record(data: bytes, *, expected_id: str | None = None) -> Record:
    """Check stored envelope bytes (see :func:`decode_stored`) and the schema, and return the record."""
    record_id, envelope, decoded = decode_stored(data, expected_id=expected_id)
    try:
        payload = Payload.from_json(decoded)
    except UnsupportedVersionError:
        raise
    except BadInputError as exc:
        raise IntegrityError(exc.message) from None
    return Record(
        id=record_id,
        payload=payload,
        payload_bytes=envelope.payload,
        envelope=data,
        signature=envelope.signature,
    )


def sorted_unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))
