"""The fact cache (``local/facts``): a scan that reads it returns exactly what decoding the packs returns, damaged
lines included; it is keyed by the pack file's stat (any write makes another key), signed with a key outside the
repository, and anything wrong with it is a miss, never an error and never another answer."""

from __future__ import annotations

import base64
import hashlib
import json
import marshal
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from openledger import Draft, Ledger
from openledger.lineage.graph import LINEAGE_KINDS, REPORT_FIELDS, LedgerGraph
from openledger.reports.contributors import contributors_report
from openledger.store import factcache
from openledger.store.dsse import encode_envelope
from openledger.store.factcache import FactCache, PackFacts, cache_key
from openledger.store.ledger import TRUST_KINDS
from tests.conftest import make_signer, publish

CAPTURED = {"assessment_id": "a-1", "name": "correctness", "value": "yes", "label": "yes", "run_id": "r1",
            "trace_id": "tr-1", "source": {"type": "HUMAN", "id": "ann@example.org"}}


@pytest.fixture(autouse=True)
def _no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Packs written in the last two seconds are not kept (see factcache): these tests' packs all are."""
    monkeypatch.setattr(factcache, "_RACY_NS", 0)


def _ledger(ledger: Ledger) -> Ledger:
    signer, other = make_signer(2), make_signer(3)
    publish(ledger, signer, "Ann")
    publish(ledger, other, "Bob")
    ledger.append_many(signer, [Draft("feedback", {**CAPTURED, "target": f"trace:tr-{i}", "score": i})
                                for i in range(150)])
    ledger.append(other, "review", {"decision": "approve", "target": "run:ab"})
    ledger.pack()  # the identities and the review too: the full checks of identities run on pack lines
    ledger.append(other, "dataset", {"path": "data/x", "digest": "md5:" + "a" * 32})  # one stays loose
    # a hand-made pack: a forged identity (sound hash, bad signature), a line that is not JSON, and a
    # checkpoint-kind line whose body is not an object (left out of a lineage scan, as decoding leaves it)
    identity = next(r for r in ledger.checked(["identity"]))
    envelope = json.loads(ledger.stored_bytes(identity.id))
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
    bad_kind = {"v": 1, "kind": "checkpoint", "actor": signer.keyid, "feed": "f", "seq": 0, "time": "t",
                "links": [], "prev": [], "body": []}
    odd = {"payload": base64.b64encode(json.dumps(bad_kind).encode()).decode(),
           "payloadType": envelope["payloadType"], "signatures": envelope["signatures"]}
    lines = [json.dumps(envelope, separators=(",", ":")), "not json at all", json.dumps(odd, separators=(",", ":"))]
    (ledger.packs / f"pack-{'e' * 64}.jsonl").write_text("\n".join(lines) + "\n")
    return ledger


def _scan(ledger: Ledger, kinds: tuple[str, ...] = LINEAGE_KINDS, **options: Any) -> tuple[list[Any], list[Any]]:
    damaged: list[tuple[str, str]] = []
    facts = ledger.scan(kinds, damaged, checked=TRUST_KINDS, **options)
    return sorted(facts, key=lambda f: f.id), damaged


def _files(ledger: Ledger) -> list[Path]:
    directory = ledger.local / "facts"
    return sorted(directory.iterdir()) if directory.is_dir() else []


@pytest.mark.parametrize("kinds", [LINEAGE_KINDS, ("feedback", "identity")])
def test_a_cached_scan_returns_what_decoding_returns(ledger: Ledger, kinds: tuple[str, ...]) -> None:
    _ledger(ledger)
    decoded = _scan(ledger, kinds)
    assert any("signature" in problem for _, problem in decoded[1])  # the forged identity, named
    assert sum(where.startswith(f"pack-{'e' * 64}.jsonl@") for where, _ in decoded[1]) == 2  # with the bad line
    assert _scan(ledger, kinds, cache=True) == decoded  # decoded and written
    assert len(_files(ledger)) == len(ledger.pack_paths())
    assert _scan(ledger, kinds, cache=True) == decoded  # read back


