"""A CI identity: endorsed once by a trust root, then it signs checkpoints from the secret alone."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import git, run_openledger


def openledger(repo: Path, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLEDGER_", "GITHUB_", "GITLAB", "CI_"))}
    full.update(OPENLEDGER_HOME=str(home), **env)
    return run_openledger(repo, *args, env=full)


def test_an_endorsed_ci_key_signs_checkpoints_from_the_secret(repo: Path, tmp_path: Path) -> None:
    ada, admin, runner = tmp_path / "ada", tmp_path / "admin", tmp_path / "runner"
    runner.mkdir()
    assert openledger(repo, ada, "keys", "generate", "--name", "Ada", "--email", "ada@example.org").returncode == 0
    root = json.loads(openledger(repo, ada, "keys", "list", "--format", "json").stdout)["local"][0]["keyid"]
    assert openledger(repo, ada, "init", "--mode", "endorsed", "--trust-root", root).returncode == 0
    # once, on an admin's machine: a key for CI, its identity in the ledger, its seed into the CI's secrets
    openledger(repo, admin, "keys", "generate", "--name", "CI", "--email", "ci@example.org")
    assert openledger(repo, admin, "keys", "publish").returncode == 0
    ci_key = json.loads(openledger(repo, admin, "keys", "list", "--format", "json").stdout)["local"][0]["keyid"]
    secret = openledger(repo, admin, "keys", "export", "--secret").stdout.strip()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "ledger")
    on_main = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push", "GITHUB_REF_NAME": "main",
               "OPENLEDGER_SIGNING_KEY": secret}

    unendorsed = openledger(repo, runner, "ci", "--strict", "--format", "json", **on_main)
    assert unendorsed.returncode == 1  # strict: an identity nobody endorsed is not trusted
    data = json.loads(unendorsed.stdout)
    assert any(p["code"] == "unendorsed-key" for p in data["verify"]["problems"])
    assert data["checkpoint"] is None and "no checkpoint: verification failed (strict)" in data["notes"]

    assert openledger(repo, ada, "keys", "endorse", ci_key).returncode == 0  # the trust root vouches, once
    endorsed = openledger(repo, runner, "ci", "--strict", "--format", "json", **on_main)
    assert endorsed.returncode == 0, endorsed.stdout + endorsed.stderr
    checkpoint = json.loads(endorsed.stdout)["checkpoint"]
    shown = json.loads(openledger(repo, ada, "show", checkpoint, "--format", "json").stdout)
    assert shown["kind"] == "checkpoint" and shown["actor"] == ci_key
    assert openledger(repo, ada, "verify", "--strict", "--against", checkpoint).returncode == 0
    assert secret not in endorsed.stdout + endorsed.stderr

    broken = openledger(repo, runner, "ci", **dict(on_main, OPENLEDGER_SIGNING_KEY="not base64!"))
    assert broken.returncode == 2 and "OPENLEDGER_SIGNING_KEY is not base64" in broken.stderr
