"""Ledger.scan, the reports' one read of the whole ledger: the same records as checked reads, hashes checked,
damaged objects listed, and the envelope read it uses (the payload alone, the signature left to get/verify)."""

from __future__ import annotations

import base64
import os

import pytest

from openledger import Draft, Ledger
from openledger.errors import IntegrityError
from openledger.lineage.graph import LINEAGE_KINDS
from openledger.store.dsse import encode_envelope, envelope_payload, parse_envelope
from tests.conftest import make_signer


def _ledger_with_loose_and_packed(ledger: Ledger) -> list[str]:
    signer, other = make_signer(2), make_signer(3)
    packed = ledger.append_many(signer, [Draft("feedback", {"target": f"t{i}", "score": i}) for i in range(200)])
    loose = [ledger.append(other, "review", {"decision": "approve", "target": "run:ab"}, [packed[0].id])]
    loose.append(ledger.append(other, "dataset", {"path": "data/x", "digest": "md5:" + "a" * 32}))
    assert ledger.pack_paths() and len(ledger.loose_paths()) == 2
    return [r.id for r in (*packed, *loose)]


def test_scan_reads_what_checked_reads_read(ledger: Ledger) -> None:
    ids = _ledger_with_loose_and_packed(ledger)
    damaged: list[tuple[str, str]] = []
    facts = {f.id: f for f in ledger.scan(LINEAGE_KINDS, damaged)}
    assert damaged == [] and set(facts) == set(ids)
    for record_id in ids:
        record, fact = ledger.get(record_id), facts[record_id]
        assert (fact.kind, fact.actor, fact.time, fact.links, fact.body) == (
            record.kind, record.actor, record.time, record.links, dict(record.body))
    assert {f.kind for f in ledger.scan(["review"])} == {"review"}


def test_scan_lists_an_object_changed_behind_the_index(ledger: Ledger) -> None:
    ids = _ledger_with_loose_and_packed(ledger)
    record_id = ids[-2]  # the review, a loose object
    path = ledger.objects / record_id[7:9] / record_id[9:]
    envelope = parse_envelope(path.read_bytes())
    forged = encode_envelope(envelope.payload.replace(b'"approve"', b'"reject"'), envelope.keyid, envelope.signature)
    stat = path.parent.stat()
    path.chmod(0o644)
    path.write_bytes(forged)
    os.utime(path.parent, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the index does not notice the change
    damaged: list[tuple[str, str]] = []
    facts = ledger.scan(LINEAGE_KINDS, damaged)
    assert damaged == [(record_id, "content hash does not match its id")]
    assert {f.id for f in facts} == set(ids) - {record_id}


def test_envelope_payload_checks_the_payload_and_leaves_the_signature_to_verification() -> None:
    keyid, signature = make_signer(2).keyid, bytes(64)
    envelope = encode_envelope(b"a", keyid, signature)  # payload "YQ==": its last character has spare bits
    assert envelope_payload(envelope) == parse_envelope(envelope).payload == b"a"
    with pytest.raises(IntegrityError, match="payload is not canonical base64"):
        envelope_payload(envelope.replace(b'"YQ=="', b'"YR=="'))
    with pytest.raises(IntegrityError, match="not JSON"):
        envelope_payload(b"not an envelope")
    # A signature spelled with spare bits set: parse_envelope (get, verify) refuses it; the scan reads on,
    # since it checks no signature at all.
    sig = base64.b64encode(signature)
    odd = envelope.replace(sig, sig[:-3] + b"B==")
    assert base64.b64decode(sig[:-3] + b"B==") == signature
    with pytest.raises(IntegrityError, match="signature is not canonical base64"):
        parse_envelope(odd)
    assert envelope_payload(odd) == b"a"
