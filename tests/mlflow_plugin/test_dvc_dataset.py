"""mlflow.data.from_dvc: DVC's own hash as the MLflow dataset digest, with a real `dvc add`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import git
from tests.mlflow_plugin.conftest import MlflowProject


def dvc(repo: Path, *args: str) -> None:
    subprocess.run([str(Path(sys.executable).with_name("dvc")), *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def dvc_project(project: MlflowProject) -> MlflowProject:
    dvc(project.root, "init", "-q")
    data = project.root / "data"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n1,2\n")
    (data / "test.csv").write_text("x,y\n3,4\n")
    (project.root / "labels.txt").write_text("setosa\n")
    dvc(project.root, "add", "-q", "data", "labels.txt")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "data")
    return project


def test_digest_is_dvcs_hash_and_source_round_trips(dvc_project: MlflowProject) -> None:
    import mlflow

    directory_hash = yaml.safe_load((dvc_project.root / "data.dvc").read_text())["outs"][0]["md5"]
    file_hash = yaml.safe_load((dvc_project.root / "labels.txt.dvc").read_text())["outs"][0]["md5"]
    data, labels = mlflow.data.from_dvc("data"), mlflow.data.from_dvc("labels.txt", rev="HEAD")
    assert data.digest == "md5:" + directory_hash.removesuffix(".dir") and len(data.digest) <= 36
    assert data.source.hash == "md5:" + directory_hash and directory_hash.endswith(".dir")
    assert labels.digest == labels.source.hash == "md5:" + file_hash
    assert data.profile == {"size": 16, "nfiles": 2}
    with mlflow.start_run() as run:
        mlflow.log_input(data, context="training")
        mlflow.log_input(labels, context="labels")
    logged = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    sources = {d.dataset.name: mlflow.data.get_source(d.dataset) for d in logged}
    assert type(sources["data"]).__name__ == "DvcDatasetSource"
    assert sources["data"].to_dict() == data.source.to_dict()
    assert sources["labels.txt"].rev == "HEAD"
    assert Path(sources["data"].load()) == dvc_project.root / "data"
    record = next(r for r in dvc_project.records("run") if r.body["run_id"] == run.info.run_id)
    assert {"md5:" + directory_hash, "md5:" + file_hash} <= set(record.links)


def test_untracked_path_is_a_clear_mlflow_error(dvc_project: MlflowProject) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    (dvc_project.root / "plain.txt").write_text("not tracked\n")
    with pytest.raises(MlflowException, match="not tracked by DVC"):
        mlflow.data.from_dvc("plain.txt")
    with pytest.raises(MlflowException, match="not tracked by DVC"):
        mlflow.data.from_dvc("missing.csv")
