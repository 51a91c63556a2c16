"""MLflow capture through ledger+<scheme> stores, against real MLflow on SQLite."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from openledger import verify_ledger
from openledger.store.canonical import canonical_bytes
from tests.mlflow_plugin.conftest import MlflowProject

TRAIN = textwrap.dedent(
    """
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    mlflow.set_experiment("iris")
    with mlflow.start_run() as run:
        mlflow.log_params({"C": 0.5, "max_iter": 300})
        for step in range(10):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_input(mlflow.data.from_numpy(X, targets=y, name="iris"), context="training")
        model = LogisticRegression(C=0.5, max_iter=300).fit(X, y)
        mlflow.log_metric("accuracy", model.score(X, y))
        mlflow.sklearn.log_model(model, name="model", registered_model_name="iris-classifier")
    print(run.info.run_id)
    """
)


def run_script(project: MlflowProject, script: str, uri: str) -> str:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    result = subprocess.run([sys.executable, "-c", script], cwd=project.root, env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def history_digest(client: Any, run_id: str, keys: list[str]) -> str:
    histories = {k: sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, k))
                 for k in sorted(keys)}
    return "sha256:" + hashlib.sha256(canonical_bytes(histories)).hexdigest()


@pytest.mark.slow
def test_unchanged_script_records_one_run_and_one_model(project: MlflowProject) -> None:
    from mlflow import MlflowClient

    run_id = run_script(project, TRAIN, project.uri())
    runs, models = project.records("run"), project.records("model")
    assert len(runs) == 1 and len(models) == 1
    run, model = runs[0], models[0]
    client = MlflowClient(project.uri(ledger=False))
    mlflow_run = client.get_run(run_id)
    body = run.body
    assert body["run_id"] == run_id and body["status"] == "FINISHED"
    assert body["params"] == {"C": "0.5", "max_iter": "300"}
    assert body["metrics"] == mlflow_run.data.metrics and body["metrics"]["loss"] == 0.1
    assert body["metric_history_digest"] == history_digest(client, run_id, ["accuracy", "loss"])
    assert [(i["name"], i["context"], i["digest"]) for i in body["inputs"]] == [
        ("iris", "training", mlflow_run.inputs.dataset_inputs[0].dataset.digest)]
    assert len(body["models"]) == 1
    assert body["git"]["commit"] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=project.root,
                                                   capture_output=True, text=True, check=True).stdout.strip()
    assert body["backend"] == f"sqlite:///{project.root / 'mlflow.db'}"
    assert body["captured"] == "live"
    assert run.actor == project.keyid
    assert f"mlflowrun:{run_id}" in run.links
    assert model.body["name"] == "iris-classifier" and model.body["version"] == 1
    assert model.body["run_id"] == run_id and model.body["model_id"] == body["models"][0]["model_id"]
    assert model.body["artifact_digest"].startswith("sha256:")
    assert f"mlflowrun:{run_id}" in model.links
    # The run was tagged by the context provider, so the MLflow UI shows who ran it.
    assert mlflow_run.data.tags["openledger.actor"] == project.keyid
    assert mlflow_run.data.tags["openledger.actor.name"] == "Ada Lovelace"
    assert verify_ledger(project.ledger, workers=1).exit_code(strict=True) == 0


def _train_in_process(uri: str, experiment: str) -> None:
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(uri)
    X, y = load_iris(return_X_y=True)
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name="same-name"):
        mlflow.log_params({"C": 0.5, "penalty": "l2"})
        for step in range(20):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step, timestamp=1_700_000_000_000 + step)
        mlflow.log_input(mlflow.data.from_numpy(X, targets=y, name="iris"), context="training")
        mlflow.set_tag("team", "vision")
        model = LogisticRegression(C=0.5, max_iter=300).fit(X, y)
        mlflow.sklearn.log_model(model, name="model", registered_model_name=f"{experiment}-model")


def _comparable(value: Any) -> Any:
    """Drop what legitimately differs between two stores: ids, times, locations, paths."""
    volatile = {"run_id", "run_uuid", "experiment_id", "start_time", "end_time", "timestamp", "artifact_uri",
                "artifact_location", "creation_timestamp", "last_updated_timestamp", "model_id", "source",
                "source_run_id", "id", "mlflow.log-model.history", "digest_of_source", "user_id"}
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in volatile and not k.startswith("openledger.")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _snapshot(uri: str, experiment: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    run = client.get_run(runs[0].info.run_id)
    versions = client.search_model_versions(f"name='{experiment}-model'")
    logged = client.get_logged_model(run.outputs.model_outputs[0].model_id)
    snapshot: dict[str, Any] = _comparable({
        "search_runs": [r.to_dictionary() for r in runs],
        "get_run": run.to_dictionary(),
        "history": [(m.key, m.value, m.step, m.timestamp) for m in client.get_metric_history(run.info.run_id, "loss")],
        "versions": [dict(v) if isinstance(v, dict) else {k: getattr(v, k) for k in ("name", "version", "status",
                                                                                     "current_stage", "tags")}
                     for v in versions],
        "logged_model": {**{k: getattr(logged, k) for k in ("name", "status", "model_type", "tags", "params")},
                         "metrics": [(m.key, m.value, m.step) for m in logged.metrics or []]},
    })
    return snapshot


@pytest.mark.slow
def test_wrapper_is_transparent(project: MlflowProject) -> None:
    plain, wrapped = project.uri("plain.db", ledger=False), project.uri("wrapped.db")
    _train_in_process(plain, "exp")
    _train_in_process(wrapped, "exp")
    assert _snapshot(plain, "exp") == _snapshot(wrapped, "exp")
    assert len(project.records("run")) == 1  # only the ledger+ store recorded


def test_store_keeps_mlflow_isinstance_checks(project: MlflowProject) -> None:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._model_registry.utils import _get_store as registry_store
    from mlflow.tracking._tracking_service.utils import _get_store

    assert isinstance(_get_store(), SqlAlchemyStore)
    assert type(_get_store()).__name__.startswith("Ledger")
    assert isinstance(registry_store(), RegistryStore)


def test_async_nested_client_and_terminal_statuses(project: MlflowProject) -> None:
    import mlflow
    from mlflow import MlflowClient

    with mlflow.start_run() as parent:
        for step in range(50):
            mlflow.log_metric("async_loss", step / 10, step=step, synchronous=False)
        with mlflow.start_run(nested=True) as child:
            mlflow.log_param("fold", "1")
    client = MlflowClient()
    experiment_id = parent.info.experiment_id
    created = client.create_run(experiment_id)
    client.log_param(created.info.run_id, "made_by", "client")
    client.set_terminated(created.info.run_id, status="KILLED")
    with pytest.raises(ZeroDivisionError), mlflow.start_run() as failing:
        raise ZeroDivisionError
    bodies = {r.body["run_id"]: r.body for r in project.records("run")}
    assert set(bodies) == {parent.info.run_id, child.info.run_id, created.info.run_id, failing.info.run_id}
    assert bodies[parent.info.run_id]["metrics"] == {"async_loss": 4.9}
    assert bodies[child.info.run_id]["parent_run_id"] == parent.info.run_id
    assert bodies[created.info.run_id]["status"] == "KILLED"
    assert bodies[created.info.run_id]["params"] == {"made_by": "client"}
    assert bodies[failing.info.run_id]["status"] == "FAILED"


def test_rename_and_resume_do_not_record_again(project: MlflowProject) -> None:
    import mlflow
    from mlflow import MlflowClient

    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0)
    client = MlflowClient()
    client.update_run(run.info.run_id, name="renamed")
    with mlflow.start_run(run_id=run.info.run_id):  # resume
        mlflow.log_metric("m", 2.0)
    assert [r.body["run_id"] for r in project.records("run")] == [run.info.run_id]


@pytest.mark.slow
def test_autologged_sklearn_run_is_recorded(project: MlflowProject) -> None:
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    mlflow.sklearn.autolog(log_models=False)
    try:
        X, y = load_iris(return_X_y=True)
        with mlflow.start_run() as run:
            DecisionTreeClassifier(max_depth=3).fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    body = next(r.body for r in project.records("run") if r.body["run_id"] == run.info.run_id)
    assert body["params"]["max_depth"] == "3"
    assert "training_accuracy_score" in body["metrics"]


def test_fail_open_without_a_key(project: MlflowProject, monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    import mlflow

    monkeypatch.setenv("OPENLEDGER_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.uri("nokey.db"))
    mlflow.set_tracking_uri(project.uri("nokey.db"))
    with caplog.at_level(logging.WARNING, logger="openledger"):
        for _ in range(2):
            with mlflow.start_run() as run:
                mlflow.log_metric("m", 1.0)
    assert mlflow.get_run(run.info.run_id).info.status == "FINISHED"
    assert project.records("run") == []
    warnings = [r for r in caplog.records if r.name == "openledger"]
    assert len(warnings) == 1 and "no signing key" in warnings[0].getMessage()


def test_strict_mode_raises(project: MlflowProject, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mlflow

    monkeypatch.setenv("OPENLEDGER_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("OPENLEDGER_STRICT", "1")
    mlflow.set_tracking_uri(project.uri("strict.db"))
    from openledger import KeyMaterialError

    with pytest.raises(KeyMaterialError), mlflow.start_run():
        mlflow.log_metric("m", 1.0)


def test_fail_open_with_an_unwritable_ledger(project: MlflowProject, caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    import mlflow

    objects = project.ledger.root / "objects"
    shutil.rmtree(objects)
    objects.write_text("not a directory: writes into the ledger fail")  # root ignores read-only bits
    mlflow.set_tracking_uri(project.uri("readonly.db"))
    with caplog.at_level(logging.WARNING, logger="openledger"), mlflow.start_run() as run:
        mlflow.log_param("p", "v")
    assert mlflow.get_run(run.info.run_id).data.params == {"p": "v"}
    assert any("unrecorded" in r.getMessage() for r in caplog.records if r.name == "openledger")


PARALLEL = textwrap.dedent(
    """
    import sys, mlflow
    mlflow.set_experiment("parallel")
    ids = []
    for i in range(int(sys.argv[1])):
        with mlflow.start_run() as run:
            mlflow.log_param("worker", sys.argv[2])
            mlflow.log_metric("i", i)
        ids.append(run.info.run_id)
    print(" ".join(ids))
    """
)


@pytest.mark.slow
def test_four_processes_in_parallel(project: MlflowProject) -> None:
    env = dict(os.environ, MLFLOW_TRACKING_URI=project.uri("parallel.db"))
    # Create the database once first: four processes racing to create MLflow's schema is MLflow's concern.
    subprocess.run([sys.executable, "-c", PARALLEL, "1", "init"], cwd=project.root, env=env, check=True,
                   capture_output=True)
    processes = [subprocess.Popen([sys.executable, "-c", PARALLEL, "5", str(n)], cwd=project.root, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    run_ids = set()
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        run_ids.update(out.split())
    recorded = [r.body["run_id"] for r in project.records("run")]
    assert len(run_ids) == 20 and set(recorded) >= run_ids
    assert len(recorded) == len(set(recorded)) == 21
    assert verify_ledger(project.ledger, workers=1).errors == []


def test_nan_metric_round_trips(project: MlflowProject) -> None:
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_metric("loss", float("nan"))
    from click.testing import CliRunner

    from openledger_cli.main import cli

    body = next(r.body for r in project.records("run") if r.body["run_id"] == run.info.run_id)
    assert math.isnan(body["metrics"]["loss"])

    def no_bare_constants(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    # what `log --format json` prints is strict JSON: the NaN is tagged, not a bare NaN token
    printed = CliRunner().invoke(cli, ["--ledger", str(project.ledger.root), "log", "--kind", "run",
                                       "--format", "json"])
    assert printed.exit_code == 0, printed.output
    [entry] = [e for e in json.loads(printed.stdout, parse_constant=no_bare_constants)
               if e["body"]["run_id"] == run.info.run_id]
    assert entry["body"]["metrics"]["loss"] == {"$float": "NaN"}


def test_capture_history_after_the_fact(project: MlflowProject) -> None:
    import mlflow
    from click.testing import CliRunner
    from mlflow import MlflowClient

    from openledger_cli.main import cli

    plain = project.uri("before.db", ledger=False)
    mlflow.set_tracking_uri(plain)
    experiment_id = mlflow.create_experiment("history")
    other_id = mlflow.create_experiment("other")
    with mlflow.start_run(experiment_id=experiment_id) as old:
        mlflow.log_metric("acc", 0.8)
    with mlflow.start_run(experiment_id=other_id) as elsewhere:
        mlflow.log_metric("acc", 0.7)
    running = MlflowClient(plain).create_run(experiment_id)  # never ended
    assert project.records("run") == []  # logged with the plugin "uninstalled"
    runner = CliRunner()
    first = runner.invoke(cli, ["capture", "mlflow", "--tracking-uri", plain, "--experiment", "history",
                                "--format", "json"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["runs_recorded"], summary["runs_in_progress"]) == (1, 1)
    bodies = {r.body["run_id"]: r.body for r in project.records("run")}
    assert set(bodies) == {old.info.run_id} and bodies[old.info.run_id]["captured"] == "after-the-fact"
    again = runner.invoke(cli, ["capture", "mlflow", "--tracking-uri", plain, "--format", "json"],
                          catch_exceptions=False)
    assert json.loads(again.stdout)["runs_recorded"] == 1 and json.loads(again.stdout)["runs_already_recorded"] == 1
    assert {r.body["run_id"] for r in project.records("run")} == {old.info.run_id, elsewhere.info.run_id}
    assert running.info.run_id not in {r.body["run_id"] for r in project.records("run")}
    missing = runner.invoke(cli, ["capture", "mlflow", "--tracking-uri", plain, "--run", "0" * 32])
    assert missing.exit_code == 2 and "Traceback" not in missing.output


def test_file_store_where_mlflow_allows_it(project: MlflowProject, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.store.tracking.file_store import FileStore
    from mlflow.tracking._tracking_service.utils import _get_store

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"ledger+file://{project.root / 'mlruns-file'}"
    mlflow.set_tracking_uri(uri)
    assert isinstance(_get_store(), FileStore)
    with mlflow.start_run() as run:
        mlflow.log_param("store", "file")
    assert [r.body["run_id"] for r in project.records("run")] == [run.info.run_id]


def test_unknown_inner_scheme_is_mlflows_usual_error(project: MlflowProject) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlflow_plugin.store import tracking_store

    with pytest.raises(MlflowException):
        tracking_store("ledger+nosuchdb://host/db")
    assert mlflow.get_tracking_uri().startswith("ledger+sqlite")


def test_backfill_pages_through_experiments_and_runs(project: MlflowProject,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from mlflow_plugin import backfill
    from openledger.capture.recorder import Recorder

    monkeypatch.setattr(backfill, "_PAGE", 1)
    plain = project.uri("paged.db", ledger=False)
    mlflow.set_tracking_uri(plain)
    run_ids = set()
    for name in ("a", "b", "c"):
        experiment_id = mlflow.create_experiment(name)
        for _ in range(2):
            with mlflow.start_run(experiment_id=experiment_id) as run:
                mlflow.log_param("experiment", name)
            run_ids.add(run.info.run_id)
    result = backfill.capture_history(plain, Recorder(ledger=project.ledger))
    assert {r.body["run_id"] for r in project.records("run")} == run_ids
    assert len(result.runs_recorded) == 6


def test_run_and_experiment_are_exclusive(project: MlflowProject) -> None:
    from click.testing import CliRunner

    from openledger_cli.main import cli

    result = CliRunner().invoke(cli, ["capture", "mlflow", "--tracking-uri", project.uri(ledger=False),
                                      "--run", "0" * 32, "--experiment", "x"])
    assert result.exit_code == 2 and "not both" in result.output


def test_ci_key_feed_tag_matches_the_records_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from mlflow_plugin.context import LedgerRunContext
    from openledger import KeyStore

    monkeypatch.setenv("OPENLEDGER_SIGNING_KEY", base64.b64encode(bytes(range(32))).decode())
    tags = LedgerRunContext().tags()
    signer = KeyStore().load_signer()
    assert (tags["openledger.actor"], tags["openledger.feed"]) == (signer.keyid, signer.feed)


def test_model_version_recorded_once_with_its_link_key(project: MlflowProject) -> None:
    import mlflow
    from mlflow import MlflowClient

    from mlflow_plugin.capture import RunCapture
    from mlflow_plugin.store import capture_for
    from openledger.lineage.joins import model_version_key

    with mlflow.start_run() as run:
        mlflow.log_param("p", "v")
    client = MlflowClient()
    client.create_registered_model("linked")
    version = client.create_model_version("linked", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    models = project.records("model")
    assert len(models) == 1 and model_version_key("linked", 1, None) in models[0].links
    capture: RunCapture = capture_for(project.uri().removeprefix("ledger+"))
    assert capture.model_version_created(version, None) is None  # already recorded: nothing written
    assert len(project.records("model")) == 1
