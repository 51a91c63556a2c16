"""Pack seals: `verify --since` reads a pack its pinned checkpoint's signer sealed by the pack's hash. A pack that
changed, a seal that does not verify or does not decode, another key's seal, a revoked sealer: the pack is read
record by record, with the verdicts of a verification without seals."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from openledger import Draft, Ledger, verify_ledger
from openledger.store.canonical import canonical_bytes
from openledger.store.checkpoint import append_checkpoint
from openledger.store.incremental import verify_since
from openledger.store.records import Payload, sign_record
from openledger.store.seals import SEAL_FORMAT, read_seals, seal_path, write_seals
from tests.conftest import FixedClock, make_signer, publish

CI, ADA, EVE = make_signer(81, feed="ci"), make_signer(82, feed="ada"), make_signer(83, feed="eve")


def sealed_ledger(ledger: Ledger, *, pack_checkpoint: bool = False) -> tuple[str, list[str]]:
    """CI and Ada trusted; Ada's records packed, a CI checkpoint, the pack sealed by CI (as `openledger ci`
    does), then new loose records."""
    ledger.clock = FixedClock()
    publish(ledger, CI, "CI")
    publish(ledger, ADA, "Ada")
    covered = [r.id for r in ledger.append_many(ADA, [Draft("feedback", {"target": f"t{i}", "score": i})
                                                      for i in range(8)])]
    ledger.pack()
    report = verify_ledger(ledger, workers=1)
    pinned = append_checkpoint(ledger, CI, report).id
    if pack_checkpoint:
        ledger.pack()
        report = verify_ledger(ledger, workers=1)
    assert write_seals(ledger, CI, report.summaries)
    for i in range(3):
        ledger.append(ADA, "feedback", {"target": f"new{i}", "score": i})
    return pinned, covered


def outcome(report: Any) -> tuple[int, int, int, list[tuple[str, str, str | None]]]:
    return (report.records, report.feeds, report.checkpoints,
            sorted((p.severity, p.code, p.record) for p in report.problems))


def same_as_without_seals(ledger: Ledger, pinned: str) -> Any:
    sealed = verify_since(ledger, pinned, workers=1)
    unsealed = verify_since(ledger, pinned, workers=1, seals=False)
    assert sealed.since == unsealed.since
    assert outcome(sealed) == outcome(unsealed)
    return sealed


def the_pack(ledger: Ledger) -> Path:
    return next(pack for pack in ledger.pack_paths() if read_seals(ledger, CI.keyid, [pack]))


def seal_with(ledger: Ledger, signer: Any, pack: Path, body: bytes, **header: Any) -> Path:
    """A seal of ``pack`` with any body, validly signed by ``signer``."""
    data = pack.read_bytes()
    fields = {"format": SEAL_FORMAT, "pack": pack.name, "sha256": hashlib.sha256(data).hexdigest(),
              "key": signer.keyid, "records": 0, "body": hashlib.sha256(body).hexdigest(), **header}
    header_bytes = canonical_bytes(fields)
    path = seal_path(ledger, pack, signer.keyid)
    path.parent.mkdir(exist_ok=True)
    signature = signer.sign(SEAL_FORMAT.encode() + b"\n" + header_bytes)
    path.write_bytes(base64.b64encode(signature) + b"\n" + header_bytes + b"\n" + body)
    return path


def lying_summaries(ledger: Ledger, victim: str) -> dict[str, tuple[Any, ...]]:
    """What a verification found, except that ``victim`` is dated a year earlier: a time-order warning that only
    a reader who believes the seal reports."""
    summaries: dict[str, tuple[Any, ...]] = dict(verify_ledger(ledger, workers=1).summaries)
    record = verify_ledger(ledger, workers=1).summaries[victim]
    summaries[victim] = record._replace(time="2025" + record.time[4:])
    return summaries


def test_a_sealed_pack_is_read_from_its_seal_with_the_same_verdicts(ledger: Ledger) -> None:
    pinned, covered = sealed_ledger(ledger)
    sealed = read_seals(ledger, CI.keyid)
    assert len(sealed) == 1
    (pack,) = sealed.values()
    assert sorted(row[0] for row in pack.rows) == sorted(covered)  # Ada's feedback, from the seal
    assert len(pack.full) == 2  # the two identities, which are always checked in full
    report = same_as_without_seals(ledger, pinned)
    assert report.since == pinned and outcome(report) == outcome(verify_ledger(ledger, workers=1, against=pinned))
    assert outcome(report)[3] == []


def test_what_the_ci_key_seals_is_what_incremental_verification_believes(ledger: Ledger) -> None:
    """The trust a seal asks for is the trust the pinned checkpoint asks for: its signer's word. A full
    verification does not read seals."""
    pinned, covered = sealed_ledger(ledger)
    pack = the_pack(ledger)
    seal_path(ledger, pack, CI.keyid).unlink()
    assert write_seals(ledger, CI, lying_summaries(ledger, covered[3]))
    believed = verify_since(ledger, pinned, workers=1)
    assert outcome(believed)[3] == [("warning", "time-order", covered[3])]
    assert outcome(verify_since(ledger, pinned, workers=1, seals=False))[3] == []
    assert outcome(verify_ledger(ledger, workers=1, against=pinned))[3] == []


@pytest.mark.parametrize("pack_checkpoint", [False, True])
def test_another_keys_seal_is_not_believed(ledger: Ledger, pack_checkpoint: bool) -> None:
    """Eve seals the pack with a lie. With the pinned checkpoint loose, only CI's seals are read; packed (its
    signer unknown until the records are read), the seals of the key that sealed most packs are read, and the
    verification runs again without them once it shows that key is not the pinned checkpoint's signer."""
    pinned, covered = sealed_ledger(ledger, pack_checkpoint=pack_checkpoint)
    for seal in (ledger.root / "seals").iterdir():
        seal.unlink()
    assert write_seals(ledger, EVE, lying_summaries(ledger, covered[3]))
    assert read_seals(ledger, CI.keyid) == {}
    report = same_as_without_seals(ledger, pinned)
    assert outcome(report)[3] == []


