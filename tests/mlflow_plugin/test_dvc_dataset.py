"""mlflow.data.from_dvc: DVC's own hash as the MLflow dataset digest, with a real `dvc add`."""

from __future__ import annotations

import hashlib
import json
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


def _credit(root: Path) -> dict[str, float]:
    from click.testing import CliRunner

    from openledger_cli.main import cli

    result = CliRunner().invoke(cli, ["report", "contributors", "--format", "json"], catch_exceptions=False)
    return {c["person"]["email"] or c["person"]["name"]: c["roles"]["data"]["amount"]
            for c in json.loads(result.stdout)["contributors"] if "data" in c["roles"]}


def test_a_pandas_dataset_read_from_a_dvc_tracked_file_defers_to_dvcs_record(dvc_project: MlflowProject) -> None:
    """from_pandas(source="data/train.csv") of a file inside a `dvc add`-ed directory: MLflow's record names
    the DVC path and hash; once DVC's record of the directory exists, that one credits the data, per file."""
    import mlflow
    import pandas as pd

    with mlflow.start_run():
        frame = pd.read_csv("data/train.csv")
        mlflow.log_input(mlflow.data.from_pandas(frame, source="data/train.csv", name="train"), context="training")
    [logged] = dvc_project.records("dataset")
    file_hash = "md5:" + hashlib.md5((dvc_project.root / "data" / "train.csv").read_bytes()).hexdigest()
    assert logged.body["dvc"] == {"path": "data/train.csv", "hash": file_hash}
    assert file_hash in logged.links
    # no DVC record of the data yet: whoever logged it has the credit
    assert _credit(dvc_project.root) == {"ada@example.org": 1.0}
    recorded = subprocess.run([sys.executable, "-m", "openledger_cli", "dvc", "record"], cwd=dvc_project.root,
                              capture_output=True, text=True, check=False)
    assert recorded.returncode == 0, recorded.stderr
    # DVC's records win: the directory's 2 files and labels.txt, committed by the test's git author; the
    # logger is no longer credited, and nobody is counted twice
    assert _credit(dvc_project.root) == {"author@example.org": 3.0}


def test_a_from_dvc_input_links_dvcs_own_record_when_it_exists(dvc_project: MlflowProject) -> None:
    import mlflow

    recorded = subprocess.run([sys.executable, "-m", "openledger_cli", "dvc", "record"], cwd=dvc_project.root,
                              capture_output=True, text=True, check=False)
    assert recorded.returncode == 0, recorded.stderr
    before = {r.id for r in dvc_project.records("dataset")}
    with mlflow.start_run():
        mlflow.log_input(mlflow.data.from_dvc("data"), context="training")
    [run] = dvc_project.records("run")
    [dvc_record] = [r for r in dvc_project.records("dataset") if r.body["path"] == "data"]
    assert {r.id for r in dvc_project.records("dataset")} == before  # no second record of the same version
    assert dvc_record.id in run.links