def test_the_report_fields_are_all_a_report_reads(ledger: Ledger) -> None:
    _ledger(ledger)
    full = contributors_report(LedgerGraph.load(ledger)).to_json()
    for _ in range(2):
        graph = LedgerGraph.load(ledger, fields=REPORT_FIELDS, cache=True)
        assert {tuple(sorted(f.body)) for f in graph.by_kind["feedback"]} == {
            ("label", "score", "source", "target")}
        assert contributors_report(graph).to_json() == full


def test_a_changed_cache_file_is_a_miss(ledger: Ledger) -> None:
    _ledger(ledger)
    decoded = _scan(ledger, cache=True)
    for path in _files(ledger):
        data = bytearray(path.read_bytes())
        data[-5] ^= 1
        path.write_bytes(bytes(data))
    assert _scan(ledger, cache=True) == decoded
    assert _scan(ledger, cache=True) == decoded  # and rewritten


def _forge(ledger: Ledger, key: bytes) -> None:
    """Rewrite every cache file with each feedback's score set to 999, signed with ``key``."""
    cache = FactCache(ledger.local, key, None)
    for pack in ledger.pack_paths():
        found = cache.load(str(cache.key_of(pack)))
        assert found is not None
        found.rows = [(*row[:5], {**row[5], "score": 999}) if row[1] == "feedback" else row for row in found.rows]
        cache.put(str(cache.key_of(pack)), found)


def test_a_cache_made_with_another_key_is_not_read(ledger: Ledger, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _ledger(ledger)
    decoded = _scan(ledger, cache=True)
    key = cache_key(Path(os.environ["OPENLEDGER_HOME"]))
    assert key is not None
    _forge(ledger, key)
    # the cache is the user's own file: signed with their key, it is read (what this test's other half relies on)
    assert {f.body.get("score") for f in _scan(ledger, cache=True)[0] if f.kind == "feedback"} == {999}
    monkeypatch.setenv("OPENLEDGER_HOME", str(tmp_path / "elsewhere"))  # the same local/ under another user
    assert _scan(ledger, cache=True) == decoded


def test_a_pack_changed_behind_the_cache_is_decoded_again(ledger: Ledger) -> None:
    _ledger(ledger)
    _scan(ledger, cache=True)
    pack = max(ledger.pack_paths(), key=lambda p: p.stat().st_size)
    lines = pack.read_bytes().splitlines()
    envelope = json.loads(lines[0])
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["body"]["label"] = "changed"
    envelope["payload"] = base64.b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()).decode()
    lines[0] = json.dumps(envelope, separators=(",", ":")).encode()
    pack.write_bytes(b"\n".join(lines) + b"\n")
    assert _scan(ledger, cache=True) == _scan(ledger)
    assert "changed" in {f.body.get("label") for f in _scan(ledger, cache=True)[0]}


def test_no_cache_without_a_key_outside_the_working_tree(ledger: Ledger, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _ledger(ledger)
    decoded = _scan(ledger)
    inside = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(inside)], check=True)
    monkeypatch.setenv("OPENLEDGER_HOME", str(inside / "home"))
    assert cache_key(inside / "home") is None
    assert _scan(ledger, cache=True) == decoded and _files(ledger) == []


@pytest.mark.parametrize("spoil", ["file", "symlink", "not-pack-facts"])
def test_an_unusable_cache_is_a_miss(ledger: Ledger, spoil: str) -> None:
    _ledger(ledger)
    decoded = _scan(ledger)
    directory = ledger.local / "facts"
    if spoil == "file":  # cannot be written (as a full disk would refuse it)
        directory.write_text("")
        assert _scan(ledger, cache=True) == decoded
        return
    _scan(ledger, cache=True)
    key = cache_key(Path(os.environ["OPENLEDGER_HOME"]))
    assert key is not None
    for path in _files(ledger):
        digest = path.name.partition("-")[0]
        cache = FactCache(ledger.local, key, None)
        if spoil == "symlink":
            target = path.with_name("elsewhere")
            path.rename(target)
            path.symlink_to(target)
        else:  # signed with the right key, but not what a scan wrote
            body = marshal.dumps(([("x",)], [0], [1], []))
            path.write_bytes(b"openledger-facts/1\n" + cache._mac(digest, body) + body)
    assert _scan(ledger, cache=True) == decoded


