"""Incremental verification (`verify --since CHECKPOINT`): covered records are checked by their bytes,
new ones in full; it still catches a modified covered record and a forged new one."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openledger import Draft, Ledger, LedgerConfig, verify_ledger
from openledger.store.checkpoint import append_checkpoint
from openledger.store.dsse import PAYLOAD_TYPE, encode_envelope, pae
from openledger.store.records import Payload, sign_record
from tests.conftest import FixedClock, make_signer, publish

CI, ADA = make_signer(71, feed="ci"), make_signer(72, feed="ada")


def object_path(ledger: Ledger, record_id: str) -> Path:
    return ledger.root / "objects" / record_id[7:9] / record_id[9:]


def pinned_ledger(ledger: Ledger, *, packed: bool = False) -> tuple[str, list[str], list[str]]:
    """CI and Ada trusted (tofu, identities published); Ada's records, a CI checkpoint, then new records."""
    publish(ledger, CI, "CI")
    publish(ledger, ADA, "Ada")
    covered = [r.id for r in ledger.append_many(ADA, [Draft("feedback", {"target": f"t{i}", "score": i})
                                                      for i in range(6)])]
    if packed:
        ledger.pack()
    pinned = append_checkpoint(ledger, CI, verify_ledger(ledger, workers=1)).id
    new = [ledger.append(ADA, "feedback", {"target": f"new{i}", "score": i}).id for i in range(3)]
    return pinned, covered, new


def outcome(report: object) -> list[tuple[str, str, str | None]]:
    return sorted((p.severity, p.code, p.record) for p in report.problems)  # type: ignore[attr-defined]


@pytest.mark.parametrize("packed", [False, True])
def test_an_intact_ledger_gives_the_same_report(ledger: Ledger, packed: bool) -> None:
    ledger.clock = FixedClock()
    pinned, _, _ = pinned_ledger(ledger, packed=packed)
    full = verify_ledger(ledger, workers=1, against=pinned)
    incremental = verify_ledger(ledger, workers=1, since=pinned)
    assert incremental.since == pinned and full.since is None
    assert (incremental.records, incremental.feeds, incremental.checkpoints) == (full.records, full.feeds,
                                                                                full.checkpoints)
    assert outcome(incremental) == outcome(full) == []
    assert incremental.to_json()["since"] == pinned


def test_a_modified_covered_record_is_caught_by_its_hash(ledger: Ledger) -> None:
    pinned, covered, _ = pinned_ledger(ledger)
    path = object_path(ledger, covered[2])
    envelope = path.read_bytes()
    start = envelope.index(b'"payload":"') + 11
    payload = base64.b64decode(envelope[start:envelope.index(b'"', start)])
    forged = payload.replace(b'"score":2', b'"score":9')
    assert forged != payload
    path.chmod(0o644)
    path.write_bytes(envelope.replace(base64.b64encode(payload), base64.b64encode(forged)))
    report = verify_ledger(ledger, workers=1, since=pinned)
    assert ("error", "hash-mismatch", covered[2]) in outcome(report)
    assert outcome(report) == outcome(verify_ledger(ledger, workers=1, against=pinned))


def test_a_forged_new_record_is_caught(ledger: Ledger) -> None:
    pinned, _, new = pinned_ledger(ledger)
    # a new record whose signature is not its actor's: re-signed by another key under Ada's name
    record = ledger.get(new[1])
    forged = encode_envelope(record.payload_bytes, ADA.keyid, CI.sign(pae(PAYLOAD_TYPE, record.payload_bytes)))
    path = object_path(ledger, new[1])
    path.chmod(0o644)
    path.write_bytes(forged)
    report = verify_ledger(ledger, workers=1, since=pinned)
    assert ("error", "bad-signature", new[1]) in outcome(report)
    assert outcome(report) == outcome(verify_ledger(ledger, workers=1, against=pinned))
    # and one whose body breaks its schema, validly signed
    bad = Payload.__new__(Payload)
    object.__setattr__(bad, "v", 1)
    for name, value in (("kind", "feedback"), ("actor", ADA.keyid), ("feed", "elsewhere"), ("seq", 0), ("prev", ()),
                        ("time", "2026-11-02T00:00:00.000000Z"), ("links", ()), ("body", {"target": "x"})):
        object.__setattr__(bad, name, value)
    signed = sign_record(bad, ADA)
    object_path(ledger, signed.id).parent.mkdir(exist_ok=True)
    object_path(ledger, signed.id).write_bytes(signed.envelope)
    assert ("error", "malformed", signed.id) in outcome(verify_ledger(ledger, workers=1, since=pinned))


