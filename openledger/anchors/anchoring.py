"""Anchor checkpoints outside the ledger, check anchors offline, and bound record times with them.

An anchor proves that a checkpoint's Merkle root existed at the anchor's time, so every record the
checkpoint covers existed before it. :func:`anchor_with_tsa` and :func:`anchor_on_chain` make ``anchor``
records; :func:`check_anchors` is what ``verify --anchors`` adds (every anchor's evidence re-checked, and a
warning for each covered record whose claimed time is later than its anchor's); :class:`AnchorIndex`
answers "anchored before what time is record X" for reports.

>>> AnchorIndex({}).anchored_before("sha256:" + "0" * 64) is None
True
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openledger.anchors import evm, rfc3161
from openledger.anchors.profiles import AnchorProfiles
from openledger.errors import BadInputError, IntegrityError
from openledger.identity.trust import instant
from openledger.store.checkpoint import log_of
from openledger.store.ledger import Ledger
from openledger.store.logtree import CheckpointHead, LogTree
from openledger.store.records import Record, RecordSigner, format_time
from openledger.store.verify import ERROR, WARNING, Problem, VerificationReport

__all__ = ["AnchorBound", "AnchorIndex", "anchor_on_chain", "anchor_with_tsa", "anchored_before", "check_anchors"]


@dataclass(frozen=True, slots=True)
class AnchorBound:
    """Record X existed before ``time``: checkpoint ``checkpoint`` covers it, and anchor ``anchor``
    (``method`` ``rfc3161`` or ``evm``) proves the checkpoint's root existed at ``time``."""

    time: str
    checkpoint: str
    anchor: str
    method: str

    def to_json(self) -> dict[str, str]:
        return {"time": self.time, "checkpoint": self.checkpoint, "anchor": self.anchor, "method": self.method}


# -- making anchors -------------------------------------------------------------------------------------------
def _target(report: VerificationReport, checkpoint: str | None) -> CheckpointHead:
    if report.errors:
        raise IntegrityError(f"refusing to anchor a ledger with {len(report.errors)} integrity error(s)",
                             hint="run `openledger verify`")
    log = log_of(report)
    head = log.heads.get(checkpoint) if checkpoint else log.newest()
    if head is None:
        raise BadInputError(f"{checkpoint} is not a checkpoint in this ledger" if checkpoint
                            else "the ledger has no checkpoint to anchor", hint="run `openledger checkpoint`")
    return head


def anchor_with_tsa(ledger: Ledger, signer: RecordSigner, report: VerificationReport, url: str, *,
                    checkpoint: str | None = None, timeout: float = 30.0) -> tuple[Record, rfc3161.TokenCheck]:
    """Timestamp a checkpoint's root (default: the newest checkpoint) at the TSA ``url`` and record the token.
    Also returns the token checked against the TSA certificates configured now (the token is recorded
    either way: a certificate can be configured later)."""
    head = _target(report, checkpoint)
    root = bytes.fromhex(head.root[7:])
    token = rfc3161.request_token(url, root, timeout=timeout)
    profiles = AnchorProfiles.from_config(ledger.config.anchors)
    check = rfc3161.verify_token(token, root, [tsa.certificate for tsa in profiles.tsa])
    body = {"checkpoint": head.id, "root": head.root, "size": head.count, "method": "rfc3161",
            "time": format_time(rfc3161.token_time(token)), "tsa": url,
            "token": base64.b64encode(token).decode()}
    return ledger.append(signer, "anchor", body, links=[head.id]), check


def anchor_on_chain(ledger: Ledger, signer: RecordSigner, report: VerificationReport, rpc: Any, *,
                    chain_id: int, private_key: str, checkpoint: str | None = None, timeout: float = 120.0
                    ) -> Record:
    """Write a checkpoint's root into a transaction on chain ``chain_id`` (through ``rpc``: a URL or a Web3
    client) signed by the account ``private_key``, and record where it landed."""
    head = _target(report, checkpoint)
    landed = evm.send_anchor(rpc, chain_id=chain_id, private_key=private_key,
                             root=bytes.fromhex(head.root[7:]), size=head.count, timeout=timeout)
    body = {"checkpoint": head.id, "root": head.root, "size": head.count, "method": "evm", **landed.to_body()}
    return ledger.append(signer, "anchor", body, links=[head.id])


