"""Records: the exact bytes (golden files), schemas, and the checks made when stored bytes are opened."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from openledger import BadInputError, IntegrityError, Payload, SignatureError, UnsupportedVersionError
from openledger.store.records import KINDS, load_schema, open_record, sign_record
from tests.conftest import make_signer

GOLDEN = Path(__file__).parent / "golden"


def golden_payload(**overrides: Any) -> Payload:
    signer = make_signer(7, feed="golden-feed")
    fields: dict[str, Any] = {
        "kind": "run",
        "actor": signer.keyid,
        "feed": "golden-feed",
        "seq": 3,
        "prev": ("sha256:" + "ab" * 32,),
        "time": "2026-11-01T12:00:00.000000Z",
        "links": ("md5:0123456789abcdef0123456789abcdef", "sha256:" + "cd" * 32),
        "body": {"run_id": "r1", "status": "FINISHED", "params": {"lr": "0.1", "ünï": "ok"},
                 "metrics": {"acc": 0.93, "loss": math.nan}},
    }
    fields.update(overrides)
    return Payload(**fields)


def test_golden_envelope_bytes() -> None:
    """The exact bytes of a record are a compatibility promise: they must never change silently."""
    record = sign_record(golden_payload(), make_signer(7, feed="golden-feed"))
    expected = (GOLDEN / "run-record.envelope.json").read_bytes()
    assert record.envelope == expected
    assert record.id == (GOLDEN / "run-record.id").read_text().strip()


def test_golden_envelope_checks_independently() -> None:
    """Recompute id, PAE and signature from the golden bytes with nothing but hashlib and PyNaCl."""
    envelope = json.loads((GOLDEN / "run-record.envelope.json").read_bytes())
    payload = base64.b64decode(envelope["payload"])
    assert "sha256:" + hashlib.sha256(payload).hexdigest() == (GOLDEN / "run-record.id").read_text().strip()
    payload_type = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)
    keyid = envelope["signatures"][0]["keyid"]
    VerifyKey(bytes.fromhex(keyid.removeprefix("ed25519:"))).verify(
        pae, base64.b64decode(envelope["signatures"][0]["sig"])
    )
    assert json.loads(payload)["body"]["metrics"]["loss"] == {"$float": "NaN"}
    assert payload.startswith(b'{"actor":"ed25519:')


def test_open_round_trip_restores_nan() -> None:
    record = sign_record(golden_payload(), make_signer(7, feed="golden-feed"))
    opened = open_record(record.envelope, expected_id=record.id)
    assert math.isnan(opened.body["metrics"]["loss"])
    assert opened.payload_bytes == record.payload_bytes


def test_signature_by_another_key_is_rejected() -> None:
    payload = golden_payload()
    record = sign_record(payload, make_signer(7, feed="golden-feed"))
    forged = make_signer(8)
    from openledger.store.dsse import PAYLOAD_TYPE, encode_envelope, pae

    envelope = encode_envelope(record.payload_bytes, forged.keyid, forged.sign(pae(PAYLOAD_TYPE, record.payload_bytes)))
    with pytest.raises(SignatureError, match="actor"):
        open_record(envelope, expected_id=record.id)


def test_sign_requires_actor_key() -> None:
    with pytest.raises(BadInputError):
        sign_record(golden_payload(), make_signer(8))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "nonsense"}, "unknown kind"),
        ({"seq": 0}, "prev exactly when"),
        ({"prev": ("sha256:zz",)}, "prev must be"),
        ({"prev": ("sha256:" + "b" * 64, "sha256:" + "a" * 64)}, "sorted"),
        ({"time": "2026-11-01 12:00"}, "RFC 3339"),
        ({"links": ("not-a-digest",)}, "links"),
        ({"feed": "has space"}, "feed"),
        ({"body": {"status": "FINISHED"}}, "run_id"),
        ({"body": {"run_id": "r", "status": "DONE"}}, "status"),
    ],
)
def test_invalid_payloads_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        golden_payload(**overrides)


def test_newer_schema_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedVersionError) as caught:
        golden_payload(v=2)
    assert "upgrade openledger-mlops" in caught.value.diagnostics()
    data = golden_payload().to_json()
    data["v"] = 2
    with pytest.raises(UnsupportedVersionError):
        Payload.from_json(data)


def test_newer_payload_type_with_valid_signature_is_unsupported_not_tampering() -> None:
    from openledger.store.dsse import pae

    signer = make_signer(7, feed="golden-feed")
    payload = b'{"v":2}'
    newer = "application/vnd.openledger.record.v2+json"
    sig = signer.sign(pae(newer, payload))
    data = json.dumps({"payload": base64.b64encode(payload).decode(), "payloadType": newer,
                       "signatures": [{"keyid": signer.keyid, "sig": base64.b64encode(sig).decode()}]}).encode()
    with pytest.raises(UnsupportedVersionError):
        open_record(data)
    # The same claim with a broken signature is tampering.
    broken = data.replace(b'"sig": "', b'"sig": "A', 1).replace(b'A' + base64.b64encode(sig)[:1], b"A", 1)
    with pytest.raises((IntegrityError, SignatureError)):
        open_record(broken)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b'","payloadType"', b'", "payloadType"'),  # whitespace
        lambda b: b[:-1],  # truncated
        lambda b: b"[" + b + b"]",  # not an envelope
        lambda b: b"\xff\xfe" + b,  # not UTF-8 JSON
    ],
)
def test_non_canonical_or_broken_envelopes_are_integrity_errors(mangle: Any) -> None:
    record = sign_record(golden_payload(), make_signer(7, feed="golden-feed"))
    with pytest.raises(IntegrityError):
        open_record(mangle(record.envelope), expected_id=record.id)


def test_spare_base64_bits_are_caught() -> None:
    """A signature is 64 bytes: its last base64 character has spare bits that decoders ignore."""
    record = sign_record(golden_payload(), make_signer(7, feed="golden-feed"))
    sig_start = record.envelope.index(b'"sig":"') + 7
    last = sig_start + 85  # the 86th base64 character carries 2 spare bits
    char = record.envelope[last:last + 1]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(char) ^ 1:][:1]
    mangled = record.envelope[:last] + twin + record.envelope[last + 1:]
    assert base64.b64decode(mangled[sig_start:sig_start + 88]) == record.signature
    with pytest.raises(IntegrityError, match="canonical"):
        open_record(mangled, expected_id=record.id)


_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _one_changed(case: tuple[bytes, int, int]) -> str:
    """The canonical spelling of some bytes with one character replaced: a spare bit set, a padding sign."""
    raw, character, where = case
    text = base64.b64encode(raw).decode()
    at = where % len(text)
    return text[:at] + _BASE64[character] + text[at + 1:]


def _padding_changed(case: tuple[bytes, str]) -> str:
    raw, change = case
    text = base64.b64encode(raw).decode()
    return text[:-1] if change == "-1" else text + change


@given(st.one_of(
    st.binary(max_size=10).map(lambda raw: base64.b64encode(raw).decode()),  # canonical
    st.text(alphabet=_BASE64 + "= \n\xe9", max_size=14),  # anything near it
    st.tuples(st.binary(min_size=1, max_size=10), st.integers(0, 63), st.integers(0, 20)).map(_one_changed),
    st.tuples(st.binary(max_size=10), st.sampled_from(["=", "==", "A=", "-1"])).map(_padding_changed),
))
def test_base64_is_read_only_in_its_canonical_spelling(text: str) -> None:
    """Payloads and signatures decode only when they are exactly what encoding the bytes writes (no spare bits
    set, no missing, stray or misplaced padding, nothing outside the alphabet), as bytes and as text."""
    from openledger.store.dsse import _b64decode_strict

    canonical = False
    try:
        raw = base64.b64decode(text, validate=True)
        canonical = base64.b64encode(raw).decode() == text
    except ValueError:  # binascii.Error
        pass
    for spelling in (text, text.encode("utf-8")):
        if canonical:
            assert _b64decode_strict(spelling, "payload") == raw
        else:
            with pytest.raises(IntegrityError, match="base64"):
                _b64decode_strict(spelling, "payload")


def example_bodies(keyid: str) -> dict[str, dict[str, Any]]:
    """A valid body of every kind."""
    return {
            "identity": {"key": keyid, "name": "Ada", "email": "ada@example.org"},
            "revocation": {"key": keyid, "reason": "lost laptop"},
            "dataset": {"path": "data/iris.csv", "digest": "md5:0123456789abcdef0123456789abcdef"},
            "stage": {"name": "train", "cmd": "python train.py"},
            "run": {"run_id": "abc", "status": "FINISHED"},
            "model": {"name": "iris", "version": 3},
            "review": {"decision": "approve", "target": "model:iris@3"},
            "feedback": {"target": "model:iris@3", "score": 0.5},
            "commit": {"commit": "0" * 40, "records": 2},
            "checkpoint": {"count": 0, "root": "sha256:" + "0" * 64, "feeds": {}, "previous": None},
            "cosignature": {"checkpoint": "sha256:" + "1" * 64, "origin": "example.com/log", "size": 0,
                            "root": "sha256:" + "0" * 64, "name": "example.com/witness", "timestamp": 1,
                            "signature": "A" * 104, "previous": None},
            "anchor": {"checkpoint": "sha256:" + "1" * 64, "root": "sha256:" + "0" * 64, "size": 0,
                       "method": "rfc3161", "time": "2026-01-01T00:00:00Z", "tsa": "http://127.0.0.1:1/",
                       "token": "AAAA"},
            "attribution": {"target": "data:data", "commit": "0" * 40, "metric": "accuracy",
                            "direction": "maximize", "baseline": 0.5,
                            "datasets": [{"path": "data", "digest": "md5:" + "0" * 32 + ".dir",
                                          "record": "sha256:" + "1" * 64}],
                            "players": [], "mode": "exact", "values": [], "runs": [], "cost": {"runs": 0},
                            "method": {"shapley": "exact", "banzhaf": "exact", "loo": "exact", "confidence": 0.95}},
    }


def test_every_kind_has_a_schema_that_accepts_an_example() -> None:
    signer = make_signer(9)
    examples = example_bodies(signer.keyid)
    assert set(examples) == set(KINDS)
    for kind, body in examples.items():
        assert load_schema(kind)["type"] == "object"
        Payload(kind=kind, actor=signer.keyid, feed="f", seq=0, prev=(), time="2026-01-01T00:00:00Z",
                links=(), body=body)


ids = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


SIGNER_9 = make_signer(9)
BODIES = example_bodies(SIGNER_9.keyid)
digests = st.sampled_from(["md5:" + "0" * 32, "sha256:" + "ab" * 32, "md5:" + "1" * 32 + ".dir",
                           "mlflowrun:" + "c" * 32, "md5:xyz", "sha256:", "nocolon", "MD5:" + "0" * 32])


@given(
    kind=st.sampled_from(KINDS) | st.text(max_size=5),
    actor=st.sampled_from([SIGNER_9.keyid, SIGNER_9.keyid.upper(), "ed25519:" + "0" * 63, "x"]),
    feed=st.text(max_size=70),
    seq=st.integers(-2, 3),
    prev=st.lists(ids | st.text(max_size=4), max_size=3),
    time=st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123Z", "2026-01-01", "x",
                          "2026-01-01T00:00:00.1234567Z"]),
    links=st.lists(digests, max_size=3),
)
def test_fast_common_field_checks_agree_with_published_schema(kind: str, actor: str, feed: str, seq: int,
                                                              prev: list[str], time: str, links: list[str]) -> None:
    """The hand-written checks on the hot path must accept exactly what schemas/payload.json accepts. Every
    kind gets a body valid for it, so every draw compares the common fields (none is skipped)."""
    import fastjsonschema

    body = BODIES.get(kind, {})
    data = {"v": 1, "kind": kind, "actor": actor, "feed": feed, "seq": seq, "prev": sorted(set(prev)),
            "time": time, "links": sorted(set(links)), "body": body}
    try:
        fastjsonschema.validate(load_schema("payload"), data)
        schema_ok = (seq == 0) == (not prev)  # the one rule JSON Schema cannot say
    except fastjsonschema.JsonSchemaException:
        schema_ok = False
    try:
        Payload(kind=kind, actor=actor, feed=feed, seq=seq, prev=tuple(sorted(set(prev))), time=time,
                links=tuple(sorted(set(links))), body=body)
        fast_ok = True
    except BadInputError:
        fast_ok = False
    assert fast_ok == schema_ok, data
