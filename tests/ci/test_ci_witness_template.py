"""examples/ci/github-witness.yml, run locally step by step as GitHub would: it cosigns, pushes, and a
later run refuses a rewritten history."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import yaml

from openledger import Ledger
from tests.ci.test_ci import BIN, fake_pip, github_env, github_script
from tests.test_witness import CI_SEED, WITNESS_SEED, checkpoint, env_for, records

ROOT = Path(__file__).resolve().parents[2]


def test_the_witness_workflow_runs_locally(tmp_path: Path) -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-witness.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(project)], check=True)
    Ledger.init(project)
    owner = env_for(CI_SEED, tmp_path / "owner-home", "ci")
    records(project, owner, "a", "b")
    pinned = checkpoint(project, owner)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "ledger"], cwd=project, check=True)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(remote)], check=True)
    work = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)

    values = {"secrets.WITNESS_SIGNING_KEY": base64.b64encode(WITNESS_SEED).decode(), "vars.LAST_COSIGNED": ""}
    script = tmp_path / "witness.sh"
    script.write_text(github_script(workflow, "witness", values, str(tmp_path / "output.txt")))
    env = github_env(dict(os.environ), tmp_path, GITHUB_EVENT_NAME="schedule",
                     PATH=f"{fake_pip(tmp_path)}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
                     OPENLEDGER_HOME=str(tmp_path / "runner-has-no-keys"))
    result = subprocess.run(["bash", str(script)], cwd=work, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert values["secrets.WITNESS_SIGNING_KEY"] not in result.stdout + result.stderr
    summary = (tmp_path / "step-summary.md").read_text()
    assert f"set the variable LAST_COSIGNED to {pinned}" in summary
    pushed = subprocess.run(["git", "log", "-1", "--format=%s", "main"], cwd=remote, capture_output=True, text=True,
                            check=True).stdout
    assert pushed.strip() == f"openledger cosignature of {pinned} [skip ci]"

    # the owner rewrites history (a fresh ledger in place of the one the witness cosigned) and force-pushes
    subprocess.run(["git", "pull", "-q", str(remote), "main"], cwd=project, check=True)
    for path in (project / ".openledger" / "objects").rglob("*"):
        if path.is_file() and path.name != ".gitkeep":
            path.unlink()
    records(project, owner, "a-rewritten")
    checkpoint(project, owner)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "rewritten"], cwd=project, check=True)
    subprocess.run(["git", "push", "-q", "--force", str(remote), "main"], cwd=project, check=True)
    fresh = tmp_path / "checkout-2"
    subprocess.run(["git", "clone", "-q", str(remote), str(fresh)], check=True)
    values["vars.LAST_COSIGNED"] = pinned  # what the witness remembered, outside the watched repository
    script.write_text(github_script(workflow, "witness", values, str(tmp_path / "output.txt")))
    refused = subprocess.run(["bash", str(script)], cwd=fresh, env=env, capture_output=True, text=True, check=False)
    assert refused.returncode == 1
    assert "not in the ledger" in refused.stderr
