"""Nobody takes over another person's credit through an identity record (issue 12, item 2).

Attacks tried with real keys, a real git repository and the real CLI: a newcomer's backdated identity listing
someone else's email among its ``git`` identities (in every look-alike spelling), an endorsed key renaming
itself, an unendorsed identity in endorsed mode, a root endorsing two keys for one email, a name shared by two
identities. Each must end with nobody credited for the contested email (or the rightful key), a ``verify``
warning that fails ``--strict``, and the reason available from the core.
"""

from __future__ import annotations

import json
import os
import subprocess
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from openledger import Ledger, LedgerConfig, Signer
from openledger.credit.contributions import contributions
from openledger.identity.emails import git_email, normalise_email
from openledger.identity.trust import TrustState
from openledger.store.records import Record
from openledger.store.verify import verify_ledger
from openledger_cli.main import cli
from tests.conftest import git, make_signer

ROOT, ADA, BOB, TRAINER, MALLORY = (make_signer(1, "root"), make_signer(2, "ada"), make_signer(3, "bob"),
                                    make_signer(41, "ci"), make_signer(66, "mallory"))
ADA_EMAIL = "ada@example.org"
BACKDATED = datetime(2020, 1, 1, tzinfo=timezone.utc)  # record times are claims: long before anyone else


def identity(ledger: Ledger, key: Signer, name: str, email: str, git_ids: tuple[str, ...] = (), *,
             by: Signer | None = None, time: datetime | None = None) -> Record:
    """A self-declared identity of ``key``, or (``by``) an endorsement of it."""
    body: dict[str, Any] = {"key": key.keyid, "name": name, "email": email}
    if git_ids:
        body["git"] = list(git_ids)
    return ledger.append(by or key, "identity", body, time=time)


def commit_code(repo: Path, name: str, email: str) -> str:
    with (repo / "train.py").open("a") as handle:
        handle.write(f"# {name} was here\n")
    env = dict(os.environ, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email)
    for args in (["add", "-A", "train.py"], ["commit", "-qm", "training code"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return git(repo, "rev-parse", "HEAD").strip()


def trained_at(ledger: Ledger, sha: str) -> None:
    """A model version trained by a stage whose code (train.py) is at ``sha``."""
    run_id = "ab" * 16
    run = ledger.append(TRAINER, "run", {"run_id": run_id, "status": "FINISHED", "git": {"commit": sha}})
    ledger.append(TRAINER, "stage", {"name": "train", "cmd": "python train.py", "git": {"commit": sha},
                                     "deps": [{"path": "train.py"}]}, [run.id])
    ledger.append(TRAINER, "model", {"name": "m", "version": 1, "run_id": run_id})


def cli_in(repo: Path, *args: str) -> Result:
    old = Path.cwd()
    os.chdir(repo)
    try:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


def credit_by_role(repo: Path, role: str) -> list[dict[str, Any]]:
    """The people `report contributors` credits with ``role``, as its JSON names them."""
    result = cli_in(repo, "report", "contributors", "--format", "json")
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    return [row["person"] for row in report["contributors"] if role in row["roles"]]


# -- tofu: a newcomer's backdated git alias -----------------------------------------------------------------


def test_backdated_git_alias_takes_no_code_credit_and_fails_strict_verify(repo: Path, ledger: Ledger) -> None:
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL)
    identity(ledger, TRAINER, "CI", "ci@example.org")
    trained_at(ledger, commit_code(repo, "Ada Lovelace", ADA_EMAIL))
    # Mallory's key claims Ada's git identity, dated years before Ada's own identity record
    claim = identity(ledger, MALLORY, "Mallory", "mallory@example.net", ("Ada Lovelace <ada@example.org>",),
                     time=BACKDATED)

    code = credit_by_role(repo, "code")
    assert [person["key"] for person in code] == [None]  # neither Mallory's key nor (while contested) Ada's
    assert code[0]["email"] == ADA_EMAIL

    trust = ledger.trust()
    assert trust.key_for_email(ADA_EMAIL) is None
    contest = trust.contest("Ada@Example.org")
    assert contest is not None and set(contest.keys) == {ADA.keyid, MALLORY.keyid}
    assert claim.id in contest.reason and "Mallory" in contest.reason and "Ada Lovelace" in contest.reason
    assert {trust.status(k, "2026-11-02T00:00:00Z") for k in (ADA.keyid, MALLORY.keyid)} == {"identity-conflict"}

    verified = cli_in(repo, "verify", "--format", "json")
    assert verified.exit_code == 0
    problems = json.loads(verified.stdout)["problems"]
    assert next(p for p in problems if p["code"] == "email-contested")["message"] == contest.reason
    assert cli_in(repo, "verify", "--strict").exit_code == 1

    # Resolved: Mallory's key declares itself again without Ada's email; Ada gets her credit back.
    identity(ledger, MALLORY, "Mallory", "mallory@example.net")
    assert [person["key"] for person in credit_by_role(repo, "code")] == [ADA.keyid]
    assert cli_in(repo, "verify", "--strict").exit_code == 0


@pytest.mark.parametrize("spelling", [
    "ADA@EXAMPLE.ORG",  # case
    "  ada@example.org\t",  # surrounding whitespace
    "ada@example.org\u200b",  # a zero-width space
    "\ufeffada@exam\u00adple.org",  # a byte order mark and a soft hyphen
    "\uff41\uff44\uff41@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.\uff4f\uff52\uff47",  # fullwidth letters (NFKC)
    "\u0430da@example.org",  # Cyrillic a
    "ad\u03b1@ex\u0430mple.\u03bfrg",  # Greek alpha, Cyrillic a, Greek omicron
    "\u00e1d\u00e1@example.org",  # accents
])
def test_look_alike_spellings_of_an_email_collide(ledger: Ledger, spelling: str) -> None:
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL)
    identity(ledger, MALLORY, "Mallory", "mallory@example.net", (f"Ada Lovelace <{spelling}>",), time=BACKDATED)
    assert {p.code for p in verify_ledger(ledger, workers=1).warnings} == {"identity-conflict", "email-contested"}
    trust = ledger.trust()
    assert set(trust.conflicts) == {ADA.keyid, MALLORY.keyid}
    assert trust.key_for_email(ADA_EMAIL) is None
    assert trust.key_for_email(spelling) is None
    assert trust.contest(ADA_EMAIL) is not None
    assert trust.key_for_email("MALLORY@example.net") == MALLORY.keyid  # its own, uncontested email still maps