def test_a_revoked_sealers_seals_are_dropped(ledger: Ledger) -> None:
    """A CI key revoked from a time after the pinned checkpoint: the checkpoint stands, its seals do not (a
    thief of the key could have written them)."""
    pinned, covered = sealed_ledger(ledger)
    pack = the_pack(ledger)
    seal_path(ledger, pack, CI.keyid).unlink()
    assert write_seals(ledger, CI, lying_summaries(ledger, covered[3]))
    ledger.append(CI, "revocation", {"key": CI.keyid, "reason": "laptop stolen",
                                     "compromised_since": "2030-01-01T00:00:00Z"})
    report = verify_since(ledger, pinned, workers=1)
    assert report.since == pinned
    assert not any(p.code == "time-order" for p in report.problems)
    assert outcome(report) == outcome(verify_since(ledger, pinned, workers=1, seals=False))


def test_a_record_changed_in_a_sealed_pack_is_caught(ledger: Ledger) -> None:
    pinned, covered = sealed_ledger(ledger)
    pack = the_pack(ledger)
    data = pack.read_bytes()
    line = next(line for line in data.split(b"\n") if line and covered[5][7:] == hashlib.sha256(
        base64.b64decode(orjson.loads(line)["payload"])).hexdigest())
    payload = base64.b64decode(orjson.loads(line)["payload"])
    forged = payload.replace(b'"score":5', b'"score":9')
    assert forged != payload
    pack.chmod(0o644)
    pack.write_bytes(data.replace(base64.b64encode(payload), base64.b64encode(forged)))
    assert read_seals(ledger, CI.keyid) == {}  # the pack no longer hashes to what was sealed
    report = same_as_without_seals(ledger, pinned)
    assert report.errors and report.exit_code(strict=False) == 1
    full = verify_ledger(ledger, workers=1, against=pinned)
    # the forged line is a record the checkpoint does not cover, checked in full: its signature fails; the
    # record it replaced is missing, from the checkpoint and from its successor's prev
    assert {p.code for p in report.errors} == {p.code for p in full.errors} == {
        "bad-signature", "checkpoint-missing-records", "missing-prev"}


