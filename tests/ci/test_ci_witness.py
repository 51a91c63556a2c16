"""`openledger ci --witness`: a partner's CI job cosigns the project's checkpoints, and fails on a rewrite."""

from __future__ import annotations

import json
from pathlib import Path

from openledger import Ledger
from tests.test_cli import run
from tests.test_witness import CI_SEED, WITNESS_SEED, checkpoint, env_for, object_path, records


def push_on_main(env: dict[str, str]) -> dict[str, str]:
    return dict(env, GITHUB_ACTIONS="true", GITHUB_EVENT_NAME="push", GITHUB_REF_NAME="main")


def test_ci_runs_as_a_witness(repo: Path, tmp_path: Path) -> None:
    Ledger.init(repo)
    project = env_for(CI_SEED, tmp_path / "project-home", "ci")
    partner = push_on_main(env_for(WITNESS_SEED, tmp_path / "partner-home", "partner"))
    records(repo, project, "a", "b")
    first = checkpoint(repo, project)

    cosigned = run(repo, "ci", "--witness", "--no-checkpoint", "--format", "json", env=partner)
    assert cosigned.exit_code == 0, cosigned.output
    data = json.loads(cosigned.stdout)
    assert data["cosignature"] and f"witness: cosigned checkpoint {first}" in data["notes"]
    shown = json.loads(run(repo, "show", data["cosignature"], "--format", "json").stdout)
    assert shown["kind"] == "cosignature" and shown["body"]["checkpoint"] == first

    # in a pull request the witness signs nothing
    pull = dict(partner, GITHUB_EVENT_NAME="pull_request")
    assert json.loads(run(repo, "ci", "--witness", "--format", "json", env=pull).stdout)["cosignature"] is None

    newer = records(repo, project, "c")
    second = checkpoint(repo, project)
    extended = json.loads(run(repo, "ci", "--witness", "--no-checkpoint", "--format", "json", env=partner).stdout)
    assert extended["ok"] and f"witness: cosigned checkpoint {second}" in extended["notes"]

    # history rewritten behind the witness's back: the job fails and cosigns nothing
    for record_id in [newer[0], second, extended["cosignature"]]:
        object_path(repo, record_id).unlink()
    records(repo, project, "c-rewritten")
    checkpoint(repo, project)
    refused = run(repo, "ci", "--witness", "--no-checkpoint", "--format", "json", env=partner)
    assert refused.exit_code == 1
    data = json.loads(refused.stdout)
    assert data["cosignature"] is None and data["verify"]["ok"]
    assert any(note.startswith("witness refused:") for note in data["notes"])
    # without --witness (the default, ci.witness: false) the same job passes: it is not a witness
    assert run(repo, "ci", "--no-checkpoint", env=partner).exit_code == 0
