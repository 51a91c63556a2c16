"""Who is trusted: identities, endorsements and revocations evaluated under the ledger's trust mode.

* ``tofu``: a key is trusted once it has a self-signed ``identity`` record; the first key (by claimed time)
  to claim an email keeps it, and a later key claiming the same email is flagged.
* ``endorsed``: a key is trusted if it is a trust root in ``config.yaml`` or a trust root signed an
  ``identity`` record for it (an endorsement).

A ``revocation`` counts when signed by the revoked key itself or by a trust root. Records by a revoked key
are untrusted from ``compromised_since`` (or the revocation's time) on; earlier ones keep their standing.

>>> TrustState.evaluate([], mode="tofu", roots=()).status("ed25519:" + "0" * 64, "2026-01-01T00:00:00Z")
'unknown-key'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


def instant(time: str) -> str:
    """A record time in one sortable spelling (six fraction digits): ``.5Z`` and ``.500000Z`` are equal."""
    head, dot, fraction = time.rstrip("Z").partition(".")
    return f"{head}.{(fraction if dot else '').ljust(6, '0')[:6]}Z"

__all__ = ["Identity", "TrustFact", "TrustState", "instant"]


@dataclass(frozen=True, slots=True)
class TrustFact:
    """An identity or revocation record, reduced to what trust needs."""

    id: str
    kind: str
    actor: str
    time: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Identity:
    keyid: str
    name: str
    email: str
    git: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    record_id: str = ""
    endorsed_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrustState:
    """The evaluated trust of every key the ledger mentions."""

    mode: str
    roots: frozenset[str]
    identities: Mapping[str, Identity]
    revoked_from: Mapping[str, str] = field(default_factory=dict)
    conflicts: Mapping[str, str] = field(default_factory=dict)  # keyid -> record id of the conflicting claim
    ignored: tuple[tuple[str, str], ...] = ()  # (record id, why) for endorsements/revocations that do not count

    @classmethod
    def evaluate(cls, facts: Iterable[TrustFact], *, mode: str, roots: Iterable[str]) -> TrustState:
        roots = frozenset(roots)
        ordered = sorted(facts, key=lambda f: (instant(f.time), f.id))
        revoked_from: dict[str, str] = {}
        ignored: list[tuple[str, str]] = []
        for fact in ordered:
            if fact.kind != "revocation":
                continue
            key = fact.body["key"]
            if fact.actor != key and fact.actor not in roots:
                ignored.append((fact.id, "revocation signed by neither the key nor a trust root"))
                continue
            since = instant(fact.body.get("compromised_since") or fact.time)
            revoked_from[key] = min(since, revoked_from.get(key, since))

        def revoked_at(key: str, when: str) -> bool:
            return key in revoked_from and instant(when) >= revoked_from[key]

        declared: dict[str, Identity] = {}
        endorsements: dict[str, list[str]] = {}
        email_owner: dict[str, str] = {}
        conflicts: dict[str, str] = {}
        for fact in ordered:
            if fact.kind != "identity":
                continue
            key = fact.body["key"]
            if fact.actor == key:
                if revoked_at(key, fact.time):
                    ignored.append((fact.id, "identity signed after its key was revoked"))
                    continue
                email = fact.body["email"].lower()
                owner = email_owner.setdefault(email, key)
                if owner != key and mode == "tofu":
                    conflicts.setdefault(key, fact.id)
                declared[key] = Identity(
                    keyid=key,
                    name=fact.body["name"],
                    email=fact.body["email"],
                    git=tuple(fact.body.get("git", ())),
                    roles=tuple(fact.body.get("roles", ())),
                    record_id=fact.id,
                )
            elif fact.actor in roots and not revoked_at(fact.actor, fact.time):
                endorsements.setdefault(key, []).append(fact.actor)
                if key not in declared:
                    declared[key] = Identity(key, fact.body["name"], fact.body["email"], record_id=fact.id)
            elif mode == "endorsed":
                ignored.append((fact.id, "endorsement signed by a key that is not a trust root"))
        identities = {
            key: Identity(
                identity.keyid,
                identity.name,
                identity.email,
                identity.git,
                identity.roles,
                identity.record_id,
                tuple(sorted(set(endorsements.get(key, ())))),
            )
            for key, identity in declared.items()
        }
        return cls(mode, roots, identities, revoked_from, conflicts, tuple(ignored))

    def status(self, keyid: str, when: str) -> str | None:
        """``None`` if records by ``keyid`` at ``when`` are trusted, else the reason code."""
        if keyid in self.revoked_from and instant(when) >= self.revoked_from[keyid]:
            return "revoked-key"
        if keyid in self.roots:
            return None
        identity = self.identities.get(keyid)
        if self.mode == "endorsed":
            if identity is None or not identity.endorsed_by:
                return "unendorsed-key"
            return None
        if identity is None:
            return "unknown-key"
        if keyid in self.conflicts:
            return "identity-conflict"
        return None

    def describe(self, keyid: str, *, with_email: bool = True) -> str:
        identity = self.identities.get(keyid)
        if identity is None:
            return keyid[:20]
        return f"{identity.name} <{identity.email}>" if with_email else identity.name
