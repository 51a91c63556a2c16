"""Real MLflow on SQLite in a temporary git repository with a ledger and a real key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openledger import KeyStore, Ledger
from tests.conftest import git


@dataclass
class MlflowProject:
    root: Path
    ledger: Ledger
    keyid: str

    def uri(self, name: str = "mlflow.db", *, ledger: bool = True) -> str:
        return f"{'ledger+' if ledger else ''}sqlite:///{self.root / name}"

    def records(self, kind: str) -> list:  # type: ignore[type-arg]
        return list(self.ledger.select(kind=kind))


@pytest.fixture
def project(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowProject]:
    import mlflow
    import mlflow.tracking.fluent

    # MLflow keeps the active experiment in a module global: a previous test's would point into its database.
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    (repo / "README.md").write_text("iris\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    keyid = KeyStore().generate("Ada Lovelace", "ada@example.org").keyid
    ledger = Ledger.init(repo)
    ledger.append(KeyStore().load_signer(), "identity",
                  {"key": keyid, "name": "Ada Lovelace", "email": "ada@example.org"})
    monkeypatch.setenv("OPENLEDGER_DIR", str(ledger.root))
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"ledger+sqlite:///{repo / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    for variable in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(variable, raising=False)
    yield MlflowProject(repo, ledger, keyid)
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # MLflow's own reset (its annotation omits None)
    # mlflow.set_experiment writes MLFLOW_EXPERIMENT_ID into os.environ behind monkeypatch's back.
    for variable in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(variable, None)
    ledger.close()
