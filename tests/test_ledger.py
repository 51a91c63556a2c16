"""The store: appends, reads across loose objects and packs, the index, concurrency, crashes, git merges."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from itertools import pairwise
from pathlib import Path

import pytest

from openledger import BadInputError, Draft, Ledger, NotFoundError, SignatureError, verify_ledger
from openledger.store.ledger import PACK_THRESHOLD
from tests.conftest import FixedClock, git, make_signer

FEEDBACK = {"target": "model:iris@1", "label": "ok"}


def test_append_and_get(ledger: Ledger) -> None:
    signer = make_signer(2)
    first = ledger.append(signer, "feedback", FEEDBACK)
    second = ledger.append(signer, "feedback", FEEDBACK, links=[first.id])
    assert (first.seq, first.prev) == (0, ())
    assert (second.seq, second.prev, second.links) == (1, (first.id,), (first.id,))
    assert ledger.get(second.id) == second
    assert first.time == "2026-11-01T12:00:00.000000Z"  # the mocked clock
    assert len(ledger) == 2
    assert [r.id for r in ledger.select(links_to=first.id)] == [second.id]
    path = ledger.root / "objects" / first.id[7:9] / first.id[9:]
    assert path.read_bytes() == first.envelope


def test_select_by_link_filters_and_finds_ids_that_share_a_key(ledger: Ledger) -> None:
    """``select(links_to=…)`` starts from the links table; an id whose 8-byte key another id took first (kept
    in ``id_overflow``) is still found, and the other record is not returned in its place."""
    ada, bob = make_signer(2), make_signer(3)
    target = ledger.append(ada, "feedback", FEEDBACK)
    linking = [ledger.append(signer, "feedback", FEEDBACK, links=[target.id]) for signer in (ada, bob, ada)]
    review = ledger.append(bob, "review", {"target": "model:iris@1", "decision": "approve"}, links=[target.id])
    unrelated = ledger.append(bob, "feedback", FEEDBACK)
    everything = [r.id for r in ledger.select()]

    def expected(kind: str | None = None, actor: str | None = None) -> list[str]:
        return [i for i in everything if i in {r.id for r in (*linking, review)}
                and (kind is None or ledger.get(i).kind == kind) and (actor is None or ledger.get(i).actor == actor)]

    for kind, actor in ((None, None), ("feedback", None), ("review", None), (None, bob.keyid), ("feedback", ada.keyid)):
        assert [r.id for r in ledger.select(links_to=target.id, kind=kind, actor=actor)] == expected(kind, actor)
    assert list(ledger.select(links_to=unrelated.id)) == []
    # a collision: the key of linking[1] names the unrelated record's row, linking[1] lives in id_overflow
    from openledger._internal.index import _key

    db = ledger._index.db
    n_of = dict(db.execute("SELECT id, n FROM records").fetchall())
    db.execute("UPDATE ids SET n = ? WHERE key = ?", (n_of[unrelated.id], _key(linking[1].id)))
    db.execute("INSERT INTO id_overflow VALUES (?, ?)", (linking[1].id, n_of[linking[1].id]))
    db.commit()
    assert [r.id for r in ledger.select(links_to=target.id)] == expected()


def test_bad_body_writes_nothing(ledger: Ledger) -> None:
    signer = make_signer(2)
    with pytest.raises(BadInputError, match="feedback body"):
        ledger.append_many(signer, [Draft("feedback", FEEDBACK), Draft("feedback", {"target": 3})])
    assert len(ledger) == 0
    assert ledger.loose_paths() == []


def test_large_batches_go_into_one_pack_and_read_back(ledger: Ledger) -> None:
    signer = make_signer(2)
    records = ledger.append_many(signer, [Draft("feedback", {"target": f"t{i}", "score": i}) for i in range(500)])
    assert len(ledger.pack_paths()) == 1 and ledger.loose_paths() == []
    assert [r.seq for r in records] == list(range(500))
    assert all(b.prev == (a.id,) for a, b in pairwise(records))
    for record in records[::97]:
        assert ledger.get(record.id) == record
    follow = ledger.append(signer, "feedback", FEEDBACK)
    assert follow.prev == (records[-1].id,) and follow.seq == 500
    assert verify_ledger(ledger, workers=1).errors == []


def test_pack_folds_loose_objects_transparently(ledger: Ledger) -> None:
    signer = make_signer(2)
    records = [ledger.append(signer, "feedback", {"target": f"t{i}", "label": "x"}) for i in range(10)]
    name, count = ledger.pack()
    assert count == 10 and name is not None
    assert ledger.loose_paths() == []
    assert [ledger.get(r.id) for r in records] == records
    again = ledger.append(signer, "feedback", FEEDBACK)
    assert again.prev == (records[-1].id,)
    second_name, second_count = ledger.pack()
    assert second_count == 1 and second_name != name and len(ledger.pack_paths()) == 2
    assert ledger.pack() == (None, 0)
    assert verify_ledger(ledger, workers=1).errors == []


def test_packing_the_same_objects_twice_makes_the_same_file(repo: Path, tmp_path: Path) -> None:
    first = Ledger.init(repo)
    signer = make_signer(2)
    for i in range(5):
        first.append(signer, "feedback", {"target": f"t{i}", "label": "x"})
    clone = tmp_path / "clone"
    subprocess.run(["cp", "-r", str(repo), str(clone)], check=True)
    name_a, _ = first.pack()
    name_b, _ = Ledger.open(clone).pack()
    assert name_a == name_b


def test_index_is_a_cache(ledger: Ledger) -> None:
    signer = make_signer(2)
    records = [ledger.append(signer, "feedback", FEEDBACK) for _ in range(3)]
    ledger.close()
    index = ledger.root / "local" / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.write_bytes(b"this is not a database")
    reopened = Ledger.open(ledger.root, clock=FixedClock())
    assert [r.id for r in reopened.select()] == [r.id for r in records]
    assert reopened.append(signer, "feedback", FEEDBACK).prev == (records[-1].id,)


def test_index_sees_objects_that_arrive_from_outside(ledger: Ledger, tmp_path: Path) -> None:
    """A git pull adds objects behind the index's back; the next read and the next append see them."""
    signer = make_signer(2)
    first = ledger.append(signer, "feedback", FEEDBACK)
    other_dir = tmp_path / "other"
    other = Ledger.init(other_dir)
    subprocess.run(["cp", "-r", str(ledger.root / "objects"), str(other.root)], check=True)
    extra = other.append(signer, "feedback", FEEDBACK)  # same feed, appended elsewhere
    target = ledger.root / "objects" / extra.id[7:9]
    target.mkdir(exist_ok=True)
    (target / extra.id[9:]).write_bytes(extra.envelope)
    assert ledger.get(extra.id) == extra
    follow = ledger.append(signer, "feedback", FEEDBACK)
    assert follow.prev == (extra.id,) and follow.seq == 2
    assert first.id in {r.id for r in ledger.select()}


