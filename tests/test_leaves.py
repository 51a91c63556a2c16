"""Checkpoint leaf lists: `verify --since` takes the pinned checkpoint's leaves from the files `openledger ci`
writes instead of walking every record, and only when their recomputed roots are what each checkpoint of the
chain states and every listed record is present and sound. A file that does not hold changes the speed, never
the verdict: every case below gives the verdicts of a verification without the files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import openledger.store.leaves as leaves_module
import openledger.store.logtree as logtree
from openledger import Draft, Ledger, verify_ledger
from openledger.store.checkpoint import _tips, append_checkpoint
from openledger.store.incremental import verify_since
from openledger.store.leaves import MerkleJob, chain_of, leaves_path, write_leaves
from openledger.store.logtree import CHECKPOINT_VERSION
from openledger.store.merkle import MerkleAccumulator, merkle_root
from openledger.store.note import checkpoint_text, signer_signature
from tests.conftest import FixedClock, make_signer, publish

CI, ADA = make_signer(91, feed="ci"), make_signer(92, feed="ada")


def checkpoint_with_leaves(ledger: Ledger, *, extends: str | None = None, signer: Any = CI) -> str:
    """A checkpoint and its leaves files, as `openledger ci` on the default branch writes them."""
    report = verify_ledger(ledger, workers=1)
    assert not report.errors, report.errors
    record = append_checkpoint(ledger, signer, report, extends=extends)
    assert report.log is not None
    write_leaves(ledger, report.log, record)
    return record.id


def chained_ledger(ledger: Ledger) -> tuple[list[str], list[str], list[str]]:
    """Three CI checkpoints with records between them (the first batch packed), then new loose records:
    (the checkpoints, oldest first; Ada's covered records; the new ones)."""
    ledger.clock = FixedClock()
    publish(ledger, CI, "CI")
    publish(ledger, ADA, "Ada")
    covered, checkpoints = [], []
    for round_ in range(3):
        covered += [r.id for r in ledger.append_many(ADA, [Draft("feedback", {"target": f"t{round_}.{i}", "score": i})
                                                           for i in range(5)])]
        if round_ == 0:
            ledger.pack()
        checkpoints.append(checkpoint_with_leaves(ledger))
    new = [ledger.append(ADA, "feedback", {"target": f"new{i}", "score": i}).id for i in range(3)]
    return checkpoints, covered, new


def outcome(report: Any) -> tuple[Any, ...]:
    return (report.since, report.records, report.feeds, report.checkpoints,
            sorted((p.severity, p.code, p.record) for p in report.problems))


class Walks:
    """How many records the log tree's walk visits (what the leaves files spare)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.visited = 0
        walk = logtree._walk

        def counting(*args: Any) -> Any:
            found = walk(*args)
            self.visited += len(found[0])
            return found

        monkeypatch.setattr(logtree, "_walk", counting)


def same_as_without_leaves(ledger: Ledger, pinned: str) -> Any:
    listed = verify_since(ledger, pinned, workers=1)
    walked = verify_since(ledger, pinned, workers=1, leaves=False)
    assert outcome(listed) == outcome(walked)
    assert listed.log is not None and walked.log is not None
    assert listed.log.computed == walked.log.computed
    return listed


def test_the_chain_is_taken_from_the_files_and_gives_the_same_verdicts(ledger: Ledger,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoints, covered, new = chained_ledger(ledger)
    pinned = checkpoints[-1]
    links = chain_of(ledger, pinned)
    assert links is not None and [link.checkpoint for link in links] == checkpoints
    leaves = [i for link in links for i in link.ids()]
    assert set(covered) < set(leaves) and not set(new) & set(leaves)
    log = verify_ledger(ledger, workers=1).log
    assert log is not None and leaves == log.leaves_of(pinned)  # the files list the walk's leaves, in order
    assert merkle_root(leaves).hex() == log.heads[pinned].root[7:]
    walks = Walks(monkeypatch)
    report = same_as_without_leaves(ledger, pinned)
    assert report.since == pinned and outcome(report)[4] == []
    walks.visited = 0
    verify_since(ledger, pinned, workers=1)
    assert walks.visited == 0  # nothing walked: the new records are in no checkpoint
    walks.visited = 0
    verify_since(ledger, pinned, workers=1, leaves=False)
    assert walks.visited == len(leaves)


def test_an_abbreviated_pin_finds_its_files(ledger: Ledger) -> None:
    checkpoints, _, _ = chained_ledger(ledger)
    links = chain_of(ledger, checkpoints[-1][7:20])
    assert links is not None and links[-1].checkpoint == checkpoints[-1]
    assert chain_of(ledger, "") is None


def test_the_merkle_job_without_a_child_process_gives_the_same_states(ledger: Ledger,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoints, _, _ = chained_ledger(ledger)
    links = chain_of(ledger, checkpoints[-1])
    assert links is not None
    child = MerkleJob(links).states()
    monkeypatch.setattr(sys, "executable", "")
    assert child is not None and MerkleJob(links).states() == child
    log = verify_ledger(ledger, workers=1).log
    assert log is not None
    for link, (size, hashes) in zip(links, child, strict=True):
        assert size == link.size
        assert "sha256:" + MerkleAccumulator.restore(size, hashes).root().hex() == log.heads[link.checkpoint].root


def lines_of(path: Path) -> tuple[bytes, list[bytes]]:
    header, _, body = path.read_bytes().partition(b"\n")
    return header, body.split(b"\n")[:-1]


def rewrite(path: Path, header: bytes, lines: list[bytes]) -> None:
    path.write_bytes(header + b"\n" + b"".join(line + b"\n" for line in lines))


HOSTILE = {
    "two leaves swapped": lambda h, ls: (h, [ls[1], ls[0], *ls[2:]]),
    "a leaf listed twice": lambda h, ls: (h, [ls[0], ls[0], *ls[2:]]),
    "a leaf left out, the count lowered": lambda h, ls: (h.replace(b'"count":', b'"count":1'), ls[1:]),
    "a leaf in upper case (the same digest)": lambda h, ls: (h, [ls[0][:7] + ls[0][7:].upper(), *ls[1:]]),
    "a leaf with spaces fromhex ignores": lambda h, ls: (h, [ls[0][:7] + b" " + ls[0][8:], *ls[1:]]),
    "another algorithm's prefix": lambda h, ls: (h, [b"sha512:" + ls[0][7:], *ls[1:]]),
    "not ASCII": lambda h, ls: (h, [ls[0][:-2] + "é".encode(), *ls[1:]]),
    "a huge header": lambda h, ls: (h[:-1] + b',"x":"' + b"a" * 5000 + b'"}', ls),
    "a header that is a list": lambda h, ls: (b"[1]", ls),
    "another checkpoint's header": lambda h, ls: (h.replace(b'"checkpoint":"sha256:', b'"checkpoint":"sha256:0'), ls),
    "a previous that is a number": lambda h, ls: (h.replace(b'"previous":null', b'"previous":7'), ls),
    "a count that is a string": lambda h, ls: (h.replace(b'"count":', b'"count":"1"', 1), ls),
    "no leaves": lambda h, ls: (h, []),
}


@pytest.mark.parametrize("change", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("which", [0, 2])
def test_a_leaves_file_that_does_not_hold_changes_nothing_but_the_speed(ledger: Ledger, change: Any,
                                                                          which: int) -> None:
    checkpoints, _, _ = chained_ledger(ledger)
    path = leaves_path(ledger.root / "seals", checkpoints[which])
    rewrite(path, *change(*lines_of(path)))
    report = same_as_without_leaves(ledger, checkpoints[-1])
    assert report.since == checkpoints[-1] and outcome(report)[4] == []


def test_a_leaf_replaced_by_a_new_record_is_not_believed(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A leaves file claiming that a record the checkpoint does not cover is covered: its root differs, so the
    new record still gets its full check."""
    checkpoints, covered, new = chained_ledger(ledger)
    path = leaves_path(ledger.root / "seals", checkpoints[-1])
    header, lines = lines_of(path)
    rewrite(path, header, [new[0].encode() if line == covered[-1].encode() else line for line in lines])
    walks = Walks(monkeypatch)
    same_as_without_leaves(ledger, checkpoints[-1])
    log = verify_ledger(ledger, workers=1).log
    assert log is not None
    walks.visited -= log.heads[checkpoints[-1]].count  # this verification's walk
    assert walks.visited == 2 * log.heads[checkpoints[-1]].count  # both walked: the file was not believed


@pytest.mark.parametrize("damage", ["deleted", "modified"])
def test_a_covered_record_deleted_or_modified_is_reported_as_without_the_files(ledger: Ledger, damage: str) -> None:
    checkpoints, covered, _ = chained_ledger(ledger)
    victim = covered[-1]  # loose: the last round was not packed
    path = ledger.root / "objects" / victim[7:9] / victim[9:]
    if damage == "deleted":
        path.unlink()
    else:
        path.chmod(0o644)
        path.write_bytes(path.read_bytes().replace(b'"payload":"', b'"payload":"A', 1))
    report = same_as_without_leaves(ledger, checkpoints[-1])
    codes = {(p.code, p.record) for p in report.errors}
    assert (("checkpoint-missing-records", checkpoints[-1]) in codes if damage == "deleted"
            else victim in {record for _, record in codes})


def test_a_forged_new_record_is_caught_with_the_files(ledger: Ledger) -> None:
    checkpoints, _, new = chained_ledger(ledger)
    path = ledger.root / "objects" / new[1][7:9] / new[1][9:]
    envelope = path.read_bytes()
    start = envelope.index(b'"sig":"') + 7
    path.chmod(0o644)
    path.write_bytes(envelope[:start] + (b"B" if envelope[start:start + 1] == b"A" else b"A") + envelope[start + 1:])
    report = same_as_without_leaves(ledger, checkpoints[-1])
    assert ("error", "bad-signature", new[1]) in outcome(report)[4]


def test_a_missing_link_of_the_chain_means_the_walk(ledger: Ledger) -> None:
    checkpoints, _, _ = chained_ledger(ledger)
    leaves_path(ledger.root / "seals", checkpoints[1]).unlink()
    assert chain_of(ledger, checkpoints[-1]) is None
    same_as_without_leaves(ledger, checkpoints[-1])


def test_a_symlinked_or_special_leaves_file_is_never_read(ledger: Ledger, tmp_path: Path) -> None:
    checkpoints, _, _ = chained_ledger(ledger)
    path = leaves_path(ledger.root / "seals", checkpoints[-1])
    outside = tmp_path / "outside.leaves"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    assert chain_of(ledger, checkpoints[-1]) is None
    path.unlink()
    os.mkfifo(path)
    assert chain_of(ledger, checkpoints[-1]) is None  # not opened for reading: no hang
    same_as_without_leaves(ledger, checkpoints[-1])


def test_a_branch_checkpoint_beside_the_chain_is_still_walked_and_checked(ledger: Ledger) -> None:
    """Ada's checkpoint extends CI's first (a branch merged later): not in the pinned chain, so walked; a lie in
    it is still found."""
    checkpoints, _, _ = chained_ledger(ledger)
    report = verify_ledger(ledger, workers=1)
    side = append_checkpoint(ledger, ADA, report, extends=checkpoints[0]).id
    listed = same_as_without_leaves(ledger, checkpoints[-1])
    assert listed.log is not None and listed.log.sound(side)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_of_a_leaves_file_changed_gives_the_same_verdicts(tmp_path_factory: Any, data: st.DataObject) -> None:
    ledger = Ledger.init(tmp_path_factory.mktemp("leaves"))
    checkpoints, _, _ = chained_ledger(ledger)
    path = leaves_path(ledger.root / "seals", checkpoints[data.draw(st.integers(0, 2))])
    content = bytearray(path.read_bytes())
    position = data.draw(st.integers(0, len(content) - 1))
    content[position] = data.draw(st.integers(0, 255).filter(lambda b: b != content[position]))
    path.write_bytes(bytes(content))
    report = same_as_without_leaves(ledger, checkpoints[-1])
    assert outcome(report)[4] == []


def test_fsck_knows_leaves_files(ledger: Ledger) -> None:
    chained_ledger(ledger)
    assert ledger.fsck().unexpected == ()


def header_with(path: Path, **fields: Any) -> None:
    header, lines = lines_of(path)
    rewrite(path, orjson.dumps({**orjson.loads(header), **fields}, option=orjson.OPT_SORT_KEYS), lines)


def test_a_file_naming_itself_or_a_path_as_previous_is_refused_as_it_is_read(ledger: Ledger) -> None:
    """A chain that loops would be read until memory runs out; counts must fall along the chain. A `previous`
    that is not a record id is never used as a file name."""
    checkpoints, _, _ = chained_ledger(ledger)
    path = leaves_path(ledger.root / "seals", checkpoints[-1])
    header_with(path, previous=checkpoints[-1])
    assert chain_of(ledger, checkpoints[-1]) is None
    outside = ledger.root.parent / "outside"
    (outside.parent / "outside.leaves").write_bytes(leaves_path(ledger.root / "seals", checkpoints[1]).read_bytes())
    header_with(path, previous=f"sha256:{outside}")
    assert chain_of(ledger, checkpoints[-1]) is None
    same_as_without_leaves(ledger, checkpoints[-1])


def test_files_that_do_not_add_up_to_the_pins_count_are_refused_before_hashing(ledger: Ledger) -> None:
    checkpoints, _, _ = chained_ledger(ledger)
    links = chain_of(ledger, checkpoints[-1])
    assert links is not None
    assert chain_of(ledger, checkpoints[-1], size=links[-1].size) is not None
    assert chain_of(ledger, checkpoints[-1], size=links[-1].size + 1) is None
    path = leaves_path(ledger.root / "seals", checkpoints[-1])
    header, lines = lines_of(path)
    rewrite(path, header, lines * 50)  # more lines than the pin's count
    assert chain_of(ledger, checkpoints[-1]) is None


@pytest.mark.parametrize("name", ["uwsgi", "python-host"])
def test_a_host_program_as_sys_executable_never_hangs_the_verification(ledger: Ledger, tmp_path: Path, name: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An embedding host (uWSGI, httpd, a frozen app) is not started; one that looks like Python but ignores
    its arguments and keeps running is killed after the child's time, and the parent hashes."""
    checkpoints, _, _ = chained_ledger(ledger)
    host = tmp_path / name
    host.write_text("#!/bin/sh\nexec sleep 600\n")
    host.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(host))
    monkeypatch.setattr(leaves_module, "_CHILD_SECONDS", 1.0)
    links = chain_of(ledger, checkpoints[-1])
    assert links is not None
    job = MerkleJob(links)
    assert (job._process is None) == (name == "uwsgi")
    states = job.states()
    job.close()
    assert states is not None and states[-1][0] == links[-1].size
    assert job._process is None or job._process.returncode is not None  # killed and reaped
    report = verify_since(ledger, checkpoints[-1], workers=1)
    assert report.since == checkpoints[-1] and report.listed == links[-1].size


def test_a_pin_whose_root_leaves_out_one_of_its_tips_is_walked_and_reported(ledger: Ledger) -> None:
    """Ada (trusted) signs a checkpoint naming her newest record as a tip, over a root and count that leave it
    out, with a leaves file to match: the root matches the file, but a tip is not listed, so the walk runs and
    reports the root, as without the file."""
    checkpoints, _, new = chained_ledger(ledger)
    report = verify_ledger(ledger, workers=1)
    assert report.log is not None
    base = report.log.heads[checkpoints[-1]]
    leaves = report.log.leaves_of(base.id)
    listed = sorted(new[:-1])
    root = merkle_root([*leaves, *listed])
    text = checkpoint_text(base.origin or "", len(leaves) + len(listed), root)
    body = {"version": CHECKPOINT_VERSION, "count": len(leaves) + len(listed), "root": "sha256:" + root.hex(),
            "feeds": _tips(report), "previous": base.id, "origin": base.origin,
            "signature": signer_signature(ADA, base.origin or "", text)}
    pin = ledger.append(ADA, "checkpoint", body, links=[base.id]).id
    header = {"checkpoint": pin, "count": len(leaves) + len(listed), "format": "openledger-checkpoint-leaves/v1",
              "previous": base.id}
    rewrite(leaves_path(ledger.root / "seals", pin), orjson.dumps(header, option=orjson.OPT_SORT_KEYS),
            [i.encode() for i in listed])
    assert chain_of(ledger, pin) is not None
    report = same_as_without_leaves(ledger, pin)
    assert ("error", "checkpoint-root", pin) in outcome(report)[4] and report.listed == 0


def test_the_next_checkpoint_after_an_incremental_run_lists_what_a_walk_finds(ledger: Ledger,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """CI on the default branch: verify --since the last checkpoint (its leaves from the files), checkpoint,
    write the new checkpoint's file. The chain's files are not rewritten, the known leaves are not walked
    again, and the new file is what a full verification's walk computes."""
    checkpoints, _, new = chained_ledger(ledger)
    report = verify_since(ledger, checkpoints[-1], workers=1)
    assert report.listed and report.log is not None
    record = append_checkpoint(ledger, CI, report)
    walks = Walks(monkeypatch)
    written = write_leaves(ledger, report.log, record)
    assert [path.name for path in written] == [record.id[7:] + ".leaves"]
    assert walks.visited == len(new) + 1  # only what the new checkpoint adds: the new records and the pin
    links = chain_of(ledger, record.id)
    full = verify_ledger(ledger, workers=1).log
    assert links is not None and full is not None
    assert [leaf for link in links for leaf in link.ids()] == full.leaves_of(record.id)
    assert same_as_without_leaves(ledger, record.id).listed == record.body["count"]
