"""The demo's project (examples/demo.py `build`), built once per session: real DVC, MLflow, git and keys."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo_module() -> Any:
    spec = importlib.util.spec_from_file_location("openledger_demo", ROOT / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["openledger_demo"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    project = _demo_module().build(tmp_path_factory.mktemp("demo"), show=False)
    yield project


def openledger(project: Any, *args: str, who: str = "ada", check: bool = True) -> subprocess.CompletedProcess[str]:
    env = getattr(project, who)
    result = subprocess.run([sys.executable, "-m", "openledger_cli", *args], cwd=project.repo, env=env,
                            capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"openledger {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def report_json(project: Any, *args: str) -> dict[str, Any]:
    return json.loads(openledger(project, "report", *args, "--format", "json").stdout)