def test_index_sees_a_pack_that_arrives_after_it_trusted_the_packs_directory(ledger: Ledger, tmp_path: Path) -> None:
    """The packs directory is listed only when its mtime moves: a pack a git pull brings moves it."""
    signer = make_signer(2)
    first = ledger.append_many(signer, [Draft("feedback", {"target": f"a{i}", "label": "x"}) for i in range(200)])
    packs = ledger.root / "packs"
    os.utime(packs, ns=(1_000_000_000, 1_000_000_000))  # old enough to be trusted: the next sync skips listing
    assert len(list(ledger.select())) == 200
    assert len(list(ledger.select(kind="feedback"))) == 200  # again, now from the trusted mtime
    other = Ledger.init(tmp_path / "other")
    for pack in ledger.pack_paths():
        (other.root / "packs" / pack.name).write_bytes(pack.read_bytes())
    more = other.append_many(signer, [Draft("feedback", {"target": f"b{i}", "label": "x"}) for i in range(200)])
    (new,) = set(other.pack_paths()) - {other.root / "packs" / p.name for p in ledger.pack_paths()}
    (packs / new.name).write_bytes(new.read_bytes())  # arrives from outside: the directory's mtime moves
    assert {r.id for r in ledger.select()} == {r.id for r in [*first, *more]}
    follow = ledger.append(signer, "feedback", FEEDBACK)
    assert follow.prev == (more[-1].id,) and follow.seq == 400


def test_unknown_record(ledger: Ledger) -> None:
    with pytest.raises(NotFoundError):
        ledger.get("sha256:" + "0" * 64)
    with pytest.raises(NotFoundError):
        ledger.resolve("abcd")


