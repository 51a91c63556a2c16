"""The reports on the benchmark's generated ledger (benchmarks/reports.py, small scale) stay exactly the same.

The golden file holds a SHA-256 of each section of each report (per contributor row for the contributors
lists), computed by the report code as it was before its performance work. A restructuring of the graph or the
reports must not change a byte of what they say; when a section differs, the assertion names it. The ledger
is deterministic: fixed keys, times, seeds and git dates, so its record ids and commit shas are too.

After a deliberate change of what the reports say (or of the generator), rewrite the golden file with::

    python -m tests.reports.test_generated_ledger --update
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.reports import build
from openledger import Ledger
from openledger.lineage.graph import LedgerGraph
from openledger.reports.contributors import contributors_report
from openledger.reports.model import model_report
from openledger.store.canonical import tag_nonfinite

GOLDEN = Path(__file__).parents[1] / "golden" / "generated-ledger-reports.json"


def reports(repo: Path) -> dict[str, dict[str, Any]]:
    built = build(repo, 1000, contributors=30, models=10)
    graph = LedgerGraph.load(Ledger.open(built.repo))
    return {
        "contributors": contributors_report(graph).to_json(),
        "contributors --model churn-model --since 2026-02-01": contributors_report(
            graph, model="churn-model", since="2026-02-01").to_json(),
        f"model {built.model_target}": model_report(graph, *built.model_target.split("@")).to_json(),
        "model fraud-detector@2": model_report(graph, "fraud-detector", "2").to_json(),
        "model ranker (newest)": model_report(graph, "ranker").to_json(),
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(tag_nonfinite(value), sort_keys=True).encode()).hexdigest()


def sections(all_reports: dict[str, dict[str, Any]]) -> dict[str, str]:
    digests: dict[str, str] = {}
    for name, report in all_reports.items():
        for key, value in report.items():
            if key == "contributors" and isinstance(value, list):
                for row in value:
                    digests[f"{name} / {key} / {row['person']['name']}"] = _digest(row)
                digests[f"{name} / {key} (order)"] = _digest([row["person"]["id"] for row in value])
            else:
                digests[f"{name} / {key}"] = _digest(value)
    return digests


def test_reports_on_a_generated_ledger_are_unchanged(tmp_path: Path) -> None:
    all_reports = reports(tmp_path / "repo")
    # what the golden pins is a real lineage: code authors from git, datasets, reviews, feedback, impact
    model = all_reports["model fraud-detector@5"]
    assert model["code"]["authors"] and model["datasets"] and model["reviews"] and model["feedback"]
    assert model["verified"] and all_reports["contributors"]["impact"]
    assert sections(all_reports) == json.loads(GOLDEN.read_text())


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as workdir:
        GOLDEN.write_text(json.dumps(sections(reports(Path(workdir) / "repo")), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
