"""A training stage that logs to MLflow through the plugin: model version -> run -> stage -> dataset -> author."""

from __future__ import annotations

import json

from openledger.lineage.joins import dvc_run_key
from tests.dvc_hooks.conftest import DvcRepo

TRAIN = """\
import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

rows = [line.split(",") for line in open("data/rows.csv").read().split()]
X = np.array([[float(a)] for a, _ in rows])
y = np.array([int(b) for _, b in rows])
with mlflow.start_run():
    mlflow.log_input(mlflow.data.from_dvc("data"), context="training")
    mlflow.log_param("C", 1.0)
    model = LogisticRegression(C=1.0).fit(X, y)
    mlflow.log_metric("accuracy", float(model.score(X, y)))
    mlflow.sklearn.log_model(model, name="model", registered_model_name="classifier")
open("model.txt", "w").write("trained\\n")
"""

PIPELINE = """\
stages:
  train:
    cmd: python train.py
    deps: [data, train.py]
    outs: [model.txt]
"""


def test_model_lineage_runs_from_registered_version_to_the_data_author(dvc_repo: DvcRepo) -> None:
    dvc_repo.write("data/rows.csv", "\n".join(f"{i},{i % 2}" for i in range(20)) + "\n")
    dvc_repo.dvc("add", "-q", "data")
    dvc_repo.commit("data", author=("Dana Data", "dana@example.org"))
    dvc_repo.write("train.py", TRAIN)
    dvc_repo.write("dvc.yaml", PIPELINE)
    dvc_repo.write(".gitignore", "mlflow.db\nmlruns/\n")
    dvc_repo.commit("training stage")
    dvc_repo.openledger("dvc", "install")
    uri = f"ledger+sqlite:///{dvc_repo.root / 'mlflow.db'}"
    dvc_repo.dvc("repro", MLFLOW_TRACKING_URI=uri)

    [run] = dvc_repo.records("run")
    [model] = dvc_repo.records("model")
    [stage] = dvc_repo.records("stage")
    # DVC's record of the data (per-file credit from git) and MLflow's of the input (from_dvc: DVC's hash)
    [dataset] = [r for r in dvc_repo.records("dataset") if "mlflow" not in r.body]
    [logged] = [r for r in dvc_repo.records("dataset") if "mlflow" in r.body]
    assert logged.body["digest"] == dataset.body["digest"] and logged.id in run.links
    # the run knows the stage it ran in, and the stage record claims the run
    assert run.body["dvc"] == {"stage": "train", "experiment": None}
    assert dvc_run_key("train", None) in run.links
    assert run.id in stage.links
    assert stage.body["runs"] == [run.body["run_id"]]
    # model version -> run; run and stage -> the dataset version, whose author is credited
    # (registered inside the run, before the run record exists: they share the run's join key)
    assert f"mlflowrun:{run.body['run_id']}" in set(model.links) & set(run.links)
    assert model.body["name"] == "classifier"
    assert dataset.body["digest"] in run.links
    assert dataset.id in stage.links
    assert [c["email"] for c in dataset.body["contributors"]] == ["dana@example.org"]

    # one dataset version in the lineage, attested by both records; the data credit is DVC's, per file, once
    lineage = json.loads(dvc_repo.openledger("report", "model", "classifier@1", "--format", "json").stdout)
    assert [d["records"] for d in lineage["datasets"]] == [[logged.id, dataset.id]]
    credit = json.loads(dvc_repo.openledger("report", "contributors", "--format", "json").stdout)
    data = {c["person"]["email"]: c["roles"]["data"]["files"] for c in credit["contributors"] if "data" in c["roles"]}
    assert data == {"dana@example.org": 1}  # not the trainer, who only logged it

    dvc_repo.dvc("repro", MLFLOW_TRACKING_URI=uri)  # unchanged: no new run, no new stage record
    assert len(dvc_repo.records("stage")) == 1
    assert dvc_repo.openledger("verify").returncode == 0