def test_a_new_record_out_of_place_in_its_feed_is_caught(ledger: Ledger) -> None:
    """Feeds and time order are checked again only for records the checkpoint does not cover; a validly
    signed new record that skips a sequence number, or is dated before the covered record it follows, is
    reported as a full verification reports it."""
    ledger.clock = FixedClock()
    pinned, _, new = pinned_ledger(ledger)
    last = ledger.get(new[-1]).payload
    for seq, time, code in ((last.seq + 2, "2030-01-01T00:00:00.000000Z", "bad-seq"),
                            (last.seq + 1, "2001-01-01T00:00:00.000000Z", "time-order")):
        forged = Payload(kind="feedback", actor=ADA.keyid, feed=last.feed, seq=seq, prev=(new[-1],), time=time,
                         links=(), body={"target": "late", "score": 1})
        signed = sign_record(forged, ADA)
        object_path(ledger, signed.id).parent.mkdir(exist_ok=True)
        object_path(ledger, signed.id).write_bytes(signed.envelope)
        incremental = verify_ledger(ledger, workers=1, since=pinned)
        assert incremental.since == pinned
        assert (code, signed.id) in {(p.code, p.record) for p in incremental.problems}
        assert outcome(incremental) == outcome(verify_ledger(ledger, workers=1, against=pinned))
        object_path(ledger, signed.id).unlink()


def test_a_missing_or_untrusted_pin_means_a_full_verification(ledger: Ledger, repo: Path) -> None:
    pinned, covered, _ = pinned_ledger(ledger)
    object_path(ledger, covered[-1]).unlink()  # a covered record is gone
    report = verify_ledger(ledger, workers=1, since=pinned)
    assert any(p.code in ("checkpoint-missing-records", "missing-prev") for p in report.errors)
    object_path(ledger, pinned).unlink()  # the pin itself is gone: rewritten history
    report = verify_ledger(ledger, workers=1, since=pinned)
    assert ("error", "checkpoint-not-found", pinned) in outcome(report) and report.since is None

    other = Ledger.init(repo.parent / "other", LedgerConfig(trust_mode="endorsed", trust_roots=(ADA.keyid,)))
    other.append(ADA, "feedback", {"target": "t", "score": 1})
    untrusted = append_checkpoint(other, CI, verify_ledger(other, workers=1)).id  # CI is not endorsed here
    report = verify_ledger(other, workers=1, since=untrusted)
    assert report.since is None  # verified in full instead


