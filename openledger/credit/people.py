"""One shape for a person, wherever a report names one: a signer, a trainer, a reviewer, a data contributor,
a code author, someone credited for feedback.

A :class:`Person` is resolved the same way everywhere: by key (an identity record names them), by email (a git
author, a dataset contributor: matched to the identity that owns the email, when exactly one does), or as the human
source MLflow gave a piece of feedback. Renderers and exporters read these fields; they never rebuild a person
from a dict or a ``Name <email>`` string.

>>> Person("email:ann@example.org", "Ann", "ann@example.org", None).label
'Ann <ann@example.org>'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openledger.identity.trust import TrustState
    from openledger.lineage.graph import LedgerGraph
    from openledger.store.ledger import Fact

__all__ = ["People", "Person"]


@dataclass(frozen=True, slots=True)
class Person:
    """Someone a report names. ``id`` is their key id when they have an identity in the ledger, else
    ``email:<address>`` (a git author with no key) or ``source:<id>`` (a feedback source MLflow named);
    ``key`` is the key id when there is one."""

    id: str
    name: str
    email: str | None
    key: str | None

    @property
    def label(self) -> str:
        """``Name <email>`` (just the name when there is no email, or it is the name)."""
        return f"{self.name} <{self.email}>" if self.email and self.email != self.name else self.name

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "key": self.key}

    @classmethod
    def from_json(cls, data: Any) -> Person:
        return cls(str(data["id"]), str(data["name"]), data.get("email"), data.get("key"))


class People:
    """Resolves people under one trust state: by key, by email (through the trust state's index of which key
    owns an email) and as the person a review or feedback record credits (``credit``)."""

    def __init__(self, trust: TrustState, *,
                 credit: Callable[[Fact], tuple[str, str | None] | None] | None = None,
                 data_credit: Callable[[Fact], list[Mapping[str, Any]]] | None = None) -> None:
        self.trust = trust
        self._credit = credit
        self._data_credit = data_credit
        # a report asks about the same few people a million times (every feedback item): one Person each
        self._by_key: dict[str, Person] = {}
        self._credited: dict[tuple[str, str | None], Person] = {}

    @classmethod
    def of(cls, graph: LedgerGraph) -> People:
        """The people of a ledger graph (its trust, its email index, its memo of credited feedback, which
        dataset records DVC's own supersede)."""
        return cls(graph.trust, credit=graph.credited, data_credit=graph.data_contributors)

    def by_key(self, keyid: str) -> Person:
        person = self._by_key.get(keyid)
        if person is None:
            identity = self.trust.identities.get(keyid)
            person = self._by_key[keyid] = (Person(keyid, keyid[:20], None, keyid) if identity is None
                                            else Person(keyid, identity.name, identity.email, keyid))
        return person

    def by_email(self, name: str, email: str, key: str | None = None) -> Person:
        """A git author or dataset contributor: the identity that owns ``email`` now (none while it is contested:
        :meth:`TrustState.contest` says why), whatever ``key`` the record wrote down; ``key`` only when there is
        no email. Else the author as git named them."""
        key = self.trust.credited_key(email, key)
        if key:
            return self.by_key(key)
        return Person(f"email:{email.lower()}", name or email, email, None)

    def credited(self, fact: Fact) -> Person | None:
        """Who a review or feedback record credits (None: automated feedback)."""
        if self._credit is None:
            raise TypeError("People was made without a way to tell who a record credits")
        credit = self._credit(fact)
        if credit is None:
            return None
        person = self._credited.get(credit)
        if person is None:
            label, key = credit
            person = self._credited[credit] = (self.by_key(key) if key else
                                               Person(f"source:{label}", label, label if "@" in label else None, None))
        return person

    def data_credits(self, dataset: Fact) -> list[Mapping[str, Any]]:
        """The ``contributors`` entries a dataset record credits: all of them, except for an MLflow dataset
        record of data DVC recorded too (:meth:`~openledger.lineage.graph.LedgerGraph.data_contributors`)."""
        if self._data_credit is not None:
            return self._data_credit(dataset)
        return [entry for entry in dataset.body.get("contributors") or [] if isinstance(entry, Mapping)]

    def contributor(self, entry: Any) -> Person:
        """A dataset record's ``contributors`` entry (name, email and maybe the key it was matched to)."""
        return self.by_email(str(entry.get("name") or ""), str(entry.get("email") or ""), entry.get("key"))
