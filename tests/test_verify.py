"""Verification: every kind of tampering is caught and named; trust, checkpoints and truncation."""

from __future__ import annotations

import base64
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openledger import Draft, Ledger, LedgerConfig, append_checkpoint, verify_ledger
from openledger.store.dsse import PAYLOAD_TYPE, encode_envelope, pae
from openledger.store.records import Payload, sign_record
from tests.conftest import FixedClock, make_signer, publish, store_newer_version_object


def object_path(ledger: Ledger, record_id: str) -> Path:
    return ledger.root / "objects" / record_id[7:9] / record_id[9:]


def overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


def build_ledger(ledger: Ledger, count: int = 12) -> list[str]:
    """Two contributors with published identities, interleaved records, one checkpoint in the middle."""
    ada, bob = make_signer(2, feed="ada"), make_signer(3, feed="bob")
    ids = [publish(ledger, ada, "Ada"), publish(ledger, bob, "Bob")]
    for i in range(count):
        signer = ada if i % 3 else bob
        ids.append(ledger.append(signer, "feedback", {"target": f"t{i}", "score": i}).id)
        if i == count // 2:
            ids.append(append_checkpoint(ledger, ada, verify_ledger(ledger, workers=1)).id)
    return ids


def non_tips(ledger: Ledger) -> list[str]:
    report = verify_ledger(ledger, workers=1)
    followed = {p for s in report.summaries.values() for p in s.prev}
    return sorted(followed)


def named(report_problems: object, record_id: str) -> bool:
    return any(p.record == record_id for p in report_problems)  # type: ignore[attr-defined]


def test_intact_ledger_verifies(ledger: Ledger) -> None:
    build_ledger(ledger)
    report = verify_ledger(ledger, workers=1)
    assert report.problems == () and report.exit_code(strict=True) == 0
    assert (report.records, report.feeds, report.checkpoints) == (15, 2, 1)


def test_parallel_and_serial_verification_agree(ledger: Ledger) -> None:
    signer = make_signer(2)
    publish(ledger, signer, "Ada")
    ledger.append_many(signer, [Draft("feedback", {"target": f"t{i}", "score": i}) for i in range(5000)])
    victim = ledger.append(signer, "feedback", {"target": "x", "label": "y"})
    ledger.append(signer, "feedback", {"target": "x", "label": "z"})
    overwrite(object_path(ledger, victim.id), victim.envelope.replace(b'"payload":"e', b'"payload":"f'))
    serial, parallel = verify_ledger(ledger, workers=1), verify_ledger(ledger, workers=2)
    assert serial.problems == parallel.problems and serial.records == parallel.records == 5002
    assert [p.record for p in parallel.errors] == [victim.id]


def test_flipped_byte_is_named(ledger: Ledger) -> None:
    ids = build_ledger(ledger)
    path = object_path(ledger, ids[5])
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01
    overwrite(path, bytes(data))
    report = verify_ledger(ledger, workers=1)
    assert report.exit_code(strict=False) == 1
    assert [p.record for p in report.errors] == [ids[5]]


def test_deleted_middle_record_is_named_by_its_successor(ledger: Ledger) -> None:
    build_ledger(ledger)
    victim = non_tips(ledger)[3]
    object_path(ledger, victim).unlink()
    report = verify_ledger(ledger, workers=1)
    assert report.exit_code(strict=False) == 1
    assert any(p.code == "missing-prev" and victim in p.message for p in report.errors)


def test_replaced_signature(ledger: Ledger) -> None:
    ids = build_ledger(ledger)
    path = object_path(ledger, ids[4])
    envelope = json.loads(path.read_bytes())
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
    overwrite(path, encode_envelope(base64.b64decode(envelope["payload"]), envelope["signatures"][0]["keyid"],
                                    bytes(64)))
    report = verify_ledger(ledger, workers=1)
    assert [(p.record, p.code) for p in report.errors] == [(ids[4], "bad-signature")]


def test_swapped_objects_are_both_named(ledger: Ledger) -> None:
    ids = build_ledger(ledger)
    a, b = object_path(ledger, ids[3]), object_path(ledger, ids[6])
    data_a, data_b = a.read_bytes(), b.read_bytes()
    overwrite(a, data_b)
    overwrite(b, data_a)
    report = verify_ledger(ledger, workers=1)
    assert {p.record for p in report.errors} == {ids[3], ids[6]}
    assert {p.code for p in report.errors} == {"hash-mismatch"}