def _flip(content: bytes, where: int) -> bytes:
    return content[:where] + bytes([content[where] ^ 1]) + content[where + 1:]


@pytest.mark.parametrize("damage", [
    "empty", "garbage", "signature", "header", "body", "truncated", "one line", "a directory", "huge nesting",
])
def test_a_seal_that_does_not_hold_is_ignored(ledger: Ledger, damage: str) -> None:
    pinned, _ = sealed_ledger(ledger)
    path = seal_path(ledger, the_pack(ledger), CI.keyid)
    content = path.read_bytes()
    first, second = content.index(b"\n"), content.index(b"\n", content.index(b"\n") + 1)
    damaged = {
        "empty": b"", "garbage": b"\x00\xff" * 100, "signature": _flip(content, 5),
        "header": _flip(content, first + 20), "body": _flip(content, second + 30),
        "truncated": content[:-10], "one line": content[:first], "a directory": None,
        "huge nesting": content[:second + 1] + b"[" * 100_000 + b"]" * 100_000,
    }[damage]
    path.unlink()
    if damaged is None:
        path.mkdir()
    else:
        path.write_bytes(damaged)
    assert read_seals(ledger, CI.keyid) == {}
    report = same_as_without_seals(ledger, pinned)
    assert outcome(report)[3] == []


@pytest.mark.parametrize("body", [
    {"ids": "zz" * 32},  # not hex
    {"ids": "AB" * 32},  # hex, but not a record id's spelling
    {"kind": [7]},  # no such kind
    {"kind": [-1]},
    {"actor": ["x"]},
    {"seq": ["0"]},
    {"time": [5]},
    {"prev": [{"a": 1}]},
    {"prev": [["not an id"]]},
    {"prev": [[None]]},
    {"full": [["x", 1]]},
    {"full": "all"},
    {"ids": 5},
    {"kinds": [3]},
    {"kinds": ["checkpoint"]},  # rows of the kinds always checked in full: their bodies are not in a seal
    {"kinds": ["identity"]},
    {"kinds": ["cosignature"]},
    {"full": [[1, 10**12]]},  # a "line" past the pack's end
    {"full": [[3, 5]]},  # not a whole line
    "not an object",
])
def test_a_body_the_ci_key_signed_but_that_does_not_decode_is_ignored(ledger: Ledger, body: Any) -> None:
    """Even a validly signed seal is decoded defensively: a body of the wrong shape makes the pack read record
    by record, never a crash."""
    pinned, _ = sealed_ledger(ledger)
    pack = the_pack(ledger)
    good = orjson.loads(seal_path(ledger, pack, CI.keyid).read_bytes().split(b"\n", 2)[2])
    assert len(good["kind"]) == 8
    if isinstance(body, dict):
        for field, value in body.items():
            if isinstance(value, list) and field not in ("full", "kinds"):
                good[field] = value + good[field][len(value):]  # the first row's value replaced
            elif field == "ids" and isinstance(value, str):
                good[field] = value + good[field][64:]
            else:
                good[field] = value
        bad = canonical_bytes(good)
    else:
        bad = canonical_bytes(body)
    seal_with(ledger, CI, pack, bad)
    assert read_seals(ledger, CI.keyid) == {}
    assert outcome(same_as_without_seals(ledger, pinned))[3] == []


def test_sealing_twice_writes_the_same_bytes_and_skips_what_is_sealed(ledger: Ledger, tmp_path: Path) -> None:
    """Two CI runs sealing the same pack with the same key write the same file, so seals merge like packs."""
    sealed_ledger(ledger)
    path = seal_path(ledger, the_pack(ledger), CI.keyid)
    before = path.read_bytes()
    summaries = verify_ledger(ledger, workers=1).summaries
    assert write_seals(ledger, CI, summaries) == []  # already sealed
    path.unlink()
    assert write_seals(ledger, CI, summaries) == [path]
    assert path.read_bytes() == before


