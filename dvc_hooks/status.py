"""``openledger dvc status``: what has no record yet, and whether the capture is installed as it should be.

It reads every ``dvc.lock`` and ``.dvc`` file and compares them with the newest stage and dataset records
(found through the index and checked, without compiling schemas: status runs often).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from dvc_hooks.install import HOOK_MARKER, hooks_dir, our_stage, read_hook, read_lines, stages_block, terminal_outputs
from dvc_hooks.lockfile import RECORD_STAGE
from dvc_hooks.project import DvcProject
from dvc_hooks.reconcile import observe
from openledger.lineage.reconcile import Linked, Newest, dvc_discrepancies
from openledger.store.ledger import Ledger

__all__ = ["Status", "status"]


@dataclass
class Status:
    hook_installed: bool = False
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    unrecorded_stages: list[dict[str, str]] = field(default_factory=list)
    unrecorded_datasets: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"hook_installed": self.hook_installed, "pipelines": self.pipelines,
                "unrecorded_stages": self.unrecorded_stages, "unrecorded_datasets": self.unrecorded_datasets,
                "warnings": self.warnings}


def _newest_indexed(ledger: Ledger) -> Newest:
    """Record look-ups through the index: status runs often and must not read the whole ledger."""

    def newest(link: str, kind: str) -> tuple[str, Mapping[str, Any]] | None:
        ids = ledger.ids(kind=kind, links_to=link)
        return (ids[-1], ledger.body(ids[-1])) if ids else None  # checked, without compiling a schema

    return newest


def _linked_indexed(ledger: Ledger) -> Linked:
    return lambda link, kind: ((rid, ledger.body(rid)) for rid in ledger.ids(kind=kind, links_to=link))


def status(project: DvcProject, ledger: Ledger) -> Status:
    result = Status(hook_installed=HOOK_MARKER in read_hook(hooks_dir(project) / "post-commit"))
    if not result.hook_installed:
        result.warnings.append("the post-commit hook is not installed: run `openledger dvc install`")
    state = observe(project)  # reads every dvc.lock first, so a corrupt one is named before DVC is asked
    for pipeline in project.pipeline_files():
        lines = read_lines(project.root / pipeline)
        if stages_block(lines) is None:
            continue
        installed = our_stage(lines) is not None
        info: dict[str, Any] = {"record_stage": installed, "reproduced": pipeline not in state.unreproduced}
        result.pipelines[pipeline] = info
        if not installed:
            result.warnings.append(f"{pipeline} has no record stage: run `openledger dvc install`")
        else:
            wanted, _ = terminal_outputs(project, pipeline)
            current = _record_stage_deps(project, pipeline)
            missing = sorted(set(wanted) - set(current))
            if missing:
                info["missing_deps"] = missing
                result.warnings.append(f"{pipeline}: the record stage no longer depends on every terminal output "
                                       f"({', '.join(missing)}); run `openledger dvc install` to update it")
        if pipeline in state.unreproduced:
            result.warnings.append(f"{pipeline} has no dvc.lock yet: its stages are recorded by the first "
                                   "`dvc repro`")
    for found in dvc_discrepancies(state, _newest_indexed(ledger), _linked_indexed(ledger)):
        where = found.details
        if found.code == "unrecorded-dataset":
            result.unrecorded_datasets.append({k: str(where[k]) for k in ("path", "digest", "dvcfile")})
        else:
            why = "never recorded" if found.code == "unrecorded-stage" else "dvc.lock changed since it was recorded"
            result.unrecorded_stages.append({"dvcfile": str(where["dvcfile"]), "stage": str(where["stage"]),
                                             "why": why})
    return result


def _record_stage_deps(project: DvcProject, pipeline: str) -> list[str]:
    try:
        data = yaml.safe_load((project.root / pipeline).read_text("utf-8"))
        stage = data["stages"][RECORD_STAGE]
        return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps") or []]
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, StopIteration):
        return []
