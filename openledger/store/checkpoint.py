"""Checkpoints (a signed commitment to the whole ledger), and inclusion and consistency proofs against them.

A checkpoint records the number of records, each feed's tips, the RFC 6962 Merkle root of its leaves, and
the checkpoint it extends (``previous``). Its leaves are the previous checkpoint's leaves in the same order,
then the records new since, sorted by id (:mod:`openledger.store.logtree`), so a later checkpoint's tree
extends an earlier one's and :func:`prove_consistency` can show it in log2(n) hashes. A checkpoint also
carries its C2SP ``tlog-checkpoint`` signed-note signature (:mod:`openledger.store.note`), so it exports
as a note that transparency-log tooling reads and witnesses cosign.

Kept outside the repository (a CI variable, an MLflow tag, a release note), a checkpoint id lets
``verify --against`` detect rewritten or truncated history; ``prove`` shows that one record is included.

>>> import tempfile; from pathlib import Path; from openledger.store.keys import generate_signer
>>> from openledger.store.verify import verify_ledger
>>> ledger = Ledger.init(Path(tempfile.mkdtemp())); signer = generate_signer(feed="doc")
>>> first = ledger.append(signer, "feedback", {"target": "x", "label": "ok"})
>>> old = append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1))
>>> check_proof(prove_inclusion(ledger, first.id, verify_ledger(ledger, workers=1)))["valid"]
True
>>> new = append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1))
>>> check_proof(prove_consistency(ledger, old.id, new.id, verify_ledger(ledger, workers=1)))["valid"]
True
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from openledger.errors import BadInputError, IntegrityError, NotFoundError
from openledger.store.ledger import Ledger
from openledger.store.logtree import CHECKPOINT_VERSION, CheckpointHead, LogTree, extension_base, tree_of
from openledger.store.merkle import (
    consistency_proof,
    inclusion_proof,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)
from openledger.store.note import (
    CheckpointNote,
    checkpoint_text,
    parse_checkpoint_note,
    signature_line,
    signer_signature,
    verify_log_signature,
)
from openledger.store.records import Record, RecordSigner, open_record, public_key_of
from openledger.store.verify import VerificationReport

__all__ = [
    "CONSISTENCY_FORMAT",
    "PROOF_FORMAT",
    "append_checkpoint",
    "check_note",
    "check_proof",
    "checkpoint_note",
    "log_of",
    "prove_consistency",
    "prove_inclusion",
]

PROOF_FORMAT = "openledger-inclusion-proof/v1"
CONSISTENCY_FORMAT = "openledger-consistency-proof/v1"
_ROOT = re.compile(r"sha256:[0-9a-f]{64}")
_KEYID = re.compile(r"ed25519:[0-9a-f]{64}")
DEFAULT_ORIGIN = "openledger.local/"


def _tips(report: VerificationReport) -> dict[str, list[str]]:
    followed = {p for summary in report.summaries.values() for p in summary.prev}
    tips: dict[str, list[str]] = defaultdict(list)
    for summary in report.summaries.values():
        if summary.id not in followed:
            tips[summary.feed].append(summary.id)
    return {feed: sorted(ids) for feed, ids in sorted(tips.items())}


def log_of(report: VerificationReport) -> LogTree:
    """The report's checkpoint tree (recomputed when the report was made without one)."""
    return report.log if report.log is not None else tree_of(report.summaries)


