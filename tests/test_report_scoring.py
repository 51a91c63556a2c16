"""Contribution scoring on a hand-built ledger: shares per role, weights from config.yaml, impact attribution."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from openledger import Ledger, LedgerConfig
from openledger.credit.scoring import ScoringPolicy
from openledger.errors import ConfigError
from openledger.lineage.graph import LedgerGraph
from openledger.reports.contributors import contributors_report
from openledger.reports.model import model_report
from tests.conftest import make_signer, publish

ANN, BEN, CAT = make_signer(31), make_signer(32), make_signer(33)


def dataset(ledger: Ledger, digest: str, credit: dict[str, list[str]]) -> str:
    contributors = [{"name": who.title(), "email": f"{who}@example.org", "files": len(paths), "paths": paths}
                    for who, paths in credit.items()]
    body = {"path": "data/images", "digest": digest, "contributors": contributors}
    return ledger.append(CAT, "dataset", body, [digest]).id


def trained(ledger: Ledger, version: int, digest: str, accuracy: float, params: dict[str, str]) -> str:
    run_id = f"{version:032x}"
    run = ledger.append(CAT, "run", {"run_id": run_id, "status": "FINISHED", "params": params,
                                     "metrics": {"accuracy": accuracy},
                                     "inputs": [{"name": "images", "digest": digest, "source_type": "local"}]},
                        [digest, f"mlflowrun:{run_id}"])
    ledger.append(CAT, "model", {"name": "m", "version": version, "run_id": run_id}, [f"mlflowrun:{run_id}"])
    return run.id


@pytest.fixture
def scored(tmp_path: Path) -> tuple[Ledger, dict[str, str]]:
    ledger = Ledger.init(tmp_path, LedgerConfig(scoring={"weights": {"data": 0.5, "training": 0.5, "review": 0},
                                                         "primary_metric": "accuracy"}))
    for signer, name in ((ANN, "Ann"), (BEN, "Ben"), (CAT, "Cat")):
        publish(ledger, signer, name)
    d1, d2 = "md5:" + "1" * 32 + ".dir", "md5:" + "2" * 32 + ".dir"
    ids = {"d1": dataset(ledger, d1, {"ann": ["a1", "a2", "a3"]}),
           "d2": dataset(ledger, d2, {"ann": ["a1", "a2", "a3"], "ben": ["b1"]})}
    ids["r1"] = trained(ledger, 1, d1, 0.80, {"C": "1"})
    ids["r2"] = trained(ledger, 2, d2, 0.90, {"C": "1"})  # only the data changed: Ben's new file
    ids["r3"] = trained(ledger, 3, d2, 0.85, {"C": "2"})  # worse: nobody gains impact
    ids["review"] = ledger.append(BEN, "review", {"decision": "approve", "target": "model:m@2"}, [ids["r2"]]).id
    return ledger, ids


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["person"]["name"]: c for c in report["contributors"]}


def test_shares_weights_and_impact(scored: tuple[Ledger, dict[str, str]]) -> None:
    ledger, ids = scored
    report = contributors_report(LedgerGraph.load(ledger)).to_json()
    people = by_name(report)
    # data: files credited across the dataset versions models used (Ann 3, Ben 1; each version counted once)
    assert people["Ann"]["roles"]["data"]["files"] == 3 and people["Ben"]["roles"]["data"]["files"] == 1
    assert people["Ann"]["roles"]["data"]["records"] == [ids["d1"]]  # the same work in d2 is not counted twice
    assert people["Cat"]["roles"]["training"]["share"] == 1.0
    assert people["Cat"]["roles"]["training"]["records"] == [ids["r1"], ids["r2"], ids["r3"]]
    # overall: data 0.5 and training 0.5 (review weighs 0 in this config)
    assert people["Ann"]["overall"] == pytest.approx(0.5 * 0.75)
    assert people["Ben"]["overall"] == pytest.approx(0.5 * 0.25)
    assert people["Cat"]["overall"] == pytest.approx(0.5)
    # impact: v1 -> v2 gained 0.1 from Ben's new file only; v2 -> v3 lost accuracy, nobody is credited
    steps = {(s["from_version"], s["to_version"]): s for s in report["impact"]}
    assert steps[("1", "2")]["improvement"] == pytest.approx(0.1)
    assert [(c["person"]["name"], c["role"]) for c in steps[("1", "2")]["credited"]] == [("Ben", "data")]
    assert steps[("2", "3")]["credited"] == []
    assert people["Ben"]["impact"] == pytest.approx(0.1) and people["Ann"]["impact"] == 0
    assert people["Ben"]["impact_records"] == [ids["d2"]]


def test_since_counts_only_later_work(tmp_path: Path) -> None:
    """Work recorded before --since is left out, work at or after it counted: a cut between Ann's data (January)
    and Ben's (March), a cut exactly at a record's time, and a cut after everything."""
    ledger = Ledger.init(tmp_path)
    for signer, name in ((ANN, "Ann"), (BEN, "Ben"), (CAT, "Cat")):
        publish(ledger, signer, name)

    def at(day: str) -> datetime:
        return datetime.fromisoformat(f"{day}T09:00:00+00:00")

    for who, signer, day in (("ann", ANN, "2026-01-10"), ("ben", BEN, "2026-03-01")):
        body = {"path": f"data/{who}", "digest": f"md5:{who[0] * 32}",
                "contributors": [{"name": who.title(), "email": f"{who}@example.org", "files": 2,
                                  "paths": ["x", "y"]}]}
        ledger.append(signer, "dataset", body, time=at(day))
    ledger.append(CAT, "review", {"decision": "approve", "target": "dataset:data/ben"}, time=at("2026-03-02"))

    def credited(since: str) -> dict[str, list[str]]:
        report = contributors_report(LedgerGraph.load(ledger), since=since)
        return {row.person.name: sorted(row.roles) for row in report.contributors}

    assert credited("2026-01-01") == {"Ann": ["data"], "Ben": ["data"], "Cat": ["review"]}
    assert credited("2026-02-01") == {"Ben": ["data"], "Cat": ["review"]}
    assert credited("2026-03-01T09:00:00Z") == {"Ben": ["data"], "Cat": ["review"]}  # on the boundary: counted
    assert credited("2026-03-01T09:00:00.000001Z") == {"Cat": ["review"]}
    assert credited("2999-01-01") == {}


@pytest.mark.parametrize(("scoring", "message"), [
    ({"weights": {"art": 1}}, "not a role"),
    ({"weights": {"data": -1}}, "must be a number >= 0"),
    ({"direction": "up"}, "maximize or minimize"),
])
def test_a_bad_scoring_policy_is_a_config_error(scoring: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ScoringPolicy.from_config(scoring)


def test_a_run_captured_twice_is_one_node_with_both_attestations(scored: tuple[Ledger, dict[str, str]]) -> None:
    """A server's live record and someone's after-the-fact capture of the same run merge; training credit goes
    to the first attestation only, so capturing a run again does not double anyone's credit."""
    ledger, ids = scored
    run_id = f"{2:032x}"
    again = ledger.append(ANN, "run", {"run_id": run_id, "status": "FINISHED", "params": {"C": "1"},
                                       "metrics": {"accuracy": 0.90}, "captured": "after-the-fact"},
                          [f"mlflowrun:{run_id}"])
    graph = LedgerGraph.load(ledger)
    report = model_report(graph, "m", "2").to_json()
    [run] = report["runs"]
    assert run["records"] == [ids["r2"], again.id]
    assert [a["captured"] for a in run["attestations"]] == [None, "after-the-fact"]
    assert [n["id"] for n in report["graph"]["nodes"]].count(f"run:{run_id}") == 1
    training = by_name(contributors_report(graph, model="m").to_json())
    assert "training" not in training["Ann"]["roles"]
    assert training["Cat"]["roles"]["training"]["runs"] == 3