def test_modified_record_resigned_by_unendorsed_key(endorsed_ledger: Ledger) -> None:
    ledger = endorsed_ledger
    root, ada = make_signer(1, feed="root"), make_signer(2, feed="ada")
    publish(ledger, root, "Root")
    publish(ledger, ada, "Ada")
    ledger.append(root, "identity", {"key": ada.keyid, "name": "Ada", "email": "ada@example.org"})
    original = ledger.append(ada, "feedback", {"target": "model:iris@1", "score": 0.5})
    mallory = make_signer(66, feed=original.feed)
    # 1. In place: same file name, payload changed and re-signed by Mallory's key.
    forged = sign_record(Payload(**{**_fields(original.payload), "actor": mallory.keyid,
                                    "body": {"target": "model:iris@1", "score": 0.99}}), mallory)
    path = object_path(ledger, original.id)
    saved = path.read_bytes()
    overwrite(path, forged.envelope)
    report = verify_ledger(ledger, workers=1)
    assert report.exit_code(strict=False) == 1 and named(report.errors, original.id)
    # 2. Stored properly under its own id, original deleted (it was a tip): a record by an unendorsed key.
    path.unlink()
    target = object_path(ledger, forged.id)
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(forged.envelope)
    report = verify_ledger(ledger, workers=1)
    assert report.exit_code(strict=True) == 1
    assert any(p.record == forged.id and p.code == "unendorsed-key" for p in report.warnings)
    # 3. Same payload, signature replaced by Mallory's over the same bytes: signer is not the actor.
    target.unlink()
    overwrite_new(path, encode_envelope(original.payload_bytes, mallory.keyid,
                                        mallory.sign(pae(PAYLOAD_TYPE, original.payload_bytes))))
    report = verify_ledger(ledger, workers=1)
    assert [(p.record, p.code) for p in report.errors] == [(original.id, "bad-signature")]
    overwrite(path, saved)
    assert verify_ledger(ledger, workers=1).exit_code(strict=True) == 0