def append_checkpoint(ledger: Ledger, signer: RecordSigner, report: VerificationReport, *,
                      extends: str | None = None, origin: str | None = None) -> Record:
    """Sign a checkpoint over the records ``report`` verified; refuses a ledger with integrity errors.

    It extends ``extends`` (a checkpoint id) or, by default, :func:`~openledger.store.logtree.extension_base`:
    the newest tip of the checkpoint tree ``signer`` made, else the newest tip. Its origin (the signed note's
    first line) is ``origin``, else ``checkpoints: origin:`` in config.yaml, else the origin of the checkpoint
    it extends, else one derived from its first leaf.
    """
    if report.errors:
        raise IntegrityError(
            f"refusing to checkpoint a ledger with {len(report.errors)} integrity error(s)",
            hint="run `openledger verify` and resolve them first",
        )
    log = log_of(report)
    if extends is not None:
        base = log.heads.get(extends)
        if base is None:
            raise BadInputError(f"--extends {extends} is not a checkpoint in this ledger")
    else:
        base = extension_base(log.heads.values(), signer.keyid)
    tips = _tips(report)
    leaves = log.leaves_of(base.id) if base is not None else []
    covered = set(leaves)
    followed = [tip for feed_tips in tips.values() for tip in feed_tips]
    new, missing = log.new_records(followed, covered)
    if missing:  # cannot happen for a report without errors; a bug if it does
        raise IntegrityError(f"{len(missing)} record(s) referenced by the ledger are missing")
    leaves += new
    root = merkle_root(leaves)
    origin = origin or ledger.config.checkpoints.get("origin") or (base.origin if base else None) \
        or DEFAULT_ORIGIN + (leaves[0][7:23] if leaves else "empty")
    text = checkpoint_text(origin, len(leaves), root)
    body = {
        "version": CHECKPOINT_VERSION,
        "count": len(leaves),
        "root": "sha256:" + root.hex(),
        "feeds": tips,
        "previous": base.id if base is not None else None,
        "origin": origin,
        "signature": signer_signature(signer, origin, text),
    }
    return ledger.append(signer, "checkpoint", body, links=[base.id] if base is not None else ())


def _covering(log: LogTree, record_id: str, checkpoint_id: str | None) -> tuple[CheckpointHead, list[str]]:
    """The checkpoint to prove against (given, or the newest that covers the record) and its leaves."""
    if checkpoint_id is not None:
        candidates = [log.heads[checkpoint_id]] if checkpoint_id in log.heads else []
    else:
        candidates = sorted(log.heads.values(), key=lambda head: head.order, reverse=True)
    for head in candidates:
        if not log.sound(head.id):
            continue
        leaves = log.leaves_of(head.id)
        if record_id in leaves:
            return head, leaves
    where = f"checkpoint {checkpoint_id}" if checkpoint_id else "any checkpoint"
    raise BadInputError(f"{record_id} is not covered by {where}", hint="run `openledger checkpoint` first")


def prove_inclusion(ledger: Ledger, record_id: str, report: VerificationReport,
                    checkpoint_id: str | None = None) -> dict[str, Any]:
    """An inclusion proof of ``record_id`` in a checkpoint (default: the newest one that covers it)."""
    if record_id not in report.summaries:
        raise NotFoundError(f"no record {record_id}")
    head, leaves = _covering(log_of(report), record_id, checkpoint_id)
    index = leaves.index(record_id)
    checkpoint = ledger.get(head.id)
    return {
        "format": PROOF_FORMAT,
        "record": record_id,
        "checkpoint": head.id,
        "root": checkpoint.body["root"],
        "tree_size": len(leaves),
        "leaf_index": index,
        "path": [node.hex() for node in inclusion_proof(leaves, index)],
        "checkpoint_envelope": checkpoint.envelope.decode(),
    }


def prove_consistency(ledger: Ledger, old_id: str, new_id: str, report: VerificationReport) -> dict[str, Any]:
    """An RFC 9162 consistency proof that checkpoint ``old_id``'s tree is a prefix of ``new_id``'s."""
    log = log_of(report)
    for checkpoint_id in (old_id, new_id):
        if checkpoint_id not in log.heads:
            raise NotFoundError(f"{checkpoint_id} is not a checkpoint in this ledger")
        if not log.sound(checkpoint_id):
            raise IntegrityError(f"checkpoint {checkpoint_id} does not match the records it covers",
                                 hint="run `openledger verify`")
    old, new = log.heads[old_id], log.heads[new_id]
    if old.count > new.count:
        raise BadInputError(f"the old checkpoint covers {old.count} records, more than the new one ({new.count})",
                            hint="give the older checkpoint first: prove --consistency OLD NEW")
    leaves = log.leaves_of(new_id)
    if leaves[:old.count] != log.leaves_of(old_id):
        raise BadInputError(
            f"checkpoint {new_id} does not extend {old_id}: no consistency proof exists",
            hint="the old one was made on another branch, or is a version 1 checkpoint whose sorted leaves "
                 "a later checkpoint does not extend (see docs/proofs.md)")
    return {
        "format": CONSISTENCY_FORMAT,
        "old_checkpoint": old_id,
        "old_size": old.count,
        "old_root": old.root,
        "new_checkpoint": new_id,
        "new_size": new.count,
        "new_root": new.root,
        "path": [node.hex() for node in consistency_proof(leaves, old.count)],
        "old_checkpoint_envelope": ledger.get(old_id).envelope.decode(),
        "new_checkpoint_envelope": ledger.get(new_id).envelope.decode(),
    }


