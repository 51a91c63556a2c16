"""Targets and review policy in the core, on real ledgers and real keys (no MLflow: run, dataset, id targets)."""

from __future__ import annotations

import pytest

from openledger import BadInputError, ConfigError, Ledger, LedgerConfig, NotFoundError, Signer
from openledger.credit.contributions import activity_by_target, contributions_by_contributor
from openledger.governance.policy import ReviewPolicy, gate_subject
from openledger.lineage.targets import parse_target, resolve_target
from openledger.store.records import Record
from tests.conftest import make_signer, publish

RUN_ID = "0123456789abcdef0123456789abcdef"
DIGEST = "md5:" + "ab" * 16


def record_run(ledger: Ledger, trainer: Signer, run_id: str = RUN_ID, digest: str = DIGEST) -> Record:
    body = {"run_id": run_id, "status": "FINISHED", "inputs": [{"name": "iris", "digest": digest}]}
    return ledger.append(trainer, "run", body, [f"mlflowrun:{run_id}", digest])


def approve(ledger: Ledger, signer: Signer, subject_target: str, decision: str = "approve") -> Record:
    subject = resolve_target(ledger, subject_target)
    body = {"decision": decision, "target": subject_target, "records": list(subject.record_ids)}
    return ledger.append(signer, "review", body, subject.links())


def with_policy(ledger: Ledger, policies: dict[str, object]) -> Ledger:
    config = LedgerConfig(trust_mode=ledger.config.trust_mode, trust_roots=ledger.config.trust_roots,
                          policies=dict(policies))
    ledger.config = LedgerConfig.from_yaml(config.to_yaml())  # through the schema, as config.yaml is read
    return ledger


@pytest.mark.parametrize(("text", "kind", "name", "ref"), [
    ("run:abc", "run", "abc", ""),
    ("model:iris@3", "model", "iris", "3"),
    ("model:team/iris@champion", "model", "team/iris", "champion"),
    ("dataset:data/iris.csv", "dataset", "data/iris.csv", ""),
    ("dataset:data/iris.csv@md5:00ff", "dataset", "data/iris.csv", "md5:00ff"),
    ("sha256:abcd", "record", "sha256:abcd", ""),
    ("abcd12", "record", "abcd12", ""),
])
def test_parse_target(text: str, kind: str, name: str, ref: str) -> None:
    spec = parse_target(text)
    assert (spec.kind, spec.name, spec.ref, spec.text) == (kind, name, ref, text)


@pytest.mark.parametrize("text", ["model:iris", "model:@3", "run:", "dataset:", "iris", "xyz:1", "abc"])
def test_bad_targets(text: str) -> None:
    with pytest.raises(BadInputError):
        parse_target(text)


def test_policy_defaults_and_config_errors() -> None:
    policy = ReviewPolicy.from_config({})
    assert policy.rule("model").approvals == 1 and policy.rule("model").distinct_from == ("trainer",)
    assert policy.rule("model").block_on == ("reject",)
    assert policy.rule("dataset").distinct_from == ("data",)
    for bad in ["policies: {model: {approvals: -1}}", "policies: {model: {distinct_from: [boss]}}",
                "policies: {modle: {approvals: 1}}", "policies: {model: {reviewers: [bob]}}",
                "policies: {model: {block_on: [approve]}}", "policies: {roles: {leads: [bob]}}"]:
        with pytest.raises(ConfigError, match=r"config\.policies"):
            LedgerConfig.from_yaml(f"version: 1\n{bad}\n")
    with pytest.raises(ConfigError, match="role:leads, which is not defined"):
        ReviewPolicy.from_config({"model": {"reviewers": ["role:leads"]}})


