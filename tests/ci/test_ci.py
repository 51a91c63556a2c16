"""`openledger ci` on the demo's project (real DVC, MLflow, git, two keys), and the CI templates run locally."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from openledger import Ledger
from tests.conftest import ROOT, run_openledger

BIN = Path(sys.executable).parent


def copy_of(demo: Any, tmp_path: Path) -> Path:
    """A private copy of the demo repository: these tests tamper with it and append checkpoints."""
    repo = tmp_path / "wine-project"
    shutil.copytree(demo.repo, repo, symlinks=True)
    return repo


def configure(repo: Path, text: str) -> None:
    config = repo / ".openledger" / "config.yaml"
    config.write_text(config.read_text() + text)


def run(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_openledger(repo, *args, env=env)


def ledger_files(repo: Path) -> dict[str, bytes]:
    root = repo / ".openledger"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and "local" not in p.relative_to(root).parts}


def github_env(base: dict[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("GITHUB_", "GITLAB", "CI_"))}
    env.update(GITHUB_ACTIONS="true", GITHUB_EVENT_NAME="push", GITHUB_REF_NAME="main",
               GITHUB_STEP_SUMMARY=str(tmp_path / "step-summary.md"), GITHUB_OUTPUT=str(tmp_path / "output.txt"))
    env.update(extra)
    return env


def test_ci_on_the_demo_passes_then_names_a_tampered_record(demo: Any, tmp_path: Path) -> None:
    repo = copy_of(demo, tmp_path)
    configure(repo, "ci:\n  models: [wine-classifier@champion]\n")
    env = dict(github_env(demo.ada, tmp_path), MLFLOW_TRACKING_URI="sqlite:///mlflow.db")
    passed = run(repo, env, "ci", "--json", str(tmp_path / "ci.json"))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    summary = (tmp_path / "step-summary.md").read_text()
    assert summary.startswith("# OpenLedger: ✅ passed")
    assert "| `wine-classifier@champion` | ✅ passed | Bob Dylan" in summary
    assert "## Contributors" in summary and "| Ada Lovelace |" in summary and "| Bob Dylan |" in summary
    data = json.loads((tmp_path / "ci.json").read_text())
    assert data["ok"] and data["registry"] == "mlflow" and data["gates"][0]["passed"]
    # on the default branch with a key: a checkpoint, announced to later steps
    checkpoint = data["checkpoint"]
    assert f"checkpoint={checkpoint}" in (tmp_path / "output.txt").read_text()
    assert run(repo, demo.ada, "verify", "--against", checkpoint).returncode == 0

    # Someone edits a signed record on disk
    run_records = json.loads(run(repo, demo.ada, "log", "--kind", "run", "--format", "json").stdout)
    victim = run_records[0]["id"]
    path = repo / ".openledger" / "objects" / victim[7:9] / victim[9:]
    envelope = json.loads(path.read_text())
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["body"]["metrics"]["accuracy"] = 0.999
    envelope["payload"] = base64.b64encode(json.dumps(payload, sort_keys=True, separators=(",", ":"))
                                           .encode()).decode()
    path.chmod(0o644)
    path.write_text(json.dumps(envelope, sort_keys=True, separators=(",", ":")))
    (tmp_path / "step-summary.md").unlink()
    failed = run(repo, env, "ci", "--against", checkpoint)
    assert failed.returncode == 1, failed.stderr
    summary = (tmp_path / "step-summary.md").read_text()
    assert summary.startswith("# OpenLedger: ❌ failed")
    assert victim in summary
    assert "no checkpoint: verification failed" in summary


def test_without_the_signing_secret_ci_is_read_only(demo: Any, tmp_path: Path) -> None:
    repo = copy_of(demo, tmp_path)
    configure(repo, "ci:\n  models: [wine-classifier@champion]\n")
    before = ledger_files(repo)
    no_keys = tmp_path / "empty-key-home"
    no_keys.mkdir()
    env = github_env(demo.ada, tmp_path, OPENLEDGER_HOME=str(no_keys), OPENLEDGER_SIGNING_KEY="")
    result = run(repo, env, "ci", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["read_only"] is True and data["checkpoint"] is None
    assert data["registry"] == "ledger"  # no tracking URI: versions and aliases come from signed records
    assert data["gates"][0]["passed"] is True
    assert any(note.startswith("read-only: no signing key") for note in data["notes"])
    assert "read-only" in result.stderr
    assert ledger_files(repo) == before  # nothing written to the ledger


def test_a_pull_request_or_another_branch_gets_no_checkpoint(demo: Any, tmp_path: Path) -> None:
    repo = copy_of(demo, tmp_path)
    for extra, note in (({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_REF_NAME": "7/merge"}, "pull/merge request"),
                        ({"GITHUB_REF_NAME": "feature"}, "branch feature is not the default branch main")):
        data = json.loads(run(repo, github_env(demo.ada, tmp_path, **extra), "ci", "--format", "json").stdout)
        assert data["checkpoint"] is None and any(note in n for n in data["notes"]), data["notes"]
    # on main with a key, the flag turns it off, and the note names the flag (not only config.yaml)
    data = json.loads(run(repo, github_env(demo.ada, tmp_path), "ci", "--no-checkpoint", "--format", "json").stdout)
    assert data["checkpoint"] is None and any("--no-checkpoint" in n for n in data["notes"]), data["notes"]


def test_a_bad_ci_section_is_exit_2(demo: Any, tmp_path: Path) -> None:
    repo = copy_of(demo, tmp_path)
    configure(repo, "ci:\n  models: [wine-classifier]\n")
    result = run(repo, demo.ada, "ci")
    assert result.returncode == 2 and "config" in result.stderr and "Traceback" not in result.stderr


def test_a_failed_gate_fails_the_job_and_says_what_is_missing(demo: Any, tmp_path: Path) -> None:
    repo = copy_of(demo, tmp_path)
    configure(repo, "ci:\n  models: [wine-classifier@1, wine-classifier@7]\n")
    result = run(repo, github_env(demo.ada, tmp_path), "ci", "--no-checkpoint", "--format", "md")
    assert result.returncode == 1
    assert "| `wine-classifier@1` | ❌ failed | none | needs 1 approval" in result.stdout
    assert "| `wine-classifier@7` | ❌ failed | none | no record of wine-classifier version 7" in result.stdout


# -- the templates, run locally --------------------------------------------------------------------------------

KNOWN_ACTIONS = ("actions/checkout@", "actions/setup-python@")  # done by the test: a clone, this interpreter


def _shell_value(value: Any, outputs_file: str, values: dict[str, str]) -> str:
    """A workflow `env:` value as a shell expression: `${{ … }}` resolved from the test's values, or from
    what earlier steps wrote to $GITHUB_OUTPUT (`steps.<id>.outputs.<name>`)."""
    text = str(value).strip()
    if text.startswith("${{") and text.endswith("}}"):
        expression = text[3:-2].strip()
        if expression.startswith("steps.") and ".outputs." in expression:
            name = expression.rpartition(".")[2]
            return f'"$(grep "^{name}=" "{outputs_file}" | tail -n 1 | cut -d= -f2-)"'
        return json.dumps(values.get(expression, ""))
    return json.dumps(text)


def github_script(workflow: dict[str, Any], job: str, values: dict[str, str], outputs_file: str) -> str:
    """The job's steps as one bash script: the same commands, in order, each with its env."""
    spec = workflow["jobs"][job]
    lines = ["set -euo pipefail"]
    for name, value in (spec.get("env") or {}).items():
        lines.append(f"export {name}={_shell_value(value, outputs_file, values)}")
    for step in spec["steps"]:
        if "uses" in step:
            assert step["uses"].startswith(KNOWN_ACTIONS), step["uses"]
            continue
        exports = [f"export {k}={_shell_value(v, outputs_file, values)}" for k, v in (step.get("env") or {}).items()]
        lines.append("(" + "; ".join([*exports, step["run"].rstrip()]) + "\n)")
    return "\n".join(lines) + "\n"


