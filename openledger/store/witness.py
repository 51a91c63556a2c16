"""Witnesses: a second key that cosigns a checkpoint only if it extends the last checkpoint it cosigned.

A witness (another team, the CI key, a partner organisation) runs :func:`cosign` on its own clone. It
verifies the ledger, takes the newest checkpoint, and checks that its tree extends the tree of the last
checkpoint this witness cosigned: by an RFC 9162 consistency proof between the two, computed from the
records. Only then does it append a ``cosignature`` record whose ``signature`` is a C2SP
``tlog-cosignature/v1`` Ed25519 cosignature over the checkpoint's signed note, so the note exported with
``checkpoint --format note`` carries it as a line transparency-log tooling verifies.

What the witness last cosigned is remembered in three places, each checked: the ``--from`` checkpoint its
operator pins, a state file outside the repository (``<OPENLEDGER_HOME>/witness/<key>.json``, per
origin), and its own cosignature records in the ledger. A history rewritten behind its back (records
deleted, the checkpoint re-signed) has no consistency proof from what it cosigned, and it refuses.

:func:`check_witnesses` is what ``verify --witnesses N`` adds: the newest checkpoint needs cosignatures
by N distinct trusted witness keys.

>>> import tempfile; from pathlib import Path; from openledger.store.keys import generate_signer
>>> from openledger.store.checkpoint import append_checkpoint
>>> from openledger.store.verify import verify_ledger
>>> ledger = Ledger.init(Path(tempfile.mkdtemp())); log, witness = generate_signer(feed="ci"), generate_signer(feed="w")
>>> _ = ledger.append(log, "feedback", {"target": "x", "label": "ok"})
>>> _ = append_checkpoint(ledger, log, verify_ledger(ledger, workers=1))
>>> cosign(ledger, witness, verify_ledger(ledger, workers=1), remembered=[], timestamp=1).outcome
'cosigned'
>>> check_witnesses(ledger, verify_ledger(ledger, workers=1), 1, [witness.keyid])
[]
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openledger.errors import BadInputError, IntegrityError
from openledger.store.checkpoint import checkpoint_note, log_of
from openledger.store.files import write_atomic
from openledger.store.ledger import Ledger
from openledger.store.logtree import CheckpointHead, LogTree
from openledger.store.merkle import consistency_proof, merkle_root, verify_consistency
from openledger.store.note import check_key_name, signer_cosignature, verify_cosignature
from openledger.store.records import Record, RecordSigner, public_key_of
from openledger.store.verify import ERROR, Problem, VerificationReport

__all__ = [
    "Cosigned",
    "Witnessed",
    "check_witnesses",
    "cosign",
    "cosignatures_of",
    "export_note",
    "load_witness_state",
    "remembered_checkpoints",
    "save_witness_state",
    "witness_ledger",
    "witness_name",
]


def witness_name(keyid: str) -> str:
    """The key name a witness key signs its cosignature lines under (the spec wants one name per key)."""
    return f"openledger.witness/{keyid.partition(':')[2][:32]}"


@dataclass(frozen=True, slots=True)
class Witnessed:
    """A tree head a witness cosigned before: where it must find the newest checkpoint's tree extending."""

    checkpoint: str
    size: int
    root: str
    origin: str | None
    source: str  # "--from", "state file", "ledger"

    def to_json(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "size": self.size, "root": self.root, "origin": self.origin,
                "source": self.source}


@dataclass(frozen=True, slots=True)
class Cosigned:
    """What :func:`cosign` did: ``cosigned`` (record appended) or ``unchanged`` (newest already cosigned)."""

    outcome: str
    checkpoint: CheckpointHead
    record: Record | None
    checked_against: tuple[Witnessed, ...]

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "checkpoint": self.checkpoint.id, "size": self.checkpoint.count,
                "root": self.checkpoint.root, "origin": self.checkpoint.origin,
                "cosignature": self.record.id if self.record else None,
                "checked_against": [w.to_json() for w in self.checked_against]}


# -- what a witness remembers --------------------------------------------------------------------------------
def _state_path(home: Path, keyid: str) -> Path:
    return home / "witness" / f"{keyid.partition(':')[2]}.json"


def load_witness_state(home: Path, keyid: str, origin: str) -> Witnessed | None:
    """The last tree head this witness key cosigned for ``origin``, from its state file (None if none)."""
    path = _state_path(home, keyid)
    try:
        data = json.loads(path.read_text("utf-8"))
        entry = data["origins"].get(origin)
        if entry is None:
            return None
        return Witnessed(str(entry["checkpoint"]), int(entry["size"]), str(entry["root"]), origin, "state file")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadInputError(f"cannot read the witness state {path}: {exc}",
                            hint="fix or remove the file (the witness then trusts the ledger's records)") from None


