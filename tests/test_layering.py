"""The core imports no adapter framework; adapters do not import each other (STYLE.md rule 2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import packages_loaded_by

ROOT = Path(__file__).parent.parent


def test_core_import_loads_no_mlflow_dvc_or_click() -> None:
    assert packages_loaded_by("openledger, openledger.store.verify, openledger.store.checkpoint",
                              {"mlflow", "dvc", "click"}) == []


def test_the_core_package_resolves_every_export_lazily_from_the_module_it_names() -> None:
    """`from openledger import X` works for every name in __all__; heavy modules load on first use only;
    the TYPE_CHECKING imports (what mypy sees) and the runtime table `_LAZY` agree."""
    code = (
        "import sys, openledger\n"
        "assert 'openledger.store.verify' not in sys.modules and 'openledger.store.ledger' not in sys.modules\n"
        "from openledger import *\n"
        "from openledger import __all__ as names\n"
        "assert all(name in globals() for name in names)\n"
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.stdout.strip() == "ok", result.stderr
    import openledger

    typed: dict[str, str] = {}
    for node in ast.walk(ast.parse((ROOT / "openledger" / "__init__.py").read_text())):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imported in node.body:
                assert isinstance(imported, ast.ImportFrom) and imported.module
                typed.update(dict.fromkeys((alias.name for alias in imported.names), imported.module))
    assert typed == openledger._LAZY
    eager = {"__version__"} | {name for name in openledger.__all__ if name.endswith("Error")}
    assert set(openledger.__all__) == set(typed) | eager


def imported_roots(package: str, *, skip: tuple[str, ...] = ()) -> set[str]:
    roots: set[str] = set()
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


def test_no_cli_module_writes_to_the_ledger_itself() -> None:
    """A command parses, calls one core operation and renders: appending records is the core's business
    (STYLE.md rule 1; docs/design.md, "The core's layout")."""
    offenders = []
    for path in (ROOT / "openledger_cli").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            name = receiver.id if isinstance(receiver, ast.Name) else getattr(receiver, "attr", "")
            if node.func.attr in ("append", "append_many", "append_once") and "ledger" in name.lower():
                offenders.append(f"{path.name}:{node.lineno}")
            if node.func.attr in ("append_many", "append_once"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_cli_modules_share_helpers_through_one_private_module_not_main() -> None:
    for path in (ROOT / "openledger_cli").rglob("*.py"):
        if path.name in ("main.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "openledger_cli.main", f"{path.name} imports from main"


def test_the_lint_rule_keeps_internal_private() -> None:
    """Outside the core, `openledger._internal` is refused by ruff (TID251): a module that imports it fails."""
    probe = ROOT / "openledger_cli" / "_probe_internal.py"
    probe.write_text("from openledger._internal.memory import paused_gc\n\n__all__ = ['paused_gc']\n")
    try:
        result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(probe)],
                                capture_output=True, text=True, check=False, cwd=ROOT)
    finally:
        probe.unlink()
    assert result.returncode == 1 and "TID251" in result.stdout, result.stdout


def test_ray_is_imported_only_by_the_ray_executor() -> None:
    """Ray is an extra: the CLI, the local executor and the engine load none of it; the Ray executor module
    imports it at the top, as the one place that uses it."""
    assert packages_loaded_by("openledger_cli.main, openledger_cli.attribute, dvc_hooks.attribution, "
                              "dvc_hooks.coalition_worker, openledger.attribution.engine", {"ray"}) == []
    assert packages_loaded_by("dvc_hooks.attribution_ray", {"ray"}) == []  # even it: only on connecting
    users = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                   if ".venv" not in p.parts and p.parts[len(ROOT.parts)] not in ("tests", "benchmarks")
                   and any(line.lstrip().startswith(("import ray", "from ray")) for line in p.read_text().splitlines()))
    assert users == ["dvc_hooks/attribution_ray.py"]