def test_two_approvals_not_the_trainer_on_a_run(ledger: Ledger) -> None:
    trainer, bob, carol = make_signer(2), make_signer(3), make_signer(4)
    for signer, name in ((trainer, "Tess"), (bob, "Bob"), (carol, "Carol")):
        publish(ledger, signer, name)
    with_policy(ledger, {"run": {"approvals": 2}})
    record_run(ledger, trainer)
    target = f"run:{RUN_ID}"

    def result() -> tuple[bool, list[str]]:
        gate = gate_subject(ledger, resolve_target(ledger, target))
        return gate.passed, list(gate.unmet)

    assert result() == (False, ["needs 2 approvals from distinct trusted keys; 0 counted"])
    approve(ledger, bob, target)
    approve(ledger, bob, target)  # the same key twice is one approval
    assert result() == (False, ["needs 2 approvals from distinct trusted keys; 1 counted"])
    approve(ledger, trainer, target)
    assert result()[0] is False
    approve(ledger, carol, target)
    assert result() == (True, [])
    approve(ledger, carol, target, "request-changes")  # supersedes Carol's approval; does not block by default
    assert result() == (False, ["needs 2 approvals from distinct trusted keys; 1 counted"])
    with_policy(ledger, {"run": {"approvals": 1, "block_on": ["request-changes"]}})
    passed, unmet = result()
    assert not passed and unmet[0].startswith("blocked: change request sha256:")


def test_allow_list_by_role_and_data_suppliers(ledger: Ledger) -> None:
    trainer, supplier, lead = make_signer(2), make_signer(3), make_signer(4)
    for signer, name in ((trainer, "Tess"), (supplier, "Sam"), (lead, "Lee")):
        publish(ledger, signer, name)
    ledger.append(supplier, "dataset", {"path": "data/iris.csv", "digest": DIGEST,
                                        "contributors": [{"email": "lee@example.org"}]})
    record_run(ledger, trainer)
    target = f"run:{RUN_ID}"
    approve(ledger, supplier, target)
    approve(ledger, lead, target)
    with_policy(ledger, {"run": {"approvals": 1, "distinct_from": ["trainer", "data"]}})
    gate = gate_subject(ledger, resolve_target(ledger, target))
    assert not gate.passed
    assert [v.reason for v in gate.verdicts] == ["the reviewer supplied its data"] * 2  # by key, by email
    with_policy(ledger, {"roles": {"leads": [lead.keyid]},
                         "run": {"approvals": 1, "reviewers": ["role:leads"], "distinct_from": []}})
    gate = gate_subject(ledger, resolve_target(ledger, target))
    assert gate.passed and [v.status for v in gate.verdicts] == ["discarded", "counted"]
    assert "not among the policy's reviewers (role:leads)" in gate.verdicts[0].reason


def test_mlflow_user_id_claim_discards_the_named_reviewer(ledger: Ledger) -> None:
    """On a tracking server every record is the server's: the run's user_id claim still keeps the trainer out."""
    server, bob, carol = make_signer(2), make_signer(3), make_signer(4)
    for signer, name in ((server, "Server"), (bob, "Bob"), (carol, "Carol")):
        publish(ledger, signer, name)
    ledger.append(server, "run", {"run_id": RUN_ID, "status": "FINISHED", "user_id": "bob"}, [f"mlflowrun:{RUN_ID}"])
    approve(ledger, bob, f"run:{RUN_ID}")
    approve(ledger, carol, f"run:{RUN_ID}")
    gate = gate_subject(ledger, resolve_target(ledger, f"run:{RUN_ID}"))
    assert [(v.status, v.reason) for v in gate.verdicts] == [
        ("discarded", "MLflow names the reviewer as its user (user_id)"), ("counted", "")]


def test_unknown_signer_and_untrusted_subject(ledger: Ledger) -> None:
    trainer, stranger = make_signer(2), make_signer(3)
    record_run(ledger, trainer)  # the trainer published no identity: the run record is not trusted
    approve(ledger, stranger, f"run:{RUN_ID}")
    gate = gate_subject(ledger, resolve_target(ledger, f"run:{RUN_ID}"))
    assert gate.verdicts[0].reason == "the key has no identity in this ledger"
    assert f"no record of run:{RUN_ID} is signed by a trusted key" in gate.unmet


