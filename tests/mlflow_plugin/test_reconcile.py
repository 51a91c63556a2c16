"""`openledger reconcile` against real MLflow on SQLite: edits in the tracking database, unattested runs, deletions."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from openledger.store.records import load_schema
from openledger_cli.main import cli
from tests.mlflow_plugin.conftest import MlflowProject


def reconcile(project: MlflowProject, *args: str, uri: str | None = None) -> Result:
    result = CliRunner().invoke(cli, ["reconcile", "--tracking-uri", uri or project.uri(ledger=False),
                                      "--format", "json", *args], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("report-reconcile"))
    assert report["ok"] is (result.exit_code == 0)
    return result


def findings(result: Result, code: str | None = None) -> list[dict[str, Any]]:
    listed = json.loads(result.stdout)["discrepancies"]
    return [d for d in listed if code is None or d["code"] == code]


def train(*, metric: float = 0.9, steps: int = 3, register: str | None = None) -> str:
    import mlflow
    from sklearn.dummy import DummyClassifier

    with mlflow.start_run() as run:
        mlflow.log_params({"C": 0.5, "solver": "lbfgs"})
        for step in range(steps):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("accuracy", metric)
        if register:
            model = DummyClassifier().fit([[0], [1]], [0, 1])
            mlflow.sklearn.log_model(model, name="model", registered_model_name=register)
    return str(run.info.run_id)


def test_a_metric_edited_in_the_tracking_database_fails_strict_and_names_it(project: MlflowProject) -> None:
    run_id = train(metric=0.81)
    clean = reconcile(project, "--strict")
    assert clean.exit_code == 0, clean.stdout
    assert json.loads(clean.stdout)["checked"]["runs"] == 1
    with sqlite3.connect(project.root / "mlflow.db") as db:  # what someone with database access can do
        db.execute("UPDATE latest_metrics SET value = 0.97 WHERE run_uuid = ? AND key = 'accuracy'", (run_id,))
        db.execute("UPDATE metrics SET value = 0.97 WHERE run_uuid = ? AND key = 'accuracy'", (run_id,))
    edited = reconcile(project, "--strict")
    assert edited.exit_code == 1
    [metric] = [d for d in findings(edited, "run-changed") if d["details"]["field"] == "metric accuracy"]
    assert metric["subject"] == f"run:{run_id}" and metric["severity"] == "error"
    assert (metric["details"]["signed"], metric["details"]["current"]) == (0.81, 0.97)
    assert run_id in metric["message"] and "0.81" in metric["message"] and "0.97" in metric["message"]
    [record] = project.records("run")
    assert metric["records"] == [record.id]
    # the history changed with it; and an edit is an error even without --strict
    assert any(d["details"]["field"] == "metric history digest" for d in findings(edited, "run-changed"))
    assert reconcile(project).exit_code == 1
    text = CliRunner().invoke(cli, ["reconcile", "--tracking-uri", project.uri(ledger=False), "--strict"])
    assert text.exit_code == 1 and "metric accuracy was signed as 0.81, MLflow now has 0.97" in text.stdout


def test_an_edited_param_and_a_rewritten_metric_history(project: MlflowProject) -> None:
    run_id = train()
    with sqlite3.connect(project.root / "mlflow.db") as db:
        db.execute("UPDATE params SET value = 'saga' WHERE run_uuid = ? AND key = 'solver'", (run_id,))
        db.execute("DELETE FROM metrics WHERE run_uuid = ? AND key = 'loss' AND step = 1", (run_id,))
    fields = {d["details"]["field"]: d["details"] for d in findings(reconcile(project), "run-changed")}
    assert set(fields) == {"param solver", "metric history digest"}
    assert (fields["param solver"]["signed"], fields["param solver"]["current"]) == ("lbfgs", "saga")


def test_a_run_logged_without_the_plugin_is_unattested_until_captured(project: MlflowProject) -> None:
    import mlflow

    mlflow.set_tracking_uri(project.uri(ledger=False))  # the plugin "uninstalled": plain sqlite
    run_id = train(register="unattested-model")
    listed = reconcile(project, "--strict")
    assert listed.exit_code == 1
    assert [d["subject"] for d in findings(listed, "unattested-run")] == [f"run:{run_id}"]
    assert [d["subject"] for d in findings(listed, "unattested-model-version")] == ["model:unattested-model@1"]
    assert reconcile(project).exit_code == 0  # unattested is a warning: it fails only under --strict
    captured = CliRunner().invoke(cli, ["capture", "mlflow", "--tracking-uri", project.uri(ledger=False)],
                                  catch_exceptions=False)
    assert captured.exit_code == 0, captured.output
    after = reconcile(project, "--strict")
    assert after.exit_code == 0, after.stdout
    assert findings(after) == []


def test_deleted_runs_and_unknown_inputs_are_warnings(project: MlflowProject) -> None:
    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    with mlflow.start_run() as with_input:  # a digest the user chose, that no dataset record can carry
        mlflow.log_input(mlflow.data.from_numpy(np.arange(6).reshape(3, 2), name="scratch", digest="<v 1>"),
                         context="training")
    doomed = train()
    MlflowClient(project.uri(ledger=False)).delete_run(doomed)
    result = reconcile(project)
    assert result.exit_code == 0
    [deleted] = findings(result, "run-deleted")
    assert deleted["subject"] == f"run:{doomed}" and deleted["severity"] == "warning"
    [unknown] = findings(result, "unknown-input")
    assert unknown["details"]["name"] == "scratch" and unknown["details"]["runs"] == [with_input.info.run_id]
    assert unknown["subject"] == "input:mlflow:<v 1>"  # MLflow's digest, under its algorithm's name
    assert reconcile(project, "--strict").exit_code == 1


def test_a_run_missing_from_another_store_is_named(project: MlflowProject) -> None:
    train()
    other = project.uri("other.db", ledger=False)
    result = reconcile(project, uri=other)
    [missing] = findings(result, "run-deleted")
    assert "is not in MLflow at sqlite://" in missing["message"]


@pytest.mark.parametrize("uri", ["postgresql://nobody@127.0.0.1:1/none", "nosuchscheme://x", "http://127.0.0.1:9"])
def test_an_unreachable_store_is_exit_2_one_line(project: MlflowProject, uri: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.store.db.utils

    monkeypatch.setattr(mlflow.store.db.utils, "MAX_RETRY_COUNT", 1)  # MLflow retries for ~100 s otherwise
    result = CliRunner().invoke(cli, ["reconcile", "--tracking-uri", uri])
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr and "Traceback" not in result.output
