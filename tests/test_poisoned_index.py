"""Nothing that decides trust, credit or a gate verdict rests on an unchecked signature or on the index cache
(issue 12, item 3): an endorsement with a forged signature grants nothing, and deleting a rejection's rows from
`local/index.sqlite` does not turn a failed gate into a passed one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from openledger import Ledger, LedgerConfig
from openledger.store.verify import verify_ledger
from tests.conftest import make_signer
from tests.test_identity_claims import cli_in, identity

ROOT, MALLORY, TRAINER, REVIEWER = (make_signer(1, "root"), make_signer(66, "mallory"), make_signer(41, "ci"),
                                    make_signer(5, "rita"))


class ForgedSigner:
    """Writes records in another key's name with an all-zero signature: all an attacker without the key can do."""

    def __init__(self, keyid: str, feed: str) -> None:
        self.keyid, self.feed = keyid, feed

    def sign(self, message: bytes) -> bytes:
        del message
        return bytes(64)


def model_by(ledger: Ledger, signer: object, run_id: str) -> None:
    run = ledger.append(signer, "run", {"run_id": run_id, "status": "FINISHED"}, [f"mlflowrun:{run_id}"])  # type: ignore[arg-type]
    ledger.append(signer, "model", {"name": "m", "version": 1, "run_id": run_id}, [run.id])  # type: ignore[arg-type]


def test_an_endorsement_with_a_zero_signature_grants_no_trust(repo: Path, ledger: Ledger) -> None:
    ledger.config = LedgerConfig(trust_mode="endorsed", trust_roots=(ROOT.keyid,))
    (ledger.root / "config.yaml").write_text(ledger.config.to_yaml())
    identity(ledger, ROOT, "Root", "root@example.org")
    identity(ledger, MALLORY, "Mallory", "mallory@example.org")
    forged = ForgedSigner(ROOT.keyid, "root-forged")
    ledger.append(forged, "identity", {"key": MALLORY.keyid, "name": "Mallory", "email": "mallory@example.org"})
    model_by(ledger, MALLORY, "ab" * 16)

    assert "bad-signature" in {p.code for p in verify_ledger(ledger, workers=1).problems}
    assert ledger.trust().status(MALLORY.keyid, "2030-01-01T00:00:00Z") is not None  # not trusted
    report = cli_in(repo, "report", "model", "m@1", "--format", "json")
    body = json.loads(report.stdout)
    assert body["verified"] is False, body
    markdown = cli_in(repo, "report", "model", "m@1", "--format", "md").stdout
    assert "all records verified" not in markdown
    listed = json.loads(cli_in(repo, "keys", "list", "--format", "json").stdout)["ledger"]
    assert next(row for row in listed if row["keyid"] == MALLORY.keyid)["trust"] != "trusted"


def test_deleting_a_rejection_from_the_index_does_not_pass_the_gate(repo: Path, ledger: Ledger) -> None:
    for key, name in ((TRAINER, "CI"), (REVIEWER, "Rita"), (ROOT, "Rob")):
        identity(ledger, key, name, f"{name.lower()}@example.org")
    run_id = "cd" * 16
    run = ledger.append(TRAINER, "run", {"run_id": run_id, "status": "FINISHED"}, [f"mlflowrun:{run_id}"])
    ledger.append(ROOT, "review", {"decision": "approve", "target": f"run:{run_id}", "records": [run.id]}, [run.id])
    rejection = ledger.append(REVIEWER, "review", {"decision": "reject", "target": f"run:{run_id}",
                                                   "records": [run.id]}, [run.id])
    before = cli_in(repo, "gate", "run", run_id)
    assert before.exit_code == 1 and "blocked" in before.stdout, before.output

    index = ledger.root / "local" / "index.sqlite"
    with sqlite3.connect(index) as db:  # the attack: the rejection's rows vanish from the cache
        assert db.execute("DELETE FROM links WHERE id = ?", (rejection.id,)).rowcount >= 1
        assert db.execute("DELETE FROM records WHERE id = ?", (rejection.id,)).rowcount == 1
    after = cli_in(repo, "gate", "run", run_id)
    assert after.exit_code == 1 and "blocked" in after.stdout, after.output  # Rob's approval alone would pass
    credited = json.loads(cli_in(repo, "report", "contributors", "--format", "json").stdout)
    assert "Rita" in json.dumps(credited)  # her review still counts as her work
