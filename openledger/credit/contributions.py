"""Reviews and feedback as contributions: listed per target and per contributor (what reports will credit).

A ``review`` is credited to its signer. A ``feedback`` record is credited to its signer too, unless its body
names a human ``source`` (feedback captured from MLflow, where the process that recorded it is not the person
who gave it): then it is credited to that person, matched to a key by email, or by a name only one identity
uses (:meth:`~openledger.identity.trust.TrustState.key_for_source`: a contested email matches no key).
Feedback from an automated source (``LLM_JUDGE``, ``CODE``) is credited to nobody.

>>> import tempfile; from pathlib import Path; from openledger.store.keys import generate_signer
>>> ledger = Ledger.init(Path(tempfile.mkdtemp()))
>>> _ = ledger.append(generate_signer(feed="doc"), "feedback", {"target": "run:ab12", "label": "leak",
...                   "source": {"type": "HUMAN", "id": "ann@example.org"}})
>>> [c.contributor for c in contributions(ledger)]
['ann@example.org']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from openledger.identity.trust import TrustState
from openledger.store.canonical import tag_nonfinite
from openledger.store.ledger import Fact, Ledger
from openledger.store.records import Record

__all__ = ["Contribution", "activity_by_target", "contributions", "contributions_by_contributor",
           "credited_identity", "reviews_and_feedback_on"]

ROLES = {"review": "review", "feedback": "feedback"}


@dataclass(frozen=True, slots=True)
class Contribution:
    """One review or feedback record, with who it credits.

    ``contributor`` is the credited person as a string (``Name <email>`` of an identity, or the source id
    MLflow gave); ``contributor_key`` the key of the matching identity, when there is one; ``targets`` the
    body's target string followed by the record ids it links to.
    """

    role: str
    record_id: str
    signer: str
    contributor: str
    contributor_key: str | None
    targets: tuple[str, ...]
    time: str
    body: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "record": self.record_id, "signer": self.signer,
                "contributor": self.contributor, "contributor_key": self.contributor_key,
                "targets": list(self.targets), "time": self.time, "body": tag_nonfinite(dict(self.body))}


def credited_identity(record: Record | Fact, trust: TrustState) -> tuple[str, str | None] | None:
    """(contributor, key or None) that a review or feedback record credits; None for automated feedback."""
    source = record.body.get("source") if record.kind == "feedback" else None
    if isinstance(source, Mapping) and source.get("type") is not None:
        if str(source.get("type")).upper() != "HUMAN":
            return None
        source_id = str(source.get("id") or "")
        if source_id:
            key = trust.key_for_source(source_id)
            if key is None:
                return source_id, None
            return trust.describe(key), key
    return trust.describe(record.actor), record.actor


def contributions(ledger: Ledger, trust: TrustState | None = None) -> list[Contribution]:
    """Every review and credited feedback, oldest first."""
    trust = trust or ledger.trust()
    found: list[Contribution] = []
    for record in ledger.checked(("review", "feedback")):  # from the disk, checked: not the index's word
        credit = credited_identity(record, trust)
        if credit is None:
            continue
        targets = (str(record.body["target"]), *(link for link in record.links if link.startswith("sha256:")))
        found.append(Contribution(ROLES[record.kind], record.id, record.actor, credit[0], credit[1], targets,
                                  record.time, record.body))
    return sorted(found, key=lambda c: (c.time, c.record_id))


def activity_by_target(ledger: Ledger, trust: TrustState | None = None) -> dict[str, list[Contribution]]:
    """Reviews and feedback keyed by what they are about: each target string as given, and each record id
    they link to (so a model record's reviews are found by its id, whatever TARGET spelling was used)."""
    grouped: dict[str, list[Contribution]] = {}
    for contribution in contributions(ledger, trust):
        for target in dict.fromkeys(contribution.targets):
            grouped.setdefault(target, []).append(contribution)
    return grouped


def contributions_by_contributor(ledger: Ledger, trust: TrustState | None = None
                                 ) -> dict[str, list[Contribution]]:
    """Reviews and feedback keyed by the credited person: their key id when known, else the source id."""
    grouped: dict[str, list[Contribution]] = {}
    for contribution in contributions(ledger, trust):
        grouped.setdefault(contribution.contributor_key or contribution.contributor, []).append(contribution)
    return grouped


def reviews_and_feedback_on(ledger: Ledger, record_id: str) -> list[Record]:
    """The review and feedback records that link to one record, oldest first."""
    return [r for r in ledger.checked(("review", "feedback")) if record_id in r.links]