def save_witness_state(home: Path, keyid: str, head: CheckpointHead) -> Path:
    path = _state_path(home, keyid)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        data = {}
    origins = data.get("origins") if isinstance(data.get("origins"), dict) else {}
    origins[str(head.origin)] = {"checkpoint": head.id, "size": head.count, "root": head.root}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, (json.dumps({"key": keyid, "origins": origins}, indent=2, sort_keys=True) + "\n").encode())
    return path


def cosignatures_of(report: VerificationReport, keyid: str | None = None) -> list[Any]:
    """Verified cosignature records (summaries), optionally only those by ``keyid``."""
    return [s for s in report.summaries.values()
            if s.kind == "cosignature" and (keyid is None or s.actor == keyid)]


def remembered_checkpoints(report: VerificationReport, keyid: str, *, pinned: str | None, home: Path,
                           origin: str | None) -> list[Witnessed]:
    """Every tree head this witness is known to have cosigned: ``pinned`` (``--from``), its state file entry
    for ``origin``, its newest cosignature record in the ledger. A pinned checkpoint that is gone means
    history was rewritten: IntegrityError (exit 1)."""
    log = log_of(report)
    found: list[Witnessed] = []
    if pinned is not None:
        head = log.heads.get(pinned)
        if head is None:
            raise IntegrityError(f"the checkpoint this witness last cosigned ({pinned}) is not in the ledger: "
                                 "history was rewritten or truncated", hint="nothing was signed")
        found.append(Witnessed(head.id, head.count, head.root, head.origin, "--from"))
    if origin is not None:
        state = load_witness_state(home, keyid, origin)
        if state is not None:
            found.append(state)
    own = cosignatures_of(report, keyid)
    if own:
        newest = max(own, key=lambda s: (s.body["size"], s.body["timestamp"], s.id))
        body = newest.body
        found.append(Witnessed(body["checkpoint"], body["size"], body["root"], body["origin"], "ledger"))
    return found


# -- cosigning ------------------------------------------------------------------------------------------------
def _refuse(message: str) -> IntegrityError:
    return IntegrityError(message, hint="nothing was signed")


def _check_extends(log: LogTree, head: CheckpointHead, before: Witnessed) -> None:
    """Refuse unless ``head``'s tree extends the tree ``before``: a consistency proof computed from the
    records and checked as a remote verifier would."""
    if before.origin is not None and head.origin is not None and before.origin != head.origin:
        raise _refuse(f"the newest checkpoint's origin {head.origin!r} differs from {before.origin!r}, which this "
                      f"witness cosigned ({before.source})")
    if head.count < before.size:
        raise _refuse(f"the newest checkpoint {head.id} covers {head.count} records, fewer than the {before.size} "
                      f"of {before.checkpoint}, which this witness cosigned ({before.source}): history was "
                      "truncated or forked")
    leaves = log.leaves_of(head.id)
    old_root = bytes.fromhex(before.root[7:])
    new_root = bytes.fromhex(head.root[7:])
    proof = consistency_proof(leaves, before.size)
    if merkle_root(leaves[:before.size]) != old_root or not verify_consistency(
            before.size, head.count, old_root, new_root, proof):
        raise _refuse(f"checkpoint {head.id} does not extend {before.checkpoint}, which this witness cosigned "
                      f"({before.source}): no consistency proof exists, history was rewritten or forked")


def cosign(ledger: Ledger, signer: RecordSigner, report: VerificationReport, *, remembered: Sequence[Witnessed],
           checkpoint: str | None = None, origin: str | None = None, timestamp: int) -> Cosigned:
    """Cosign the newest checkpoint (or ``checkpoint``) if it extends every tree head in ``remembered``.

    Refuses (IntegrityError: exit 1, nothing signed) on a ledger with integrity errors, a checkpoint that
    does not match its records, another ``origin`` than the one pinned, or an inconsistent history.
    """
    if report.errors:
        raise _refuse(f"the ledger has {len(report.errors)} integrity error(s): run `openledger verify`")
    log = log_of(report)
    head = log.heads.get(checkpoint) if checkpoint else log.newest()
    if head is None:
        raise BadInputError(f"{checkpoint} is not a checkpoint in this ledger" if checkpoint
                            else "the ledger has no checkpoint to cosign", hint="run `openledger checkpoint`")
    if head.origin is None:
        raise BadInputError(f"checkpoint {head.id} is a version 1 checkpoint, which has no signed note to cosign",
                            hint="sign a new checkpoint with `openledger checkpoint`")
    if head.signer == signer.keyid:
        raise BadInputError("a witness does not cosign its own checkpoints: use another key than the one that "
                            "signed the checkpoint")
    if origin is not None and head.origin != check_key_name(origin, "origin"):
        raise _refuse(f"the newest checkpoint's origin is {head.origin!r}, not {origin!r}")
    for before in remembered:
        _check_extends(log, head, before)
    if any(before.checkpoint == head.id for before in remembered if before.source == "ledger"):
        return Cosigned("unchanged", head, None, tuple(remembered))
    name = witness_name(signer.keyid)
    body = {"checkpoint": head.id, "origin": head.origin, "size": head.count, "root": head.root, "name": name,
            "timestamp": timestamp, "signature": signer_cosignature(signer, name, head.note_text(), timestamp),
            "previous": max(remembered, key=lambda w: w.size).checkpoint if remembered else None}
    record = ledger.append(signer, "cosignature", body, links=[head.id])
    return Cosigned("cosigned", head, record, tuple(remembered))


