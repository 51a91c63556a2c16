"""Provenance and contribution reports on the demo's project (real DVC pipeline, MLflow, git, two keys)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from openledger.store.records import load_schema
from tests.reports.conftest import openledger, report_json


def records_of(project: Any, kind: str) -> list[dict[str, Any]]:
    listed = json.loads(openledger(project, "log", "--kind", kind, "--format", "json").stdout)
    return [r for r in listed if r["kind"] == kind]


def test_model_report_names_everything_that_went_into_the_model_and_nothing_else(demo: Any) -> None:
    report = report_json(demo, "model", "wine-classifier@2")
    models = [m for m in records_of(demo, "model") if "action" not in m["body"]]
    v1 = next(m for m in models if m["body"]["version"] == 1)["body"]
    v2 = next(m for m in models if m["body"]["version"] == 2)["body"]
    stages = records_of(demo, "stage")
    datasets = records_of(demo, "dataset")
    # the run that trained v2, and not v1's
    assert [r["run_id"] for r in report["runs"]] == [v2["run_id"]]
    # the stages upstream of that run: train (its second execution) and prepare; not evaluate, not train v1
    train = [s for s in stages if s["body"]["name"] == "train"]
    prepare = [s for s in stages if s["body"]["name"] == "prepare"]
    assert {s["records"][-1] for s in report["stages"]} == {train[-1]["id"], prepare[-1]["id"]}
    assert v1["run_id"] not in json.dumps(report["stages"])
    # the dataset versions: the raw data as both contributors left it, and the prepared split it was read as
    raw = [d for d in datasets if d["body"]["path"] == "data/raw"]
    assert len(raw) == 2  # Bob's first version, then Ada's
    listed = {d["path"]: d for d in report["datasets"]}
    assert set(listed) == {"data/raw", "data/prepared"}
    assert listed["data/raw"]["records"] == [raw[-1]["id"]]
    # the prepared split has no DVC dataset record of its own: the prepare stage's record is its provenance.
    # The run logged it with from_dvc, so MLflow's dataset record of it is joined to it, and credits nobody:
    # DVC tracks the data (its credit goes to the stage's inputs).
    [logged] = [d for d in datasets if d["body"].get("mlflow") and d["body"]["path"] == "data/prepared"
                and d["body"]["digest"] == listed["data/prepared"]["digest"]]
    assert (listed["data/prepared"]["records"], listed["data/prepared"]["produced_by"]) == ([logged["id"]],
                                                                                           ["prepare"])
    assert listed["data/prepared"]["contributors"] == []
    assert raw[0]["body"]["digest"] not in json.dumps(report)
    credit = {c["person"]["name"]: c["files"] for c in listed["data/raw"]["contributors"]}
    assert credit == {"Ada Lovelace": 3, "Bob Dylan": 3}
    # code: the commit the run was trained at, and who wrote the training code
    assert report["runs"][0]["git"]["commit"] in report["code"]["commits"]
    assert report["code"]["files"] == ["train.py"]
    assert [a["person"]["name"] for a in report["code"]["authors"]] == ["Ada Lovelace"]
    # people, reviews, feedback, promotion
    roles = {c["person"]["name"]: sorted(c["roles"]) for c in report["contributors"]}
    assert roles == {"Ada Lovelace": ["code", "data", "training"], "Bob Dylan": ["data", "feedback", "review"]}
    assert [r["decision"] for r in report["reviews"]] == ["approve"]
    assert [f["label"] for f in report["feedback"]] == ["mislabelled"]
    assert report["model"]["aliases"] == ["champion"]
    assert report["verified"] is True
    assert all(r["status"] == "verified" for r in report["records"].values())
    jsonschema.validate(report, load_schema("report-model"))


def test_an_alias_resolves_to_the_promoted_version(demo: Any) -> None:
    assert report_json(demo, "model", "wine-classifier@champion")["model"]["version"] == "2"
    missing = openledger(demo, "report", "model", "wine-classifier@nonexistent", check=False)
    assert missing.returncode == 2 and "no promotion to @nonexistent" in missing.stderr


def test_contributors_report_credits_each_role_with_record_ids(demo: Any) -> None:
    report = report_json(demo, "contributors", "--model", "wine-classifier")
    jsonschema.validate(report, load_schema("report-contributors"))
    people = {c["person"]["name"]: c for c in report["contributors"]}
    assert set(people) == {"Ada Lovelace", "Bob Dylan"}
    ada, bob = people["Ada Lovelace"], people["Bob Dylan"]
    assert ada["roles"]["data"]["files"] == bob["roles"]["data"]["files"] == 3
    assert ada["roles"]["data"]["share"] == bob["roles"]["data"]["share"] == 0.5
    assert ada["roles"]["training"]["runs"] == 2 and ada["roles"]["training"]["share"] == 1.0
    assert bob["roles"]["review"]["share"] == 1.0 and "training" not in bob["roles"]
    assert abs(ada["overall"] + bob["overall"] - 1.0) < 1e-3
    known = {r["id"] for kind in ("dataset", "run", "review", "feedback", "stage")
             for r in records_of(demo, kind)}
    for person in people.values():
        for entry in person["roles"].values():
            assert entry["records"], entry
            assert all(r in known or r.startswith("commit:") for r in entry["records"])
    [step] = report["impact"]
    assert (step["from_version"], step["to_version"], step["metric"]) == ("1", "2", "accuracy")


@pytest.mark.parametrize("fmt", ["md", "text"])
def test_human_formats_name_the_contributors(demo: Any, fmt: str, tmp_path: Any) -> None:
    out = tmp_path / f"report.{fmt}"
    openledger(demo, "report", "model", "wine-classifier@2", "--format", fmt, "-o", str(out))
    text = out.read_text()
    assert "Ada Lovelace" in text and "Bob Dylan" in text
    if fmt == "md":
        assert "```mermaid" in text and "flowchart" in text
    contributors = openledger(demo, "report", "contributors", "--format", fmt).stdout
    assert "Bob Dylan" in contributors


def test_bad_report_input_is_a_clear_error(demo: Any) -> None:
    for args, message in ((("model", "no-such-model"), "no model named"),
                          (("model", "wine-classifier@9"), "no record of wine-classifier version 9"),
                          (("contributors", "--since", "yesterday"), "not a date"),
                          (("contributors", "--since", "2026-13-01"), "not a date"),
                          (("contributors", "--since", "2026-02-30T10:00:00Z"), "not a date")):
        result = openledger(demo, "report", *args, check=False)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