def test_covered_signature_bytes_are_not_rechecked(ledger: Ledger) -> None:
    """The documented trust boundary: a covered record's signature is not verified again, its payload is."""
    pinned, covered, _ = pinned_ledger(ledger)
    record = ledger.get(covered[0])
    swapped = encode_envelope(record.payload_bytes, ADA.keyid, bytes(64))
    path = object_path(ledger, covered[0])
    path.chmod(0o644)
    path.write_bytes(swapped)
    assert outcome(verify_ledger(ledger, workers=1, since=pinned)) == []
    assert ("error", "bad-signature", covered[0]) in outcome(verify_ledger(ledger, workers=1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_single_byte_damage_is_caught_as_by_a_full_verification(data: st.DataObject) -> None:
    """Any byte of any object changed: incremental verification fails exactly when a full one does,
    except for the bytes of a covered record's signature (the boundary above)."""
    with tempfile.TemporaryDirectory() as directory:
        damage_and_compare(Ledger.init(Path(directory)), data)


def damage_and_compare(ledger: Ledger, data: st.DataObject) -> None:
    ledger.clock = FixedClock()
    pinned, _, new = pinned_ledger(ledger, packed=data.draw(st.booleans()))
    # what the checkpoint covers: every record before it, the identities included (not itself, not the new ones)
    covered = {r.id for r in ledger.select()} - {*new, pinned}
    files = sorted(p for p in (ledger.root / "objects").rglob("*") if p.is_file() and p.name != ".gitkeep")
    files += sorted((ledger.root / "packs").glob("pack-*.jsonl"))
    target = data.draw(st.sampled_from(files))
    content = bytearray(target.read_bytes())
    position = data.draw(st.integers(0, len(content) - 1))
    content[position] = data.draw(st.integers(0, 255).filter(lambda b: b != content[position]))
    target.chmod(0o644)
    target.write_bytes(bytes(content))
    full = verify_ledger(ledger, workers=1, against=pinned)
    incremental = verify_ledger(ledger, workers=1, since=pinned)
    if bool(full.errors) != bool(incremental.errors):
        # only a covered record's signature may differ: then the full check names bad-signature (and, for a
        # pack line, whose id it does not name, the gap that record leaves in its feed and checkpoint)
        assert not incremental.errors
        codes = {p.code for p in full.errors}
        assert "bad-signature" in codes and codes <= {"bad-signature", "missing-prev", "checkpoint-missing-records"}
        assert {p.record for p in full.errors if p.code == "bad-signature"} <= {*covered, None}


def test_cli_verify_since_and_ci(repo: Path) -> None:
    import json

    from tests.test_cli import run
    from tests.test_witness import CI_SEED, checkpoint, env_for, records

    Ledger.init(repo)
    ci = env_for(CI_SEED, repo.parent / "ci-home", "ci")
    assert run(repo, "keys", "publish", "--name", "CI", "--email", "ci@example.org", env=ci).exit_code == 0
    records(repo, ci, "a", "b")
    pinned = checkpoint(repo, ci)
    records(repo, ci, "c")
    result = run(repo, "verify", "--since", pinned, "--format", "json", env=ci)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["since"] == pinned and data["against"] == pinned and data["records"] == 5
    assert run(repo, "verify", "--since", "sha256:" + "0" * 64, env=ci).exit_code == 1  # not in the ledger
    on_main = dict(ci, GITHUB_ACTIONS="true", GITHUB_EVENT_NAME="push", GITHUB_REF_NAME="main")
    incremental = json.loads(run(repo, "ci", "--against", pinned, "--no-checkpoint", "--format", "json",
                                 env=on_main).stdout)
    assert incremental["ok"] and incremental["verify"]["since"] == pinned
    assert any(note.startswith("incremental verification") for note in incremental["notes"])
    full = json.loads(run(repo, "ci", "--against", pinned, "--full-verify", "--no-checkpoint", "--format", "json",
                          env=on_main).stdout)
    assert full["ok"] and full["verify"]["since"] is None


def _plant(ledger: Ledger, payload: bytes) -> str:
    """A loose object with a canonical envelope around ``payload`` under Ada's key id, signed by nobody."""
    import hashlib

    record_id = "sha256:" + hashlib.sha256(payload).hexdigest()
    object_path(ledger, record_id).parent.mkdir(exist_ok=True)
    object_path(ledger, record_id).write_bytes(encode_envelope(payload, ADA.keyid, bytes(64)))
    return record_id


def _incremental_matches_full(ledger: Ledger, pinned: str, workers: int = 1) -> list[tuple[str, str, str | None]]:
    full = verify_ledger(ledger, workers=workers, against=pinned)
    incremental = verify_ledger(ledger, workers=workers, since=pinned)
    assert incremental.since == pinned
    assert outcome(incremental) == outcome(full)
    assert incremental.exit_code(strict=True) == full.exit_code(strict=True)
    return outcome(incremental)


HOSTILE_CHECKPOINT_BODIES = {
    "feeds is a list": {"count": 1, "root": "sha256:" + "0" * 64, "feeds": []},
    "count is not a number": {"count": "x", "root": "r", "feeds": {}},
    "no feeds": {"count": 1, "root": "r"},
    "a tip is a list": {"count": 1, "root": "r", "feeds": {"f": [[1]]}},
    "previous is a list": {"version": 2, "count": 1, "root": "r", "feeds": {}, "previous": [1]},
    "signature is a number": {"version": 2, "count": 1, "root": "sha256:" + "0" * 64, "feeds": {}, "origin": "o",
                              "signature": 5},
    "the body is a list": [],
}


@pytest.mark.parametrize("body", HOSTILE_CHECKPOINT_BODIES.values(), ids=HOSTILE_CHECKPOINT_BODIES.keys())
def test_a_hostile_new_checkpoint_is_a_problem_not_a_crash(ledger: Ledger, body: object) -> None:
    """Checkpoint records build the tree the covered set comes from: they are checked in full before it is
    built, so a forged one with a body no checkpoint has is reported (found by a hostile review: these
    crashed `verify --since` with a traceback)."""
    import orjson

    pinned, _, _ = pinned_ledger(ledger)
    planted = _plant(ledger, orjson.dumps({"actor": ADA.keyid, "body": body, "feed": "ada", "kind": "checkpoint",
                                           "links": [], "prev": [], "seq": 0, "time": "2027-01-01T00:00:00Z",
                                           "v": 1}, option=orjson.OPT_SORT_KEYS))
    assert ("error", "bad-signature", planted) in _incremental_matches_full(ledger, pinned)


@pytest.mark.parametrize("field", ["feed", "time"])
def test_a_deeply_nested_new_record_is_a_problem_on_all_cores(ledger: Ledger, field: str) -> None:
    """A new record nested 600 deep in a summary field: the light check refuses what a worker could not
    send back (it crashed the parallel `verify --since` with a RecursionError while pickling)."""
    publish(ledger, CI, "CI")
    publish(ledger, ADA, "Ada")
    ledger.append_many(ADA, [Draft("feedback", {"target": f"t{i}", "score": i}) for i in range(4100)])
    pinned = append_checkpoint(ledger, CI, verify_ledger(ledger)).id
    deep = b"[" * 600 + b"]" * 600
    fields = {"feed": b'"ada"', "time": b'"2027-01-01T00:00:00Z"', field: deep}
    planted = _plant(ledger, b'{"actor":"' + ADA.keyid.encode() + b'","body":{"score":1,"target":"x"},"feed":'
                     + fields["feed"] + b',"kind":"feedback","links":[],"prev":[],"seq":0,"time":' + fields["time"]
                     + b',"v":1}')
    problems = _incremental_matches_full(ledger, pinned, workers=2)
    assert planted in {record for _, _, record in problems}


def test_a_time_order_warning_in_covered_records_still_fails_strict(ledger: Ledger) -> None:
    """A checkpoint may cover a warning (only errors stop one): `--strict` fails on it incrementally too."""
    from datetime import datetime, timezone

    publish(ledger, CI, "CI")
    publish(ledger, ADA, "Ada")
    ledger.append(ADA, "feedback", {"target": "a", "score": 1})
    ledger.clock = FixedClock(datetime(2020, 1, 1, tzinfo=timezone.utc))  # the clock jumps back
    ledger.append(ADA, "feedback", {"target": "b", "score": 2})
    ledger.clock = FixedClock(datetime(2027, 1, 1, tzinfo=timezone.utc))
    pinned = append_checkpoint(ledger, CI, verify_ledger(ledger, workers=1)).id
    ledger.append(ADA, "feedback", {"target": "c", "score": 3})
    assert "time-order" in {code for _, code, _ in _incremental_matches_full(ledger, pinned)}


def test_a_new_record_stored_twice_with_one_damaged_copy_is_reported(ledger: Ledger) -> None:
    """A new record packed with its signature and also loose with a damaged one: reported, as in full."""
    from tests.conftest import damage_signature

    pinned, _, new = pinned_ledger(ledger)
    ledger.pack()
    record = ledger.get(new[0])
    object_path(ledger, new[0]).parent.mkdir(exist_ok=True)
    object_path(ledger, new[0]).write_bytes(record.envelope)
    damage_signature(object_path(ledger, new[0]))
    assert ("error", "bad-signature", new[0]) in _incremental_matches_full(ledger, pinned)
