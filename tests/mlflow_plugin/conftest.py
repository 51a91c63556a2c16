"""Real MLflow on SQLite in a temporary git repository with a ledger and a real key."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(tmp_path: Path, backend: str, env: Mapping[str, str]) -> Iterator[str]:
    """A real `mlflow server` subprocess on 127.0.0.1 serving its artifacts, until the block ends; yields its URL."""
    port = _free_port()
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    server = subprocess.Popen(
        [mlflow_bin, "server", "--backend-store-uri", backend, "--artifacts-destination",
         str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read() if server.stdout else ""
                    pytest.fail(f"mlflow server did not start:\n{output[-3000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=60)
        if server.stdout:
            server.stdout.close()


ROOT = Path(__file__).parent.parent.parent


def _postgres_base() -> str | None:
    """A PostgreSQL server URI: OPENLEDGER_TEST_POSTGRES, or the local cluster `.ci/postgres` starts."""
    uri = os.environ.get("OPENLEDGER_TEST_POSTGRES")
    if uri:
        return uri
    if shutil.which("pg_lsclusters") and os.geteuid() == 0:
        result = subprocess.run(["bash", str(ROOT / ".ci" / "postgres")], capture_output=True, text=True,
                                check=False)
        if result.returncode == 0:
            return result.stdout.strip().splitlines()[-1]
    return None


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    base = _postgres_base()
    if base is None:
        pytest.skip("no PostgreSQL here: .ci/run installs and starts one (or set OPENLEDGER_TEST_POSTGRES)")
    import psycopg

    name = f"mlflow_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