def test_fsck_removes_leftovers_and_never_a_record(ledger: Ledger) -> None:
    signer = make_signer(2)
    record = ledger.append(signer, "feedback", FEEDBACK)
    fanout = ledger.root / "objects" / record.id[7:9]
    dead_writer = fanout / ".tmp-999999999-deadbeef"
    dead_writer.write_bytes(b"half an obj")
    live_writer = fanout / f".tmp-{os.getpid()}-cafebabe"
    live_writer.write_bytes(b"in flight")
    (ledger.root / "packs" / ".tmp-999999999-00").write_bytes(b"half a pack")
    report = ledger.fsck()
    assert sorted(Path(p).name for p in report.removed) == [".tmp-999999999-00", ".tmp-999999999-deadbeef"]
    assert live_writer.exists()  # its writer is alive: it may be mid-append
    assert report.corrupt == () and report.objects == 1
    assert ledger.get(record.id) == record


def test_fsck_reports_damage_without_deleting(ledger: Ledger) -> None:
    record = ledger.append(make_signer(2), "feedback", FEEDBACK)
    path = ledger.root / "objects" / record.id[7:9] / record.id[9:]
    path.chmod(0o644)
    path.write_bytes(b"garbage")
    report = ledger.fsck()
    assert [p for p, _ in report.corrupt] == [str(path)]
    assert path.read_bytes() == b"garbage"


def test_body_checks_hash_and_signature_but_reads_only_the_body(ledger: Ledger) -> None:
    record = ledger.append(make_signer(2), "feedback", FEEDBACK)
    assert ledger.body(record.id) == FEEDBACK
    path = ledger.root / "objects" / record.id[7:9] / record.id[9:]
    path.chmod(0o644)
    # the same payload with a forged signature: it still hashes to its id, but the signature does not verify
    forged = record.envelope.replace(record.envelope.split(b'"sig":"')[1].split(b'"')[0], b"A" * 86 + b"==")
    path.write_bytes(forged)
    with pytest.raises(SignatureError, match=record.id):
        ledger.body(record.id)


APPENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from openledger import Draft, Ledger, signer_from_seed
    ledger = Ledger.open(Path(sys.argv[1]))
    signer = signer_from_seed(bytes([5]) * 32, feed="shared")
    count, batch = int(sys.argv[2]), int(sys.argv[3])
    for i in range(0, count, batch):
        drafts = [Draft("feedback", {"target": f"p{i + j}", "score": j}) for j in range(batch)]
        for record in ledger.append_many(signer, drafts):
            print(record.id, flush=True)
    """
)


def _spawn_appender(root: Path, count: int, batch: int = 1) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(root), str(count), str(batch)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
    )


def appended_by(processes: list[subprocess.Popen[str]]) -> set[str]:
    """The ids every appender printed, once all of them exited successfully."""
    written = set()
    for process in processes:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0
        written.update(out.split())
    return written


@pytest.mark.slow
def test_eight_processes_append_to_one_feed(ledger: Ledger) -> None:
    written = appended_by([_spawn_appender(ledger.root, 500) for _ in range(8)])
    assert len(written) == 4000
    report = verify_ledger(ledger)
    assert report.records == 4000 and report.errors == []
    assert sorted(s.seq for s in report.summaries.values()) == list(range(4000))  # one chain, no forks


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, PACK_THRESHOLD + 72])
def test_sigkill_mid_stream_loses_nothing_that_returned(ledger: Ledger, batch: int) -> None:
    process = _spawn_appender(ledger.root, 100_000, batch)
    assert process.stdout is not None
    returned = []
    for line in process.stdout:
        returned.append(line.strip())
        if len(returned) >= 3 * batch + 150:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    returned += process.stdout.read().split()  # lines already printed before the kill
    process.stdout.close()
    ledger.fsck()
    report = verify_ledger(ledger)
    assert report.errors == []
    assert set(returned) <= set(report.summaries)
    # and the ledger is still appendable from where it stopped
    follow = ledger.append(make_signer(5, feed="shared"), "feedback", FEEDBACK)
    assert follow.seq == max(s.seq for s in report.summaries.values()) + 1


def test_two_branches_merge_without_conflict(repo: Path, clock: FixedClock) -> None:
    ledger = Ledger.init(repo)
    ledger.clock = clock
    ada, bob = make_signer(2, feed="ada-laptop"), make_signer(3, feed="bob-laptop")
    base = ledger.append(ada, "feedback", FEEDBACK)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "feature")
    on_feature = [ledger.append(ada, "feedback", {"target": "f", "label": "x"}),
                  ledger.append(bob, "feedback", {"target": "f", "label": "y"})]
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feature work")
    git(repo, "checkout", "-q", "main")
    on_main = [ledger.append(ada, "feedback", {"target": "m", "label": "z"}) for _ in range(2)]
    ledger.pack()  # one side packs: deletions of loose files merge cleanly too
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "main work")
    git(repo, "merge", "-q", "--no-edit", "feature")
    assert git(repo, "status", "--porcelain") == ""
    report = verify_ledger(ledger, workers=1)
    assert report.errors == []
    assert {base.id, *(r.id for r in on_feature), *(r.id for r in on_main)} <= set(report.summaries)
    # Ada's feed forked across the branches; her next record joins both tips.
    joined = ledger.append(ada, "feedback", FEEDBACK)
    assert set(joined.prev) == {on_feature[0].id, on_main[-1].id}
    assert joined.seq == 3
    assert verify_ledger(ledger, workers=1).errors == []


@pytest.mark.parametrize(("durability", "syncs"), [("fsync", True), ("process", False)])
def test_durability_fsync_mode_syncs_each_object_before_it_is_renamed_into_place(
        repo: Path, monkeypatch: pytest.MonkeyPatch, durability: str, syncs: bool) -> None:
    """fsync mode calls fsync on the object's file before the rename that makes it visible (process mode does
    not): the real os.fsync runs; the spy only notes which file it was given."""
    import os

    from openledger import LedgerConfig

    ledger = Ledger.init(repo, LedgerConfig(durability=durability))
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    record = ledger.append(make_signer(2), "feedback", FEEDBACK)
    monkeypatch.undo()
    assert ledger.get(record.id) == record
    objects = str(ledger.root / "objects" / record.id[7:9])
    assert any(path.startswith(objects) and ".tmp-" in path for path in synced) is syncs, synced


@pytest.mark.parametrize("as_a_new_pack", [False, True])
def test_index_handles_ids_sharing_their_first_eight_bytes(ledger: Ledger, as_a_new_pack: bool) -> None:
    """The id lookup is keyed by 8 bytes of the digest; a (crafted) collision must still resolve exactly, also
    when it is in a batch just packed (inserted without looking ids up first, then the careful way)."""
    from openledger._internal.index import IndexedRecord, Location

    prefix = "sha256:" + "ab" * 8
    first, second = prefix + "1" * 48, prefix + "2" * 48
    actor = make_signer(2).keyid
    ledger._index.add(
        [IndexedRecord(first, "feedback", actor, "f", 0, "2026-01-01T00:00:00Z", (), ()),
         IndexedRecord(second, "feedback", actor, "f", 1, "2026-01-01T00:00:00Z", (first,), ())],
        [Location("pack-a.jsonl", 10, 5), Location("pack-a.jsonl", 20, 6)],
        pack="pack-a.jsonl" if as_a_new_pack else None,
    )
    assert ledger._index.db.execute("SELECT count(*) FROM records").fetchone()[0] == 2
    assert ledger._index.locate(first) == Location("pack-a.jsonl", 10, 5)
    assert ledger._index.locate(second) == Location("pack-a.jsonl", 20, 6)
    assert ledger._index.locate(prefix + "3" * 48) is None
    assert ledger._index.ids_with_prefix(prefix, limit=5) == [first, second]
    assert ledger._index.ids_with_prefix(prefix + "2") == [second]
    assert ledger._index.feed_tips(actor, "f") == [(second, 1)]


def test_append_once_checks_under_the_feed_lock(ledger: Ledger) -> None:
    signer = make_signer(2)
    first = ledger.append_once(signer, "run", {"run_id": "r", "status": "FINISHED"}, [], key="mlflowrun:" + "a" * 32)
    again = ledger.append_once(signer, "run", {"run_id": "r", "status": "FINISHED"}, [], key="mlflowrun:" + "a" * 32)
    assert first is not None and again is None
    assert "mlflowrun:" + "a" * 32 in first.links
    assert len(ledger) == 1


def test_gitignore_keeps_writes_in_flight_out_of_git(ledger: Ledger) -> None:
    stray = ledger.root / "objects" / "ab" / ".tmp-123-cafe"
    stray.parent.mkdir(exist_ok=True)
    stray.write_text("half")
    status = git(ledger.root.parent, "status", "--porcelain", "--untracked-files=all")
    assert ".tmp-" not in status


def test_a_record_indexed_by_another_processs_sync_is_not_indexed_twice(ledger: Ledger) -> None:
    """Writer: object file, then index. A concurrent sync can index the file in between (seen as a duplicate
    listing with four processes appending); the writer's own insert must then add nothing."""
    from openledger._internal.index import LOOSE, Location
    from openledger.store.records import Payload, sign_record

    signer = make_signer(2)
    first = ledger.append(signer, "feedback", FEEDBACK)
    payload = Payload(kind="feedback", actor=signer.keyid, feed=signer.feed, seq=1, prev=(first.id,),
                      time="2026-11-01T12:00:05Z", links=(), body=FEEDBACK)
    record = sign_record(payload, signer)
    ledger._write_loose(record)  # the writer has written the object ...
    ledger._index.sync()  # ... another process's sync finds it ...
    ledger._index.add([record], [Location(LOOSE)])  # ... and then the writer indexes it
    assert [r.id for r in ledger.select()] == [first.id, record.id]
    assert ledger._index.feed_tips(signer.keyid, signer.feed) == [(record.id, 1)]


