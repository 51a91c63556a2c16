"""The core of reconcile on real ledgers: trust, damaged records, and the comparison of run bodies."""

from __future__ import annotations

import math

from openledger import Ledger
from openledger.lineage.graph import LedgerGraph
from openledger.lineage.reconcile import ObservedModelVersion, ObservedRun, reconcile
from tests.conftest import make_signer, publish

RUN_ID = "a" * 32
RUN = {"run_id": RUN_ID, "status": "FINISHED", "params": {"lr": "0.1"}, "metrics": {"loss": float("nan")},
       "metric_history_digest": "sha256:" + "1" * 64, "end_time": "2026-11-01T12:00:00.000000Z", "inputs": []}


class Store:
    """A tracking state holding given runs (what the MLflow adapter yields, without MLflow)."""

    backend = "sqlite:///mlflow.db"

    def __init__(self, runs: list[ObservedRun], versions: list[ObservedModelVersion] | None = None) -> None:
        self._runs, self._versions = runs, versions or []

    def runs(self, progress: object = None) -> list[ObservedRun]:
        return self._runs

    def model_versions(self) -> list[ObservedModelVersion]:
        return self._versions


def test_unendorsed_signers_and_damaged_records_are_listed(endorsed_ledger: Ledger) -> None:
    root, stranger = make_signer(1), make_signer(7)
    publish(endorsed_ledger, root, "Root")
    record = endorsed_ledger.append(stranger, "feedback", {"target": "x", "label": "spam"})
    broken = endorsed_ledger.append(root, "feedback", {"target": "y", "label": "ok"})
    path = endorsed_ledger.root / "objects" / broken.id[7:9] / broken.id[9:]
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"payload":"', b'"payload":"AAAA'))
    endorsed_ledger.rebuild_index()
    report = reconcile(LedgerGraph.load(endorsed_ledger))
    by_code = {d.code: d for d in report.discrepancies}
    assert set(by_code) == {"untrusted-signer", "damaged-record"}
    assert by_code["untrusted-signer"].records == (record.id,)
    assert by_code["untrusted-signer"].severity == "warning"
    assert by_code["damaged-record"].records == (broken.id,) and by_code["damaged-record"].severity == "error"
    assert report.exit_code(strict=False) == 1


def test_nan_metrics_compare_equal_and_unsigned_fields_are_not_compared(ledger: Ledger) -> None:
    signer = make_signer(2)
    publish(ledger, signer, "Ada")
    body = {k: v for k, v in RUN.items() if k != "inputs"}  # an older record: no inputs field
    ledger.append(signer, "run", body)
    current = dict(RUN, metrics={"loss": math.nan}, inputs=[{"name": "x", "digest": "md5:" + "2" * 32}],
                   tags={"note": "changed after the run: tags are not attested"})
    report = reconcile(LedgerGraph.load(ledger), tracking=Store([ObservedRun(RUN_ID, current, True, False)]))
    assert report.discrepancies == ()
    changed = dict(current, status="KILLED", metrics={"loss": 0.5})
    report = reconcile(LedgerGraph.load(ledger), tracking=Store([ObservedRun(RUN_ID, changed, True, False)]))
    assert sorted(d.details["field"] for d in report.discrepancies) == ["metric loss", "status"]


def test_a_version_registered_again_from_another_run(ledger: Ledger) -> None:
    signer = make_signer(3)
    publish(ledger, signer, "Ada")
    ledger.append(signer, "model", {"name": "m", "version": 1, "run_id": "a" * 32, "model_id": "m-1"})
    moved = Store([], [ObservedModelVersion("m", "1", "b" * 32, "m-2")])
    [found] = reconcile(LedgerGraph.load(ledger), tracking=moved).discrepancies
    assert found.code == "unattested-model-version" and "another logged model" in found.message
    same_model = Store([], [ObservedModelVersion("m", "1", "b" * 32, "m-1")])
    found_runs = [d.code for d in reconcile(LedgerGraph.load(ledger), tracking=same_model).discrepancies]
    assert found_runs == ["model-version-changed"]
    gone = reconcile(LedgerGraph.load(ledger), tracking=Store([])).discrepancies
    assert [d.code for d in gone] == ["model-version-deleted"]
