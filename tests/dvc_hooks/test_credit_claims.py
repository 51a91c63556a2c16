"""Dataset credit from git survives a backdated identity that lists the data author's email (issue 12, item 2).

Real git, real `dvc add`, the real post-commit hook and the real CLI: Ada commits data; Mallory's key had
published (dated years earlier) an identity whose ``git`` entries claim Ada's email in another case.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from openledger import Ledger, LedgerConfig, signer_from_seed
from tests.dvc_hooks.conftest import DvcRepo

MALLORY = signer_from_seed(bytes([66]) * 32, feed="mallory")


@pytest.mark.parametrize(("mode", "credited"), [("tofu", None), ("endorsed", "ada")])
def test_data_committed_by_ada_is_never_credited_to_a_key_claiming_her_email(dvc_repo: DvcRepo, mode: str,
                                                                             credited: str | None) -> None:
    ledger = Ledger.open(dvc_repo.root / ".openledger")
    try:
        if mode == "endorsed":  # Ada is the trust root; Mallory's identity is never endorsed
            ledger.config = LedgerConfig(trust_mode="endorsed", trust_roots=(dvc_repo.keyid,))
            (ledger.root / "config.yaml").write_text(ledger.config.to_yaml())
        ledger.append(MALLORY, "identity", {"key": MALLORY.keyid, "name": "Mallory", "email": "mallory@example.net",
                                            "git": ["Ada Lovelace <Ada@Example.ORG>"]},
                      time=datetime(2020, 1, 1, tzinfo=timezone.utc))
    finally:
        ledger.close()
    dvc_repo.openledger("dvc", "install")
    dvc_repo.write("data/rows.csv", "1,2\n3,4\n")
    dvc_repo.dvc("add", "-q", "data")
    dvc_repo.commit("Ada's data", author=("Ada Lovelace", "ada@example.org"))  # the hook records the dataset

    [dataset] = dvc_repo.records("dataset")
    [entry] = dataset.body["contributors"]
    expected = {"ada": dvc_repo.keyid, None: None}[credited]
    assert (entry["email"], entry.get("key")) == ("ada@example.org", expected)

    report = json.loads(dvc_repo.openledger("report", "contributors", "--format", "json", check=False).stdout)
    data = [row["person"] for row in report["contributors"] if "data" in row["roles"]]
    assert [(p["email"], p["key"]) for p in data] == [("ada@example.org", expected)]
    assert MALLORY.keyid not in json.dumps(report)

    strict = dvc_repo.openledger("verify", "--strict", check=False)
    if mode == "tofu":  # contested: reported, and --strict fails until it is resolved
        assert strict.returncode == 1 and "email-contested" in strict.stdout
        assert "ada@example.org is claimed by 2 keys" in strict.stdout
    else:  # Mallory's records are merely unendorsed
        assert strict.returncode == 1 and "email-contested" not in strict.stdout and "unendorsed-key" in strict.stdout
