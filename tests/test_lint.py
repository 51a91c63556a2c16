"""ruff and mypy --strict are part of the suite, so CI enforces the house style."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent


def test_ruff() -> None:
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "openledger", "openledger_cli", "mlflow_plugin", "dvc_hooks", "tests",
         "benchmarks", "examples"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
