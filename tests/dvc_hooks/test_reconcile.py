"""`openledger reconcile` against real `dvc repro` output and real git history."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.dvc_hooks.conftest import THREE_STAGES, DvcRepo


def reconcile(project: DvcRepo, *args: str) -> tuple[int, dict[str, Any]]:
    result = project.openledger("reconcile", "--format", "json", *args, check=False)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def codes(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((d["code"], d["subject"]) for d in report["discrepancies"])


def test_a_recorded_pipeline_reconciles_and_gaps_are_named(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.dvc("repro")
    pipeline.commit("reproduce")
    code, report = reconcile(pipeline, "--strict")
    assert (code, report["discrepancies"]) == (0, [])
    assert report["checked"]["stages"] == 3 and report["checked"]["datasets"] == 1
    assert any("MLflow" in note for note in report["skipped"])

    # a teammate without the record stage adds a stage and reproduces; and someone adds data without committing
    pipeline.openledger("dvc", "uninstall")
    pipeline.write("dvc.yaml", THREE_STAGES + "  publish:\n    cmd: cp metrics.txt published.txt\n"
                   "    deps:\n    - metrics.txt\n    outs:\n    - published.txt\n")
    pipeline.dvc("repro")
    pipeline.write("data/c.txt", "row c\n")
    pipeline.dvc("add", "-q", "data")
    code, report = reconcile(pipeline)
    assert code == 0  # gaps in capture are warnings
    [digest] = [out["md5"] for out in yaml.safe_load((pipeline.root / "data.dvc").read_text())["outs"]]
    assert codes(report) == [("unrecorded-dataset", f"dataset:data@md5:{digest}"),
                             ("unrecorded-stage", "stage:dvc.yaml:publish")], codes(report)
    assert reconcile(pipeline, "--strict")[0] == 1


def test_dvc_lock_outputs_that_no_longer_match_their_record(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.dvc("repro")
    lock_path = pipeline.root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())
    signed = lock["stages"]["train"]["outs"][0]["md5"]
    lock["stages"]["train"]["outs"][0]["md5"] = "0" * 32  # as if the output were swapped and `dvc commit`-ed
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))
    _, report = reconcile(pipeline)
    [changed] = [d for d in report["discrepancies"] if d["code"] == "stage-changed"]
    assert changed["subject"] == "stage:dvc.yaml:train"
    assert changed["details"]["changes"] == [{"field": "out model.txt", "signed": f"md5:{signed}",
                                              "current": "md5:" + "0" * 32}]
    assert changed["records"] == [r.id for r in pipeline.records("stage") if r.body["name"] == "train"]


def test_records_naming_commits_the_history_lost(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.commit("install")
    pipeline.write("notes.txt", "draft\n")
    pipeline.commit("a commit that will be rewritten")
    pipeline.dvc("repro")  # stage records name this commit
    lost = pipeline.git("rev-parse", "HEAD").strip()
    pipeline.git("reset", "-q", "--hard", "HEAD~1")
    pipeline.git("reflog", "expire", "--expire=now", "--all")
    pipeline.git("gc", "-q", "--prune=now")
    _, report = reconcile(pipeline, "--no-dvc")
    [unknown] = [d for d in report["discrepancies"] if d["code"] == "unknown-commit"]
    assert unknown["subject"] == f"commit:{lost}"
    assert len(unknown["records"]) == 3  # the three stage records of that repro
    assert report["sources"]["dvc"] is False


def test_not_a_dvc_project_is_skipped_not_an_error(dvc_repo: DvcRepo, tmp_path: Any) -> None:
    (dvc_repo.root / ".dvc").rename(tmp_path / "moved-dvc")
    code, report = reconcile(dvc_repo, "--strict")
    assert code == 0 and any(note.startswith("DVC: no DVC project") for note in report["skipped"])


def test_a_corrupt_dvc_lock_is_exit_2(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.dvc("repro")
    (pipeline.root / "dvc.lock").write_text("schema: '9.0'\nstages: {}\n")
    result = pipeline.openledger("reconcile", check=False)
    assert result.returncode == 2 and "newer DVC" in result.stderr and "Traceback" not in result.stderr
