"""Signing reviews and feedback, and promoting a model version: the operations behind ``openledger review``,
``feedback`` and ``gate --promote``.

A review or feedback record links the exact records its TARGET resolved to (see
:mod:`openledger.lineage.targets`); its body keeps the TARGET as written and what it named, so an alias that
moves later does not move the review. A promotion sets the alias through the registry first and records it
second, and takes the alias back when the record cannot be written: no alias is left set without its record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from openledger.errors import BadInputError
from openledger.governance.policy import GateResult, ReviewPolicy
from openledger.lineage.targets import ModelRegistry, Subject
from openledger.store.ledger import Ledger
from openledger.store.records import Record, RecordSigner

__all__ = ["AliasRegistry", "SignedReview", "give_feedback", "promote", "sign_review"]

DECISIONS = ("approve", "request-changes", "reject")


def _described_body(subject: Subject) -> dict[str, Any]:
    """What a review or feedback body says about its subject besides the links: the records it is about
    (the links also hold context, such as a model's run) and the version a model target named (an alias
    moves; the body keeps where it pointed)."""
    described: dict[str, Any] = {"records": list(subject.record_ids)}
    if subject.version is not None:
        v = subject.version
        described["model"] = {"name": v.name, "version": v.version, "run_id": v.run_id, "model_id": v.model_id}
    return described


@dataclass(frozen=True, slots=True)
class SignedReview:
    """An appended review, and whether the policy will discount it because its signer trained the subject."""

    record: Record
    own_work: bool


def sign_review(ledger: Ledger, signer: RecordSigner, subject: Subject, decision: str,
                message: str | None = None) -> SignedReview:
    """Append a review of ``subject`` (``approve``, ``request-changes`` or ``reject``)."""
    if decision not in DECISIONS:
        raise BadInputError(f"{decision!r} is not a review decision (one of {', '.join(DECISIONS)})")
    body: dict[str, Any] = {"decision": decision, "target": subject.target, **_described_body(subject)}
    if message:
        body["message"] = message
    rule = ReviewPolicy.from_config(ledger.config.policies).rule(subject.kind)
    own = decision == "approve" and "trainer" in rule.distinct_from and signer.keyid in subject.trainers()
    return SignedReview(ledger.append(signer, "review", body, subject.links()), own)


def give_feedback(ledger: Ledger, signer: RecordSigner, subject: Subject, *, label: str | None = None,
                  score: float | None = None, comment: str | None = None) -> Record:
    """Append feedback on ``subject``: a label, a score (NaN and infinities are kept), a comment, or several."""
    if label is None and score is None and comment is None:
        raise BadInputError("feedback needs at least one of --label, --score or -m/--message")
    body: dict[str, Any] = {"target": subject.target, **_described_body(subject)}
    for name, value in (("label", label), ("score", score), ("comment", comment)):
        if value is not None:
            body[name] = value
    return ledger.append(signer, "feedback", body, subject.links())


class AliasRegistry(ModelRegistry, Protocol):
    """What a promotion needs from the model registry (implemented by ``mlflow_plugin.registry``)."""

    def set_alias(self, name: str, alias: str, version: int) -> None: ...

    def restore_alias(self, name: str, alias: str, version: int | None) -> None: ...


def promote(ledger: Ledger, signer: RecordSigner, registry: AliasRegistry, subject: Subject, *,
            result: GateResult, alias: str) -> Record:
    """Point ``alias`` at the model version ``subject`` names and record who did it under which policy; fail
    closed (the alias is put back when the record cannot be written). Only for a gate that passed."""
    version = subject.version
    if version is None or subject.kind != "model":
        raise BadInputError(f"{subject.target}: only a model version can be promoted")
    if not result.passed:
        raise BadInputError(f"{subject.target}: the gate did not pass, so @{alias} is not set")
    previous = registry.alias_version(version.name, alias)
    approvals = [v.review_id for v in result.approvals]
    body = {"name": version.name, "version": version.version, "action": "promote", "alias": alias,
            "previous_version": previous, "run_id": version.run_id, "model_id": version.model_id,
            "target": subject.target, "approvals": approvals, "policy": result.rule.to_json()}
    registry.set_alias(version.name, alias, version.version)
    try:
        return ledger.append(signer, "model", body, [*subject.record_ids, *approvals])
    except BaseException:
        registry.restore_alias(version.name, alias, previous)
        raise