def fake_pip(tmp_path: Path) -> Path:
    """`python -m pip install` reaches the package registry, beyond this machine: the project is already
    installed in this interpreter, so a `python` first on PATH notes the install and runs nothing else."""
    shims = tmp_path / "shims"
    shims.mkdir()
    python = shims / "python"
    python.write_text(f'#!/bin/sh\nif [ "$1 $2" = "-m pip" ]; then echo "$@" >> {tmp_path}/pip.log; exit 0; fi\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return shims


def clone_with_remote(demo: Any, tmp_path: Path) -> tuple[Path, Path]:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(demo.repo), str(remote)], check=True)
    work = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    return remote, work


def test_the_github_workflow_and_action_run_locally(demo: Any, tmp_path: Path) -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert workflow["permissions"] == {"contents": "write"} and action["runs"]["using"] == "composite"
    assert all(step.get("shell") == "bash" for step in action["runs"]["steps"])
    remote, work = clone_with_remote(demo, tmp_path)
    secret = subprocess.run([sys.executable, "-m", "openledger_cli", "keys", "export", "--secret"], cwd=work,
                            env=demo.ada, capture_output=True, text=True, check=True).stdout.strip()
    values = {"secrets.OPENLEDGER_SIGNING_KEY": secret, "github.event.repository.default_branch": "main"}
    outputs = str(tmp_path / "output.txt")
    script = tmp_path / "workflow.sh"
    script.write_text(github_script(workflow, "openledger", values, outputs))
    env = github_env(demo.ada, tmp_path, PATH=f"{fake_pip(tmp_path)}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
                     OPENLEDGER_HOME=str(tmp_path / "runner-has-no-keys"))
    result = subprocess.run(["bash", str(script)], cwd=work, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr  # the key is never echoed
    assert "openledger-mlops[all]" in (tmp_path / "pip.log").read_text()
    summary = (tmp_path / "step-summary.md").read_text()
    assert summary.startswith("# OpenLedger: ✅ passed") and "Pin it: set the repository variable" in summary
    # the checkpoint was committed and pushed
    checkpoint = next(line.partition("=")[2] for line in Path(outputs).read_text().splitlines()
                      if line.startswith("checkpoint="))
    pushed = subprocess.run(["git", "log", "-1", "--format=%s", "main"], cwd=remote, capture_output=True,
                            text=True, check=True).stdout
    assert pushed.strip() == f"openledger checkpoint {checkpoint} [skip ci]"

    # the composite action's steps, as a workflow job that uses it would run them
    job = {"jobs": {"a": {"steps": [dict(s, env={**s.get("env", {})}) for s in action["runs"]["steps"]]}}}
    values.update({"inputs.signing-key": "", "inputs.checkpoint": checkpoint, "inputs.tracking-uri": "",
                   "inputs.version": "==0.1.0", "inputs.args": "--strict"})
    (tmp_path / "step-summary.md").unlink()
    script.write_text(github_script(job, "a", values, outputs))
    env["RUNNER_TEMP"] = str(tmp_path)
    result = subprocess.run(["bash", str(script)], cwd=work, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "openledger.json").read_text())
    assert data["read_only"] and data["strict"] and data["verify"]["against"] == checkpoint
    assert "openledger-mlops[all]==0.1.0" in (tmp_path / "pip.log").read_text()