def overwrite_new(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _fields(payload: Payload) -> dict[str, Any]:
    return {name: getattr(payload, name) for name in
            ("kind", "actor", "feed", "seq", "prev", "time", "links", "body", "v")}


def test_corrupt_pack_line_is_named(ledger: Ledger) -> None:
    signer = make_signer(2)
    records = ledger.append_many(signer, [Draft("feedback", {"target": f"t{i}", "score": i}) for i in range(200)])
    pack = ledger.pack_paths()[0]
    pack.chmod(0o644)
    pack.write_bytes(pack.read_bytes().replace(records[50].envelope[:60], records[50].envelope[:59] + b"X"))
    report = verify_ledger(ledger, workers=1)
    assert report.exit_code(strict=False) == 1
    assert any(p.location and str(pack) in p.location for p in report.errors)


def test_truncation_after_checkpoint_is_caught_against_it(ledger: Ledger) -> None:
    build_ledger(ledger)
    ada = make_signer(2, feed="ada")
    pinned = append_checkpoint(ledger, ada, verify_ledger(ledger, workers=1))
    assert verify_ledger(ledger, workers=1, against=pinned.id).exit_code(strict=True) == 0
    # Delete the newest records, the checkpoint among them: the chain alone cannot tell.
    report = verify_ledger(ledger, workers=1)
    newest = sorted(report.summaries.values(), key=lambda s: s.time)[-3:]
    for summary in newest:
        object_path(ledger, summary.id).unlink()
    assert verify_ledger(ledger, workers=1).errors == []
    report = verify_ledger(ledger, workers=1, against=pinned.id)
    assert report.exit_code(strict=False) == 1
    assert [p.code for p in report.errors] == ["checkpoint-not-found"]


def test_truncation_below_a_surviving_checkpoint(ledger: Ledger) -> None:
    ids = build_ledger(ledger)
    bob = make_signer(3, feed="bob")
    checkpoint = append_checkpoint(ledger, bob, verify_ledger(ledger, workers=1))
    ada_tip = checkpoint.body["feeds"]["ada"][0]
    object_path(ledger, ada_tip).unlink()
    report = verify_ledger(ledger, workers=1)
    assert any(p.code == "checkpoint-missing-records" and p.record == checkpoint.id for p in report.errors)
    assert ids


def test_untrusted_signers_warn_and_fail_only_under_strict(ledger: Ledger) -> None:
    stranger = make_signer(9)
    record = ledger.append(stranger, "feedback", {"target": "x", "label": "y"})
    report = verify_ledger(ledger, workers=1)
    assert [(p.record, p.code) for p in report.warnings] == [(record.id, "unknown-key")]
    assert report.exit_code(strict=False) == 0 and report.exit_code(strict=True) == 1


def test_tofu_identity_conflict(ledger: Ledger) -> None:
    real, impostor = make_signer(2, feed="a"), make_signer(3, feed="b")
    publish(ledger, real, "Ada")
    ledger.append(impostor, "identity", {"key": impostor.keyid, "name": "Ada", "email": "ada@example.org"})
    report = verify_ledger(ledger, workers=1)
    # neither claim wins by its claimed time: both keys are in conflict, and the email itself is contested
    assert {(p.code, p.record) for p in report.warnings if p.code == "identity-conflict"} == {
        ("identity-conflict", r.id) for r in ledger.select(kind="identity")}
    assert [p.code for p in report.warnings if p.code != "identity-conflict"] == ["email-contested"]


def test_endorsed_mode_and_revocation(endorsed_ledger: Ledger, clock: FixedClock) -> None:
    ledger = endorsed_ledger
    root, ada = make_signer(1, feed="root"), make_signer(2, feed="ada")
    publish(ledger, ada, "Ada")
    early = ledger.append(ada, "feedback", {"target": "x", "label": "before endorsement"})
    assert verify_ledger(ledger, workers=1).exit_code(strict=True) == 1  # not yet endorsed
    ledger.append(root, "identity", {"key": ada.keyid, "name": "Ada", "email": "ada@example.org"})
    assert verify_ledger(ledger, workers=1).exit_code(strict=True) == 0
    ledger.append(ada, "revocation", {"key": ada.keyid, "reason": "laptop stolen"})
    late = ledger.append(ada, "feedback", {"target": "x", "label": "after revocation"})
    report = verify_ledger(ledger, workers=1)
    assert [(p.record, p.code) for p in report.warnings] == [(late.id, "revoked-key")]
    assert early.id not in {p.record for p in report.problems}
    # A revocation by someone who is neither the key nor a root does not count.
    ledger.append(make_signer(5, feed="x"), "revocation", {"key": root.keyid, "reason": "spite"})
    codes = {p.code for p in verify_ledger(ledger, workers=1).warnings}
    assert "ignored-trust-record" in codes


def test_unsupported_version_object_is_exit_2(ledger: Ledger) -> None:
    signer = make_signer(2)
    publish(ledger, signer, "Ada")
    store_newer_version_object(ledger.root, signer)
    report = verify_ledger(ledger, workers=1)
    assert report.exit_code(strict=False) == 2
    assert [p.code for p in report.problems] == ["unsupported-version"]


MUTATIONS = ["flip", "delete", "resign", "swap", "forge"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=st.sampled_from(MUTATIONS), seed=st.integers(0, 10_000))
def test_property_random_tampering_is_always_caught(tmp_path_factory: pytest.TempPathFactory, mutation: str,
                                                    seed: int) -> None:
    """Any mutation of the kinds an attacker with write access can make fails verify and names a record."""
    rng = random.Random(seed)
    base = _pristine_ledger(tmp_path_factory)
    work = tmp_path_factory.mktemp("mutated")
    shutil.copytree(base, work / "l")
    ledger = Ledger.open(work / "l" / ".openledger")
    report = verify_ledger(ledger, workers=1)
    followed = sorted({p for s in report.summaries.values() for p in s.prev})
    everything = sorted(report.summaries)
    victim = rng.choice(everything)
    path = object_path(ledger, victim)
    data = path.read_bytes()
    strict = False
    if mutation == "flip":
        position = rng.randrange(len(data))
        overwrite(path, data[:position] + bytes([data[position] ^ (1 << rng.randrange(8))]) + data[position + 1:])
    elif mutation == "delete":
        victim = rng.choice(followed)
        object_path(ledger, victim).unlink()
    elif mutation == "resign":
        mallory = make_signer(99)
        other = bytes(64) if rng.random() < 0.5 else mallory.sign(b"anything")
        envelope = json.loads(data)
        overwrite(path, encode_envelope(base64.b64decode(envelope["payload"]), envelope["signatures"][0]["keyid"],
                                        other))
    elif mutation == "swap":
        second = rng.choice([i for i in everything if i != victim])
        other_path = object_path(ledger, second)
        other_data = other_path.read_bytes()
        overwrite(other_path, data)
        overwrite(path, other_data)
    else:  # forge: a modified copy of the record, re-signed by an unendorsed key, stored under the old name
        mallory = make_signer(98)
        opened = ledger.get(victim)
        fields = _fields(opened.payload)
        fields["actor"] = mallory.keyid
        forged = sign_record(Payload(**fields), mallory)
        overwrite(path, forged.envelope)
        strict = rng.random() < 0.5
    result = verify_ledger(ledger, workers=1)
    assert result.exit_code(strict=strict) == 1
    assert any(victim == p.record or victim in p.message for p in result.errors)


_PRISTINE: dict[str, Path] = {}


def _pristine_ledger(factory: pytest.TempPathFactory) -> Path:
    if "path" not in _PRISTINE:
        repo = factory.mktemp("pristine")
        ledger = Ledger.init(repo, LedgerConfig(trust_mode="endorsed", trust_roots=(make_signer(2).keyid,)))
        ledger.clock = FixedClock()
        build_ledger(ledger)
        ledger.close()
        _PRISTINE["path"] = repo
    return _PRISTINE["path"]
