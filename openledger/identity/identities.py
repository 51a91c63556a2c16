"""Operations on identities: publish your own, endorse someone's as a trust root, revoke a key, list who is who.

Each is one call a front end makes; the checks and the record bodies live here, so the CLI, a script and a
test append the same thing.

>>> import tempfile; from pathlib import Path; from openledger.store.keys import generate_signer
>>> from openledger.store.ledger import Ledger
>>> ledger = Ledger.init(Path(tempfile.mkdtemp()))
>>> signer = generate_signer(feed="doc")
>>> published = publish_identity(ledger, signer, name="Ada", email="ada@example.org")
>>> publish_identity(ledger, signer, name="Ada", email="ada@example.org") is None  # already published
True
>>> [row.name for row in list_identities(ledger, now="2030-01-01T00:00:00Z")]
['Ada']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openledger.errors import BadInputError, NotFoundError
from openledger.store.keys import resolve_keyid, short_keyid
from openledger.store.ledger import Ledger
from openledger.store.records import Record, RecordSigner

__all__ = ["Endorsement", "IdentityRow", "Revocation", "endorse_identity", "list_identities", "publish_identity",
           "revoke_key"]


def publish_identity(ledger: Ledger, signer: RecordSigner, *, name: str | None, email: str | None
                     ) -> Record | None:
    """Append the signer's self-signed identity unless one is published already (then ``None``). ``name`` and
    ``email`` are required for a key that has none stored (a CI key from ``OPENLEDGER_SIGNING_KEY``)."""
    if any(r.body["key"] == signer.keyid for r in ledger.select(kind="identity", actor=signer.keyid)):
        return None
    if not name or not email:
        raise BadInputError(
            f"key {short_keyid(signer.keyid)} has no stored name and email",
            hint="run `openledger keys publish --name NAME --email EMAIL`",
        )
    body = {"key": signer.keyid, "name": name, "email": email, "git": [f"{name} <{email}>"]}
    return ledger.append(signer, "identity", body)


@dataclass(frozen=True, slots=True)
class Endorsement:
    """An appended endorsement, and whether it counts (only a trust root's does, in endorsed mode). ``git`` are
    the git identities it vouches for (what the key declared), which credit by email then matches."""

    record: Record
    by_trust_root: bool
    git: tuple[str, ...] = ()


def endorse_identity(ledger: Ledger, signer: RecordSigner, keyid: str, *, name: str | None = None,
                     email: str | None = None) -> Endorsement:
    """Vouch that ``keyid`` (a full id or a unique prefix of a known one) belongs to the person named: by
    default the name and email the key last declared itself, and always the git identities it declared. Once
    endorsed, this is who the key is: a later self-declaration changes nothing until endorsed again."""
    trust = ledger.trust()
    target = resolve_keyid(keyid, set(trust.identities) | ({keyid} if len(keyid) == 72 else set()))
    declared = trust.declared.get(target)  # the key's own latest word, not what a root endorsed before
    name = name or (declared.name if declared else None)
    email = email or (declared.email if declared else None)
    if not name or not email:
        raise NotFoundError(f"{short_keyid(target)} has published no identity: give --name and --email")
    git = declared.git if declared else ()
    body: dict[str, Any] = {"key": target, "name": name, "email": email, **({"git": list(git)} if git else {})}
    record = ledger.append(signer, "identity", body)
    return Endorsement(record, signer.keyid in ledger.config.trust_roots, git)


@dataclass(frozen=True, slots=True)
class Revocation:
    """An appended revocation, and whether it counts (signed by the key itself or a trust root)."""

    record: Record
    counts: bool


def revoke_key(ledger: Ledger, signer: RecordSigner, keyid: str, *, reason: str,
               compromised_since: str | None = None) -> Revocation:
    """Revoke ``keyid``: records it signed from ``compromised_since`` (default: the revocation's time) on are
    untrusted."""
    trust = ledger.trust()
    target = resolve_keyid(keyid, set(trust.identities) | ({keyid} if len(keyid) == 72 else set()))
    body: dict[str, Any] = {"key": target, "reason": reason}
    if compromised_since:
        body["compromised_since"] = compromised_since
    record = ledger.append(signer, "revocation", body)
    return Revocation(record, signer.keyid in (target, *ledger.config.trust_roots))


@dataclass(frozen=True, slots=True)
class IdentityRow:
    """One identity as ``keys list`` shows it: who the key is, and whether its records are trusted ``now``."""

    keyid: str
    name: str
    email: str
    endorsed_by: tuple[str, ...]
    trust: str  # "trusted" or the reason code (unknown-key, unendorsed-key, revoked-key, identity-conflict)
    root: bool

    def to_json(self) -> dict[str, Any]:
        return {"keyid": self.keyid, "name": self.name, "email": self.email, "endorsed_by": list(self.endorsed_by),
                "trust": self.trust, "root": self.root}


def list_identities(ledger: Ledger, *, now: str) -> list[IdentityRow]:
    """Every identity the ledger knows, by name, with its trust at ``now`` (RFC 3339): read from the disk, so a
    poisoned index cannot hide a revocation from the people who check who is trusted."""
    trust = ledger.trust(from_disk=True)
    return [IdentityRow(keyid, identity.name, identity.email, tuple(identity.endorsed_by),
                        trust.status(keyid, now) or "trusted", keyid in trust.roots)
            for keyid, identity in sorted(trust.identities.items(), key=lambda kv: kv[1].name)]