# -- checking anchors -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Checked:
    """One anchor's verdict: a problem, or the time it proves (``confirmed``: by the chain, for EVM)."""

    anchor: str
    checkpoint: str
    method: str
    time: str | None
    problem: Problem | None = None


def _check_one(summary: Any, log: LogTree, profiles: AnchorProfiles, chain: Any, chain_id: int | None
               ) -> _Checked:
    body = summary.body
    method = body["method"]
    head = log.heads.get(body["checkpoint"])

    def failed(code: str, message: str, severity: str = ERROR) -> _Checked:
        return _Checked(summary.id, body["checkpoint"], method, None, Problem(severity, code, message, summary.id))

    if head is None or not log.sound(head.id):
        return failed("anchor-checkpoint", f"it anchors checkpoint {body['checkpoint']}, which is missing or "
                                           "does not match the records it covers")
    if (body["root"], body["size"]) != (head.root, head.count):
        return failed("anchor-checkpoint", "its root or size differs from the checkpoint it anchors")
    root = bytes.fromhex(head.root[7:])
    if method == "rfc3161":
        try:
            token = base64.b64decode(body["token"], validate=True)
        except ValueError:
            return failed("anchor-invalid", "its token is not base64")
        verdict = rfc3161.verify_token(token, root, [tsa.certificate for tsa in profiles.tsa])
        if verdict.problem is not None:
            return failed(verdict.code, verdict.problem)
        if verdict.time is None or instant(verdict.time) != instant(body["time"]):
            return failed("anchor-invalid", f"the token is dated {verdict.time}, the anchor says {body['time']}")
        return _Checked(summary.id, head.id, method, verdict.time)
    problem = evm.check_offline(body, root, head.count)
    if problem is not None:
        return failed("anchor-invalid", problem)
    if chain is None:
        return _Checked(summary.id, head.id, method, None)  # checked offline; its time needs the chain
    if chain_id != body["chain_id"]:
        return failed("anchor-unchecked", f"not checked against its chain: the --evm node is chain {chain_id}, "
                                          f"the anchor is on chain {body['chain_id']}", WARNING)
    profile = profiles.chain_by_id(body["chain_id"])
    onchain = evm.check_online(chain, body, confirmations=profile.confirmations if profile else 1)
    if onchain.problem is not None:
        return failed(onchain.code, onchain.problem)
    if onchain.pending is not None:
        return failed("anchor-pending", f"not final yet: {onchain.pending}", WARNING)
    return _Checked(summary.id, head.id, method, body["time"])


_Earliest = tuple[str, str, str, str, str]  # (instant, time, anchor, method, anchored checkpoint)


def _earliest(checked: Iterable[_Checked]) -> dict[str, _Earliest]:
    """checkpoint -> its earliest proven anchor."""
    earliest: dict[str, _Earliest] = {}
    for item in checked:
        if item.time is not None:
            candidate = (instant(item.time), item.time, item.anchor, item.method, item.checkpoint)
            earliest[item.checkpoint] = min(earliest.get(item.checkpoint, candidate), candidate)
    return earliest


def _bounds(log: LogTree, earliest: dict[str, _Earliest]) -> dict[str, AnchorBound]:
    """Every record covered by an anchored checkpoint -> its earliest anchor: one more walk over the tree,
    each checkpoint's new records bounded by the earliest anchor of it or of any checkpoint extending it."""
    if not earliest:
        return {}
    segments: list[tuple[str, Sequence[str]]] = []
    walked = LogTree(log.heads.values(), log.prev_of, on_new=lambda cp, new: segments.append((cp, new)))
    reach = walked.earliest_below({cp: value for cp, value in earliest.items() if walked.sound(cp)})
    made: dict[_Earliest, AnchorBound] = {}
    bounds: dict[str, AnchorBound] = {}
    for checkpoint, new in segments:
        value = reach.get(checkpoint)
        if value is None:
            continue
        bound = made.setdefault(value, AnchorBound(value[1], value[4], value[2], value[3]))
        for record_id in new:
            current = bounds.get(record_id)
            if current is None or instant(bound.time) < instant(current.time):
                bounds[record_id] = bound
    return bounds


