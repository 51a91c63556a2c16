"""Review policies: how many approvals a model, run or dataset needs, from whom, and what blocks it.

The policy lives under ``policies:`` in ``config.yaml`` (committed, reviewed like code)::

    policies:
      roles:
        ml-leads: [ed25519:…, ed25519:…]
      model:
        approvals: 2                     # approvals from distinct trusted keys
        reviewers: [role:ml-leads]       # optional allow-list: key ids and role:NAME
        distinct_from: [trainer, data]   # an approval by the trainer or a data supplier does not count
        block_on: [reject]               # decisions that block, whatever the approvals

:func:`evaluate_reviews` applies one rule to the reviews that link to a :class:`~openledger.lineage.targets.Subject`'s
pinned records and says, for every review, whether it counted and why not. A later review by the same key
supersedes its earlier decision. Reviews by untrusted keys never count, and neither do reviews by a key
that has been revoked at all: record times are claims, so a key's owner cannot tell its own old approvals
from ones a thief backdated.

>>> ReviewPolicy.from_config({"model": {"approvals": 2}}).rule("model").approvals
2
>>> ReviewPolicy.from_config({}).rule("dataset").distinct_from
('data',)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openledger.credit.people import People, Person
from openledger.errors import ConfigError
from openledger.identity.emails import normalise_email
from openledger.identity.trust import TrustState, in_time_order
from openledger.lineage.targets import Subject
from openledger.store.ledger import TRUST_KINDS, Ledger
from openledger.store.records import Record

__all__ = [
    "DEFAULT_RULES",
    "GateResult",
    "ReviewPolicy",
    "ReviewRule",
    "ReviewVerdict",
    "evaluate_reviews",
    "gate_subject",
    "reviews_of",
]

DECISION_NOUNS = {"approve": "approval", "request-changes": "change request", "reject": "rejection"}
_UNTRUSTED = {
    "unknown-key": "the key has no identity in this ledger",
    "unendorsed-key": "the key is not endorsed by a trust root",
    "identity-conflict": "the key claims an email (or git identity) that another key claims too",
}


@dataclass(frozen=True, slots=True)
class ReviewRule:
    """What one kind of target needs. ``reviewers`` holds key ids and ``role:NAME`` entries (empty: any
    trusted key); ``distinct_from`` is a subset of ``trainer`` and ``data``; ``block_on`` of ``reject`` and
    ``request-changes``."""

    approvals: int = 1
    reviewers: tuple[str, ...] = ()
    distinct_from: tuple[str, ...] = ("trainer",)
    block_on: tuple[str, ...] = ("reject",)

    def to_json(self) -> dict[str, Any]:
        return {"approvals": self.approvals, "reviewers": list(self.reviewers),
                "distinct_from": list(self.distinct_from), "block_on": list(self.block_on)}

    def describe(self) -> str:
        parts = [f"{self.approvals} approval{'s' if self.approvals != 1 else ''} from distinct trusted keys"]
        if self.reviewers:
            parts.append("by " + ", ".join(r if r.startswith("role:") else r[:20] for r in self.reviewers))
        names = {"trainer": "the trainer", "data": "the data suppliers"}
        if self.distinct_from:
            parts.append("not " + " or ".join(names[d] for d in self.distinct_from))
        if self.block_on:
            parts.append("blocked by any " + " or ".join(self.block_on))
        return ", ".join(parts)


DEFAULT_RULES: Mapping[str, ReviewRule] = {
    "model": ReviewRule(),
    "run": ReviewRule(),
    "dataset": ReviewRule(distinct_from=("data",)),
    "record": ReviewRule(distinct_from=()),
}


@dataclass(frozen=True)
class ReviewPolicy:
    """The ``policies:`` section of ``config.yaml``, with the defaults filled in (schema-checked by
    :class:`~openledger.config.LedgerConfig`; roles are checked here)."""

    rules: Mapping[str, ReviewRule]
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, policies: Mapping[str, Any]) -> ReviewPolicy:
        roles = {name: frozenset(keys) for name, keys in (policies.get("roles") or {}).items()}
        rules = dict(DEFAULT_RULES)
        for kind, default in DEFAULT_RULES.items():
            given = policies.get(kind)
            if given is None:
                continue
            rule = ReviewRule(
                approvals=int(given.get("approvals", default.approvals)),
                reviewers=tuple(given.get("reviewers", default.reviewers)),
                distinct_from=tuple(given.get("distinct_from", default.distinct_from)),
                block_on=tuple(given.get("block_on", default.block_on)),
            )
            for entry in rule.reviewers:
                if entry.startswith("role:") and entry[len("role:"):] not in roles:
                    raise ConfigError(f"config.yaml: policies.{kind}.reviewers names {entry}, which is not "
                                      "defined under policies.roles")
            rules[kind] = rule
        return cls(rules, roles)

    def rule(self, kind: str) -> ReviewRule:
        return self.rules.get(kind, DEFAULT_RULES["record"])

    def allowed_reviewers(self, rule: ReviewRule) -> frozenset[str] | None:
        """The keys the rule's allow-list expands to, or None when any trusted key may review."""
        if not rule.reviewers:
            return None
        keys: set[str] = set()
        for entry in rule.reviewers:
            keys |= self.roles[entry[len("role:"):]] if entry.startswith("role:") else {entry}
        return frozenset(keys)


