"""`openledger review`, `gate` and `feedback` through click's CliRunner and the installed entry point."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openledger import KeyStore, Ledger
from tests.conftest import make_signer
from tests.test_cli import inited, run

__all__ = ["inited"]  # the fixture, shared with test_cli

RUN_ID = "fedcba9876543210fedcba9876543210"
BOB_SEED = bytes([41]) * 32


@pytest.fixture
def with_run(inited: Path) -> Path:
    """A ledger with a run trained by a published key other than the CLI user's, and Bob as a reviewer."""
    ledger = Ledger.open(inited / ".openledger")
    trainer = make_signer(40, "trainer")
    ledger.append(trainer, "identity", {"key": trainer.keyid, "name": "Tess", "email": "tess@example.org"})
    ledger.append(trainer, "run", {"run_id": RUN_ID, "status": "FINISHED"}, [f"mlflowrun:{RUN_ID}"])
    bob = make_signer(41, "bob")
    ledger.append(bob, "identity", {"key": bob.keyid, "name": "Bob", "email": "bob@example.org"})
    ledger.close()
    return inited


def as_bob() -> dict[str, str]:
    return {"OPENLEDGER_SIGNING_KEY": base64.b64encode(BOB_SEED).decode()}


def test_review_and_gate_a_run(with_run: Path) -> None:
    assert run(with_run, "gate", "run", RUN_ID).exit_code == 1
    created = run(with_run, "review", "approve", f"run:{RUN_ID}", "-m", "reproduced it")
    assert created.exit_code == 0, created.output
    review_id = created.stdout.strip()
    assert review_id.startswith("sha256:") and f"approve run:{RUN_ID}" in created.stderr
    review = json.loads(run(with_run, "show", review_id, "--format", "json").stdout)
    run_record = json.loads(run(with_run, "log", "--kind", "run", "--format", "json").stdout)[0]
    assert review["body"] == {"decision": "approve", "target": f"run:{RUN_ID}", "message": "reproduced it",
                              "records": [run_record["id"]]}
    assert run_record["id"] in review["links"] and f"mlflowrun:{RUN_ID}" in review["links"]
    gate = run(with_run, "gate", "run", RUN_ID)
    assert gate.exit_code == 0 and gate.stdout.startswith(f"PASSED run:{RUN_ID}")
    rejected = run(with_run, "review", "reject", run_record["id"][:12], "-m", "wrong seed", env=as_bob())
    assert rejected.exit_code == 0, rejected.output
    gate = run(with_run, "gate", "run", RUN_ID, "--format", "json")
    data = json.loads(gate.stdout)
    assert gate.exit_code == 1 and data["passed"] is False
    assert data["unmet"][0].startswith("blocked: rejection ") and data["unmet"][0].endswith("wrong seed")
    shown = run(with_run, "show", run_record["id"]).stdout
    assert "Reviews and feedback on this record" in shown and "reject" in shown and "wrong seed" in shown


def test_trainer_is_warned_that_their_approval_will_not_count(with_run: Path) -> None:
    ledger = Ledger.open(with_run / ".openledger")
    own = ledger.append(KeyStore().load_signer(), "run", {"run_id": "ab" * 16, "status": "FINISHED"},
                        [f"mlflowrun:{'ab' * 16}"])
    result = run(with_run, "review", "approve", own.id)
    assert result.exit_code == 0 and "your approval will not count" in result.stderr
    assert run(with_run, "gate", "run", "ab" * 16).exit_code == 1


def test_feedback_by_hand(with_run: Path) -> None:
    result = run(with_run, "feedback", f"run:{RUN_ID}", "--label", "overfit", "--score", "NaN", "-m", "val gap")
    assert result.exit_code == 0, result.output
    record = json.loads(run(with_run, "show", result.stdout.strip(), "--format", "json").stdout)
    assert record["kind"] == "feedback"
    assert record["body"] == {"target": f"run:{RUN_ID}", "label": "overfit", "score": {"$float": "NaN"},
                              "comment": "val gap", "records": record["links"][1:]}
    assert record["links"][0] == f"mlflowrun:{RUN_ID}" and record["links"][1].startswith("sha256:")
    log = run(with_run, "log", "--kind", "feedback").stdout
    assert f"run:{RUN_ID}: overfit, nan, val gap" in log


@pytest.mark.parametrize(("args", "message"), [
    (["feedback", f"run:{RUN_ID}"], "at least one of --label, --score or -m"),
    (["feedback", f"run:{RUN_ID}", "--score", "high"], "--score 'high' is not a number"),
    (["feedback", "nonsense", "--label", "x"], "is not a target"),
    (["review", "approve", "run:0000"], "no record of MLflow run 0000"),
    (["review", "approve", "dataset:nope.csv"], "no dataset record for nope.csv"),
    (["review", "approve", "model:iris@1"], "no model named 'iris' in the ledger"),  # no MLflow: the ledger's
    (["gate", "dataset", "nope.csv"], "no dataset record"),
])
def test_bad_input_is_exit_2(with_run: Path, args: list[str], message: str) -> None:
    before = len(Ledger.open(with_run / ".openledger"))
    result = run(with_run, *args, env={"MLFLOW_TRACKING_URI": ""})
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(Ledger.open(with_run / ".openledger")) == before


def test_bad_policy_is_exit_2(with_run: Path) -> None:
    config = with_run / ".openledger" / "config.yaml"
    config.write_text(config.read_text() + "policies:\n  run:\n    approvals: many\n")
    result = run(with_run, "gate", "run", RUN_ID)
    assert result.exit_code == 2 and "config.policies.run.approvals must be integer" in result.stderr


def test_new_commands_have_help(inited: Path) -> None:
    for command in ["review", "review approve", "review request-changes", "review reject", "gate", "feedback"]:
        result = run(inited, *command.split(), "--help")
        assert result.exit_code == 0 and "Usage:" in result.stdout, command


def test_gate_through_the_installed_entry_point(with_run: Path) -> None:
    script = shutil.which("openledger", path=str(Path(sys.executable).parent))
    assert script is not None
    failed = subprocess.run([script, "gate", "run", RUN_ID], cwd=with_run, capture_output=True, text=True,
                            check=False)
    assert failed.returncode == 1 and "- unmet: needs 1 approval from distinct trusted keys; 0 counted" in failed.stdout