def test_files_of_packs_that_are_gone_are_removed(ledger: Ledger) -> None:
    _ledger(ledger)
    _scan(ledger, cache=True)
    before = _files(ledger)
    gone = ledger.packs / f"pack-{'e' * 64}.jsonl"
    key = FactCache(ledger.local, b"k" * 32, None).key_of(gone)
    gone.unlink()
    _scan(ledger, cache=True)
    assert [p.name.partition("-")[0] for p in set(before) - set(_files(ledger))] == [key]


def test_a_pack_written_in_the_last_two_seconds_is_not_kept(ledger: Ledger,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A second write within one tick of a coarse file clock could leave every stat field equal."""
    _ledger(ledger)
    monkeypatch.setattr(factcache, "_RACY_NS", 10**18)
    decoded = _scan(ledger)
    assert _scan(ledger, cache=True) == decoded and _files(ledger) == []
    monkeypatch.setattr(factcache, "_RACY_NS", 0)
    assert _scan(ledger, cache=True) == decoded and len(_files(ledger)) == len(ledger.pack_paths())


def test_a_pack_rewritten_in_place_with_the_same_size_is_decoded_again(ledger: Ledger) -> None:
    """Same name, same size, modification time set back: the change time still tells."""
    _ledger(ledger)
    _scan(ledger, cache=True)
    pack = max(ledger.pack_paths(), key=lambda p: p.stat().st_size)
    before = pack.stat()
    data = pack.read_bytes()
    at = data.index(b'"payload":"') + len(b'"payload":"') + 40
    changed = data[:at] + (b"A" if data[at:at + 1] != b"A" else b"B") + data[at + 1:]
    with pack.open("r+b") as out:
        out.write(changed)
    os.utime(pack, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert pack.stat().st_size == before.st_size and pack.stat().st_mtime_ns == before.st_mtime_ns
    assert _scan(ledger, cache=True) == _scan(ledger)


def test_pack_facts_round_trip() -> None:
    facts = PackFacts([("sha256:a", "feedback", "ed25519:b", "t", ("sha256:c",), {"x": 1})], [0], [10],
                      [(11, None, "bad")])
    back = PackFacts.loads(facts.dumps())
    assert back is not None and (back.rows, back.starts, back.ends, back.problems) == (
        facts.rows, facts.starts, facts.ends, facts.problems)
    assert PackFacts.loads(b"garbage") is None


@pytest.mark.parametrize("spoil", ["fifo", "huge"])
def test_a_cache_file_that_is_not_one_is_a_miss_not_a_hang(ledger: Ledger, spoil: str) -> None:
    """Whoever can write local/ and stat the packs can name a pack's file: a FIFO would block a plain open,
    a sparse file of gigabytes would be read whole before its HMAC is checked."""
    _ledger(ledger)
    decoded = _scan(ledger, cache=True)
    for path in _files(ledger):
        path.unlink()
        if spoil == "fifo":
            os.mkfifo(path)
        else:
            with path.open("wb") as out:
                out.truncate(3 * 1024**3)
    assert _scan(ledger, cache=True) == decoded


@pytest.mark.parametrize("which", ["local", "facts"])
def test_a_linked_cache_directory_is_not_used(ledger: Ledger, tmp_path: Path, which: str) -> None:
    """`git add -f` can commit a link as local/facts (or local/): reports must not write or delete through it."""
    _ledger(ledger)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bait = elsewhere / f"{'0' * 64}-0123456789abcdef.marshal"
    bait.write_bytes(b"someone else's file")
    if which == "facts":
        (ledger.local / "facts").symlink_to(elsewhere)
    else:
        moved = tmp_path / "local-was-here"
        ledger.local.rename(moved)
        (elsewhere / "facts").mkdir()
        ledger.local.symlink_to(elsewhere)
    decoded = _scan(ledger)
    assert _scan(ledger, cache=True) == decoded
    assert bait.read_bytes() == b"someone else's file"
    assert [p.name for p in elsewhere.rglob("*.marshal")] == [bait.name]


def test_files_of_other_projections_are_removed(ledger: Ledger) -> None:
    _ledger(ledger)
    _scan(ledger, cache=True)
    full = set(_files(ledger))
    _scan(ledger, cache=True, fields=REPORT_FIELDS)
    assert full.isdisjoint(_files(ledger)) and len(_files(ledger)) == len(ledger.pack_paths())


def test_a_key_file_cut_short_is_replaced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "cache.key").write_bytes(b"")
    key = cache_key(home)
    assert key is not None and len(key) == 32 and cache_key(home) == key


def test_a_loose_record_of_another_kind_is_listed_only_by_a_scan_of_its_kind(ledger: Ledger) -> None:
    """As in packs: a damaged record of a kind a scan does not ask for is left out; one whose hash does not
    match its name is listed by every scan."""
    signer = make_signer(2)
    bad_body = {"v": 1, "kind": "dataset", "actor": signer.keyid, "feed": "f", "seq": 0,
                "time": "2026-11-01T12:00:00.000000Z", "links": [], "prev": [], "body": []}
    payload = json.dumps(bad_body, separators=(",", ":"), sort_keys=True).encode()
    record_id = hashlib.sha256(payload).hexdigest()
    envelope = encode_envelope(payload, signer.keyid, bytes(64))
    path = ledger.objects / record_id[:2] / record_id[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(envelope)
    wrong = ledger.objects / "ab" / ("c" * 62)
    wrong.parent.mkdir(parents=True, exist_ok=True)
    wrong.write_bytes(envelope)
    for cache in (False, True):
        assert [w for w, _ in _scan(ledger, ("feedback",), cache=cache)[1]] == [f"sha256:ab{'c' * 62}"]
        assert sorted(w for w, _ in _scan(ledger, ("dataset",), cache=cache)[1]) == sorted(
            [f"sha256:{record_id}", f"sha256:ab{'c' * 62}"])


def test_concurrent_scans_give_the_switch_interval_back(ledger: Ledger) -> None:
    """A scan shortens the interpreter's switch interval while it reads ahead; two at once restore it once."""
    _ledger(ledger)
    for i in range(40):
        ledger.append_many(make_signer(4), [Draft("feedback", {"target": f"t{i}-{j}", "score": j}) for j in range(130)])
    before = sys.getswitchinterval()
    start = threading.Barrier(2)

    def scan() -> None:
        start.wait()
        _scan(ledger, cache=True)

    for _ in range(5):
        threads = [threading.Thread(target=scan) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sys.getswitchinterval() == before


def test_a_record_whose_links_are_not_strings_is_damaged_not_a_crash(ledger: Ledger) -> None:
    """A scan checks hashes, not schemas: a signed payload whose links hold an object would make every report
    fail on indexing it. It is listed as damaged, like a body that is not an object."""
    signer = make_signer(2)
    hostile = {"v": 1, "kind": "feedback", "actor": signer.keyid, "feed": "f", "seq": 0,
               "time": "2026-11-01T12:00:00.000000Z", "links": [["sha256:" + "a" * 64], {"x": 1}], "prev": [],
               "body": {"target": "model:m@1", "label": "<script>"}}
    payload = json.dumps(hostile, separators=(",", ":"), sort_keys=True).encode()
    record_id = hashlib.sha256(payload).hexdigest()
    path = ledger.objects / record_id[:2] / record_id[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_envelope(payload, signer.keyid, bytes(64)))
    graph = LedgerGraph.load(ledger, fields=REPORT_FIELDS, cache=True)
    assert graph.damaged == [(f"sha256:{record_id}", "payload is not a record")]
    contributors_report(graph)