@dataclass(frozen=True, slots=True)
class ReviewVerdict:
    """One review and what the policy made of it: ``counted`` (an approval that counts), ``blocking``,
    ``noted`` (a decision that neither counts nor blocks), ``discarded`` or ``superseded`` (with ``reason``)."""

    review_id: str
    actor: str
    reviewer: Person
    decision: str
    time: str
    message: str
    status: str
    reason: str = ""

    def describe(self) -> str:
        """``approval sha256:… by ed25519:… (Name <email>) discarded: key revoked at …``."""
        noun = DECISION_NOUNS[self.decision]
        text = f"{noun} {self.review_id} by {self.actor} ({self.reviewer.label}) {self.status}"
        if self.reason:
            return f"{text}: {self.reason}"
        return f"{text}: {self.message}" if self.message else text

    def to_json(self) -> dict[str, Any]:
        return {"review": self.review_id, "actor": self.actor, "reviewer": self.reviewer.to_json(),
                "decision": self.decision, "time": self.time, "message": self.message, "status": self.status,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class GateResult:
    """The verdict of a policy on one subject: ``passed`` exactly when ``unmet`` is empty."""

    kind: str
    target: str
    records: tuple[str, ...]
    rule: ReviewRule
    verdicts: tuple[ReviewVerdict, ...]
    unmet: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.unmet

    def with_status(self, status: str) -> list[ReviewVerdict]:
        return [v for v in self.verdicts if v.status == status]

    @property
    def approvals(self) -> list[ReviewVerdict]:
        return self.with_status("counted")

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "records": list(self.records), "passed": self.passed,
                "policy": self.rule.to_json(), "unmet": list(self.unmet),
                "reviews": [v.to_json() for v in self.verdicts]}


def reviews_of(ledger: Ledger, record_ids: Iterable[str]) -> list[Record]:
    """Every ``review`` record that links to one of ``record_ids``, oldest first (by claimed time, then id).

    Read from the disk and checked in full (:meth:`Ledger.checked`), not found through the index: deleting a
    rejection's rows from the index must not turn a failed gate into a passed one."""
    return _linking(ledger.checked(("review",)), record_ids)


def _linking(records: Iterable[Record], record_ids: Iterable[str]) -> list[Record]:
    wanted = frozenset(record_ids)
    return [r for r in records if r.kind == "review" and wanted.intersection(r.links)]