def test_a_pack_with_a_record_the_verification_did_not_find_sound_is_not_sealed(ledger: Ledger) -> None:
    _, covered = sealed_ledger(ledger)
    pack = the_pack(ledger)
    seal_path(ledger, pack, CI.keyid).unlink()
    summaries = dict(verify_ledger(ledger, workers=1).summaries)
    del summaries[covered[4]]  # one record of the pack
    assert write_seals(ledger, CI, summaries) == []


def test_a_body_swapped_under_a_valid_header_is_ignored(ledger: Ledger) -> None:
    """The signature covers the header, and the header the body's hash: a well-formed body from elsewhere (here
    one that dates a record a year earlier) under the honest header does not count."""
    pinned, covered = sealed_ledger(ledger)
    path = seal_path(ledger, the_pack(ledger), CI.keyid)
    honest = path.read_bytes()
    path.unlink()
    assert write_seals(ledger, CI, lying_summaries(ledger, covered[3]))
    lying_body = path.read_bytes().split(b"\n", 2)[2]
    signature, header, _ = honest.split(b"\n", 2)
    path.write_bytes(signature + b"\n" + header + b"\n" + lying_body)
    assert read_seals(ledger, CI.keyid) == {}
    assert outcome(same_as_without_seals(ledger, pinned))[3] == []


def test_fsck_knows_seals_and_names_strangers_among_them(ledger: Ledger) -> None:
    sealed_ledger(ledger)
    stranger = ledger.root / "seals" / "notes.txt"
    stranger.write_text("hello")
    report = ledger.fsck()
    assert report.unexpected == (str(stranger),)
    assert report.corrupt == ()


def test_new_records_that_were_packed_are_found_in_their_pack_and_checked_in_full(ledger: Ledger) -> None:
    """A pull request that appended enough to pack: the records the pin does not cover are read from their pack
    line (not through the index, whose first use in a fresh clone reads every record); a forged one fails."""
    pinned, _ = sealed_ledger(ledger)
    new = [r.id for r in ledger.append_many(ADA, [Draft("feedback", {"target": f"late{i}", "score": i})
                                                  for i in range(4)])]
    ledger.pack()
    assert not any((ledger.root / "objects" / i[7:9] / i[9:]).exists() for i in new)
    assert outcome(same_as_without_seals(ledger, pinned))[3] == []
    pack = next(p for p in ledger.pack_paths() if not read_seals(ledger, CI.keyid, [p]))
    data = pack.read_bytes()
    line = next(line for line in data.split(b"\n") if line and new[2][7:] == hashlib.sha256(
        base64.b64decode(orjson.loads(line)["payload"])).hexdigest())
    envelope = orjson.loads(line)
    forged = base64.b64encode(EVE.sign(b"not the payload")).decode()
    pack.write_bytes(data.replace(line, line.replace(envelope["signatures"][0]["sig"].encode(), forged.encode())))
    report = same_as_without_seals(ledger, pinned)
    (problem,) = report.errors
    assert (problem.code, problem.record) == ("bad-signature", new[2])
    assert problem.location is not None and problem.location.startswith(str(pack) + "@")
    # a full verification names the pack line only (it cannot tell the record's id from a bad line), and so
    # also reports the next record's prev as missing
    assert ("bad-signature", None) in [(p.code, p.record) for p in verify_ledger(ledger, workers=1,
                                                                                 against=pinned).errors]


def _eves_lying_seal(ledger: Ledger, *, junk: int = 3) -> None:
    """Eve (a key nobody trusts) seals Ada's pack claiming every row is a checkpoint and leaving the identities
    out, and writes junk files so that hers is the key with the most seals."""
    pack = the_pack(ledger)
    body = orjson.loads(seal_path(ledger, pack, CI.keyid).read_bytes().split(b"\n", 2)[2])
    body["kinds"], body["full"] = ["checkpoint"], []
    seal_with(ledger, EVE, pack, canonical_bytes(body))
    for i in range(junk):
        (ledger.root / "seals" / f"junk{i}.{EVE.keyid[8:24]}.seal").write_bytes(b"")


