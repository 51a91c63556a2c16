"""Helpers for tests on the demo's project (the session fixture `demo` lives in tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from openledger import Ledger
from openledger.attribution.record import attribution_model_key
from openledger.store.records import RecordSigner
from tests.conftest import run_openledger

ROOT = Path(__file__).resolve().parents[2]


def openledger(project: Any, *args: str, who: str = "ada", check: bool = True) -> subprocess.CompletedProcess[str]:
    env = getattr(project, who)
    result = run_openledger(project.repo, *args, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"openledger {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def report_json(project: Any, *args: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(openledger(project, "report", *args, "--format", "json").stdout)
    return report


def _estimate(value: float, half: float) -> dict[str, Any]:
    return {"value": value, "low": value - half, "high": value + half, "samples": 8}


def attribution_body(model: str, version: str, model_records: list[str], dataset: str,
                     players: list[tuple[str, str, str | None, float]], *, metric: str = "accuracy",
                     mode: str = "exact") -> dict[str, Any]:
    """A schema-valid attribution body: ``players`` are (name, email, key or None, Shapley value)."""
    entries, values = [], []
    runs = [{"coalition": [i], "seed": None, "key": f"attrrun:{i:032x}", "status": "ok", "metric": 0.5,
             "records": []} for i in range(len(players))]
    for index, (name, email, key, value) in enumerate(players):
        person = key or f"email:{email.lower()}"
        entries.append({"id": person, "name": name, "email": email, "files": 2,
                        "digests": ["md5:" + f"{index:x}" * 32], **({"key": key} if key else {})})
        values.append({"player": person, "index": index, "shapley": _estimate(value, 0.01),
                       "banzhaf": _estimate(value * 0.9, 0.02), "loo": _estimate(value * 0.5, 0.0)})
    return {"target": f"model:{model}@{version}", "model": {"name": model, "version": version,
                                                            "records": model_records},
            "commit": "0" * 40, "metric": metric, "direction": "maximize", "baseline": 0.33, "seeds": [None],
            "seed_param": None, "datasets": [{"path": "data", "digest": "md5:" + "e" * 32 + ".dir",
                                              "dvcfile": "data.dvc", "record": dataset}],
            "players": entries, "mode": mode,
            "method": {"shapley": "exact", "banzhaf": "exact", "loo": "exact", "confidence": 0.95},
            "values": values, "full_value": 0.9, "runs": runs, "cost": {"runs": len(runs)}}


def add_attribution(ledger: Ledger, signer: RecordSigner, body: dict[str, Any], minute: int) -> str:
    model = body["model"]
    links = [*model["records"], *(d["record"] for d in body["datasets"]),
             attribution_model_key(model["name"], model["version"])]
    when = datetime(2026, 6, 1, 9, minute, tzinfo=timezone.utc)
    return ledger.append(signer, "attribution", body, sorted(set(links)), time=when).id
