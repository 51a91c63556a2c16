"""Reviews and the promotion gate against real MLflow on SQLite, with real keys, through the CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from openledger import KeyStore, Ledger, Signer, signer_from_seed
from tests.mlflow_plugin.conftest import MlflowProject
from tests.test_cli import run as run_cli

SEEDS = {"bob": bytes([21]) * 32, "carol": bytes([22]) * 32, "eve": bytes([23]) * 32}
TWO_APPROVALS = {"model": {"approvals": 2, "distinct_from": ["trainer"], "block_on": ["reject"]}}


def reviewer(project: MlflowProject, name: str) -> Signer:
    """A reviewer with a real key and a published identity (signing through OPENLEDGER_SIGNING_KEY)."""
    signer = signer_from_seed(SEEDS[name], feed=f"{name}-laptop")
    if not any(r.body["key"] == signer.keyid for r in project.ledger.select(kind="identity", actor=signer.keyid)):
        project.ledger.append(signer, "identity",
                              {"key": signer.keyid, "name": name.title(), "email": f"{name}@example.org"})
    return signer


def as_key(name: str | None) -> dict[str, str]:
    return {"OPENLEDGER_SIGNING_KEY": base64.b64encode(SEEDS[name]).decode()} if name else {}


def ol(project: MlflowProject, *args: str, key: str | None = None) -> Result:
    return run_cli(project.root, *args, env=as_key(key))


def set_config(project: MlflowProject, **changes: Any) -> None:
    path = project.ledger.root / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))


def train_and_register(name: str) -> tuple[str, Any]:
    """A finished run (recorded at its end) and a registered version of a logged model from it."""
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_param("C", "0.5")
        model = mlflow.create_external_model(name="model", source_run_id=run.info.run_id)
    return run.info.run_id, mlflow.register_model(f"models:/{model.model_id}", name)


def review(project: MlflowProject, who: str | None, decision: str, target: str, message: str = "") -> str:
    args = ["review", decision, target] + (["-m", message] if message else [])
    result = ol(project, *args, key=who)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def gate(project: MlflowProject, spec: str, *extra: str, key: str | None = None) -> tuple[int, str]:
    result = ol(project, "gate", "model", spec, *extra, key=key)
    return result.exit_code, result.stdout


@pytest.fixture
def iris(project: MlflowProject) -> MlflowProject:
    set_config(project, policies=TWO_APPROVALS)
    project.ledger = Ledger.open(project.ledger.root)
    reviewer(project, "bob")
    reviewer(project, "carol")
    train_and_register("iris")
    return project


def test_two_distinct_approvals_neither_the_trainer(iris: MlflowProject) -> None:
    code, out = gate(iris, "iris@1")
    assert code == 1 and "- unmet: needs 2 approvals from distinct trusted keys; 0 counted" in out
    bob = review(iris, "bob", "approve", "model:iris@1", "metrics look right")
    code, out = gate(iris, "iris@1")
    assert code == 1 and "1 counted" in out and f"approval {bob} by" in out
    # The trainer (the project's own key, which signed the run and model records) approves: it does not count.
    trainer_approval = review(iris, None, "approve", "model:iris@1")
    code, out = gate(iris, "iris@1")
    assert code == 1 and "1 counted" in out
    assert f"approval {trainer_approval} by {iris.keyid} (Ada Lovelace <ada@example.org>) discarded: the " \
           "reviewer trained or registered it" in out
    review(iris, "carol", "approve", "model:iris@1")
    code, out = gate(iris, "iris@1")
    assert code == 0, out
    assert out.startswith("PASSED model:iris@1") and "unmet" not in out
    # Carol changes her mind: a later decision by the same key supersedes the earlier one, and reject blocks.
    rejection = review(iris, "carol", "reject", "model:iris@1", "leaks the test set")
    code, out = gate(iris, "iris@1")
    assert code == 1
    assert f"- unmet: blocked: rejection {rejection} by " in out and "leaks the test set" in out
    assert "superseded: a later decision by the same key" in out
    data = json.loads(ol(iris, "gate", "model", "iris@1", "--format", "json").stdout)
    assert data["passed"] is False and len(data["unmet"]) == 2
    assert {v["status"] for v in data["reviews"]} == {"counted", "discarded", "superseded", "blocking"}


def test_rejection_blocks_only_when_the_policy_says_so(iris: MlflowProject) -> None:
    review(iris, "bob", "approve", "model:iris@1")
    review(iris, "carol", "approve", "model:iris@1")
    eve = reviewer(iris, "eve")
    assert eve.keyid
    review(iris, "eve", "reject", "model:iris@1")
    assert gate(iris, "iris@1")[0] == 1
    set_config(iris, policies={"model": {**TWO_APPROVALS["model"], "block_on": []}})
    code, out = gate(iris, "iris@1")
    assert code == 0 and "noted" in out


def test_unendorsed_and_revoked_approvals_do_not_count(iris: MlflowProject) -> None:
    from openledger.identity.trust import instant

    ada = KeyStore().load_signer()
    set_config(iris, trust={"mode": "endorsed", "roots": [ada.keyid]})
    iris.ledger = Ledger.open(iris.ledger.root)
    bob, carol = reviewer(iris, "bob"), reviewer(iris, "carol")
    iris.ledger.append(ada, "identity", {"key": bob.keyid, "name": "Bob", "email": "bob@example.org"})
    review(iris, "bob", "approve", "model:iris@1")
    review(iris, "carol", "approve", "model:iris@1")
    code, out = gate(iris, "iris@1")
    assert code == 1 and "1 counted" in out
    assert f"by {carol.keyid} (Carol <carol@example.org>) discarded: the key is not endorsed by a trust root" in out
    iris.ledger.append(ada, "identity", {"key": carol.keyid, "name": "Carol", "email": "carol@example.org"})
    assert gate(iris, "iris@1")[0] == 0
    # Bob's key is revoked later: his approval, though older than the revocation, no longer counts.
    revocation = iris.ledger.append(ada, "revocation", {"key": bob.keyid, "reason": "laptop stolen"})
    code, out = gate(iris, "iris@1")
    assert code == 1
    assert f"by {bob.keyid} (Bob <bob@example.org>) discarded: key revoked at {instant(revocation.time)}" in out


def test_promote_sets_the_alias_only_when_the_policy_holds(iris: MlflowProject) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    refused = ol(iris, "gate", "model", "iris@1", "--promote", "champion", key="bob")
    assert refused.exit_code == 1 and "Alias @champion was not set: the policy does not hold." in refused.stderr
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("iris", "champion")
    assert not [r for r in iris.records("model") if r.body.get("action")]
    approvals = {review(iris, "bob", "approve", "model:iris@1"), review(iris, "carol", "approve", "model:iris@1")}
    result = ol(iris, "gate", "model", "iris@1", "--promote", "champion", "--format", "json", key="carol")
    assert result.exit_code == 0, result.output
    assert str(client.get_model_version_by_alias("iris", "champion").version) == "1"
    promotion = iris.ledger.get(json.loads(result.stdout)["promotion"])
    carol = reviewer(iris, "carol")
    assert promotion.kind == "model" and promotion.actor == carol.keyid
    assert promotion.body["action"] == "promote" and promotion.body["alias"] == "champion"
    assert (promotion.body["name"], promotion.body["version"], promotion.body["previous_version"]) == ("iris", 1, None)
    version_record = next(r for r in iris.records("model") if "action" not in r.body)
    assert set(promotion.links) == approvals | {version_record.id}
    assert "promotes iris v1 to @champion" in ol(iris, "log", "--kind", "model").stdout


def test_promotion_fails_closed_when_mlflow_refuses_the_alias(iris: MlflowProject) -> None:
    review(iris, "bob", "approve", "model:iris@1")
    review(iris, "carol", "approve", "model:iris@1")
    result = ol(iris, "gate", "model", "iris@1", "--promote", "latest")  # a reserved alias name in MLflow
    assert result.exit_code == 2
    assert "MLflow refused to set alias 'latest'" in result.stderr and "Traceback" not in result.output
    assert not [r for r in iris.records("model") if r.body.get("action")]


def test_review_pins_the_version_it_approved(iris: MlflowProject) -> None:
    """Approving iris@1 does not carry over to a version 1 registered again from another run."""
    from mlflow import MlflowClient

    review(iris, "bob", "approve", "model:iris@1")
    review(iris, "carol", "approve", "model:iris@1")
    assert gate(iris, "iris@1")[0] == 0
    MlflowClient().delete_registered_model("iris")
    second_run, version = train_and_register("iris")
    assert version.version == 1
    code, out = gate(iris, "iris@1")
    assert code == 1 and "0 counted" in out
    current = [r for r in iris.records("model") if r.body.get("run_id") == second_run]
    assert len(current) == 1 and current[0].id in out


def test_alias_targets_pin_the_version_the_alias_named(iris: MlflowProject) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_registered_model_alias("iris", "candidate", "1")
    first = review(iris, "bob", "approve", "model:iris@candidate")
    assert iris.ledger.get(first).body["model"]["version"] == 1
    train_and_register("iris")
    client.set_registered_model_alias("iris", "candidate", "2")
    review(iris, "carol", "approve", "model:iris@candidate")
    code, out = gate(iris, "iris@candidate")
    assert code == 1 and "1 counted" in out  # Bob approved version 1, not what the alias names now
    assert gate(iris, "iris@2")[1].count("counted") == 2  # the header and Carol's line


@pytest.mark.parametrize(("args", "message"), [
    (["gate", "model", "iris@9"], "error: MLflow: "),
    (["gate", "model", "nosuchmodel@1"], "error: MLflow: "),
    (["gate", "model", "iris"], "a model target is model:NAME@VERSION"),
    (["review", "approve", "run:ffffffffffffffffffffffffffffffff"], "openledger capture mlflow --run"),
    (["gate", "run", "x", "--promote", "champion"], "--promote applies to model versions only"),
])
def test_bad_targets_are_exit_2_one_line(iris: MlflowProject, args: list[str], message: str) -> None:
    result = ol(iris, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_version_without_a_record_suggests_capture(project: MlflowProject, tmp_path: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(project.uri("plain.db", ledger=False))  # not captured: no records
    train_and_register("dark")
    result = run_cli(project.root, "gate", "model", "dark@1", env={"MLFLOW_TRACKING_URI": project.uri("plain.db")})
    assert result.exit_code == 2
    assert "no record of model dark version 1" in result.stderr and "openledger capture mlflow" in result.stderr
