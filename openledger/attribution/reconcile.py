"""Reconcile an ``attribution`` record with what it rests on: does each coalition run and dataset version still
match?

``attribution-changed`` (an error: something signed disagrees) when the record names a dataset record that is
missing or holds another version, a run whose stage records are missing, belong to another run, did not read
the run's data or do not sign its metrics file, or a run whose experiment in git now holds a metrics file
other than the one signed (or another value of the metric).

``attribution-stale`` (a warning: the attribution can no longer be re-read, or describes an older state) when
experiments of its runs are gone from git (``dvc exp remove``, a clone without ``refs/exps``) or the model
version it values has other records now (registered again).

>>> import tempfile; from pathlib import Path; from openledger.store.ledger import Ledger
>>> attribution_discrepancies(LedgerGraph.load(Ledger.init(Path(tempfile.mkdtemp()))), None)
[]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from openledger.attribution.metrics import parse_metrics
from openledger.lineage.git import git_blobs, git_output
from openledger.lineage.graph import LedgerGraph
from openledger.lineage.reconcile import Discrepancy
from openledger.store.ledger import Fact

__all__ = ["attribution_discrepancies"]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dataset_problems(graph: LedgerGraph, body: Mapping[str, Any]) -> list[str]:
    problems = []
    for entry in _list(body.get("datasets")):
        dataset = _map(entry)
        record = graph.facts.get(str(dataset.get("record")))
        if record is None or record.kind != "dataset":
            problems.append(f"the dataset record of {dataset.get('path')} is not in the ledger")
        elif record.body.get("digest") != dataset.get("digest") or record.body.get("path") != dataset.get("path"):
            problems.append(f"the dataset record of {dataset.get('path')} names another version")
    return problems


def _run_problems(graph: LedgerGraph, run: Mapping[str, Any]) -> list[str]:
    name = run.get("experiment") or run.get("key")
    records = [graph.facts.get(str(r)) for r in _list(run.get("records"))]
    if not records or any(r is None or r.kind != "stage" or r.body.get("attribution_run") != run.get("key")
                          for r in records):
        return [f"run {name}: its stage records are missing or belong to another run"]
    stages = [r for r in records if r is not None]
    deps = {str(_map(d).get("hash")) for r in stages for d in _list(r.body.get("deps"))}
    problems = [f"run {name}: no stage record read its data {_map(d).get('digest')}"
                for d in _list(run.get("data")) if str(_map(d).get("digest")) not in deps]
    evidence = _map(run.get("evidence"))
    if evidence.get("metrics_digest"):
        outs = {(str(_map(o).get("path")), str(_map(o).get("hash"))) for r in stages for o in _list(r.body.get("outs"))}
        if (str(evidence.get("metrics_file")), str(evidence["metrics_digest"])) not in outs:
            problems.append(f"run {name}: no stage record signs its metrics file {evidence.get('metrics_file')}")
    return problems


def _metric_in(path: str, data: bytes, metric: str) -> float | None:
    return parse_metrics(path, data).get(metric.removeprefix(f"{path}:"))


def _git_problems(root: Path, body: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]
                  ) -> tuple[list[str], list[str]]:
    """(changed, gone): runs whose experiment now holds another metrics file or value; runs whose experiment is
    gone. One ``for-each-ref`` and one ``cat-file --batch``."""
    commit = str(body.get("commit") or "")
    prefix = f"refs/exps/{commit[:2]}/{commit[2:]}/"
    listing = git_output(root, "for-each-ref", "--format=%(objectname) %(refname)", prefix)
    if listing is None or len(commit) < 40:
        return [], []
    refs = {ref[len(prefix):]: sha for sha, _, ref in (line.partition(" ") for line in listing.splitlines())}
    gone = [str(r.get("experiment")) for r in runs if str(r.get("experiment")) not in refs]
    checked = [r for r in runs if str(r.get("experiment")) in refs and _map(r.get("evidence")).get("metrics_digest")]
    if not checked:
        return [], gone
    paths = [f"{refs[str(r['experiment'])]}:{_map(r['evidence'])['metrics_file']}" for r in checked]
    output = git_blobs(root, paths)
    changed = []
    for run, data in zip(checked, output, strict=True):
        evidence = _map(run["evidence"])
        path = str(evidence["metrics_file"])
        if data is None:
            changed.append(f"run {run['experiment']}: its experiment has no {path}")
            continue
        digest = "md5:" + hashlib.md5(data, usedforsecurity=False).hexdigest()
        value = _metric_in(path, data, str(body.get("metric")))
        if digest != evidence["metrics_digest"] or value != run.get("metric"):
            changed.append(f"run {run['experiment']}: its experiment now says {body.get('metric')} = {value}, the "
                           f"attribution used {run.get('metric')}")
    return changed, gone


def _check(graph: LedgerGraph, fact: Fact, git_root: Path | None) -> list[Discrepancy]:
    body = fact.body
    subject = fact.id
    runs = [_map(r) for r in _list(body.get("runs")) if _map(r).get("status") == "ok"]
    changed = _dataset_problems(graph, body)
    for run in runs:
        changed += _run_problems(graph, run)
    stale: list[str] = []
    model = _map(body.get("model"))
    if model:
        current = {r.id for r in graph.versions.get((str(model.get("name")), str(model.get("version"))), [])}
        if not current & {str(r) for r in _list(model.get("records"))}:
            stale.append(f"model {model.get('name')}@{model.get('version')} has other records now (registered again?)")
    if git_root is not None:
        moved, gone = _git_problems(git_root, body, runs)
        changed += moved
        if gone:
            stale.append(f"{len(gone)} of its {len(runs)} runs are no longer experiments in git (for example "
                         f"{gone[0]}): they cannot be re-read")
    label = f"attribution {fact.id[:19]} ({body.get('target')})"
    found = []
    if changed:
        found.append(Discrepancy("attribution-changed", subject, f"{label}: {changed[0]}"
                                 + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""),
                                 (fact.id,), {"problems": changed[:50], "count": len(changed)}))
    if stale:
        found.append(Discrepancy("attribution-stale", subject, f"{label}: {'; '.join(stale)}", (fact.id,),
                                 {"problems": stale}))
    return found


def attribution_discrepancies(graph: LedgerGraph, git_root: Path | None) -> list[Discrepancy]:
    """Every attribution record whose runs or dataset versions no longer match (see the module docstring)."""
    found: list[Discrepancy] = []
    for fact in graph.by_kind.get("attribution", []):
        found += _check(graph, fact, git_root)
    return found
