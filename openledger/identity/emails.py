"""Which key an email (or a person's name) stands for: the one index every credit by email goes through.

Git authors of code and data, dataset contributors and the human sources of captured feedback are named by
email (or name); this index turns them into key ids. :class:`~openledger.identity.trust.TrustState` builds it
from the identities that trust counts, so a key can only be credited for an email nobody else claims:

* **One spelling.** Emails are compared after Unicode NFKC, with invisible format characters and all
  whitespace removed, case-folded (``" ADA@Example.org\\u200b"`` is ``ada@example.org``).
* **Every email a key claims counts the same**: its identity's ``email`` and the email of each ``git`` entry
  (``Name <email>``, or a bare ``user@host``). An entry without an email claims nothing.
* **Vouched claims outrank self-declared ones.** A claim by a trust root's own identity or by a root's
  endorsement beats a self-declared claim of the same email; the self-declaring key is in conflict.
* **A tie is a contest.** An email claimed by two or more keys of the same (highest) rank, or by look-alike
  spellings of it (the same letters in another script, e.g. Cyrillic ``\u0430`` for Latin ``a``), maps to no key:
  credit for it goes to nobody until the claims are resolved, and every claimant is in conflict.

>>> index = EmailIndex.build([EmailClaim("ada@example.org", "k1", "r1", "Ada", vouched=False),
...                           EmailClaim("ada@example.org", "k2", "r2", "Mallory", vouched=False),
...                           EmailClaim("bob@example.org", "k3", "r3", "Bob", vouched=False)])
>>> index.key_for(" BOB@example.org"), index.key_for("ada@example.org"), sorted(index.conflicts)
('k3', None, ['k1', 'k2'])
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Contest", "EmailClaim", "EmailIndex", "git_email", "normalise_email", "normalise_name"]

# Letters of other scripts that render like a Latin letter (after case folding); a look-alike claim collides
# with the Latin spelling. A small, high-confidence subset of Unicode's confusables (UTS #39), not all of it.
_LOOK_ALIKES = str.maketrans(
    # Cyrillic
    "\u0430\u0432\u0441\u0501\u0435\u04bb\u0456\u0458\u043a\u04cf\u043c\u043e\u0440\u051b\u0455\u0442\u0443\u051d"
    "\u0445\u044c"
    # Greek
    "\u03b1\u03b2\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u03b3"
    # Latin letters that look like other Latin letters, Armenian
    "\u0131\u0237\u0261\u0251\u0280\u057d\u0585\u0581",
    "abcdehijklmopqstywxb" "abeikvoptuxy" "ijgaruog",
)


@functools.lru_cache(maxsize=65536)  # reports map the same few thousand emails again and again
def _fold(text: str) -> str:
    """NFKC, without format characters (zero-width spaces, joiners, BOM) or whitespace, case-folded."""
    if text.isascii():  # NFKC leaves ASCII alone and its only format characters are not ASCII
        return "".join(text.split()).lower()
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if not c.isspace() and unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFKC", text.casefold())


def normalise_email(email: str) -> str:
    """The one spelling emails are compared in (empty for a string with no visible characters)."""
    return _fold(email)


def normalise_name(name: str) -> str:
    """A person's name as compared with a feedback source: NFKC, case-folded, whitespace runs as one space."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return " ".join(unicodedata.normalize("NFKC", text.casefold()).split())


def _skeleton(email: str) -> str:
    """What a normalised email looks like: accents dropped, common look-alike letters read as Latin."""
    decomposed = unicodedata.normalize("NFKD", email)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_LOOK_ALIKES)


def git_email(entry: str) -> str | None:
    """The email of a ``git`` identity entry (``Name <email>`` or a bare email), normalised; ``None`` if it
    names none."""
    text = entry.strip()
    if "<" in text:
        inside = text.rpartition("<")[2]
        if not inside.endswith(">"):
            return None
        text = inside[:-1]
    elif "@" not in text:
        return None
    email = normalise_email(text)
    return email if "@" in email.strip("@") else None


