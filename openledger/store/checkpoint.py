"""Checkpoints (a signed commitment to the whole ledger) and inclusion proofs against them.

A checkpoint records the number of records, each feed's tips, an RFC 6962 Merkle root over the sorted ids
of every record reachable from those tips, and the previous checkpoint. Kept outside the repository (a CI
variable, an MLflow tag, a release note), its id lets ``verify --against`` detect rewritten or truncated
history, and ``prove`` shows that one record is included in log2(n) hashes.

>>> import tempfile; from pathlib import Path; from openledger.store.keys import generate_signer
>>> from openledger.store.verify import verify_ledger
>>> ledger = Ledger.init(Path(tempfile.mkdtemp())); signer = generate_signer(feed="doc")
>>> first = ledger.append(signer, "feedback", {"target": "x", "label": "ok"})
>>> cp = append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1))
>>> check_proof(prove_inclusion(ledger, first.id, verify_ledger(ledger, workers=1)))["valid"]
True
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from openledger.errors import BadInputError, IntegrityError, NotFoundError
from openledger.store.ledger import Ledger
from openledger.store.merkle import inclusion_proof, merkle_root, verify_inclusion
from openledger.store.records import Record, RecordSigner, open_record
from openledger.store.verify import VerificationReport, closure_of

__all__ = ["append_checkpoint", "check_proof", "prove_inclusion"]

PROOF_FORMAT = "openledger-inclusion-proof/v1"
_ROOT = re.compile(r"sha256:[0-9a-f]{64}")


def _tips(report: VerificationReport) -> dict[str, list[str]]:
    followed = {p for summary in report.summaries.values() for p in summary.prev}
    tips: dict[str, list[str]] = defaultdict(list)
    for summary in report.summaries.values():
        if summary.id not in followed:
            tips[summary.feed].append(summary.id)
    return {feed: sorted(ids) for feed, ids in sorted(tips.items())}


def _latest_checkpoint(report: VerificationReport) -> str | None:
    checkpoints = [s for s in report.summaries.values() if s.kind == "checkpoint"]
    if not checkpoints:
        return None
    return max(checkpoints, key=lambda s: (s.body["count"], s.time, s.id)).id


def append_checkpoint(ledger: Ledger, signer: RecordSigner, report: VerificationReport) -> Record:
    """Sign a checkpoint over the records ``report`` verified; refuses a ledger with integrity errors."""
    if report.errors:
        raise IntegrityError(
            f"refusing to checkpoint a ledger with {len(report.errors)} integrity error(s)",
            hint="run `openledger verify` and resolve them first",
        )
    record_ids = sorted(report.summaries)
    body = {
        "count": len(record_ids),
        "root": "sha256:" + merkle_root(record_ids).hex(),
        "feeds": _tips(report),
        "previous": _latest_checkpoint(report),
    }
    previous = body["previous"]
    return ledger.append(signer, "checkpoint", body, links=[previous] if isinstance(previous, str) else ())


def prove_inclusion(ledger: Ledger, record_id: str, report: VerificationReport,
                    checkpoint_id: str | None = None) -> dict[str, Any]:
    """An inclusion proof of ``record_id`` in a checkpoint (default: the newest one that covers it)."""
    summaries = report.summaries
    if record_id not in summaries:
        raise NotFoundError(f"no record {record_id}")
    candidates = []
    for summary in summaries.values():
        if summary.kind != "checkpoint" or (checkpoint_id and summary.id != checkpoint_id):
            continue
        covered, missing = closure_of([t for tips in summary.body["feeds"].values() for t in tips], summaries)
        if record_id in covered and not missing:
            candidates.append((summary.body["count"], summary.time, summary.id, covered))
    if not candidates:
        where = f"checkpoint {checkpoint_id}" if checkpoint_id else "any checkpoint"
        raise BadInputError(f"{record_id} is not covered by {where}", hint="run `openledger checkpoint` first")
    _, _, chosen, covered = max(candidates)
    leaves = sorted(covered)
    index = leaves.index(record_id)
    checkpoint = ledger.get(chosen)
    return {
        "format": PROOF_FORMAT,
        "record": record_id,
        "checkpoint": chosen,
        "root": checkpoint.body["root"],
        "tree_size": len(leaves),
        "leaf_index": index,
        "path": [node.hex() for node in inclusion_proof(leaves, index)],
        "checkpoint_envelope": checkpoint.envelope.decode(),
    }


def check_proof(proof: dict[str, Any], *, root: str | None = None) -> dict[str, Any]:
    """Check a proof; with ``root`` the tree head comes from the caller, otherwise from the signed checkpoint
    envelope carried in the proof (whose signature and id are checked)."""
    if proof.get("format") != PROOF_FORMAT:
        raise BadInputError(f"not an OpenLedger inclusion proof (format {proof.get('format')!r})")
    for name, kind in (("record", str), ("checkpoint", str), ("root", str), ("path", list), ("leaf_index", int),
                       ("tree_size", int), ("checkpoint_envelope", str)):
        if not isinstance(proof.get(name), kind):
            raise BadInputError(f"malformed proof: {name} must be a {kind.__name__}")
    for name in ("record", "checkpoint"):
        if not _ROOT.fullmatch(proof[name]):
            raise BadInputError(f"malformed proof: {name} must be a record id (sha256:<64 hex>)")
    try:
        path = [bytes.fromhex(node) for node in proof["path"]]
    except (TypeError, ValueError):
        raise BadInputError("malformed proof: path must be hex strings") from None
    signer: str | None = None
    if root is None:
        checkpoint = open_record(proof["checkpoint_envelope"].encode(), expected_id=proof["checkpoint"])
        if checkpoint.kind != "checkpoint":
            raise BadInputError("the proof's checkpoint envelope is not a checkpoint")
        root = str(checkpoint.body["root"])
        signer = checkpoint.actor
        if proof["root"] != root or proof["tree_size"] != checkpoint.body["count"]:
            return {"valid": False, "record": proof["record"], "root": root, "checkpoint": proof["checkpoint"],
                    "checkpoint_signer": signer,
                    "reason": "the proof's root or size differs from its signed checkpoint"}
    elif not _ROOT.fullmatch(root):
        raise BadInputError(f"--root must be sha256:<64 hex digits>, got {root!r}")
    valid = verify_inclusion(proof["record"], proof["leaf_index"], proof["tree_size"], path,
                             bytes.fromhex(root.partition(":")[2]))
    return {"valid": valid, "record": proof["record"], "root": root, "checkpoint": proof["checkpoint"],
            "checkpoint_signer": signer, "reason": None if valid else f"the audit path does not lead to root {root}"}