@pytest.mark.parametrize(("pin", "eve"), [("full", "malformed"), ("abbreviated", "malformed"), ("full", "lying")])
def test_with_a_packed_pin_its_signer_is_read_from_its_own_line_not_guessed(ledger: Ledger, pin: str,
                                                                            eve: str) -> None:
    """A packed pin (or one given by a prefix) has no loose object to tell its signer: it is read from the pin's
    own line among the sealed lines, so Eve's seals are never used however many she writes, and the CI key's
    are."""
    pinned, covered = sealed_ledger(ledger, pack_checkpoint=True)
    if eve == "malformed":
        _eves_lying_seal(ledger)
    else:  # well formed, with the identities in place, but dating a record a year early
        write_seals(ledger, EVE, lying_summaries(ledger, covered[3]))
        for i in range(3):
            (ledger.root / "seals" / f"junk{i}.{EVE.keyid[8:24]}.seal").write_bytes(b"")
    since = pinned if pin == "full" else pinned[:19]
    report = verify_since(ledger, since, workers=1)
    assert report.since == pinned and report.sealed == len(covered)  # CI's seal of Ada's pack
    assert outcome(report) == outcome(verify_since(ledger, since, workers=1, seals=False))
    assert outcome(report)[3] == []


def test_a_damaged_loose_copy_of_a_packed_pin_is_an_error_not_a_crash(ledger: Ledger) -> None:
    pinned, _ = sealed_ledger(ledger, pack_checkpoint=True)
    path = ledger.root / "objects" / pinned[7:9] / pinned[9:]
    path.parent.mkdir(exist_ok=True)
    line = next(line for pack in ledger.pack_paths() for line in pack.read_bytes().split(b"\n")
                if line and pinned[7:] == hashlib.sha256(base64.b64decode(orjson.loads(line)["payload"])).hexdigest())
    envelope = orjson.loads(line)
    envelope["signatures"][0]["sig"] = base64.b64encode(EVE.sign(b"x")).decode()
    path.write_bytes(orjson.dumps(envelope))
    report = same_as_without_seals(ledger, pinned)
    assert report.errors


def test_a_seal_header_is_small_or_not_read(ledger: Ledger) -> None:
    """The header is parsed before its signature can be checked (it names the key): a large one is refused
    unread, so a compressible seal cannot cost gigabytes of parsing."""
    pinned, _ = sealed_ledger(ledger)
    path = seal_path(ledger, the_pack(ledger), CI.keyid)
    signature, _, body = path.read_bytes().split(b"\n", 2)
    path.write_bytes(signature + b"\n" + b"[" + b"[]," * 2_000_000 + b"[]]\n" + body)
    assert read_seals(ledger, CI.keyid) == {}
    assert outcome(same_as_without_seals(ledger, pinned))[3] == []


def test_seals_are_never_written_or_read_through_a_symlink(ledger: Ledger, tmp_path: Path) -> None:
    pinned, _ = sealed_ledger(ledger)
    seals = ledger.root / "seals"
    outside = tmp_path / "outside"
    seals.rename(outside)
    seals.symlink_to(outside)
    assert read_seals(ledger, CI.keyid) == {}
    for seal in outside.iterdir():
        seal.unlink()
    assert write_seals(ledger, CI, verify_ledger(ledger, workers=1).summaries) == []
    assert list(outside.iterdir()) == []
    assert str(seals) in ledger.fsck().unexpected
    assert outcome(same_as_without_seals(ledger, pinned))[3] == []


