"""`report model --log-to-mlflow` and `ci --log-reports-to-mlflow`: the HTML provenance page as an artifact of the
model version's run, against a real `mlflow server` subprocess, fetched back through MlflowClient."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from openledger import Ledger, signer_from_seed
from tests.conftest import git
from tests.mlflow_plugin.conftest import mlflow_server

TRAIN = textwrap.dedent(
    """
    import mlflow
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression

    frame = load_wine(as_frame=True).frame
    mlflow.set_experiment("wine")
    with mlflow.start_run() as run:
        mlflow.log_input(mlflow.data.from_pandas(frame, name="wine <b>table</b>", targets="target"))
        model = LogisticRegression(max_iter=2000).fit(frame.drop(columns="target"), frame["target"])
        mlflow.log_metric("accuracy", model.score(frame.drop(columns="target"), frame["target"]))
        mlflow.sklearn.log_model(model, name="model", registered_model_name="wine-classifier")
    print(run.info.run_id)
    """
)


class Served:
    def __init__(self, root: Path, url: str, env: dict[str, str], run_id: str) -> None:
        self.root, self.url, self.env, self.run_id = root, url, env, run_id

    def openledger(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The installed command, as a user runs it (the ledger is the server's: it signed the records)."""
        return subprocess.run([sys.executable, "-m", "openledger_cli", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, check=False)

    def download(self, path: str, into: Path) -> bytes:
        from mlflow import MlflowClient

        into.mkdir(parents=True, exist_ok=True)
        local = MlflowClient(self.url).download_artifacts(self.run_id, path, str(into))
        return Path(local).read_bytes()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A git repository whose ledger the MLflow server writes to (server mode), one trained and registered run."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    ledger = Ledger.init(root)
    seed = bytes(range(7, 39))
    server_key = signer_from_seed(seed, feed="mlflow-server")
    ledger.append(server_key, "identity", {"key": server_key.keyid, "name": "MLflow server",
                                           "email": "mlflow@example.org"})
    ledger.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLEDGER_", "MLFLOW_"))}
    server_env = dict(env, OPENLEDGER_DIR=str(root / ".openledger"), OPENLEDGER_FEED="mlflow-server",
                      OPENLEDGER_SIGNING_KEY=base64.b64encode(seed).decode(),
                      OPENLEDGER_HOME=str(tmp_path / "server-home"))
    with mlflow_server(tmp_path, f"ledger+sqlite:///{tmp_path / 'server.db'}", server_env) as url:
        client_env = dict(env, MLFLOW_TRACKING_URI=url, OPENLEDGER_HOME=str(tmp_path / "client-home"))
        trained = subprocess.run([sys.executable, "-c", TRAIN], cwd=tmp_path, env=client_env, capture_output=True,
                                 text=True, check=False)
        assert trained.returncode == 0, trained.stderr[-3000:]
        run_id = trained.stdout.strip().splitlines()[-1]
        yield Served(root, url, dict(client_env, OPENLEDGER_SIGNING_KEY=base64.b64encode(seed).decode(),
                                     OPENLEDGER_FEED="reviewer"), run_id)


ARTIFACT = "openledger/wine-classifier-v1-provenance.html"


@pytest.mark.slow
def test_the_report_is_served_back_byte_identical_relogging_replaces_it_and_ci_logs_it_too(served: Served,
                                                                                      tmp_path: Path) -> None:
    logged = served.openledger("report", "model", "wine-classifier@1", "--format", "html", "-o", "page.html",
                               "--log-to-mlflow", "--tracking-uri", served.url)
    assert logged.returncode == 0, logged.stderr
    assert f"{served.run_id}/artifacts/{ARTIFACT}" in logged.stderr
    page = (served.root / "page.html").read_bytes()
    assert page.startswith(b"<!DOCTYPE html>") and b"wine &lt;b&gt;table&lt;/b&gt;" in page
    assert served.download(ARTIFACT, tmp_path / "first") == page

    # the report changes (a review of the version); logging again replaces the page, it does not add one
    review = served.openledger("review", "approve", "model:wine-classifier@1", "-m", "reproduced",
                               "--tracking-uri", served.url)
    assert review.returncode == 0, review.stderr
    again = served.openledger("report", "model", "wine-classifier@1", "--format", "html", "-o", "page2.html",
                              "--log-to-mlflow", "--tracking-uri", served.url)
    assert again.returncode == 0, again.stderr
    second = (served.root / "page2.html").read_bytes()
    assert second != page and b"reproduced" in second
    assert served.download(ARTIFACT, tmp_path / "second") == second
    from mlflow import MlflowClient

    listed = [a.path for a in MlflowClient(served.url).list_artifacts(served.run_id, "openledger")]
    assert listed == [ARTIFACT]

    # `openledger ci --log-reports-to-mlflow`: the report of each gated model, whatever its gate's outcome
    config = served.root / ".openledger" / "config.yaml"
    settings = yaml.safe_load(config.read_text()) or {}
    settings["ci"] = {"models": ["wine-classifier@1", "no-such-model@3"]}
    config.write_text(yaml.safe_dump(settings))
    result = served.openledger("ci", "--tracking-uri", served.url, "--no-checkpoint", "--log-reports-to-mlflow")
    assert result.returncode == 1  # the unknown model fails its gate; logging its report is no second failure
    assert "report of wine-classifier@1 logged to MLflow" in result.stderr
    assert "report of no-such-model@3 not logged to MLflow" in result.stderr
    page = served.download(ARTIFACT, tmp_path / "ci")
    assert page.startswith(b"<!DOCTYPE html>") and b"wine-classifier" in page


def test_logging_needs_a_tracking_server_and_a_recorded_run(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from openledger_cli.main import cli

    signer = signer_from_seed(bytes([5]) * 32, feed="ci")
    ledger.append(signer, "model", {"name": "orphan", "version": 1, "run_id": None})
    ledger.append(signer, "model", {"name": "trained", "version": 1, "run_id": "a" * 32})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(ledger.root.parent)
    result = CliRunner().invoke(cli, ["report", "model", "trained@1", "--log-to-mlflow"])
    assert result.exit_code == 2 and "needs its tracking server" in result.stderr
    result = CliRunner().invoke(cli, ["report", "model", "orphan@1", "--log-to-mlflow", "--tracking-uri",
                                      f"sqlite:///{ledger.root.parent / 'mlflow.db'}"])
    assert result.exit_code == 2 and "no recorded MLflow run" in result.stderr
    result = CliRunner().invoke(cli, ["report", "model", "trained@1", "--log-to-mlflow", "--tracking-uri",
                                      f"sqlite:///{ledger.root.parent / 'mlflow.db'}"])
    assert result.exit_code == 2 and "could not log the report to run " + "a" * 32 in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("name", "version", "path"), [
    ("wine-classifier", "1", "openledger/wine-classifier-v1-provenance.html"),
    ("../../etc/passwd", "2", "openledger/etc_passwd-v2-provenance.html"),
    ("<script>", "3", "openledger/script-v3-provenance.html"),
    ("...", "4", "openledger/model-v4-provenance.html"),
])
def test_the_artifact_path_is_one_file_under_openledger(name: str, version: str, path: str) -> None:
    from mlflow_plugin.report_artifact import report_artifact_path

    assert report_artifact_path(name, version) == path