def test_dataset_and_record_targets(ledger: Ledger) -> None:
    supplier, reviewer = make_signer(2), make_signer(3)
    publish(ledger, supplier, "Sam")
    publish(ledger, reviewer, "Rita")
    old = ledger.append(supplier, "dataset", {"path": "data/iris.csv", "digest": "md5:" + "00" * 16})
    new = ledger.append(supplier, "dataset", {"path": "data/iris.csv", "digest": DIGEST})
    assert resolve_target(ledger, "dataset:data/iris.csv").record_ids == (new.id,)
    assert resolve_target(ledger, f"dataset:data/iris.csv@{old.body['digest']}").record_ids == (old.id,)
    approve(ledger, supplier, "dataset:data/iris.csv")
    assert not gate_subject(ledger, resolve_target(ledger, "dataset:data/iris.csv")).passed  # supplied it
    approve(ledger, reviewer, "dataset:data/iris.csv")
    assert gate_subject(ledger, resolve_target(ledger, "dataset:data/iris.csv")).passed
    assert not gate_subject(ledger, resolve_target(ledger, f"dataset:data/iris.csv@{old.body['digest']}")).passed
    by_id = resolve_target(ledger, new.id[:12])
    assert by_id.kind == "dataset" and by_id.record_ids == (new.id,)
    with pytest.raises(NotFoundError, match="no dataset record"):
        resolve_target(ledger, "dataset:nope.csv")
    with pytest.raises(BadInputError, match="needs the MLflow registry"):
        resolve_target(ledger, "model:iris@1")
    assert [c.contributor for c in activity_by_target(ledger)[new.id]] == ["Sam <sam@example.org>",
                                                                           "Rita <rita@example.org>"]
    assert set(contributions_by_contributor(ledger)) == {supplier.keyid, reviewer.keyid}


def test_a_model_review_is_not_a_review_of_its_run(ledger: Ledger) -> None:
    trainer, bob = make_signer(2), make_signer(3)
    publish(ledger, trainer, "Tess")
    publish(ledger, bob, "Bob")
    run = record_run(ledger, trainer)
    model = ledger.append(trainer, "model", {"name": "iris", "version": 1, "run_id": RUN_ID},
                          [f"mlflowrun:{RUN_ID}", run.id])
    approve(ledger, bob, model.id)
    model_subject = resolve_target(ledger, model.id)
    assert model_subject.kind == "model" and run.id in model_subject.links()  # context: the model's run
    assert gate_subject(ledger, model_subject).passed
    assert not gate_subject(ledger, resolve_target(ledger, f"run:{RUN_ID}")).verdicts
    # A review written by hand (`openledger record review --link …`) is about everything it links to.
    ledger.append(bob, "review", {"decision": "approve", "target": "the run"}, [run.id])
    assert gate_subject(ledger, resolve_target(ledger, f"run:{RUN_ID}")).passed


def test_an_alias_points_where_its_newest_promotion_put_it() -> None:
    """Newest by time across versions: v1 promoted, then v2, then v1 again is v1 (grouping promotions by
    version first and taking the last group's would say v2)."""
    from openledger.lineage.targets import promoted_version
    from openledger.store.ledger import Fact

    def promotion(n: int, version: int, time: str) -> Fact:
        body = {"name": "m", "version": version, "action": "promote", "alias": "champion"}
        return Fact(f"sha256:{n:064x}", "model", "ed25519:x", time, (), body)

    records = [promotion(1, 1, "2026-11-01T10:00:00Z"), promotion(2, 1, "2026-11-03T10:00:00Z"),
               promotion(3, 2, "2026-11-02T10:00:00Z")]
    assert promoted_version(records, "m", "champion") == "1"
    assert promoted_version(records[:1] + records[2:], "m", "champion") == "2"
    assert promoted_version(records, "m", "staging") is None and promoted_version(records, "n", "champion") is None
