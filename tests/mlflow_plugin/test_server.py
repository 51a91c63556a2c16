"""Server mode: a real `mlflow server` subprocess on a ledger+ backend captures runs from plain http clients."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from openledger import Ledger, signer_from_seed, verify_ledger
from tests.mlflow_plugin.conftest import mlflow_server

ROOT = Path(__file__).parent.parent.parent


CLIENT = textwrap.dedent(
    """
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    X, y = load_iris(return_X_y=True)
    mlflow.set_experiment("team")
    with mlflow.start_run() as run:
        mlflow.log_param("depth", 2)
        mlflow.log_metric("acc", 0.91)
        mlflow.log_text("notes from the client", "notes.txt")
        mlflow.sklearn.log_model(LogisticRegression(max_iter=300).fit(X, y), name="model",
                                 registered_model_name="team-model")
    print(run.info.run_id)
    """
)


def _serve_and_log(tmp_path: Path, backend: str) -> tuple[Ledger, str, str]:
    ledger = Ledger.init(tmp_path / "server")
    server_seed = bytes(range(1, 33))
    server_key = signer_from_seed(server_seed, feed="mlflow-server")
    ledger.append(server_key, "identity", {"key": server_key.keyid, "name": "MLflow server",
                                           "email": "mlflow@example.org"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLEDGER_", "MLFLOW_"))}
    server_env = dict(env, OPENLEDGER_DIR=str(ledger.root), OPENLEDGER_FEED="mlflow-server",
                      OPENLEDGER_SIGNING_KEY=base64.b64encode(server_seed).decode(),
                      OPENLEDGER_HOME=str(tmp_path / "server-home"))
    with mlflow_server(tmp_path, backend, server_env) as url:
        client_env = dict(env, MLFLOW_TRACKING_URI=url, USER="carol", LOGNAME="carol",
                          OPENLEDGER_HOME=str(tmp_path / "client-home"))
        client = subprocess.run([sys.executable, "-c", CLIENT], cwd=tmp_path, env=client_env, capture_output=True,
                                text=True, check=False)
        assert client.returncode == 0, client.stderr[-3000:]
        run_id = client.stdout.strip().splitlines()[-1]
    return ledger, run_id, server_key.keyid


@pytest.mark.slow
def test_server_on_sqlite_captures_http_clients(tmp_path: Path) -> None:
    ledger, run_id, server_keyid = _serve_and_log(tmp_path, f"ledger+sqlite:///{tmp_path / 'server.db'}")
    _check_server_capture(ledger, run_id, server_keyid, tmp_path)


@pytest.mark.slow
def test_server_on_postgresql_captures_http_clients(tmp_path: Path, postgres_uri: str) -> None:
    ledger, run_id, server_keyid = _serve_and_log(tmp_path, "ledger+" + postgres_uri)
    _check_server_capture(ledger, run_id, server_keyid, tmp_path)
    run = next(r for r in ledger.select(kind="run"))
    assert run.body["backend"].startswith("postgresql://127.0.0.1:5432/") and "openledger:" not in run.body["backend"]


def _check_server_capture(ledger: Ledger, run_id: str, server_keyid: str, tmp_path: Path) -> None:
    runs = list(ledger.select(kind="run"))
    models = list(ledger.select(kind="model"))
    assert [r.body["run_id"] for r in runs] == [run_id]
    run = runs[0]
    assert run.actor == server_keyid  # signed by the server's key
    assert run.body["user_id"] == "carol"  # the client's claim, kept as such
    assert run.body["params"] == {"depth": "2"} and run.body["metrics"] == {"acc": 0.91}
    assert [(m.body["name"], m.body["version"], m.body["run_id"]) for m in models] == [("team-model", 1, run_id)]
    assert list((tmp_path / "artifacts").rglob("notes.txt")), "artifacts travel through the server too"
    assert verify_ledger(ledger, workers=1).exit_code(strict=True) == 0