# -- signed notes ------------------------------------------------------------------------------------------
def checkpoint_note(checkpoint: Record, cosignatures: Sequence[tuple[str, str]] = ()) -> str:
    """The checkpoint as a C2SP tlog-checkpoint signed note, with witness cosignature lines (name, value)."""
    body = checkpoint.body
    if checkpoint.kind != "checkpoint":
        raise BadInputError(f"{checkpoint.id} is a {checkpoint.kind} record, not a checkpoint")
    if "signature" not in body:
        raise BadInputError(f"checkpoint {checkpoint.id} predates signed notes (version 1): it has no note "
                            "signature", hint="sign a new checkpoint with `openledger checkpoint`")
    text = checkpoint_text(body["origin"], body["count"], bytes.fromhex(body["root"][7:]))
    lines = signature_line(body["origin"], body["signature"])
    lines += "".join(signature_line(name, value) for name, value in cosignatures)
    return f"{text}\n{lines}"


def check_note(data: str | bytes, keyid: str) -> CheckpointNote:
    """Parse a checkpoint note and check the log signature of ``keyid`` (key name = the origin) on it."""
    if not _KEYID.fullmatch(keyid):
        raise BadInputError(f"--key must be a full key id (ed25519:<64 hex>), got {keyid[:80]!r}")
    note = parse_checkpoint_note(data)
    if not verify_log_signature(note.note, note.origin, public_key_of(keyid)):
        raise IntegrityError(f"the note carries no valid signature by {keyid} under the name {note.origin}")
    return note


# -- checking proofs ---------------------------------------------------------------------------------------
def _require(proof: dict[str, Any], fields: Sequence[tuple[str, type]], ids: Sequence[str]) -> None:
    for name, kind in fields:
        value = proof.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadInputError(f"malformed proof: {name} must be a {kind.__name__}")
    for name in ids:
        if not _ROOT.fullmatch(proof[name]):
            raise BadInputError(f"malformed proof: {name} must be a record id (sha256:<64 hex>)")


def _path(proof: dict[str, Any]) -> list[bytes]:
    try:
        path = [bytes.fromhex(node) for node in proof["path"]]
    except (TypeError, ValueError):
        raise BadInputError("malformed proof: path must be hex strings") from None
    if any(len(node) != 32 for node in path) or len(path) > 128:
        raise BadInputError("malformed proof: path must be at most 128 hashes of 32 bytes")
    return path


def _signed_head(envelope: str, checkpoint_id: str) -> tuple[str, int, str]:
    """(root, count, signer) of a checkpoint envelope carried in a proof, after checking its id and signature."""
    checkpoint = open_record(envelope.encode(), expected_id=checkpoint_id)
    if checkpoint.kind != "checkpoint":
        raise BadInputError("the proof's checkpoint envelope is not a checkpoint")
    return str(checkpoint.body["root"]), int(checkpoint.body["count"]), checkpoint.actor


def _pinned_by_notes(notes: Sequence[str | bytes], signer: str | None, heads: Sequence[tuple[int, str]]
                     ) -> str | None:
    """Why the signed notes given do not pin one of ``heads`` (size, root), or None when they all do."""
    for data in notes:
        if signer is None:
            raise BadInputError("a note pins a signed checkpoint: it cannot be combined with --root")
        note = check_note(data, signer)
        if (note.size, note.root_id) not in heads:
            return f"the note (size {note.size}, root {note.root_id}) is not a tree head of this proof"
    return None