def test_a_look_alike_as_the_main_email_collides_too(ledger: Ledger) -> None:
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL)
    identity(ledger, MALLORY, "Ada Lovelace", "\u0430da@example.org", time=BACKDATED)
    assert verify_ledger(ledger, workers=1).exit_code(strict=True) == 1
    assert ledger.trust().contest(ADA_EMAIL) is not None


@pytest.mark.parametrize("entry", ["Ada Lovelace", "Ada Lovelace <>", "<>", "@", "Ada <ada@example.org",
                                   "ada@", "<@>", "\u200b"])
def test_git_entries_without_an_email_claim_nothing(ledger: Ledger, entry: str) -> None:
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL)
    identity(ledger, MALLORY, "Mallory", "mallory@example.net", (entry,), time=BACKDATED)
    trust = ledger.trust()
    assert git_email(entry) is None
    assert trust.key_for_email(ADA_EMAIL) == ADA.keyid and not trust.contested and not trust.conflicts


def test_a_bare_email_git_entry_is_a_claim(ledger: Ledger) -> None:
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL, ("ada@home.example",))
    identity(ledger, MALLORY, "Mallory", "mallory@example.net", ("Ada@Home.Example",), time=BACKDATED)
    trust = ledger.trust()
    assert set(trust.conflicts) == {ADA.keyid, MALLORY.keyid}
    assert trust.key_for_email("ada@home.example") is None and trust.key_for_email(ADA_EMAIL) == ADA.keyid


def test_a_stale_key_written_into_a_dataset_record_is_not_credited(repo: Path, ledger: Ledger) -> None:
    """A dataset record made while the takeover was in place (or forged) names the wrong key: the email
    decides, so Ada's data is credited to Ada once the claim is gone, and to no key while it is contested."""
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL)
    identity(ledger, MALLORY, "Mallory", "mallory@example.net", (f"Ada <{ADA_EMAIL}>",), time=BACKDATED)
    digest = "md5:" + "1" * 32
    body = {"path": "data/x.csv", "digest": digest,
            "contributors": [{"name": "Ada Lovelace", "email": ADA_EMAIL, "key": MALLORY.keyid, "files": 1}]}
    ledger.append(ADA, "dataset", body, [digest])
    assert [person["key"] for person in credit_by_role(repo, "data")] == [None]
    identity(ledger, MALLORY, "Mallory", "mallory@example.net")
    assert [person["key"] for person in credit_by_role(repo, "data")] == [ADA.keyid]