def test_a_packed_copy_nobody_checked_is_not_sealed(ledger: Ledger) -> None:
    """A record stored twice, loose and packed: a verification may check the loose copy only, so the sealing
    key checks the packed line itself before vouching for it."""
    _, covered = sealed_ledger(ledger)
    pack = the_pack(ledger)
    seal_path(ledger, pack, CI.keyid).unlink()
    summaries = verify_ledger(ledger, workers=1).summaries
    data = pack.read_bytes()
    line = next(line for line in data.split(b"\n") if line and covered[1][7:] == hashlib.sha256(
        base64.b64decode(orjson.loads(line)["payload"])).hexdigest())
    loose = ledger.root / "objects" / covered[1][7:9] / covered[1][9:]
    loose.parent.mkdir(exist_ok=True)
    loose.write_bytes(line)  # the sound copy, loose
    envelope = orjson.loads(line)
    envelope["signatures"][0]["sig"] = base64.b64encode(EVE.sign(b"x")).decode()
    pack.write_bytes(data.replace(line, orjson.dumps(envelope)))  # a bad signature in the pack
    assert write_seals(ledger, CI, summaries) == []


def test_a_line_listed_twice_among_those_checked_in_full_voids_the_seal(ledger: Ledger) -> None:
    """Each listed line is copied out of the pack: listing one line many times could make a small body cost
    many packs of memory, so lines must be listed once each, in order."""
    pinned, _ = sealed_ledger(ledger)
    pack = the_pack(ledger)
    body = orjson.loads(seal_path(ledger, pack, CI.keyid).read_bytes().split(b"\n", 2)[2])
    assert body["full"]
    body["full"] = [body["full"][0]] * 1000
    seal_with(ledger, CI, pack, canonical_bytes(body))
    assert read_seals(ledger, CI.keyid) == {}
    assert outcome(same_as_without_seals(ledger, pinned))[3] == []


def test_time_order_in_sealed_packs_gives_the_warnings_of_a_verification_without_seals(ledger: Ledger) -> None:
    """The seal's own columns clear a row that follows a row of its pack dated no later; every other row is
    compared as without seals: one dated before the last record of another pack, one dated before its in-pack
    prev (also stored loose: reported once), and every row of a pack with a time in another spelling."""
    ledger.clock = FixedClock()
    publish(ledger, CI, "CI")
    publish(ledger, ADA, "Ada")
    first = ledger.append_many(ADA, [Draft("feedback", {"target": f"t{i}", "score": i}) for i in range(3)])
    ledger.pack()
    start = datetime.fromisoformat(first[-1].time.replace("Z", "+00:00"))
    across = ledger.append(ADA, "feedback", {"target": "across", "score": 1}, time=start - timedelta(hours=1))
    later = ledger.append(ADA, "feedback", {"target": "later", "score": 1}, time=start + timedelta(hours=2))
    within = ledger.append(ADA, "feedback", {"target": "within", "score": 1}, time=start + timedelta(hours=1))
    after = ledger.append(ADA, "feedback", {"target": "after", "score": 1}, time=start + timedelta(hours=3))
    ledger.pack()
    ledger._write_loose(ledger.get(within.id))  # also loose: compared once
    payload = Payload(kind="feedback", actor=ADA.keyid, feed=ADA.feed, seq=after.seq + 1, prev=(after.id,),
                      time=(start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.5Z"), links=(),
                      body={"target": "spelled", "score": 1})
    spelled = sign_record(payload, ADA)
    ledger._write_loose(spelled)
    last = ledger.append(ADA, "feedback", {"target": "last", "score": 1}, time=start + timedelta(hours=4))
    ledger.pack()
    report = verify_ledger(ledger, workers=1)
    pinned = append_checkpoint(ledger, CI, report).id
    assert len(write_seals(ledger, CI, report.summaries)) == 3
    packs = [([row[0] for row in pack.rows], {pack.rows[i][0] for i in pack.unordered})
             for pack in read_seals(ledger, CI.keyid).values()]
    # `later` follows `across` and `after` follows `within`, each dated no earlier: settled by the seal
    assert [unordered for rows, unordered in packs if later.id in rows] == [{across.id, within.id}]
    (third,) = [(rows, unordered) for rows, unordered in packs if spelled.id in rows]  # another spelling: all rows
    assert set(third[0]) == third[1] == {within.id, spelled.id, last.id}  # `within` packed again, from loose
    report = same_as_without_seals(ledger, pinned)
    assert report.sealed == 10
    warned = [p.record for p in report.problems if p.code == "time-order"]
    assert sorted(warned) == sorted([across.id, within.id, spelled.id])
