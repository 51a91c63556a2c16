"""MLflow's own datasets as signed dataset records: pandas, numpy, Hugging Face, Spark, meta datasets, against real
MLflow on SQLite; `reconcile --strict` on an untouched store, the credit of whoever logged the data."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from openledger import verify_ledger
from openledger.store.records import load_schema
from openledger_cli.main import cli
from tests.mlflow_plugin.conftest import MlflowProject


def wine() -> Any:
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


def reconcile(project: MlflowProject, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["reconcile", "--tracking-uri", project.uri(ledger=False), "--format", "json",
                                      *args], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def datasets_by_digest(project: MlflowProject) -> dict[str, Any]:
    return {r.body["digest"]: r for r in project.records("dataset")}


def test_pandas_and_numpy_inputs_are_signed_dataset_records_and_reconcile_strict_passes(
        project: MlflowProject) -> None:
    import mlflow
    import numpy as np

    frame = wine()
    pandas = mlflow.data.from_pandas(frame, source="https://example.org/winequality-red.csv", name="wine",
                                     targets="target")
    array = mlflow.data.from_numpy(np.arange(12.0).reshape(4, 3), targets=np.array([0, 1, 0, 1]), name="grid")
    with mlflow.start_run() as first:
        mlflow.log_input(pandas, context="training")
        mlflow.log_input(array, context="validation")
        mlflow.log_metric("rmse", 0.7)
    records = datasets_by_digest(project)
    assert set(records) == {f"mlflow:{pandas.digest}", f"mlflow:{array.digest}"}
    logged = records[f"mlflow:{pandas.digest}"]
    body = logged.body
    assert logged.actor == project.keyid  # signed by whoever logged it
    assert body["path"] == body["name"] == "wine"
    assert body["mlflow"] == {"digest": pandas.digest, "source_type": "http", "run_id": first.info.run_id,
                              "context": "training"}
    assert "fingerprint" in body["digest_algorithm"] and "not a hash of a file" in body["digest_algorithm"]
    assert body["source"] == {"type": "http", "url": "https://example.org/winequality-red.csv"}
    assert [c["name"] for c in body["schema"]["mlflow_colspec"]] == list(frame.columns)
    assert body["profile"] == {"num_rows": len(frame), "num_elements": frame.size}
    assert body["contributors"] == [{"key": project.keyid, "name": "Ada Lovelace", "email": "ada@example.org",
                                     "role": "data", "files": 1}]
    assert records[f"mlflow:{array.digest}"].body["profile"]["features_shape"] == [4, 3]
    [run] = project.records("run")
    assert {r.id for r in records.values()} <= set(run.links)  # the run record links its datasets

    # the same data logged again: no second record, the new run links the first one
    with mlflow.start_run() as second:
        mlflow.log_input(mlflow.data.from_pandas(frame, name="wine again", targets="target"), context="training")
    assert len(project.records("dataset")) == 2
    again = next(r for r in project.records("run") if r.body["run_id"] == second.info.run_id)
    assert logged.id in again.links

    code, report = reconcile(project, "--strict")
    assert code == 0, report["discrepancies"]
    assert report["checked"]["runs"] == 2
    assert verify_ledger(project.ledger, workers=1).exit_code(strict=True) == 0
    # credited to the person who logged it, in the data role, one per dataset version
    credit = json.loads(CliRunner().invoke(cli, ["report", "contributors", "--format", "json"]).stdout)
    [ada] = credit["contributors"]
    assert ada["roles"]["data"]["amount"] == 2.0 and ada["roles"]["data"]["datasets"] == 2.0
    assert sorted(ada["roles"]["data"]["records"]) == sorted(r.id for r in records.values())


def test_hugging_face_spark_and_meta_datasets_are_recorded_too(project: MlflowProject,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing leaves this machine
    datasets = pytest.importorskip("datasets")
    import mlflow
    from mlflow import MlflowClient
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.spark_dataset_source import SparkDatasetSource
    from mlflow.entities import Dataset, DatasetInput, InputTag

    reviews = mlflow.data.from_huggingface(datasets.Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]}),
                                           path="local/reviews", targets="label", name="reviews")
    # MLflow's MetaDataset leaves the abstract `profile` property unimplemented (it has none) yet is meant to be used
    meta = MetaDataset(HTTPDatasetSource("https://example.org/big.parquet"), name="big")  # type: ignore[abstract]
    # What a Spark job's `mlflow.log_input(mlflow.data.from_spark(df, path=...))` hands the tracking store (the
    # entity SparkDataset builds): this machine has no Spark, the store sees the same call.
    spark = Dataset(name="wine-spark", digest="5b1c0a7e", source_type="spark",
                    source=SparkDatasetSource(path="s3://bucket/wine.parquet").to_json(),
                    schema=json.dumps({"mlflow_colspec": [{"type": "double", "name": "alcohol", "required": True}]}),
                    profile=json.dumps({"approx_count": 1599}))
    with mlflow.start_run() as run:
        mlflow.log_input(reviews, context="training")
        mlflow.log_input(meta, context="evaluation")
        MlflowClient().log_inputs(run.info.run_id, [DatasetInput(spark, [InputTag("mlflow.data.context", "training")])])
    records = datasets_by_digest(project)
    assert set(records) == {f"mlflow:{reviews.digest}", f"mlflow:{meta.digest}", "mlflow:5b1c0a7e"}
    assert records[f"mlflow:{reviews.digest}"].body["source"]["path"] == "local/reviews"
    assert records[f"mlflow:{reviews.digest}"].body["mlflow"]["source_type"] == "hugging_face"
    assert records[f"mlflow:{meta.digest}"].body["schema"] is None
    assert records["mlflow:5b1c0a7e"].body["source"] == {"type": "spark", "path": "s3://bucket/wine.parquet"}
    assert records["mlflow:5b1c0a7e"].body["profile"] == {"approx_count": 1599}
    assert reconcile(project, "--strict")[0] == 0


def test_an_input_no_record_can_explain_is_still_named(project: MlflowProject) -> None:
    """A digest no dataset record can carry (the user chose it) stays an unknown input; hostile names and a
    schema too large to sign do not stop the run's other datasets from being recorded."""
    import mlflow
    import numpy as np

    name = "<img src=x onerror=alert(1)>\x1b[31m"
    huge = mlflow.data.from_pandas(wine(), name=name)
    huge_schema = json.dumps({"mlflow_colspec": [{"type": "double", "name": "c" * 200 + str(i), "required": True}
                                                 for i in range(400)]})
    with mlflow.start_run() as run:
        mlflow.log_input(mlflow.data.from_numpy(np.zeros(3), name="odd", digest="v1 final!"), context="training")
        mlflow.log_input(huge, context="training")
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput

    big = Dataset(name="big schema", digest="0badc0de", source_type="code", source="{}", schema=huge_schema)
    with mlflow.start_run() as second:
        MlflowClient().log_inputs(second.info.run_id, [DatasetInput(big, [])])
    records = datasets_by_digest(project)
    assert set(records) == {f"mlflow:{huge.digest}", "mlflow:0badc0de"}
    assert records[f"mlflow:{huge.digest}"].body["name"] == name  # kept as given: renderers escape it
    assert records["mlflow:0badc0de"].body["schema"]["omitted"] == "too large"
    assert records["mlflow:0badc0de"].body["schema"]["bytes"] == len(huge_schema)
    code, report = reconcile(project, "--strict")
    assert code == 1
    [unknown] = [d for d in report["discrepancies"] if d["code"] == "unknown-input"]
    assert unknown["subject"] == "input:mlflow:v1 final!" and unknown["details"]["runs"] == [run.info.run_id]
    assert [d["code"] for d in report["discrepancies"]] == ["unknown-input"]


