"""Helpers for tests on the demo's project (the session fixture `demo` lives in tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def openledger(project: Any, *args: str, who: str = "ada", check: bool = True) -> subprocess.CompletedProcess[str]:
    env = getattr(project, who)
    result = subprocess.run([sys.executable, "-m", "openledger_cli", *args], cwd=project.repo, env=env,
                            capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"openledger {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def report_json(project: Any, *args: str) -> dict[str, Any]:
    return json.loads(openledger(project, "report", *args, "--format", "json").stdout)