@dataclass(frozen=True, slots=True)
class EmailClaim:
    """One key claiming one (normalised) email through one identity record."""

    email: str
    key: str
    record_id: str
    name: str
    vouched: bool  # by a trust root: the root's own identity, or a root's endorsement


@dataclass(frozen=True, slots=True)
class Contest:
    """Emails (one, or look-alike spellings of one) that several keys claim at the same rank: credited to
    no key until the claims are resolved. ``claims`` are every claim of them, strongest first."""

    emails: tuple[str, ...]
    claims: tuple[EmailClaim, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.key for c in self.claims))

    @property
    def reason(self) -> str:
        """Why credit for these emails goes to nobody, naming every claimant and their identity record."""
        claimants = ", ".join(f"{c.name} ({c.key[:20]}…, {'vouched by a trust root' if c.vouched else 'self-declared'}"
                              f" in {c.record_id})" for c in self.claims)
        return (f"{' / '.join(self.emails)} is claimed by {len(self.keys)} keys: {claimants}; credited to no key "
                "until all but one claim are withdrawn (a new identity without it), the other keys revoked, or "
                "a trust root endorses one key for it")


@dataclass(frozen=True)
class EmailIndex:
    """Normalised email -> the one key it credits; contested emails; and why each key is in conflict."""

    owners: Mapping[str, str] = field(default_factory=dict)
    contested: Mapping[str, Contest] = field(default_factory=dict)
    conflicts: Mapping[str, str] = field(default_factory=dict)  # keyid -> why its claims conflict
    names: Mapping[str, str] = field(default_factory=dict)  # normalised name -> key, for names only one key uses

    @classmethod
    def build(cls, claims: Iterable[EmailClaim], names: Iterable[tuple[str, str]] = ()) -> EmailIndex:
        """From every claim that counts, and (name, key) of every identity that counts."""
        groups: dict[str, list[EmailClaim]] = {}
        for claim in claims:
            groups.setdefault(_skeleton(claim.email), []).append(claim)
        owners: dict[str, str] = {}
        contested: dict[str, Contest] = {}
        conflicts: dict[str, list[str]] = {}
        for group in groups.values():
            group.sort(key=lambda c: (not c.vouched, c.key, c.email))
            top = [c for c in group if c.vouched] or group
            if len({c.key for c in top}) == 1:
                owner = top[0]
                for claim in group:
                    if claim.key == owner.key:
                        owners[claim.email] = owner.key
                    else:
                        conflicts.setdefault(claim.key, []).append(
                            f"claims {claim.email}, which a trust root vouched for {owner.name} ({owner.key[:20]}…)")
                continue
            contest = Contest(tuple(sorted({c.email for c in group})), tuple(group))
            for email in contest.emails:
                contested[email] = contest
            for key in contest.keys:
                conflicts.setdefault(key, []).append(f"claims {' / '.join(contest.emails)}, which "
                                                     f"{len(contest.keys) - 1} other key(s) claim too")
        named: dict[str, set[str]] = {}
        for name, key in names:
            named.setdefault(normalise_name(name), set()).add(key)
        return cls(owners, contested, {k: "; ".join(dict.fromkeys(v)) for k, v in conflicts.items()},
                   {name: next(iter(keys)) for name, keys in named.items() if len(keys) == 1 and name})

    def key_for(self, email: str) -> str | None:
        """The key ``email`` credits; ``None`` when no counted identity claims it or it is contested."""
        return self.owners.get(normalise_email(email))

    def contest(self, email: str) -> Contest | None:
        return self.contested.get(normalise_email(email))

    def key_for_name(self, name: str) -> str | None:
        """The key of the only counted identity with this name; ``None`` when none or several use it."""
        return self.names.get(normalise_name(name))