def test_capture_mlflow_records_the_datasets_of_runs_logged_before(project: MlflowProject) -> None:
    import mlflow

    mlflow.set_tracking_uri(project.uri(ledger=False))  # the plugin not installed yet
    with mlflow.start_run():
        mlflow.log_input(mlflow.data.from_pandas(wine(), name="wine"), context="training")
    assert reconcile(project, "--strict")[0] == 1
    result = CliRunner().invoke(cli, ["capture", "mlflow", "--tracking-uri", project.uri(ledger=False)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [dataset] = project.records("dataset")
    assert dataset.body["captured"] == "after-the-fact" and dataset.body["name"] == "wine"
    assert reconcile(project, "--strict")[0] == 0


@pytest.mark.parametrize(("digest", "valid"), [
    ("md5:" + "a" * 32 + ".dir", True), ("sha256:" + "b" * 64, True), ("mlflow:0a64f9dd", True),
    ("mlflow:v1.2_final-3", True), ("mlflow:", False), ("mlflow:<b>", False), ("0a64f9dd", False),
    ("mlflow:" + "z" * 65, False), ("md5:abc", False),
])
def test_the_dataset_schema_takes_mlflow_digests_and_keeps_every_earlier_record_valid(digest: str,
                                                                                      valid: bool) -> None:
    import jsonschema

    validator = jsonschema.Draft7Validator(load_schema("dataset"))
    assert validator.is_valid({"path": "data", "digest": digest}) is valid
