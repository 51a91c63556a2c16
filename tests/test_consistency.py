"""Append-ordered checkpoints: every pair in one history has a consistency proof; tampering breaks it.

Also: version 1 (sorted) checkpoints keep verifying and later checkpoints extend them, and checkpoints made
on two git branches and merged behave as docs/proofs.md says.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openledger import BadInputError, Draft, Ledger, Signer, verify_ledger
from openledger.store.checkpoint import append_checkpoint, check_proof, log_of, prove_consistency
from openledger.store.merkle import consistency_proof, merkle_root, verify_consistency
from openledger.store.records import Record
from tests.conftest import FixedClock, git, make_signer

SIGNERS = [make_signer(n, feed=f"feed-{n}") for n in (11, 12, 13)]
operations = st.lists(
    st.one_of(st.tuples(st.just("append"), st.integers(0, 2), st.integers(1, 4)),
              st.tuples(st.just("checkpoint"), st.integers(0, 2), st.just(0))),
    min_size=1, max_size=10)


def apply(ledger: Ledger, ops: list[tuple[str, int, int]]) -> list[Record]:
    made = []
    for step, (what, who, count) in enumerate(ops):
        signer = SIGNERS[who]
        if what == "append":
            ledger.append_many(signer, [Draft("feedback", {"target": f"t{step}-{i}", "score": i})
                                        for i in range(count)])
        else:
            made.append(append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1)))
    return made


def tampered_trees(leaves: list[str], old_size: int) -> list[list[str]]:
    """Histories that rewrite, truncate or reorder what the old checkpoint covered."""
    outsider = "sha256:" + "e" * 64
    rewritten = [outsider if i == old_size - 1 else leaf for i, leaf in enumerate(leaves)]
    truncated = leaves[:old_size - 1] + leaves[old_size:]
    reordered = [leaves[old_size - 1], *leaves[:old_size - 1], *leaves[old_size:]] if old_size > 1 else []
    swapped = list(leaves)
    if len(leaves) > old_size:
        swapped[old_size - 1], swapped[old_size] = swapped[old_size], swapped[old_size - 1]
    candidates = (rewritten, truncated, reordered, swapped)
    return [tree for tree in candidates if tree and tree[:old_size] != leaves[:old_size]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_every_pair_of_checkpoints_in_one_history_is_consistent(ops: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ledger = Ledger.init(Path(directory))
        ledger.clock = FixedClock()
        made = apply(ledger, [*ops, ("checkpoint", 0, 0)])
        report = verify_ledger(ledger, workers=1)
        assert report.errors == []
        log = log_of(report)
        for old, new in itertools.combinations_with_replacement(made, 2):
            proof = prove_consistency(ledger, old.id, new.id, report)
            assert check_proof(proof)["valid"], (old.body, new.body)
            assert proof["old_size"] == old.body["count"] and proof["new_size"] == new.body["count"]
            leaves = log.leaves_of(new.id)
            old_root = bytes.fromhex(old.body["root"][7:])
            for tree in tampered_trees(leaves, old.body["count"]) if old.body["count"] else []:
                forged = consistency_proof(tree, min(old.body["count"], len(tree)))
                assert not verify_consistency(old.body["count"], len(tree), old_root, merkle_root(tree), forged)
            if proof["path"]:
                bent = dict(proof, path=[("0" if proof["path"][0][0] != "0" else "1") + proof["path"][0][1:],
                                         *proof["path"][1:]])
                assert not check_proof(bent)["valid"]


def test_a_proof_against_the_wrong_heads_is_invalid(ledger: Ledger) -> None:
    signer = SIGNERS[0]
    made = apply(ledger, [("append", 0, 3), ("checkpoint", 0, 0), ("append", 1, 2), ("checkpoint", 1, 0),
                          ("append", 2, 5), ("checkpoint", 0, 0)])
    report = verify_ledger(ledger, workers=1)
    proof = prove_consistency(ledger, made[0].id, made[2].id, report)
    assert check_proof(proof)["valid"]
    # the proof's claimed sizes must be the signed ones; a proof between other heads does not transfer
    assert not check_proof(dict(proof, new_size=proof["new_size"] + 1))["valid"]
    middle = prove_consistency(ledger, made[1].id, made[2].id, report)
    assert not check_proof(dict(proof, path=middle["path"]))["valid"]
    with pytest.raises(BadInputError, match="more than the new one"):
        prove_consistency(ledger, made[2].id, made[0].id, report)
    # a ledger whose covered history was rewritten: the checkpoint no longer matches and nothing is proven
    assert signer.keyid  # (rewrites are exercised through the witness, which must refuse: tests/test_witness.py)


def test_version_1_checkpoints_keep_verifying_and_are_extended(ledger: Ledger) -> None:
    """A checkpoint written before version 2 (sorted leaves, no version field) stays valid, and the next
    checkpoint extends its tree: a consistency proof leads from it."""
    ada = SIGNERS[0]
    for i in range(5):
        ledger.append(ada, "feedback", {"target": f"t{i}", "score": i})
    report = verify_ledger(ledger, workers=1)
    covered = sorted(report.summaries)
    tip = max(report.summaries, key=lambda i: report.summaries[i].seq)
    old = ledger.append(ada, "checkpoint", {"count": len(covered), "root": "sha256:" + merkle_root(covered).hex(),
                                            "feeds": {"feed-11": [tip]}, "previous": None})
    assert verify_ledger(ledger, workers=1).errors == []
    ledger.append(ada, "feedback", {"target": "later", "score": 9})
    new = append_checkpoint(ledger, ada, verify_ledger(ledger, workers=1))
    assert new.body["version"] == 2 and new.body["previous"] == old.id
    report = verify_ledger(ledger, workers=1)
    assert report.errors == []
    assert log_of(report).leaves_of(new.id)[:len(covered)] == covered
    assert check_proof(prove_consistency(ledger, old.id, new.id, report))["valid"]
    # a version 1 checkpoint claiming the wrong root is still caught
    forged = ledger.append(ada, "checkpoint", {"count": len(covered), "root": "sha256:" + "0" * 64,
                                               "feeds": old.body["feeds"], "previous": None})
    assert [(p.code, p.record) for p in verify_ledger(ledger, workers=1).errors] == [("checkpoint-root", forged.id)]


def test_a_version_2_checkpoint_that_does_not_extend_its_previous_is_caught(ledger: Ledger) -> None:
    ada = SIGNERS[0]
    apply(ledger, [("append", 0, 4), ("checkpoint", 0, 0), ("append", 0, 2)])
    honest = append_checkpoint(ledger, ada, verify_ledger(ledger, workers=1))
    leaves = log_of(verify_ledger(ledger, workers=1)).leaves_of(honest.id)
    assert leaves != sorted(leaves)  # (the records after the first checkpoint sort among the earlier ones)
    # the same records in sorted order (the version 1 tree) under a version 2 claim: the root cannot match
    forged = ledger.append(ada, "checkpoint", dict(honest.body, root="sha256:" + merkle_root(sorted(leaves)).hex()))
    codes = {(p.code, p.record) for p in verify_ledger(ledger, workers=1).errors}
    assert ("checkpoint-root", forged.id) in codes


def open_ledger(repo: Path) -> Ledger:
    ledger = Ledger.open(repo)
    ledger.clock = FixedClock()
    return ledger


def test_checkpoints_on_merged_branches(repo: Path) -> None:
    """Two branches checkpoint after the same main-line checkpoint and are merged with git: every
    checkpoint still verifies; the next checkpoint by the CI key extends the CI key's own line, covers
    everything, and the other branch's checkpoint has no consistency proof to it (documented)."""
    ci, dev, other = SIGNERS
    Ledger.init(repo)

    def work(signer: Signer, label: str, count: int, branch: str | None = None) -> Record:
        """On ``branch`` (if given, created here), ``count`` records and a checkpoint by ``signer``, committed."""
        if branch:
            git(repo, "checkout", "-qb", branch)
        ledger = open_ledger(repo)
        ledger.append_many(signer, [Draft("feedback", {"target": f"{label}{i}", "score": i}) for i in range(count)])
        made = append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", label)
        return made

    first = work(ci, "base", 3)
    side = work(dev, "feature", 6, branch="feature")
    git(repo, "checkout", "-q", "main")
    main_line = work(ci, "main", 1)
    git(repo, "merge", "-q", "--no-edit", "feature")
    ledger = open_ledger(repo)
    report = verify_ledger(ledger, workers=1)
    assert report.errors == [], report.problems
    assert side.body["previous"] == first.id and main_line.body["previous"] == first.id
    assert side.body["count"] > main_line.body["count"]  # the side branch is the larger one

    merged = append_checkpoint(ledger, ci, verify_ledger(ledger, workers=1))
    report = verify_ledger(ledger, workers=1)
    assert report.errors == []
    assert merged.body["previous"] == main_line.id  # the CI key's own line, not the larger side branch
    assert merged.body["count"] == report.records - 1  # everything, the side branch's records included
    for old in (first, main_line):
        assert check_proof(prove_consistency(ledger, old.id, merged.id, report))["valid"]
    with pytest.raises(BadInputError, match="does not extend"):
        prove_consistency(ledger, side.id, merged.id, report)
    # a key with no checkpoint of its own extends the newest tip; the developer keeps extending its own line
    assert append_checkpoint(ledger, other, report).body["previous"] == merged.id
    report = verify_ledger(ledger, workers=1)
    assert append_checkpoint(ledger, dev, report).body["previous"] == side.id
    assert verify_ledger(ledger, workers=1).errors == []


