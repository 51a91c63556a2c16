"""Helpers for tests on the demo's project (the session fixture `demo` lives in tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

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
