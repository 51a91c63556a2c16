"""Incremental verification: re-check what a trusted checkpoint covers by its bytes, the rest in full.

A checkpoint signed by a trusted key (the CI key, on the default branch) attests that every record it
covers passed a full verification when it was signed. ``verify --since CHECKPOINT`` relies on that:

1. every object's bytes are checked (a canonical v1 envelope whose payload hashes to the record's id, and
   whose key id is the payload's actor), in parallel, without the Ed25519 signature and the schema;
2. every checkpoint's Merkle root is recomputed from those records, the pinned one's included: its leaves
   are exactly the records it covers (by collision resistance: the root matches);
3. every record it does not cover (the new ones) gets the full check: signature, schema;
4. then the whole-ledger checks of a full verification: feeds for the records it does not cover (a
   record's feed checks read only it and the records before it, which a covered record's checkpoint covers
   too), time order for every record, every checkpoint, trust for every record, and the pinned checkpoint
   itself, which must be present (as with ``--against``) and signed by a key trusted at its time. If that
   key is not trusted, the verification is redone in full.

What it trusts: that the pinned checkpoint's signer verified the records it covers. What it does not re-check
for them: their signatures (a covered record whose signature bytes were replaced, payload unchanged, passes;
its content cannot change), the schema of their bodies (checked when they were signed and covered). The few
records that build trust and the checkpoint tree (identities, revocations, checkpoints, cosignatures,
anchors) are checked in full even when covered.

>>> import tempfile; from pathlib import Path; from openledger.store.keys import generate_signer
>>> from openledger.store.checkpoint import append_checkpoint
>>> from openledger.store.verify import verify_ledger
>>> ledger = Ledger.init(Path(tempfile.mkdtemp())); signer = generate_signer(feed="ci")
>>> _ = ledger.append(signer, "feedback", {"target": "x", "label": "ok"})
>>> pinned = append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1)).id
>>> verify_since(ledger, pinned, workers=1).since is None  # an unknown key: verified in full instead
True
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import orjson

from openledger._internal.index import iter_pack
from openledger._internal.memory import paused_gc
from openledger.errors import IntegrityError, NotFoundError, OpenLedgerError
from openledger.store.dsse import envelope_payload, envelope_payload_v1
from openledger.store.files import MAX_PACK_BYTES, read_regular
from openledger.store.leaves import Known, MerkleJob, chain_of, known_leaves
from openledger.store.ledger import Ledger
from openledger.store.logtree import LogTree, tree_of
from openledger.store.records import record_id_of
from openledger.store.seals import SealedPack, read_seals, signer_of
from openledger.store.verify import (
    ERROR,
    Problem,
    RecordSummary,
    VerificationReport,
    _check_objects,
    _check_one,
    _first,
    judge_ledger,
    verify_ledger,
)

__all__ = ["verify_since"]

Progress = Callable[[int, int], None]


def _packed_copies(ledger: Ledger, wanted: set[str], sealed: Mapping[Path, SealedPack]
                   ) -> dict[str, list[tuple[str, bytes]]]:
    """(where, envelope bytes) of every pack line of the ``wanted`` records (not covered, not loose), found by
    their payload's hash in the packs that can hold them: each pack not read from a seal, and each sealed pack
    whose seal names one. Not through the index: in a fresh clone its first use reads every record (32 s at a
    million), and records a pull request wrote are packed once it appends 10,000."""
    found: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    if not wanted:
        return found
    for pack in ledger.pack_paths():
        seal = sealed.get(pack)
        if seal is not None and wanted.isdisjoint(map(_first, seal.rows)):
            continue
        try:
            data = read_regular(pack, MAX_PACK_BYTES)
        except (OpenLedgerError, OSError):
            continue  # the object checks named it
        for offset, line in iter_pack(data):
            try:
                record_id = record_id_of(envelope_payload(line))
            except IntegrityError:
                continue  # the object checks named it
            if record_id in wanted:
                found[record_id].append((f"{pack}@{offset}", line))
    return found


def _full_check(ledger: Ledger, record_id: str, copies: Sequence[tuple[str, bytes]] = (),
                rebuilt: list[bool] | None = None) -> tuple[RecordSummary | None, list[Problem]]:
    """A record the pinned checkpoint does not cover, checked in full: its summary (None if no copy is sound)
    and the problems of its copies. Its loose object if there is one (a damaged loose copy is reported even when
    a packed one is sound, as a full verification does); else each of its pack lines (``copies``); else the
    copy the index points at (a cache: if it points at other bytes, it is rebuilt and asked again, once per
    verification: ``rebuilt``)."""
    rebuilt = rebuilt if rebuilt is not None else [False]
    hexdigest = record_id.partition(":")[2]
    try:  # new records are usually loose objects: read the file without asking the index
        data = read_regular(os.path.join(ledger.objects, hexdigest[:2], hexdigest[2:]))  # noqa: PTH118
        checked = _check_one(data, record_id, record_id)
        return (checked, []) if isinstance(checked, RecordSummary) else (None, [checked])
    except IntegrityError as exc:  # a symlink, FIFO, device or oversized file: never read
        return None, [Problem(ERROR, exc.code, exc.message, record_id)]
    except OSError:
        pass
    if copies:
        results = [_check_one(line, record_id, where) for where, line in copies]
        sound = [r for r in results if isinstance(r, RecordSummary)]
        return (sound[0] if sound else None), [r for r in results if isinstance(r, Problem)]
    for attempt in range(2):
        try:
            data = ledger.stored_bytes(record_id)
        except NotFoundError:
            if attempt == 0 and not rebuilt[0]:  # a pack line the index does not know (changed behind its back)
                ledger.rebuild_index()
                rebuilt[0] = True
                continue
            return None, [Problem(ERROR, "unreadable", "the record disappeared while it was verified", record_id)]
        checked = _check_one(data, record_id, record_id)
        if isinstance(checked, RecordSummary):
            return checked, []
        if attempt == 1 or rebuilt[0] or checked.code != "hash-mismatch":
            return None, [checked]
        ledger.rebuild_index()
        rebuilt[0] = True
    raise AssertionError("unreachable")


def _pinned_envelope(ledger: Ledger, since: str) -> bytes | None:
    """The bytes of checkpoint ``since``'s loose object (the newest checkpoint usually is one), if ``since`` is a
    full id; None otherwise. Read once, for whose seals to read and what its leaves files must add up to: the
    verification checks the record itself."""
    hexdigest = since.partition(":")[2]
    if len(hexdigest) != 64:
        return None
    try:
        return read_regular(os.path.join(ledger.objects, hexdigest[:2], hexdigest[2:]))  # noqa: PTH118
    except (OpenLedgerError, OSError):
        return None


def _count_of(envelope: bytes, since: str) -> int | None:
    """The ``count`` of the checkpoint in ``envelope`` if its payload hashes to ``since``: known before the
    leaves files are read, it bounds them. None otherwise (the files' own header bounds them)."""
    try:
        payload, _ = envelope_payload_v1(envelope)
        count = orjson.loads(payload)["body"]["count"] if record_id_of(payload) == since else None
    except (OpenLedgerError, ValueError, KeyError, TypeError):
        return None
    return count if type(count) is int else None


def verify_since(ledger: Ledger, since: str, *, workers: int | None = None, progress: Progress | None = None,
                 seals: bool = True, leaves: bool = True) -> VerificationReport:
    """Verify ``ledger`` trusting checkpoint ``since`` for what it covers (see the module's docstring);
    ``seals``: read the packs its signer sealed by their hashes (:mod:`openledger.store.seals`); ``leaves``:
    take the leaves of its tree from their files (:mod:`openledger.store.leaves`)."""
    envelope = _pinned_envelope(ledger, since)
    links = chain_of(ledger, since, size=_count_of(envelope, since) if envelope else None) if leaves else None
    job = MerkleJob(links) if links else None  # the pin's tree from its leaves files, hashed meanwhile
    try:
        with paused_gc(promote=True):  # a million summaries and tree entries stay alive and make no cycles
            # the pin's signer's seals: from the pin's loose object, else from its line in a sealed pack
            signer = signer_of(envelope, since) if envelope else None
            sealed = read_seals(ledger, signer, pin=since) if seals else {}
            report = _verify_since(ledger, since, workers, progress, sealed, job=job)
            if sealed:
                pinned = report.summaries.get(report.since) if report.since else None
                if pinned is None or {pack.key for pack in sealed.values()} != {pinned.actor} \
                        or pinned.actor in report.trust.revoked_from:
                    # no sound pin, sealed by another key, or by one revoked at some time: no seal vouches
                    return _verify_since(ledger, since, workers, progress, {}, job=job)
                return replace(report, sealed=sum(len(pack.rows) for pack in sealed.values()))
            return report
    finally:
        if job is not None:
            job.close()


def _known(job: MerkleJob | None, since: str, summaries: dict[str, RecordSummary]) -> Known | None:
    """The pinned checkpoint's chain's leaves from their files, if every root is as its checkpoint states
    (:mod:`openledger.store.leaves`); whether the leaves are present, sound and distinct is checked on the tree."""
    if job is None or job.links[-1].checkpoint != since:
        return None
    states = job.states()
    return known_leaves(job.links, states, summaries) if states is not None else None


def _covered(log: LogTree, since: str) -> frozenset[str]:
    """What checkpoint ``since`` covers, if its tree is sound; else nothing."""
    return log.captured if log.sound(since) and log.captured is not None else frozenset()


def _verify_since(ledger: Ledger, since: str, workers: int | None, progress: Progress | None,
                  sealed: Mapping[Path, SealedPack], *, job: MerkleJob | None) -> VerificationReport:
    summaries, problems, time_among = _check_objects(ledger, workers, progress, light=True, sealed=sealed)
    if not (since.startswith("sha256:") and len(since) == 71):
        matches = [i for i in summaries if i.startswith(since if since.startswith("sha256:") else "sha256:" + since)]
        since = matches[0] if len(matches) == 1 else since
    pinned = summaries.get(since)
    if pinned is None or pinned.kind != "checkpoint":
        # gone (rewritten or truncated history) or not a checkpoint: the full verification says which
        return verify_ledger(ledger, against=since, workers=workers, progress=progress)
    damaged = {p.record for p in problems if p.record} - summaries.keys()
    known = _known(job, since, summaries)
    log = tree_of(summaries, damaged, capture=since, known=known)
    covered = _covered(log, since)
    if known is not None:
        not_covered = summaries.keys() - covered
        tips = [tip for link in known for tip in log.heads[link].tips]
        if (len(covered) != pinned.body["count"] or len(summaries) - len(not_covered) != len(covered)
                or not covered.issuperset(tips)):
            # a listed record is missing or damaged (not in summaries), listed twice, or a checkpoint's tip is
            # not listed (its signer did not compute its root from its tips): walk instead
            known = None
            log = tree_of(summaries, damaged, capture=since)
            covered = _covered(log, since)
        else:
            uncovered = sorted(not_covered)
    if known is None:
        uncovered = [i for i in summaries if i not in covered]
    replaced = False
    packed = {i for i in uncovered if not os.path.lexists(os.path.join(ledger.objects, i[7:9], i[9:]))}  # noqa: PTH118
    copies = _packed_copies(ledger, packed, sealed)
    rebuilt = [False]
    for record_id in uncovered:
        summary, found = _full_check(ledger, record_id, copies.get(record_id, ()), rebuilt)
        problems += found
        if summary is None:
            del summaries[record_id]
            replaced = True
        else:
            summaries[record_id] = summary
    if replaced:  # a new record failed its full check: the trees must be recomputed without it
        damaged = {p.record for p in problems if p.record} - summaries.keys()
        log = tree_of(summaries, damaged, known=known)  # the listed records are covered: not among those
    report = judge_ledger(ledger, summaries, problems, against=since, log=log, since=since, covered=covered,
                          uncovered=uncovered, time_among=time_among)
    if report.trust.status(pinned.actor, pinned.time) is not None:
        return verify_ledger(ledger, against=since, workers=workers, progress=progress)
    if not log.sound(since) and not report.errors:
        raise IntegrityError(f"checkpoint {since} does not match its records, but nothing reported it")
    return replace(report, listed=len(covered)) if known is not None and covered else report