def _discard_reason(review: Record, subject: Subject, trust: TrustState, allowed: frozenset[str] | None,
                    rule: ReviewRule) -> str:
    actor = review.actor
    if actor in trust.revoked_from:
        return f"key revoked at {trust.revoked_from[actor]}"
    status = trust.status(actor, review.time)
    if status is not None:
        return _UNTRUSTED.get(status, status)
    if allowed is not None and actor not in allowed:
        return "the key is not among the policy's reviewers (" + ", ".join(rule.reviewers) + ")"
    if review.body["decision"] != "approve":
        return ""
    identity = trust.identities.get(actor)
    if "trainer" in rule.distinct_from:
        if actor in subject.trainers():
            return "the reviewer trained or registered it (signed its run or model record)"
        # A claim can only make the gate stricter: a matching user_id discards, a missing one proves nothing.
        names = {identity.email.lower(), identity.email.lower().partition("@")[0], identity.name.lower()} \
            if identity is not None else set()
        if names & subject.trainer_claims():
            return "MLflow names the reviewer as its user (user_id)"
    if "data" in rule.distinct_from:
        keys, emails = subject.data_contributors()
        # every email the reviewer's identity claims (git entries too): data committed under an alias counts
        if actor in keys or (identity is not None and {normalise_email(e) for e in emails} & set(identity.emails)):
            return "the reviewer supplied its data"
    return ""


def evaluate_reviews(subject: Subject, reviews: Iterable[Record], trust: TrustState,
                     policy: ReviewPolicy) -> GateResult:
    """Apply the policy for ``subject.kind`` to ``reviews`` (those that link to the subject's records)."""
    rule = policy.rule(subject.kind)
    allowed = policy.allowed_reviewers(rule)
    pinned = set(subject.record_ids)
    # `records` names what a review is about; its other links are context (a model review also links the
    # model's run, and must not count as a review of the run). Hand-written reviews have only links.
    ordered = in_time_order(r for r in reviews if pinned & set(r.body.get("records") or r.links))
    latest = {review.actor: review for review in ordered}
    people = People(trust)
    verdicts: list[ReviewVerdict] = []
    for review in ordered:
        body = review.body
        who = people.by_key(review.actor)

        def verdict(status: str, reason: str = "", review: Record = review, body: Any = body,
                    who: Person = who) -> ReviewVerdict:
            return ReviewVerdict(review.id, review.actor, who, body["decision"], review.time,
                                 str(body.get("message", "")), status, reason)

        newer = latest[review.actor]
        if newer.id != review.id:
            verdicts.append(verdict("superseded", f"a later decision by the same key ({newer.id})"))
            continue
        reason = _discard_reason(review, subject, trust, allowed, rule)
        if reason:
            verdicts.append(verdict("discarded", reason))
        elif body["decision"] == "approve":
            verdicts.append(verdict("counted"))
        elif body["decision"] in rule.block_on:
            verdicts.append(verdict("blocking"))
        else:
            verdicts.append(verdict("noted"))
    unmet: list[str] = []
    counted = sum(1 for v in verdicts if v.status == "counted")
    if counted < rule.approvals:
        unmet.append(f"needs {rule.approvals} approval{'s' if rule.approvals != 1 else ''} from distinct "
                     f"trusted keys; {counted} counted")
    unmet += [f"blocked: {v.describe()}" for v in verdicts if v.status == "blocking"]
    if not any(trust.status(r.actor, r.time) is None and r.actor not in trust.revoked_from
               for r in subject.records):
        unmet.append(f"no record of {subject.target} is signed by a trusted key")
    return GateResult(subject.kind, subject.target, subject.record_ids, rule, tuple(verdicts), tuple(unmet))


def gate_subject(ledger: Ledger, subject: Subject) -> GateResult:
    """Evaluate the ledger's policy for ``subject`` against the reviews in the ledger."""
    policy = ReviewPolicy.from_config(ledger.config.policies)
    records = ledger.checked(("review", *TRUST_KINDS))  # one pass over the disk for the reviews and the trust
    return evaluate_reviews(subject, _linking(records, subject.record_ids), ledger.trust_of(records), policy)