def test_a_name_two_identities_use_credits_feedback_to_nobody(ledger: Ledger) -> None:
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL)
    identity(ledger, MALLORY, "ada  LOVELACE", "mallory@example.net", time=BACKDATED)
    for source in ("Ada Lovelace", "ADA@example.org"):
        ledger.append(TRAINER, "feedback", {"target": "run:ab12", "label": "leak",
                                            "source": {"type": "HUMAN", "id": source}})
    credited = [(c.contributor, c.contributor_key) for c in contributions(ledger)]
    assert credited == [("Ada Lovelace", None), ("Ada Lovelace <ada@example.org>", ADA.keyid)]


def test_key_rotation_after_a_revocation_is_not_a_conflict(ledger: Ledger) -> None:
    """Ada's laptop is stolen: she revokes the old key and declares a new one with the same email."""
    old, new = make_signer(7, "ada-old"), make_signer(8, "ada-new")
    identity(ledger, old, "Ada Lovelace", ADA_EMAIL)
    ledger.append(old, "revocation", {"key": old.keyid, "reason": "laptop stolen"})
    identity(ledger, new, "Ada Lovelace", ADA_EMAIL)
    ledger.append(new, "feedback", {"target": "x", "label": "y"})
    assert verify_ledger(ledger, workers=1).exit_code(strict=True) == 0
    trust = ledger.trust()
    assert trust.key_for_email(ADA_EMAIL) == new.keyid and not trust.conflicts


# -- endorsed mode ---------------------------------------------------------------------------------------


@pytest.fixture
def endorsed(repo: Path, ledger: Ledger) -> Ledger:
    ledger.config = LedgerConfig(trust_mode="endorsed", trust_roots=(ROOT.keyid,))
    (ledger.root / "config.yaml").write_text(ledger.config.to_yaml())
    identity(ledger, ROOT, "Root", "root@example.org")
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL)
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL, by=ROOT)
    identity(ledger, BOB, "Bob", "bob@example.org")
    identity(ledger, BOB, "Bob", "bob@example.org", by=ROOT)
    return ledger


def test_an_endorsed_key_cannot_rename_itself(repo: Path, endorsed: Ledger) -> None:
    ledger = endorsed
    identity(ledger, BOB, "Ada Lovelace", ADA_EMAIL, (f"Ada Lovelace <{ADA_EMAIL}>",))
    listed = json.loads(cli_in(repo, "keys", "list", "--format", "json").stdout)["ledger"]
    bob = next(row for row in listed if row["keyid"] == BOB.keyid)
    assert (bob["name"], bob["email"], bob["trust"]) == ("Bob", "bob@example.org", "trusted")
    trust = ledger.trust()
    assert trust.describe(BOB.keyid) == "Bob <bob@example.org>"
    assert trust.key_for_email(ADA_EMAIL) == ADA.keyid and not trust.conflicts
    assert trust.declared[BOB.keyid].name == "Ada Lovelace"  # what `keys endorse` would offer to vouch for

    # the gate names the reviewer as the root endorsed it
    run_id = "cd" * 16
    run = ledger.append(TRAINER, "run", {"run_id": run_id, "status": "FINISHED"}, [f"mlflowrun:{run_id}"])
    identity(ledger, TRAINER, "CI", "ci@example.org", by=ROOT)
    ledger.append(BOB, "review", {"decision": "approve", "target": f"run:{run_id}", "records": [run.id]}, [run.id])
    gate = cli_in(repo, "gate", "run", run_id)
    assert gate.exit_code == 0, gate.output
    assert "(Bob <bob@example.org>) counted" in gate.stdout and "Ada" not in gate.stdout


def test_an_unendorsed_identity_never_maps_an_email(repo: Path, endorsed: Ledger) -> None:
    ledger = endorsed
    identity(ledger, TRAINER, "CI", "ci@example.org", by=ROOT)
    trained_at(ledger, commit_code(repo, "Ada Lovelace", ADA_EMAIL))
    identity(ledger, MALLORY, "Mallory", "mallory@example.net", (f"Ada Lovelace <{ADA_EMAIL}>",), time=BACKDATED)
    assert [person["key"] for person in credit_by_role(repo, "code")] == [ADA.keyid]
    trust = ledger.trust()
    assert trust.status(MALLORY.keyid, "2026-11-02T00:00:00Z") == "unendorsed-key"
    assert trust.key_for_email("mallory@example.net") is None  # not even its own email


def test_an_endorsement_is_what_is_shown_and_matched(endorsed: Ledger) -> None:
    """The root vouched for other emails than Ada declared: the root's word counts, Ada's own does not."""
    ledger = endorsed
    identity(ledger, ADA, "Ada L.", "ada@work.example", ("Ada <ada@home.example>",), by=ROOT)
    trust = ledger.trust()
    assert trust.describe(ADA.keyid) == "Ada L. <ada@work.example>"
    assert trust.key_for_email("ada@home.example") == ADA.keyid == trust.key_for_email("ADA@work.example")
    assert trust.key_for_email(ADA_EMAIL) is None  # only self-declared now