def check_anchors(ledger: Ledger, report: VerificationReport, *, evm_rpc: Any = None) -> list[Problem]:
    """``verify --anchors``: every anchor's evidence checked offline (a TSA token against the certificates in
    config.yaml; an EVM transaction's hash, chain, sender and calldata) and, with ``evm_rpc``, re-read from
    the chain; then a ``time-after-anchor`` warning for every covered record claiming a later time than its
    earliest proven anchor (beyond ``anchors: clock_skew:``)."""
    profiles = AnchorProfiles.from_config(ledger.config.anchors)
    anchors = [s for s in report.summaries.values() if s.kind == "anchor"]
    if not anchors:
        return []
    log = log_of(report)
    chain, chain_id = None, None
    if evm_rpc is not None:
        if isinstance(evm_rpc, str) and not evm_rpc.startswith(("http://", "https://")):
            evm_rpc = profiles.chain(evm_rpc).rpc_url or evm_rpc
        chain = evm.connect(evm_rpc)
        chain_id = evm.node_chain_id(chain)
    checked = [_check_one(summary, log, profiles, chain, chain_id) for summary in anchors]
    problems = [item.problem for item in checked if item.problem is not None]
    skew = timedelta(seconds=profiles.clock_skew)
    for record_id, bound in _bounds(log, _earliest(checked)).items():
        summary = report.summaries.get(record_id)
        if summary is None:
            continue
        latest = instant(format_time(datetime.fromisoformat(bound.time.replace("Z", "+00:00")) + skew))
        if instant(summary.time) > latest:
            problems.append(Problem(
                WARNING, "time-after-anchor",
                f"claims {summary.time}, but checkpoint {bound.checkpoint} covering it was anchored at {bound.time} "
                f"({bound.method} anchor {bound.anchor})", record_id))
    return problems


# -- anchored before ------------------------------------------------------------------------------------------
class AnchorIndex:
    """Which records an anchor bounds in time, for reports: ``anchored_before(record_id)``.

    :meth:`load` reads the checkpoint and anchor records (each checked: hash and signature), takes the
    ``prev`` links from the index (a cache: a checkpoint counts only if the Merkle root recomputed from
    them equals its signed root, which makes the leaves right), and checks each anchor offline: RFC 3161
    tokens against the TSA certificates in config.yaml; EVM anchors by their own transaction (hash, chain,
    calldata): their block time is as recorded, confirmed against the chain only by
    ``verify --anchors --evm``. Anchors whose library is not installed are left out.
    """

    def __init__(self, bounds: dict[str, AnchorBound]) -> None:
        self._bounds = bounds

    def anchored_before(self, record_id: str) -> AnchorBound | None:
        """The earliest anchor time record ``record_id`` is proven to predate, or None."""
        return self._bounds.get(record_id)

    def __len__(self) -> int:
        return len(self._bounds)

    @classmethod
    def load(cls, ledger: Ledger) -> AnchorIndex:
        anchors = list(ledger.select(kind="anchor"))
        if not anchors:
            return cls({})
        heads = [CheckpointHead.from_record(r.id, r.actor, r.time, r.body) for r in ledger.select(kind="checkpoint")]
        links = ledger.prev_links()
        log = LogTree(heads, links.get)
        profiles = AnchorProfiles.from_config(ledger.config.anchors)
        checked = []
        for record in anchors:
            try:
                item = _check_one(_AnchorFact(record.id, dict(record.body)), log, profiles, None, None)
            except BadInputError:  # its backend (an optional extra) is not installed
                continue
            if item.problem is None and item.time is None and item.method == "evm":
                item = _Checked(item.anchor, item.checkpoint, item.method, record.body["time"])
            checked.append(item)
        return cls(_bounds(log, _earliest(checked)))


@dataclass(frozen=True, slots=True)
class _AnchorFact:
    id: str
    body: dict[str, Any]


def anchored_before(ledger: Ledger, record_id: str) -> AnchorBound | None:
    """Anchored before what time is record ``record_id``? (For many records, load an :class:`AnchorIndex`.)"""
    return AnchorIndex.load(ledger).anchored_before(record_id)