def check_proof(proof: dict[str, Any], *, root: str | None = None,
                notes: Sequence[str | bytes] = ()) -> dict[str, Any]:
    """Check an inclusion or consistency proof.

    The tree heads come from the signed checkpoint envelopes the proof carries (their ids and signatures are
    checked), or, for an inclusion proof, from ``root`` given by the caller. ``notes`` are signed notes
    (``checkpoint --format note``) whose log signature must verify with the proof's checkpoint signer and
    whose size and root must be one of the proof's tree heads: they pin what the proof is checked against.
    """
    if proof.get("format") == CONSISTENCY_FORMAT:
        return _check_consistency(proof, root=root, notes=notes)
    if proof.get("format") != PROOF_FORMAT:
        raise BadInputError(f"not an OpenLedger proof (format {str(proof.get('format'))[:80]!r})")
    _require(proof, (("record", str), ("checkpoint", str), ("root", str), ("path", list), ("leaf_index", int),
                     ("tree_size", int), ("checkpoint_envelope", str)), ("record", "checkpoint"))
    path = _path(proof)
    result = {"kind": "inclusion", "record": proof["record"], "checkpoint": proof["checkpoint"],
              "checkpoint_signer": None}
    if root is None:
        root, count, signer = _signed_head(proof["checkpoint_envelope"], proof["checkpoint"])
        result["checkpoint_signer"] = signer
        if proof["root"] != root or proof["tree_size"] != count:
            return {**result, "valid": False, "root": root,
                    "reason": "the proof's root or size differs from its signed checkpoint"}
        why = _pinned_by_notes(notes, signer, [(count, root)])
        if why:
            return {**result, "valid": False, "root": root, "reason": why}
    elif not _ROOT.fullmatch(root):
        raise BadInputError(f"--root must be sha256:<64 hex digits>, got {root!r}")
    elif notes:
        raise BadInputError("give --root or a signed note to pin the tree head, not both")
    valid = verify_inclusion(proof["record"], proof["leaf_index"], proof["tree_size"], path,
                             bytes.fromhex(root.partition(":")[2]))
    return {**result, "valid": valid, "root": root,
            "reason": None if valid else f"the audit path does not lead to root {root}"}


def _check_consistency(proof: dict[str, Any], *, root: str | None, notes: Sequence[str | bytes]
                       ) -> dict[str, Any]:
    _require(proof, (("old_checkpoint", str), ("old_size", int), ("old_root", str), ("new_checkpoint", str),
                     ("new_size", int), ("new_root", str), ("path", list), ("old_checkpoint_envelope", str),
                     ("new_checkpoint_envelope", str)),
             ("old_checkpoint", "old_root", "new_checkpoint", "new_root"))
    if root is not None:
        raise BadInputError("--root pins an inclusion proof; pin a consistency proof with signed notes")
    path = _path(proof)
    old_root, old_size, old_signer = _signed_head(proof["old_checkpoint_envelope"], proof["old_checkpoint"])
    new_root, new_size, new_signer = _signed_head(proof["new_checkpoint_envelope"], proof["new_checkpoint"])
    result: dict[str, Any] = {
        "kind": "consistency", "old_checkpoint": proof["old_checkpoint"], "new_checkpoint": proof["new_checkpoint"],
        "old_root": old_root, "new_root": new_root, "old_size": old_size, "new_size": new_size,
        "old_signer": old_signer, "new_signer": new_signer, "checkpoint_signer": new_signer}
    if (proof["old_root"], proof["old_size"], proof["new_root"], proof["new_size"]) != (
            old_root, old_size, new_root, new_size):
        return {**result, "valid": False, "reason": "the proof's roots or sizes differ from its signed checkpoints"}
    for data in notes:
        note = parse_checkpoint_note(data)
        signer = old_signer if (note.size, note.root_id) == (old_size, old_root) else new_signer
        why = _pinned_by_notes([data], signer, [(old_size, old_root), (new_size, new_root)])
        if why:
            return {**result, "valid": False, "reason": why}
    valid = verify_consistency(old_size, new_size, bytes.fromhex(old_root[7:]), bytes.fromhex(new_root[7:]), path)
    return {**result, "valid": valid,
            "reason": None if valid else f"the path does not show that tree {old_size} is a prefix of tree {new_size}"}

