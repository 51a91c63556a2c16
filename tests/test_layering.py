"""The core imports no adapter framework; adapters do not import each other (STYLE.md rule 2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_core_import_loads_no_mlflow_dvc_or_click() -> None:
    code = (
        "import sys, openledger, openledger.verify, openledger.checkpoint\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'mlflow', 'dvc', 'click'})\n"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == ""


def imported_roots(package: str, *, skip: tuple[str, ...] = ()) -> set[str]:
    roots = set()
    for path in (ROOT / package).rglob("*.py"):
        if path.name in skip:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


def test_import_directions() -> None:
    assert not imported_roots("openledger") & {"mlflow", "dvc", "click", "openledger_cli", "mlflow_plugin",
                                               "dvc_hooks"}
    # Adapters never import each other. The MLflow plugin's DVC dataset source reads DVC's hashes with the
    # dvc library (the design's join key between MLflow inputs and DVC data); nothing else in it uses DVC.
    assert not imported_roots("mlflow_plugin") & {"dvc_hooks", "openledger_cli"}
    assert not imported_roots("mlflow_plugin", skip=("dvc_dataset.py",)) & {"dvc"}
    assert not imported_roots("dvc_hooks") & {"mlflow", "mlflow_plugin", "openledger_cli"}
