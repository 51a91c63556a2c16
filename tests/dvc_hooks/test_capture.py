"""The DVC capture end to end: real git, real `dvc repro` / `dvc exp run`, the real CLI, real keys."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from openledger.lineage.joins import dvc_stage_key
from tests.dvc_hooks.conftest import BIN, THREE_STAGES, DvcRepo


def lock_hashes(repo: DvcRepo) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Per stage, DVC's own hashes of deps and outs as dvc.lock states them."""
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())
    return {name: {side: [(e["path"], f"md5:{e['md5']}") for e in entry.get(side, [])] for side in ("deps", "outs")}
            for name, entry in lock["stages"].items() if name != "openledger-record"}


def recorded_hashes(record_body: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    return {side: [(e["path"], e["hash"]) for e in record_body[side]] for side in ("deps", "outs")}


def stage_names(records: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(r.body["name"] for r in records)


def test_repro_records_each_changed_stage_once_with_dvc_hashes(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.dvc("repro")
    stages = pipeline.records("stage")
    assert stage_names(stages) == ["evaluate", "prepare", "train"]
    hashes = lock_hashes(pipeline)
    for record in stages:
        assert recorded_hashes(record.body) == hashes[record.body["name"]]
        assert record.body["experiment"] is None
    by_name = {r.body["name"]: r for r in stages}
    assert by_name["train"].body["params"] == {"params.yaml": {"lr": 0.1}}
    # lineage: train links the record of the stage that produced its input, prepare the dataset record
    dataset = pipeline.records("dataset")
    assert [d.body["path"] for d in dataset] == ["data"]
    assert dataset[0].id in by_name["prepare"].links
    assert by_name["prepare"].id in by_name["train"].links
    assert by_name["train"].id in by_name["evaluate"].links

    pipeline.dvc("repro")  # nothing changed: nothing recorded
    assert len(pipeline.records("stage")) == 3

    pipeline.write("params.yaml", "lr: 0.2\n")
    pipeline.dvc("repro")
    new = pipeline.records("stage")[3:]
    assert stage_names(new) == ["evaluate", "train"]
    assert {r.body["name"]: r for r in new}["train"].body["params"] == {"params.yaml": {"lr": 0.2}}
    # the new record of a stage links its previous one
    assert by_name["train"].id in {r.body["name"]: r for r in new}["train"].links
    assert pipeline.openledger("verify").returncode == 0


def test_exp_run_records_the_experiment_and_the_overridden_param(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.commit("install openledger")
    pipeline.dvc("repro")
    pipeline.commit("baseline")
    pipeline.dvc("exp", "run", "-S", "lr=0.7", "-n", "faster")
    stages = pipeline.records("stage")
    experiment = [r for r in stages if r.body["experiment"]]
    assert stage_names(experiment) == ["evaluate", "train"]
    train = next(r for r in experiment if r.body["name"] == "train")
    assert train.body["experiment"] == "faster"
    assert train.body["params"] == {"params.yaml": {"lr": 0.7}}
    assert "faster" in pipeline.dvc("exp", "list", "--name-only").stdout


def test_foreach_and_matrix_expansions_are_recorded(dvc_repo: DvcRepo) -> None:
    dvc_repo.write("params.yaml", "seeds: [1, 2]\n")
    dvc_repo.write("dvc.yaml", """\
stages:
  train:
    foreach: ${seeds}
    do:
      cmd: echo ${item} > model-${item}.txt
      outs: ["model-${item}.txt"]
  score:
    matrix:
      model: [1, 2]
      metric: [acc]
    cmd: cat model-${item.model}.txt > ${item.metric}-${item.model}.txt
    deps: ["model-${item.model}.txt"]
    outs: ["${item.metric}-${item.model}.txt"]
""")
    dvc_repo.commit("fan out")
    dvc_repo.openledger("dvc", "install")
    dvc_repo.dvc("repro")
    stages = {r.body["name"]: r.body for r in dvc_repo.records("stage")}
    assert sorted(stages) == ["score@1-acc", "score@2-acc", "train@1", "train@2"]
    assert stages["train@2"]["expansion"] == {"group": "train", "key": "2"}
    assert stages["score@1-acc"]["expansion"] == {"group": "score", "key": "1-acc"}
    assert stages["train@2"]["cmd"] == "echo 2 > model-2.txt"


def test_a_failing_stage_is_not_recorded_until_it_succeeds(pipeline: DvcRepo) -> None:
    pipeline.write("dvc.yaml", THREE_STAGES.replace("wc -c model.txt", "test -f ok && wc -c model.txt"))
    pipeline.openledger("dvc", "install")
    failed = pipeline.dvc("repro", check=False)
    assert failed.returncode != 0
    assert stage_names(pipeline.records("stage")) == []  # the record stage did not run
    assert pipeline.openledger("verify").returncode == 0
    status = pipeline.openledger("dvc", "status").stdout
    assert "dvc.yaml:prepare" in status and "dvc.yaml:train" in status
    (pipeline.root / "ok").write_text("")
    pipeline.dvc("repro")
    assert stage_names(pipeline.records("stage")) == ["evaluate", "prepare", "train"]
    assert "Every stage and dataset version is recorded" in pipeline.openledger("dvc", "status").stdout


def test_directory_dataset_grown_by_three_authors_credits_each_for_their_files(dvc_repo: DvcRepo) -> None:
    dvc_repo.openledger("dvc", "install")
    authors = {"ana": ("Ana", "ana@example.org"), "ben": ("Ben", "ben@example.org"),
               "cyd": ("Cyd", "cyd@example.org")}
    files = {"ana": ["images/a1.txt", "images/a2.txt"], "ben": ["images/b1.txt"],
             "cyd": ["images/c1.txt", "images/c2.txt", "images/c3.txt"]}
    commits = {}
    for who in ("ana", "ben", "cyd"):
        for relpath in files[who]:
            dvc_repo.write(f"data/{relpath}", f"{relpath} by {who}\n")
        dvc_repo.dvc("add", "-q", "data")
        commits[who] = dvc_repo.commit(f"{who} adds data", author=authors[who])
    datasets = dvc_repo.records("dataset")
    assert len(datasets) == 3
    assert [d.body["commit"] for d in datasets] == [commits["ana"], commits["ben"], commits["cyd"]]
    latest = datasets[-1].body
    credit = {c["email"]: c for c in latest["contributors"]}
    for who, (_, email) in authors.items():
        assert credit[email]["paths"] == sorted(files[who])
        assert credit[email]["files"] == len(files[who])
        assert credit[email]["commits"] == [commits[who]]
        assert credit[email]["bytes"] == sum(len(f"{p} by {who}\n") for p in files[who])
    assert latest["complete"] is True
    assert latest["files"] == 6
    # the second version credits only Ana and Ben, and links the first version's record
    assert {c["email"] for c in datasets[1].body["contributors"]} == {"ana@example.org", "ben@example.org"}
    assert datasets[0].id in datasets[1].links
    # each dataset record is bound to its commit by the post-commit hook
    bindings = dvc_repo.records("commit")
    for dataset, who in zip(datasets, ("ana", "ben", "cyd"), strict=True):
        bound = [b for b in bindings if dataset.id in b.links]
        assert [b.body["commit"] for b in bound] == [commits[who]]


def test_a_changed_file_is_credited_to_who_changed_it(dvc_repo: DvcRepo) -> None:
    dvc_repo.write("data/x.csv", "1\n")
    dvc_repo.write("data/y.csv", "2\n")
    dvc_repo.dvc("add", "-q", "data")
    dvc_repo.commit("ana's data", author=("Ana", "ana@example.org"))
    dvc_repo.write("data/y.csv", "2 corrected\n")
    dvc_repo.dvc("add", "-q", "data")
    dvc_repo.commit("ben fixes a label", author=("Ben", "ben@example.org"))
    dvc_repo.openledger("dvc", "record")  # installed after the fact: the history is backfilled
    datasets = dvc_repo.records("dataset")
    assert len(datasets) == 2
    credit = {c["email"]: c["paths"] for c in datasets[-1].body["contributors"]}
    assert credit == {"ana@example.org": ["x.csv"], "ben@example.org": ["y.csv"]}


def test_commit_binding_links_new_records_without_rewriting_any(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.dvc("repro")
    objects = pipeline.root / ".openledger" / "objects"
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in objects.rglob("*") if p.is_file()}
    sha = pipeline.commit("reproduce")
    bindings = pipeline.records("commit")
    assert len(bindings) == 1
    assert bindings[0].body["commit"] == sha
    assert bindings[0].body["branch"] == "main"
    bound = set(bindings[0].links)
    for record in pipeline.records():
        if record.kind != "commit":
            assert record.id in bound
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in objects.rglob("*") if p.is_file()}
    assert {p: h for p, h in after.items() if p in before} == before
    # the next commit binds only what is new since (the binding record itself is never bound)
    pipeline.write("notes.md", "notes\n")
    second = pipeline.commit("notes")
    assert len(pipeline.records("commit")) == 1  # nothing new: no binding
    pipeline.write("params.yaml", "lr: 0.3\n")
    pipeline.dvc("repro")
    third = pipeline.commit("retrain")
    later = [b for b in pipeline.records("commit") if b.body["commit"] == third]
    assert len(later) == 1 and later[0].body["records"] == 2
    assert second != third


def _snapshot(repo: DvcRepo) -> dict[str, tuple[bytes, int]]:
    hooks = repo.root / ".git" / "hooks"
    files = [repo.root / "dvc.yaml", *(p for p in hooks.iterdir() if not p.name.endswith(".sample"))]
    return {str(p.relative_to(repo.root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in files}


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_existing_hooks_keep_running_and_uninstall_restores_everything(pipeline: DvcRepo,
                                                                       trailing_newline: bool) -> None:
    if not trailing_newline:
        pipeline.write("dvc.yaml", THREE_STAGES.rstrip("\n") + "  # no newline at the end")
    pipeline.dvc("install")  # DVC's own hooks: post-checkout, pre-commit, pre-push
    hook = pipeline.root / ".git" / "hooks" / "post-commit"
    hook.write_text("#!/bin/sh\necho ran >> \"$(git rev-parse --show-toplevel)/.hook-ran\"\nexit 0\n")
    hook.chmod(0o750)
    before = _snapshot(pipeline)

    pipeline.openledger("dvc", "install")
    pipeline.openledger("dvc", "install")  # idempotent
    assert pipeline.git("diff", "--stat").count("dvc.yaml") == 1
    pipeline.dvc("repro")
    pipeline.commit("with openledger", "dvc.yaml", "dvc.lock", ".openledger")
    assert (pipeline.root / ".hook-ran").read_text() == "ran\n"  # the user's hook ran
    assert len(pipeline.records("commit")) == 1  # and ours
    assert stage_names(pipeline.records("stage")) == ["evaluate", "prepare", "train"]

    pipeline.openledger("dvc", "uninstall")
    after = _snapshot(pipeline)
    assert after == before
    assert "openledger-record" not in (pipeline.root / "dvc.lock").read_text()
    pipeline.dvc("repro")  # the pipeline still works without the record stage


def test_several_dvc_yaml_files_each_get_a_record_stage(pipeline: DvcRepo) -> None:
    pipeline.write("sub/dvc.yaml", "stages:\n  count:\n    cmd: wc -l ../params.yaml > count.txt\n"
                                   "    deps: [../params.yaml]\n    outs: [count.txt]\n")
    pipeline.commit("second pipeline")
    installed = pipeline.openledger("dvc", "install").stderr
    assert "dvc.yaml" in installed and "sub/dvc.yaml" in installed
    assert "openledger-record" in (pipeline.root / "sub" / "dvc.yaml").read_text()
    pipeline.dvc("repro", "--all-pipelines")
    stages = {(r.body["dvcfile"], r.body["name"]): r for r in pipeline.records("stage")}
    assert set(stages) == {("dvc.yaml", "prepare"), ("dvc.yaml", "train"), ("dvc.yaml", "evaluate"),
                           ("sub/dvc.yaml", "count")}
    assert stages[("sub/dvc.yaml", "count")].body["outs"][0]["path"] == "sub/count.txt"
    assert dvc_stage_key("sub/dvc.yaml", "count") in stages[("sub/dvc.yaml", "count")].links
    pipeline.dvc("repro", "--all-pipelines")
    assert len(pipeline.records("stage")) == 4
    status = pipeline.openledger("dvc", "status", "--format", "json").stdout
    assert '"unrecorded_stages": []' in status


def test_status_warns_when_the_record_stage_misses_a_terminal_output(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    text = (pipeline.root / "dvc.yaml").read_text()
    extra = "  report:\n    cmd: cat metrics.txt > report.txt\n    deps: [metrics.txt]\n    outs: [report.txt]\n"
    head, _, tail = text.partition("  openledger-record:")
    pipeline.write("dvc.yaml", head + extra + "  openledger-record:" + tail)
    result = pipeline.openledger("dvc", "status")
    assert "no longer depends on every terminal output (report.txt)" in result.stderr
    pipeline.openledger("dvc", "install")
    assert "terminal output" not in pipeline.openledger("dvc", "status").stderr


def test_record_data_credits_the_supplier(pipeline: DvcRepo) -> None:
    from openledger import KeyStore, Ledger

    bob = KeyStore().generate("Bob Data", "bob@example.org")
    ledger = Ledger.open(pipeline.root / ".openledger")
    ledger.append(KeyStore().load_signer(bob.keyid), "identity",
                  {"key": bob.keyid, "name": "Bob Data", "email": "bob@example.org"})
    ledger.close()
    result = pipeline.openledger("dvc", "record-data", "data", "--contributor", bob.keyid[8:20],
                                 "-m", "survey export from Bob's team", OPENLEDGER_KEY=pipeline.keyid)
    record = next(r for r in pipeline.records("dataset") if r.id == result.stdout.strip())
    assert record.actor == pipeline.keyid  # Ada signs ...
    assert record.body["contributors"] == [{"name": "Bob Data", "email": "bob@example.org", "key": bob.keyid,
                                            "role": "data", "files": 2, "bytes": 12}]  # ... crediting Bob
    assert record.body["supplied"] is True
    again = pipeline.openledger("dvc", "record-data", "data", "--contributor", bob.keyid,
                                OPENLEDGER_KEY=pipeline.keyid)
    assert "Already recorded" in again.stderr
    unknown = pipeline.openledger("dvc", "record-data", "data", "--contributor", "ed25519:00ff",
                                  OPENLEDGER_KEY=pipeline.keyid, check=False)
    assert unknown.returncode == 2 and "no key matches" in unknown.stderr
    untracked = pipeline.openledger("dvc", "record-data", "params.yaml", "--contributor", bob.keyid,
                                    OPENLEDGER_KEY=pipeline.keyid, check=False)
    assert untracked.returncode == 2 and "not tracked by DVC" in untracked.stderr


@pytest.mark.parametrize(("content", "message"), [
    (None, "dvc.lock is missing"),
    ("stages: [unclosed\n", "is not valid YAML"),
    ("schema: '3.0'\nstages: {}\n", "newer DVC"),
    ("just text\n", "is not a dvc.lock file"),
])
def test_missing_or_corrupt_lock_is_a_clear_error(pipeline: DvcRepo, content: str | None, message: str) -> None:
    lock = pipeline.root / "dvc.lock"
    if content is not None:
        lock.write_text(content)
    before = pipeline.records()
    # a pipeline never reproduced is no error for status (it says so), but `record` cannot record it
    commands = [("dvc", "record")] if content is None else [("dvc", "record"), ("dvc", "status")]
    for command in commands:
        result = pipeline.openledger(*command, check=False)
        assert result.returncode == 2, (command, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert pipeline.records() == before  # nothing recorded from a broken pipeline


def test_the_hooks_fail_open_with_one_line_and_strict_mode_turns_that_into_an_error(pipeline: DvcRepo) -> None:
    """The record stage and the post-commit hook must not break a repro or a commit: a corrupt dvc.lock is one
    line on stderr and exit 0; under OPENLEDGER_STRICT=1 it is the error it is (exit 2), still without a
    traceback; nothing is recorded either way."""
    (pipeline.root / "dvc.lock").write_text("stages: [unclosed\n")
    before = pipeline.records()
    for command, what in ((("dvc", "record-stage"), "this repro was"), (("dvc", "post-commit"), "this commit was")):
        opened = pipeline.openledger(*command, check=False, DVC_STAGE="openledger-record")
        assert opened.returncode == 0, opened.stderr
        [line] = opened.stderr.strip().splitlines()
        assert line.startswith(f"openledger: {what} not recorded: ") and "is not valid YAML" in line, line
        strict = pipeline.openledger(*command, check=False, DVC_STAGE="openledger-record", OPENLEDGER_STRICT="1")
        assert strict.returncode == 2 and "is not valid YAML" in strict.stderr and "Traceback" not in strict.stderr
    assert pipeline.records() == before


def test_no_dvc_project_is_a_clear_error(repo: Path) -> None:
    plain = DvcRepo(repo, "")  # a git repository without `dvc init`
    for command in (("dvc", "install"), ("dvc", "status"), ("dvc", "record")):
        result = plain.openledger(*command, check=False)
        assert result.returncode == 2
        assert "no DVC project" in result.stderr and "dvc init" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_record_stage_fails_open_for_a_teammate_without_openledger(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    env = pipeline.env(PATH="/usr/bin:/bin")  # `openledger` is not on PATH
    result = subprocess.run([str(BIN / "dvc"), "repro"], cwd=pipeline.root, env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "OpenLedger is not installed" in result.stderr + result.stdout
    assert pipeline.records("stage") == []


def test_imported_data_records_where_it_came_from(dvc_repo: DvcRepo, tmp_path: Path) -> None:
    # a local file imported by URL, and a directory imported from another DVC repository (no network)
    (tmp_path / "export.csv").write_text("a,b\n1,2\n")
    upstream = DvcRepo(tmp_path / "upstream", "")
    upstream.root.mkdir()
    upstream.git("init", "-q", "-b", "main")
    upstream.dvc("init", "-q")
    upstream.write("labels/l1.txt", "cat\n")
    upstream.dvc("add", "-q", "labels")
    upstream.commit("labels")
    dvc_repo.dvc("import-url", str(tmp_path / "export.csv"), "export.csv")
    dvc_repo.dvc("import", str(upstream.root), "labels", "-o", "labels")
    dvc_repo.commit("imports")
    dvc_repo.openledger("dvc", "record")
    datasets = {d.body["path"]: d.body for d in dvc_repo.records("dataset")}
    assert datasets["export.csv"]["source"]["type"] == "import-url"
    assert datasets["export.csv"]["source"]["url"] == str(tmp_path / "export.csv")
    labels = datasets["labels"]["source"]
    assert labels["type"] == "dvc-import" and labels["repo"] == str(upstream.root)
    assert labels["path"] == "labels"
    assert labels["rev_lock"] == upstream.git("rev-parse", "HEAD").strip()
    assert datasets["labels"]["digest"].endswith(".dir")


def test_a_version_whose_manifest_is_not_cached_is_credited_as_a_whole(dvc_repo: DvcRepo) -> None:
    dvc_repo.write("data/a.txt", "a\n")
    dvc_repo.dvc("add", "-q", "data")
    dvc_repo.commit("ana's file", author=("Ana", "ana@example.org"))
    first = yaml.safe_load((dvc_repo.root / "data.dvc").read_text())["outs"][0]["md5"]
    dvc_repo.write("data/b.txt", "b\n")
    dvc_repo.dvc("add", "-q", "data")
    dvc_repo.commit("ben's file", author=("Ben", "ben@example.org"))
    # the first version's .dir manifest is gone from this cache (a fresh clone that never fetched it)
    (dvc_repo.root / ".dvc" / "cache" / "files" / "md5" / first[:2] / first[2:]).unlink()
    dvc_repo.openledger("dvc", "record")
    old, new = dvc_repo.records("dataset")
    assert [(c["email"], c["files"]) for c in old.body["contributors"]] == [("ana@example.org", 1)]
    assert "paths" not in old.body["contributors"][0]
    assert old.body["complete"] is False and new.body["complete"] is False  # the file-level credit is unsure


def test_dvc_experiment_commits_do_not_bind_records(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.commit("install")
    pipeline.dvc("repro")
    pipeline.commit("baseline")
    pipeline.dvc("exp", "run", "-S", "lr=0.9", "-n", "bolder")
    experiment = [r.id for r in pipeline.records("stage") if r.body["experiment"] == "bolder"]
    assert experiment
    bound = {rid for b in pipeline.records("commit") for rid in b.links}
    assert not bound & set(experiment)  # not bound to DVC's commit under refs/exps ...
    pipeline.write("notes.md", "tried a bolder lr\n")
    sha = pipeline.commit("notes")
    [binding] = [b for b in pipeline.records("commit") if b.body["commit"] == sha]
    assert set(experiment) <= set(binding.links)  # ... but to the next commit on the branch


def test_status_names_a_corrupt_lock_file(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    (pipeline.root / "dvc.lock").write_text("schema: '2.0'\nstages: [broken\n")
    result = pipeline.openledger("dvc", "status", check=False)
    assert result.returncode == 2
    assert "dvc.lock" in result.stderr and "dvc.yaml" not in result.stderr.split("(")[0]


def test_record_skips_a_pipeline_never_reproduced_when_others_were(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.dvc("repro")
    pipeline.write("other/dvc.yaml", "stages:\n  echo:\n    cmd: echo hi > hi.txt\n    outs: [hi.txt]\n")
    result = pipeline.openledger("dvc", "record")
    assert "not reproduced yet (no dvc.lock): other/dvc.yaml" in result.stderr