def test_the_gitlab_job_runs_locally(demo: Any, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-ci.yml").read_text())
    job = config["openledger"]
    assert job["variables"]["GIT_DEPTH"] == "0" and "openledger-summary.md" in job["artifacts"]["paths"]
    _, work = clone_with_remote(demo, tmp_path)
    secret = subprocess.run([sys.executable, "-m", "openledger_cli", "keys", "export", "--secret"], cwd=work,
                            env=demo.ada, capture_output=True, text=True, check=True).stdout.strip()
    script = tmp_path / "job.sh"
    script.write_text("set -eo pipefail\n" + "".join(  # as GitLab runs bash scripts
                      f"({command.rstrip()}\n)\n" for command in job["script"]))
    env = {k: v for k, v in demo.ada.items() if not k.startswith(("GITHUB_", "CI_"))}
    env.update(GITLAB_CI="true", CI_COMMIT_BRANCH="main", CI_DEFAULT_BRANCH="main", OPENLEDGER_SIGNING_KEY=secret,
               OPENLEDGER_HOME=str(tmp_path / "runner-has-no-keys"),
               PATH=f"{fake_pip(tmp_path)}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["bash", str(script)], cwd=work, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr
    summary = (work / "openledger-summary.md").read_text()
    assert summary.startswith("# OpenLedger: ✅ passed") and "gitlab" in summary
    data = json.loads((work / "openledger.json").read_text())
    assert data["checkpoint"] and not data["read_only"]  # no push token: the checkpoint stays in the job
    assert "OPENLEDGER_PUSH_TOKEN" in job["script"][-1]


@pytest.mark.parametrize("path", ["examples/ci/github-actions.yml", "examples/ci/gitlab-ci.yml", "action.yml"])
def test_templates_never_echo_the_key(path: str) -> None:
    text = (ROOT / path).read_text()
    assert "echo $OPENLEDGER_SIGNING_KEY" not in text and "set -x" not in text
    assert "${{ secrets.OPENLEDGER_SIGNING_KEY }}" not in "".join(
        line for line in text.splitlines() if line.strip().startswith(("run:", "- ")))


def test_ci_on_main_seals_packs_and_a_record_changed_in_a_sealed_pack_fails_the_next_run(
        demo: Any, tmp_path: Path) -> None:
    """The CI key seals the packs with its checkpoint; the next run (incremental) reads a sealed pack by its
    hash, so a record edited inside the pack fails it, as it fails a full verification."""
    repo = copy_of(demo, tmp_path)
    assert run(repo, demo.ada, "pack").returncode == 0
    env = github_env(demo.ada, tmp_path)
    first = run(repo, env, "ci", "--format", "json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    seals = sorted((repo / ".openledger" / "seals").glob("*.seal"))
    assert len(seals) == len(list((repo / ".openledger" / "packs").glob("pack-*.jsonl"))) >= 1
    assert f"sealed {len(seals)} pack(s) for incremental verification" in data["notes"]
    checkpoint = data["checkpoint"]
    # and the checkpoint's leaves (it extends none of the demo's: one file)
    assert [p.name for p in (repo / ".openledger" / "seals").glob("*.leaves")] == [checkpoint[7:] + ".leaves"]
    again = run(repo, env, "ci", "--against", checkpoint, "--no-checkpoint", "--format", "json")
    assert again.returncode == 0, again.stderr
    verdict = json.loads(again.stdout)["verify"]
    assert verdict["since"] == checkpoint and verdict["ok"]
    assert verdict["listed"] == Ledger.open(repo / ".openledger").get(checkpoint).body["count"] > 0
    kinds = [json.loads(base64.b64decode(json.loads(line)["payload"]))["kind"]
             for pack in (repo / ".openledger" / "packs").glob("pack-*.jsonl") for line in pack.read_bytes().split()]
    # every packed record but those that build trust (checked in full) came from a seal
    assert verdict["sealed"] == sum(kind not in ("identity", "revocation", "checkpoint") for kind in kinds) > 0

    # a record that builds no trust (whichever the demo's ids put first): the pin's signer stays trusted
    pack, line = next((pack, line) for pack in sorted((repo / ".openledger" / "packs").glob("pack-*.jsonl"))
                      for line in pack.read_bytes().split()
                      if json.loads(base64.b64decode(json.loads(line)["payload"]))["kind"] in ("run", "stage"))
    data_bytes = pack.read_bytes()
    envelope = json.loads(line)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["time"] = payload["time"][:-2] + ("1Z" if payload["time"][-2] != "1" else "2Z")
    forged = base64.b64encode(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    pack.chmod(0o644)
    pack.write_bytes(data_bytes.replace(envelope["payload"].encode(), forged))
    failed = run(repo, env, "ci", "--against", checkpoint, "--format", "json")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    verdict = json.loads(failed.stdout)["verify"]
    assert verdict["since"] == checkpoint and not verdict["ok"]
    assert {"bad-signature", "checkpoint-missing-records"} <= {p["code"] for p in verdict["problems"]}
    full = run(repo, demo.ada, "verify", "--against", checkpoint, "--format", "json")
    assert full.returncode == 1