def test_a_packed_batch_is_indexed_once_whoever_indexes_it_first(ledger: Ledger) -> None:
    """A batch written as a pack is indexed without looking each id up. If another process's sync read the
    pack first, the writer adds nothing; if its records are indexed already from another pack (the same
    records packed elsewhere), the writer's insert finds the taken keys, undoes its rows and skips them."""
    from openledger._internal.index import Location

    signer = make_signer(2)
    records = ledger.append_many(signer, [Draft("feedback", {**FEEDBACK, "label": str(i)}) for i in
                                          range(PACK_THRESHOLD)])
    (pack,) = ledger.pack_paths()
    db = ledger._index.db

    def rows() -> tuple[int, int, int]:
        return tuple(db.execute("SELECT count(*), count(DISTINCT id), (SELECT count(*) FROM ids) FROM records")
                     .fetchone())

    ledger._index.add(records, [Location(pack.name, 0, 1)] * len(records), pack=pack.name)  # read first
    assert rows() == (len(records),) * 3
    ledger._index.add(records, [Location("pack-other.jsonl", 0, 1)] * len(records), pack="pack-other.jsonl")
    assert rows() == (len(records),) * 3  # the taken keys sent it the careful way: nothing added twice
    assert {ledger._index.locate(r.id).location for r in records} == {pack.name}  # type: ignore[union-attr]
    assert ledger._index.feed_tips(signer.keyid, signer.feed) == [(records[-1].id, len(records) - 1)]
    db.execute("DELETE FROM packs WHERE name = 'pack-other.jsonl'")  # there is no such file: a sync would rebuild
    assert [r.id for r in ledger.select()] == [r.id for r in records]
    report = verify_ledger(ledger)
    assert report.records == len(records) and report.errors == []


def test_receive_stores_records_signed_elsewhere_as_they_are(ledger: Ledger, tmp_path: Path) -> None:
    """A cluster worker's stage records enter the project's ledger byte for byte; a chain with a hole is
    refused before anything is written; receiving twice writes nothing more; verify finds nothing wrong."""
    from openledger.errors import IntegrityError
    from openledger.store.records import open_record

    elsewhere = Ledger.init(tmp_path / "worker")
    worker = make_signer(7, "run-0123456789abcdef-00000000")
    first, second = elsewhere.append_many(worker, [Draft("feedback", FEEDBACK), Draft("feedback", FEEDBACK, [])])
    received = [open_record(r.envelope) for r in (first, second)]
    with pytest.raises(IntegrityError, match="neither here nor received"):
        ledger.receive(received[1:])  # its prev is missing
    assert len(ledger) == 0
    assert [r.id for r in ledger.receive(received)] == [first.id, second.id]
    assert ledger.receive(received) == []
    assert ledger.stored_bytes(second.id) == second.envelope
    assert verify_ledger(ledger, workers=1).errors == []
