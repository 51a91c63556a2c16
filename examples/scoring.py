"""The worked example of docs/scoring.md: a small ledger whose contributor report you can check by hand.

Five people and three versions of a model ``churn``. Ada and Bob supply data (dataset version 1: Ada's four
files; version 2: the same four plus two of Bob's), Carol wrote the training script and trains every version,
Dan improves the script and approves version 3, Eve gives feedback through MLflow (a human source, recorded by
Carol's process), and Mallory, whose key has no identity in the ledger, approves too. Everything is real: a
git repository, Ed25519 keys from fixed seeds, records appended with ``openledger.Ledger``, and the report
printed by the ``openledger`` command. Keys, times and git dates are fixed, so the record ids and the
numbers are the same on every machine.

Run it with ``python examples/scoring.py`` inside the project's virtualenv; ``--keep`` keeps the repository.
It checks its own numbers (the ones docs/scoring.md explains) and exits 1 if the scoring disagrees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from openledger import Ledger, Signer, signer_from_seed

BIN = Path(sys.executable).parent
START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
PEOPLE = {"Ada": 1, "Bob": 2, "Carol": 3, "Dan": 4, "Mallory": 5}


def person(name: str) -> Signer:
    return signer_from_seed(bytes([PEOPLE[name]]) * 32, feed=name.lower())


def at(day: int, minute: int = 0) -> datetime:
    return START + timedelta(days=day, minutes=minute)


def git(repo: Path, *args: str, who: str = "Carol", when: datetime = START) -> str:
    stamp = when.isoformat()
    env = dict(os.environ, GIT_AUTHOR_NAME=who, GIT_AUTHOR_EMAIL=f"{who.lower()}@example.org",
               GIT_COMMITTER_NAME=who, GIT_COMMITTER_EMAIL=f"{who.lower()}@example.org",
               GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True,  # noqa: S607 - git from PATH, as a user runs it
                          capture_output=True, text=True).stdout


def build(repo: Path) -> dict[str, str]:
    """The repository and its ledger; returns the ids of the records the example talks about."""
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("C = 1.0\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "training script", who="Carol", when=at(0))
    c1 = git(repo, "rev-parse", "HEAD").strip()
    ledger = Ledger.init(repo)
    for name in PEOPLE:
        if name != "Mallory":  # Mallory's key never publishes an identity: an unknown key
            email = f"{name.lower()}@example.org"
            ledger.append(person(name), "identity", {"key": person(name).keyid, "name": name, "email": email,
                                                     "git": [f"{name} <{email}>"]}, time=at(0))
    ids: dict[str, str] = {}

    def dataset(version: int, credit: dict[str, list[str]], when: datetime) -> str:
        digest = f"md5:{version:032x}.dir"
        contributors = [{"name": who, "email": f"{who.lower()}@example.org", "files": len(paths), "paths": paths}
                        for who, paths in credit.items()]
        body = {"path": "data/customers", "digest": digest, "files": sum(len(p) for p in credit.values()),
                "contributors": contributors}
        ids[f"d{version}"] = ledger.append(person("Ada"), "dataset", body, [digest], time=when).id
        return digest

    def train(version: int, digest: str, commit: str, *, c: str, accuracy: float, when: datetime) -> None:
        run_id = f"{version:032x}"
        run = ledger.append(person("Carol"), "run", {
            "run_id": run_id, "status": "FINISHED", "params": {"C": c}, "metrics": {"accuracy": accuracy},
            "inputs": [{"name": "customers", "digest": digest, "source_type": "local"}],
            "git": {"commit": commit}}, [digest, f"mlflowrun:{run_id}"], time=when)
        ledger.append(person("Carol"), "stage", {
            "name": "train", "cmd": "python train.py", "dvcfile": "dvc.yaml", "git": {"commit": commit},
            "deps": [{"path": "train.py"}, {"path": "data/customers", "hash": digest}]}, [run.id, digest],
            time=when + timedelta(minutes=1))
        model = ledger.append(person("Carol"), "model", {"name": "churn", "version": version, "run_id": run_id},
                              [run.id, f"mlflowrun:{run_id}"], time=when + timedelta(minutes=2))
        ids[f"r{version}"], ids[f"m{version}"] = run.id, model.id

    ada = [f"ada-{i}.csv" for i in range(1, 5)]
    d1 = dataset(1, {"Ada": ada}, at(1))
    train(1, d1, c1, c="1.0", accuracy=0.80, when=at(1, 30))
    d2 = dataset(2, {"Ada": ada, "Bob": ["bob-1.csv", "bob-2.csv"]}, at(4))
    train(2, d2, c1, c="1.0", accuracy=0.84, when=at(4, 30))
    (repo / "train.py").write_text("C = 0.5\nFEATURES = 'tenure'\n")
    git(repo, "commit", "-qam", "tenure feature", who="Dan", when=at(8))
    c2 = git(repo, "rev-parse", "HEAD").strip()
    train(3, d2, c2, c="0.5", accuracy=0.86, when=at(8, 30))
    ids["review"] = ledger.append(person("Dan"), "review", {"decision": "approve", "target": "model:churn@3"},
                                  [ids["m3"]], time=at(9)).id
    ids["untrusted"] = ledger.append(person("Mallory"), "review", {"decision": "approve",
                                                                  "target": "model:churn@3"},
                                     [ids["m3"]], time=at(9, 5)).id
    ids["feedback"] = ledger.append(person("Carol"), "feedback", {
        "target": "model:churn@3", "label": "wrong", "comment": "customer 17 did not churn",
        "source": {"type": "HUMAN", "id": "eve@example.org"}}, [ids["m3"]], time=at(9, 10)).id
    ledger.close()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "ledger", who="Carol", when=at(10))
    return ids


def openledger(repo: Path, *args: str) -> str:
    result = subprocess.run([str(BIN / "openledger"), *args], cwd=repo, capture_output=True, text=True,
                            check=False, env=dict(os.environ, COLUMNS="120"))
    if result.returncode:
        raise SystemExit(f"openledger {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def check(report: dict[str, Any]) -> None:
    """The numbers docs/scoring.md works out by hand."""
    overall = {c["person"]["name"]: c["overall"] for c in report["contributors"]}
    impact = {c["person"]["name"]: c["impact"] for c in report["contributors"]}
    expected = {"Carol": 0.375, "Dan": 0.225, "Ada": 0.2, "Bob": 0.1, "eve@example.org": 0.1}
    if overall != expected or impact != {"Carol": 0.01, "Dan": 0.01, "Ada": 0.0, "Bob": 0.04,
                                         "eve@example.org": 0.0}:
        raise SystemExit(f"the scoring disagrees with docs/scoring.md: overall {overall}, impact {impact}")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="openledger-scoring-"))
    repo = workdir / "churn"
    repo.mkdir()
    try:
        ids = build(repo)
        print(f"$ openledger report contributors        # in {repo}")
        print(openledger(repo, "report", "contributors"), end="")
        print("$ openledger report contributors --format md")
        print(openledger(repo, "report", "contributors", "--format", "md"), end="")
        print("$ openledger report contributors --since 2026-03-10")
        print(openledger(repo, "report", "contributors", "--since", "2026-03-10"), end="")
        check(json.loads(openledger(repo, "report", "contributors", "--format", "json")))
        print("\nrecords: " + ", ".join(f"{name} {rid[:19]}" for name, rid in ids.items()))
        return 0
    finally:
        if "--keep" in sys.argv:
            print(f"The repository is in {repo}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
