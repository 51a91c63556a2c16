"""Reports read measured impact from `attribution` records: the contributors report shows the Shapley values (with
Banzhaf and leave-one-out in JSON) where a model version has one and the heuristic only where none does, the model
report links it, and `--pool` splits an amount by positive measured value.

The ledger here is signed by hand (real keys, real records); tests/attribution makes real attribution records
with DVC. Its values are chosen so the two answers differ: Bob added the files of version 2 (the heuristic gives
him the whole gain) but measurement says they hurt.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from openledger import Ledger
from openledger.lineage.graph import LedgerGraph
from openledger.reports.contributors import ContributorsReport, contributors_report
from openledger.reports.model import ModelReport, model_report
from openledger_cli import report_md
from openledger_cli.main import cli
from openledger_cli.report_html import contributors_html, model_html
from tests.conftest import make_signer
from tests.reports.conftest import add_attribution, attribution_body

ADA, BOB, CAT = make_signer(81, feed="ada"), make_signer(82, feed="bob"), make_signer(83, feed="cat")


def _at(minute: int) -> datetime:
    return datetime(2026, 6, 1, 9, minute, tzinfo=timezone.utc)


def _version(ledger: Ledger, version: int, accuracy: float, contributors: list[dict[str, Any]], minute: int) -> str:
    digest = "md5:" + f"{version}" * 32 + ".dir"
    run_id = f"{version}" * 32
    dataset = ledger.append(CAT, "dataset", {"path": "data", "digest": digest, "files": 4,
                                             "contributors": contributors}, [digest], time=_at(minute))
    ledger.append(ADA, "run", {"run_id": run_id, "status": "FINISHED", "metrics": {"accuracy": accuracy},
                               "inputs": [{"name": "data", "digest": digest, "source_type": "dvc"}]},
                  [dataset.id, f"mlflowrun:{run_id}"], time=_at(minute + 1))
    return ledger.append(ADA, "model", {"name": "m", "version": version, "run_id": run_id},
                         [f"mlflowrun:{run_id}"], time=_at(minute + 2)).id


def build(root: Path, *, attributed: bool = True) -> Ledger:
    ledger = Ledger.init(root)
    for signer, name in ((ADA, "Ada"), (BOB, "Bob"), (CAT, "Cat")):
        ledger.append(signer, "identity", {"key": signer.keyid, "name": name, "email": f"{name.lower()}@example.org"},
                      time=_at(0))
    ada = {"name": "Ada", "email": "ada@example.org", "files": 2, "paths": ["a1", "a2"]}
    _version(ledger, 1, 0.80, [ada], 1)
    bob = {"name": "Bob", "email": "bob@example.org", "files": 2, "paths": ["b1", "b2"]}
    model2 = _version(ledger, 2, 0.90, [ada, bob], 10)
    ledger.append(CAT, "review", {"decision": "approve", "target": "model:m@2", "records": [model2]}, [model2],
                  time=_at(20))  # Cat is credited (review) but no player of the attribution
    if attributed:
        dataset2 = ledger.ids(kind="dataset")[-1]
        body = attribution_body("m", "2", [model2], dataset2,
                                [("Ada", "ada@example.org", ADA.keyid, 0.12),
                                 ("Bob", "bob@example.org", BOB.keyid, -0.03),
                                 ("Dan", "dan@example.org", None, 0.0)])
        add_attribution(ledger, CAT, body, 30)
    return ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return build(tmp_path / "repo")


def test_measured_values_replace_the_heuristic_for_the_attributed_version(ledger: Ledger) -> None:
    report = contributors_report(LedgerGraph.load(ledger), model="m")
    [measured] = report.measured
    assert (measured.model, measured.version, measured.mode, measured.runs) == ("m", "2", "exact", 3)
    assert [(v.person.name, v.shapley.value) for v in measured.values] == [("Ada", 0.12), ("Dan", 0.0),
                                                                            ("Bob", -0.03)]
    bob = next(v for v in measured.values if v.person.name == "Bob")
    assert bob.person.id == BOB.keyid and (bob.shapley.low, bob.shapley.high) == pytest.approx((-0.04, -0.02))
    # the step to version 2 is measured: the heuristic, which would give Bob the gain, credits nobody
    [step] = report.impact
    assert step.measured == measured.record and step.credited == ()
    assert all(row.impact == 0 for row in report.contributors)
    data = report.to_json()
    assert data["measured"][0]["values"][0]["banzhaf"]["value"] == pytest.approx(0.108)
    assert data["measured"][0]["values"][0]["loo"]["value"] == pytest.approx(0.06)
    assert ContributorsReport.from_json(json.loads(json.dumps(data))).to_json() == data


def test_without_an_attribution_the_report_is_the_heuristic_as_before(tmp_path: Path) -> None:
    report = contributors_report(LedgerGraph.load(build(tmp_path / "repo", attributed=False)), model="m")
    assert report.measured == () and "measured" not in report.to_json()
    [step] = report.impact
    assert step.measured is None and {c.person.name for c in step.credited} >= {"Bob"}
    assert "measured" not in step.to_json()
    text = report_md.contributors_markdown(report)
    assert "| Impact |" in text and "heuristic" not in text and "Measured" not in text


def test_renderers_show_values_intervals_and_label_the_heuristic(ledger: Ledger) -> None:
    report = contributors_report(LedgerGraph.load(ledger), model="m")
    text = report_md.contributors_markdown(report)
    assert "Impact (heuristic)" in text and "## Measured impact: m@2" in text
    assert r"| Bob \<bob@example.org\> | 2 | -0.03 \[-0.04, -0.02\] | -▒▒▒ |" in text  # negative, shown so
    assert r"+0.12 \[+0.11, +0.13\] | ████████████ |" in text
    assert "measured by attribution sha256:" in text
    page = contributors_html(report)
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert svg.count("<rect") == 3 and svg.count("<path") == 3  # a bar and a whisker per player
    assert 'fill="#dc2626"' in svg and "Bob &lt;bob@example.org&gt;: -0.03 [-0.04, -0.02]" in svg


def test_the_model_report_links_its_attribution(ledger: Ledger) -> None:
    graph = LedgerGraph.load(ledger)
    report = model_report(graph, "m", "2")
    assert report.attribution is not None and report.attribution.players == 3
    data = report.to_json()
    assert data["attribution"]["record"] == ledger.ids(kind="attribution")[0]
    assert ModelReport.from_json(json.loads(json.dumps(data))).to_json() == data
    assert "`openledger report contributors --model m`" in report_md.model_markdown(report)
    assert "Measured impact: attribution" in model_html(report)
    assert "attribution" not in model_report(graph, "m", "1").to_json()


def test_an_attribution_by_an_untrusted_key_decides_nothing(tmp_path: Path) -> None:
    ledger = build(tmp_path / "repo", attributed=False)
    stranger = make_signer(84, feed="eve")  # no identity record: unknown in tofu mode
    dataset2 = ledger.ids(kind="dataset")[-1]
    model2 = ledger.ids(kind="model")[-1]
    add_attribution(ledger, stranger, attribution_body("m", "2", [model2], dataset2,
                                                       [("Eve", "eve@example.org", None, 1.0)]), 40)
    graph = LedgerGraph.load(ledger)
    assert contributors_report(graph, model="m").measured == ()
    assert model_report(graph, "m", "2").attribution is None


def test_the_pool_goes_to_positive_value_only(ledger: Ledger) -> None:
    split = contributors_report(LedgerGraph.load(ledger), model="m").pool(Decimal("100"))
    assert {s.person.name: s.amount for s in split.shares} == {"Ada": Decimal("100.00"), "Bob": Decimal("0.00"),
                                                               "Dan": Decimal("0.00")}
    assert [p.name for p in split.unmeasured] == ["Cat"]  # credited by the report, not a player: nothing


def _invoke(ledger: Ledger, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--ledger", str(ledger.root), "report", "contributors", *args],
                              env={"OPENLEDGER_SIGNING_KEY": "", "MLFLOW_TRACKING_URI": ""})


def test_pool_through_the_cli_as_csv_json_and_text(ledger: Ledger) -> None:
    result = _invoke(ledger, "--model", "m", "--pool", "250.5", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["name"], r["amount"]) for r in rows] == [("Ada", "250.50"), ("Dan", "0.00"), ("Bob", "0.00"),
                                                        ("Cat", "0")]
    assert rows[2]["shapley"] == "-0.03"
    data = json.loads(_invoke(ledger, "--model", "m", "--pool", "10", "--format", "json").stdout)
    assert data["amount"] == "10" and data["shares"][0]["amount"] == "10.00"
    text = _invoke(ledger, "--model", "m", "--pool", "10")
    assert text.exit_code == 0 and "Ada <ada@example.org>" in text.stdout and "not measured" in text.stdout
    shown = _invoke(ledger, "--model", "m")
    assert "impact (heuristic)" in shown.stdout and "Measured impact" in shown.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "csv"], "--format csv is the pool split's format"),
    (["--pool", "lots"], "is not an amount"),
    (["--pool", "-5"], "is not an amount"),
    (["--pool", "NaN"], "is not an amount"),
    (["--pool", "5", "--format", "html"], "--pool writes text, json or csv"),
])
def test_bad_pool_input_is_one_line_and_exit_2(ledger: Ledger, args: list[str], message: str) -> None:
    result = _invoke(ledger, *args)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) <= 2


def test_a_pool_without_an_attribution_is_bad_input(tmp_path: Path) -> None:
    result = _invoke(build(tmp_path / "repo", attributed=False), "--pool", "100")
    assert result.exit_code == 2 and "no attribution record covers" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