def witness_ledger(ledger: Ledger, signer: RecordSigner, report: VerificationReport, *, home: Path,
                   pinned: str | None = None, checkpoint: str | None = None, origin: str | None = None
                   ) -> Cosigned:
    """What ``openledger witness`` does: gather what this key cosigned before (``pinned``, its state file
    under ``home``, its records), cosign the newest checkpoint if it extends all of them, remember it."""
    log = log_of(report)
    target = log.heads.get(checkpoint) if checkpoint else log.newest()
    remembered = remembered_checkpoints(report, signer.keyid, pinned=pinned, home=home,
                                        origin=target.origin if target else None)
    timestamp = int(ledger.clock().timestamp())
    outcome = cosign(ledger, signer, report, remembered=remembered, checkpoint=checkpoint, origin=origin,
                     timestamp=timestamp)
    save_witness_state(home, signer.keyid, outcome.checkpoint)
    return outcome


def export_note(ledger: Ledger, checkpoint_id: str) -> str:
    """A checkpoint as a C2SP signed note, with a line for every valid cosignature recorded on it."""
    record = ledger.get(checkpoint_id)
    if record.kind != "checkpoint":
        raise BadInputError(f"{checkpoint_id} is a {record.kind} record, not a checkpoint")
    head = CheckpointHead.from_record(record.id, record.actor, record.time, record.body)
    lines = []
    for cosignature in ledger.select(kind="cosignature", links_to=checkpoint_id):
        if head.origin is not None and cosignature_valid(cosignature, head):
            lines.append((str(cosignature.body["name"]), str(cosignature.body["signature"])))
    return checkpoint_note(record, sorted(set(lines)))


# -- verify --witnesses N --------------------------------------------------------------------------------------
def cosignature_valid(summary: Any, head: CheckpointHead) -> bool:
    """Does a cosignature record's C2SP cosignature verify over ``head``'s note, with matching fields?"""
    body = summary.body
    if (body["checkpoint"], body["origin"], body["size"], body["root"]) != (head.id, head.origin, head.count,
                                                                           head.root):
        return False
    try:
        value = base64.b64decode(body["signature"], validate=True)
        text = head.note_text()
    except (binascii.Error, ValueError, BadInputError):
        return False
    stamp = verify_cosignature(text, body["name"], public_key_of(summary.actor), value)
    return stamp is not None and stamp == int(body["timestamp"])


def check_witnesses(ledger: Ledger, report: VerificationReport, required: int, keys: Iterable[str] = ()
                    ) -> list[Problem]:
    """``verify --witnesses N``: the newest checkpoint needs cosignatures by ``required`` distinct trusted
    witness keys: ``keys`` if given, else ``checkpoints: witnesses:`` in config.yaml, else any key the
    ledger's trust settings trust. The checkpoint's own signer never counts. Every cosignature record whose
    signature or fields do not match its checkpoint is an error too."""
    log = log_of(report)
    problems = []
    for summary in cosignatures_of(report):
        head = log.heads.get(summary.body["checkpoint"])
        if head is None or head.origin is None or not cosignature_valid(summary, head):
            problems.append(Problem(ERROR, "cosignature-invalid", "its cosignature does not verify over the "
                                    "checkpoint it names (or that checkpoint is missing)", summary.id))
    if required <= 0:
        return problems
    newest = log.newest()
    if newest is None:
        return [*problems, Problem(ERROR, "witnesses-missing", "no checkpoint to require cosignatures on")]
    trusted = set(keys) or set(ledger.config.checkpoints.get("witnesses") or ())
    counted = set()
    for summary in cosignatures_of(report):
        actor = summary.actor
        if summary.body["checkpoint"] != newest.id or actor == newest.signer or actor in counted:
            continue
        trusted_key = actor in trusted if trusted else report.trust.status(actor, summary.time) is None
        if trusted_key and newest.origin is not None and cosignature_valid(summary, newest):
            counted.add(actor)
    if len(counted) < required:
        who = "listed" if trusted else "trusted"
        problems.append(Problem(
            ERROR, "witnesses-missing",
            f"the newest checkpoint has {len(counted)} cosignature(s) by {who} witness keys; {required} required",
            newest.id))
    return problems