def test_extends_names_the_checkpoint_to_extend(ledger: Ledger) -> None:
    ada = SIGNERS[0]
    made = apply(ledger, [("append", 0, 2), ("checkpoint", 0, 0), ("append", 0, 2), ("checkpoint", 0, 0)])
    fork = append_checkpoint(ledger, ada, verify_ledger(ledger, workers=1), extends=made[0].id)
    report = verify_ledger(ledger, workers=1)
    assert fork.body["previous"] == made[0].id and report.errors == []
    assert check_proof(prove_consistency(ledger, made[0].id, fork.id, report))["valid"]
    with pytest.raises(BadInputError):
        prove_consistency(ledger, made[1].id, fork.id, report)
    with pytest.raises(BadInputError, match="not a checkpoint"):
        append_checkpoint(ledger, ada, report, extends="sha256:" + "0" * 64)
    assert json.dumps(fork.body)  # a plain JSON body


def test_node_verifier_checks_consistency_proofs(ledger: Ledger, tmp_path: Path) -> None:
    """docs/verify-proof.js (built-in Node modules only) agrees with check-proof on consistency proofs,
    including the edge cases of RFC 9162's algorithm: equal trees, an old size that is a power of two."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = Path(__file__).parent.parent / "docs" / "verify-proof.js"
    ops: list[tuple[str, int, int]] = []
    for count in (0, 2, 1, 5):  # checkpoints cover sizes that are and are not powers of two
        ops += [("append", count % 3, count)] if count else []
        ops.append(("checkpoint", 0, 0))
    made = apply(ledger, ops)
    report = verify_ledger(ledger, workers=1)
    proof_file = tmp_path / "proof.json"

    def node_says(proof: dict[str, object], *pin: str) -> int:
        proof_file.write_text(json.dumps(proof))
        done = subprocess.run([node, str(script), str(proof_file), *pin], capture_output=True, text=True, check=False)
        return done.returncode

    sizes = set()
    for old, new in itertools.combinations_with_replacement(made, 2):
        proof = prove_consistency(ledger, old.id, new.id, report)
        sizes.add((proof["old_size"], proof["new_size"]))
        assert node_says(proof) == 0, proof
        assert node_says(proof, new.body["root"]) == 0
        if 0 < proof["old_size"] < proof["new_size"]:  # (every tree extends the empty tree, whatever its root)
            assert node_says(proof, "sha256:" + "0" * 64) == 1
            assert node_says(dict(proof, old_size=proof["old_size"] + 1)) == 1
        if proof["path"]:
            assert node_says(dict(proof, path=[*proof["path"][::-1], "0" * 64])) == 1
    assert any(old & (old - 1) == 0 and old < new for old, new in sizes)  # a power-of-two old tree was covered
    assert any(old & (old - 1) and old < new for old, new in sizes)
    assert node_says({"format": "something else", "path": []}) == 2


def test_hostile_checkpoint_bodies_are_reported_not_crashed_on(ledger: Ledger) -> None:
    ada = SIGNERS[0]
    apply(ledger, [("append", 0, 2)])
    honest = append_checkpoint(ledger, ada, verify_ledger(ledger, workers=1))
    other_key = make_signer(19)
    resigned = dict(honest.body, signature=honest.body["signature"][:-4] + "AAA=")
    bad_note = ledger.append(ada, "checkpoint", resigned)
    borrowed = ledger.append(other_key, "checkpoint", dict(honest.body))  # another key's note signature
    dangling = ledger.append(ada, "checkpoint", dict(honest.body, previous="sha256:" + "d" * 64))
    codes = {(p.code, p.record) for p in verify_ledger(ledger, workers=1).errors}
    assert ("checkpoint-note-signature", bad_note.id) in codes
    assert ("checkpoint-note-signature", borrowed.id) in codes
    assert ("checkpoint-previous-missing", dangling.id) in codes
    assert not any(record == dangling.id and code == "checkpoint-root" for code, record in codes)