def test_a_root_endorsing_two_keys_for_one_email_is_a_contest(repo: Path, endorsed: Ledger) -> None:
    ledger = endorsed
    endorsement = identity(ledger, BOB, "Ada Lovelace", "ADA@example.org", by=ROOT)
    report = verify_ledger(ledger, workers=1)
    contested = [p for p in report.warnings if p.code == "email-contested"]
    assert len(contested) == 1 and endorsement.id in contested[0].message
    assert {p.code for p in report.warnings} == {"email-contested", "identity-conflict"}
    assert report.exit_code(strict=True) == 1 and report.exit_code(strict=False) == 0
    trust = ledger.trust()
    assert trust.key_for_email(ADA_EMAIL) is None
    assert {trust.status(k, "2026-11-02T00:00:00Z") for k in (ADA.keyid, BOB.keyid)} == {"identity-conflict"}
    # resolved by a new endorsement
    identity(ledger, BOB, "Bob", "bob@example.org", by=ROOT)
    assert ledger.trust().key_for_email(ADA_EMAIL) == ADA.keyid
    assert verify_ledger(ledger, workers=1).exit_code(strict=True) == 0


def test_a_vouched_claim_outranks_a_self_declared_one_in_tofu(ledger: Ledger) -> None:
    """In tofu a trust root settles a contest by endorsing the rightful key; the other is in conflict."""
    ledger.config = LedgerConfig(trust_mode="tofu", trust_roots=(ROOT.keyid,))
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL)
    identity(ledger, MALLORY, "Mallory", "mallory@example.net", (ADA_EMAIL,), time=BACKDATED)
    assert {p.code for p in verify_ledger(ledger, workers=1).warnings} == {"identity-conflict", "email-contested"}
    identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL, by=ROOT)
    report = verify_ledger(ledger, workers=1)
    assert {(p.code, p.record) for p in report.warnings} == {
        ("identity-conflict", r.id) for r in ledger.select(kind="identity", actor=MALLORY.keyid)}
    trust = ledger.trust()
    assert trust.key_for_email(ADA_EMAIL) == ADA.keyid and not trust.contested
    assert list(trust.conflicts) == [MALLORY.keyid] and "vouched for Ada Lovelace" in trust.conflicts[MALLORY.keyid]


def test_keys_endorse_vouches_for_the_declared_git_identities(repo: Path) -> None:
    assert cli_in(repo, "keys", "generate", "--name", "Root", "--email", "root@example.org").exit_code == 0
    root = json.loads(cli_in(repo, "keys", "list", "--format", "json").stdout)["local"][0]["keyid"]
    assert cli_in(repo, "init", "--trust-root", root).exit_code == 0
    ledger = Ledger.open(repo / ".openledger")
    try:
        identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL, ("Ada <ada@home.example>",))
        identity(ledger, ADA, "Ada Lovelace", ADA_EMAIL, by=BOB)  # not a root: changes nothing
        result = cli_in(repo, "keys", "endorse", ADA.keyid)
        assert result.exit_code == 0, result.output
        assert "ada@home.example" in result.stderr
        endorsement = ledger.get(result.stdout.strip())
        assert endorsement.body == {"key": ADA.keyid, "name": "Ada Lovelace", "email": ADA_EMAIL,
                                    "git": ["Ada <ada@home.example>"]}
        assert ledger.trust().key_for_email("ada@home.example") == ADA.keyid
    finally:
        ledger.close()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_normalise_email_is_one_spelling(text: str) -> None:
    """NFKC, no whitespace or format characters, case-folded: the ASCII fast path spells it the same."""
    expected = unicodedata.normalize("NFKC", text)
    expected = "".join(c for c in expected if not c.isspace() and unicodedata.category(c) != "Cf")
    expected = unicodedata.normalize("NFKC", expected.casefold())
    assert normalise_email(text) == expected
    assert normalise_email(expected) == expected


def test_normalise_email_is_idempotent_and_keeps_distinct_ascii_emails_apart() -> None:
    for text in ("ADA@example.org", "\uff41\uff44\uff41@example.org", "ada\u200b@example.org",
                 "Stra\u00dfe@example.org"):
        assert normalise_email(normalise_email(text)) == normalise_email(text)
    state = TrustState.evaluate([], mode="tofu", roots=())
    assert state.key_for_email("") is None and state.contest("") is None
