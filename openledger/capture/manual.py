"""Records signed by hand, for contributions no adapter captures (``openledger record``).

The kinds with rules of their own (identities, revocations, checkpoints, commit bindings, cosignatures,
anchors, measured attributions) are refused here so their checks cannot be sidestepped; links may be given as
record id prefixes.

>>> sorted(DEDICATED_KINDS)
['anchor', 'attribution', 'checkpoint', 'commit', 'cosignature', 'identity', 'revocation']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from openledger.errors import BadInputError
from openledger.store.ledger import Ledger
from openledger.store.records import Record, RecordSigner

__all__ = ["DEDICATED_KINDS", "record_by_hand", "resolve_link"]

DEDICATED_KINDS = {"identity": "openledger keys publish / endorse", "revocation": "openledger keys revoke",
                   "checkpoint": "openledger checkpoint", "commit": "the post-commit hook (openledger dvc install)",
                   "cosignature": "openledger witness", "anchor": "openledger anchor",
                   "attribution": "openledger attribute"}


def resolve_link(ledger: Ledger, link: str) -> str:
    """A full record id for an id prefix (with or without ``sha256:``); other digests pass unchanged."""
    if link.startswith("sha256:") and len(link) == 71:
        return link
    if link.startswith("sha256:") or all(c in "0123456789abcdef" for c in link):
        return ledger.resolve(link)
    return link


def record_by_hand(ledger: Ledger, signer: RecordSigner, kind: str, body: Mapping[str, Any],
                   links: Sequence[str] = ()) -> Record:
    """Sign one record of ``kind``; its body is checked against the kind's schema (bad input: exit 2)."""
    if kind in DEDICATED_KINDS:
        raise BadInputError(f"{kind} records are written by {DEDICATED_KINDS[kind]}, not by hand")
    return ledger.append(signer, kind, body, [resolve_link(ledger, link) for link in links])
