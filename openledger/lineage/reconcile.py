"""Reconcile: what the ledger attests, against what MLflow, ``dvc.lock`` and git hold now.

The core compares; the adapters observe. ``mlflow_plugin.reconcile`` reads the tracking store into
:class:`ObservedRun` and :class:`ObservedModelVersion` values, ``dvc_hooks.reconcile`` reads ``dvc.lock`` and the
``.dvc`` files into a :class:`DvcState`, and :func:`reconcile` lists every :class:`Discrepancy`:

=========================== ======== ======================================================================
code                        severity what it means
=========================== ======== ======================================================================
``run-changed``             error    a signed param, final metric, metric history, status, end or input differs
                                     from what MLflow holds now (edited in the tracking database)
``model-version-changed``   error    MLflow's version holds another run than the one its record names
``damaged-record``          error    a record that could not be read (``openledger verify`` says more)
``unattested-run``          warning  a finished MLflow run with no run record
``unattested-model-version`` warning a registered model version with no model record
``run-deleted``             warning  a recorded run is deleted in MLflow, or gone from it
``model-version-deleted``   warning  a recorded model version is no longer in the registry
``unknown-input``           warning  a run input whose digest matches no dataset record or recorded stage output
``unrecorded-stage``        warning  a ``dvc.lock`` entry with no stage record
``stage-changed``           warning  a ``dvc.lock`` entry that differs from its stage's newest record
``unrecorded-dataset``      warning  a DVC-tracked dataset version with no dataset record
``untrusted-signer``        warning  records signed by an unknown, unendorsed or revoked key
``unknown-commit``          warning  a record names a git commit this repository does not have
``attribution-changed``     error    an attribution's coalition runs or dataset versions no longer match what
                                     it signed (openledger/attribution/reconcile.py)
``attribution-stale``       warning  an attribution's experiments are gone from git, or its model version was
                                     registered again
=========================== ======== ======================================================================

Errors are evidence that something signed was altered: exit 1. Warnings are gaps in what was captured: exit 1
under ``--strict``. Tags are not compared: MLflow lets anyone add or change them at any time by design.

>>> import tempfile; from pathlib import Path; from openledger import Ledger
>>> from openledger.lineage.graph import LedgerGraph
>>> report = reconcile(LedgerGraph.load(Ledger.init(Path(tempfile.mkdtemp()))))
>>> report.discrepancies, report.exit_code(strict=True)
((), 0)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from openledger.identity.trust import instant
from openledger.lineage.git import git_output
from openledger.lineage.graph import LedgerGraph
from openledger.lineage.joins import applied_experiment, dataset_key, dvc_stage_key, input_digest
from openledger.store.canonical import tag_nonfinite
from openledger.store.ledger import Fact

__all__ = [
    "SCHEMA",
    "Discrepancy",
    "DvcState",
    "Newest",
    "ObservedDataset",
    "ObservedModelVersion",
    "ObservedRun",
    "ObservedStage",
    "ReconcileReport",
    "TrackingState",
    "dvc_discrepancies",
    "linked_in_graph",
    "newest_in_graph",
    "reconcile",
]

SCHEMA = "openledger.reconcile/1"
ERRORS = frozenset({"run-changed", "model-version-changed", "damaged-record", "attribution-changed"})
# The run fields a record attests that MLflow never changes after a run ends, unless someone edits the store.
_RUN_FIELDS = ("params", "metrics", "metric_history_digest", "status", "start_time", "end_time", "inputs")
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One thing that does not fit. ``subject`` names it (``run:<id>``, ``model:NAME@V``,
    ``stage:<dvc.yaml>:<name>``, ``dataset:<path>@<digest>``, ``input:<digest>``, ``key:<keyid>``,
    ``commit:<sha>``, a record id); ``records`` are the ledger records concerned; ``details`` hold the
    values compared (for a changed run: ``field``, ``signed``, ``current``)."""

    code: str
    subject: str
    message: str
    records: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return "error" if self.code in ERRORS else "warning"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "subject": self.subject, "message": self.message,
                "records": list(self.records), "details": tag_nonfinite(dict(self.details))}


@dataclass(frozen=True, slots=True)
class ObservedRun:
    """An MLflow run as the tracking store holds it now; ``body`` has the run record's shape."""

    run_id: str
    body: Mapping[str, Any]
    finished: bool  # a terminal status: it should have been recorded
    deleted: bool  # lifecycle stage "deleted", or in a deleted experiment


@dataclass(frozen=True, slots=True)
class ObservedModelVersion:
    name: str
    version: str
    run_id: str | None
    model_id: str | None


class TrackingState(Protocol):
    """What reconcile asks an MLflow tracking store (``mlflow_plugin.reconcile.MlflowState`` answers)."""

    backend: str  # the store's URI without credentials

    def runs(self, progress: Progress | None = None) -> Iterable[ObservedRun]: ...

    def model_versions(self) -> Iterable[ObservedModelVersion]: ...


@dataclass(frozen=True, slots=True)
class ObservedStage:
    """One ``dvc.lock`` entry; paths relative to the repository root, hashes spelled as in stage records."""

    dvcfile: str
    name: str
    lock_digest: str
    deps: tuple[tuple[str, str | None], ...] = ()
    outs: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class ObservedDataset:
    """One output of a ``.dvc`` file (``dvc add`` / ``import`` / ``import-url``) as it is in the working tree."""

    path: str
    digest: str
    dvcfile: str


@dataclass(frozen=True, slots=True)
class DvcState:
    stages: tuple[ObservedStage, ...] = ()
    datasets: tuple[ObservedDataset, ...] = ()
    unreproduced: tuple[str, ...] = ()  # dvc.yaml files with no dvc.lock yet


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What :func:`reconcile` found: every discrepancy, how much of each source it checked, which sources it
    read (``mlflow``: the backend, ``dvc``: whether, ``git``: the repository) and what it left out and why."""

    discrepancies: tuple[Discrepancy, ...] = ()
    checked: Mapping[str, int] = field(default_factory=dict)
    sources: Mapping[str, Any] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    @property
    def errors(self) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.severity == "error"]

    def exit_code(self, *, strict: bool) -> int:
        return 1 if self.errors or (strict and self.discrepancies) else 0

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for item in self.discrepancies:
            counts[item.code] += 1
        return dict(sorted(counts.items()))

    def to_json(self, *, strict: bool = False) -> dict[str, Any]:
        return {"schema": SCHEMA, "ok": self.exit_code(strict=strict) == 0, "strict": strict,
                "sources": dict(self.sources), "checked": dict(self.checked), "skipped": list(self.skipped),
                "counts": self.counts(),
                "discrepancies": [d.to_json() for d in self.discrepancies]}


def reconcile(graph: LedgerGraph, *, tracking: TrackingState | None = None, dvc: DvcState | None = None,
              git_root: Path | None = None, progress: Progress | None = None,
              skipped: Sequence[str] = ()) -> ReconcileReport:
    """Every discrepancy between the ledger (as ``graph`` read it) and the sources given; ``skipped`` says
    which sources the caller left out and why (reported first)."""
    found: list[Discrepancy] = []
    checked: dict[str, int] = {}
    sources: dict[str, Any] = {}
    notes = list(skipped)
    facts = list(graph.facts.values())
    checked["lineage_records"] = len(facts) + len(graph.damaged)  # checkpoints are verify's
    found += [_damaged(where, problem) for where, problem in graph.damaged]
    found += _untrusted(graph, facts)
    sources["mlflow"] = tracking.backend if tracking is not None else None
    if tracking is not None:
        found += _mlflow(graph, tracking, checked, progress)
    found += _unknown_inputs(graph)
    sources["dvc"] = dvc is not None
    if dvc is not None:
        checked["stages"] = len(dvc.stages)
        checked["datasets"] = len(dvc.datasets)
        found += dvc_discrepancies(dvc, newest_in_graph(graph), linked_in_graph(graph))
        notes += [f"{pipeline} has no dvc.lock yet (never reproduced)" for pipeline in dvc.unreproduced]
    sources["git"] = str(git_root) if git_root is not None else None
    if git_root is not None:
        found += _commits(graph, git_root, checked)
    # here, not at the top: openledger.attribution.reconcile builds on this module's Discrepancy
    from openledger.attribution.reconcile import attribution_discrepancies  # noqa: PLC0415

    if graph.by_kind.get("attribution"):
        checked["attributions"] = len(graph.by_kind["attribution"])
        found += attribution_discrepancies(graph, git_root)
    return ReconcileReport(tuple(found), checked, sources, tuple(notes))


def _damaged(where: str, problem: str) -> Discrepancy:
    """``where`` is a record id, or the path of an object the index could not read (named by its id)."""
    parts = Path(where).parts
    if len(parts) >= 3 and parts[-3] == "objects" and len(parts[-2]) == 2:
        where = f"sha256:{parts[-2]}{parts[-1]}"
    records = (where,) if where.startswith("sha256:") else ()
    return Discrepancy("damaged-record", where, f"{where[:19] if records else where} cannot be read: {problem}",
                       records)


# -- trust ----------------------------------------------------------------------------------------------------


def _untrusted(graph: LedgerGraph, facts: Sequence[Fact]) -> list[Discrepancy]:
    by_key: dict[str, list[str]] = defaultdict(list)
    reasons: dict[str, str] = {}
    for fact in facts:
        reason = graph.trust.status(fact.actor, fact.time)
        if reason is not None:
            by_key[fact.actor].append(fact.id)
            reasons.setdefault(fact.actor, reason)
    return [Discrepancy("untrusted-signer", f"key:{keyid}",
                        f"{len(ids)} record(s) signed by {graph.person(keyid)}: {reasons[keyid]}", tuple(ids),
                        {"key": keyid, "reason": reasons[keyid]})
            for keyid, ids in sorted(by_key.items())]


# -- MLflow ---------------------------------------------------------------------------------------------------


def _same(signed: Any, current: Any) -> bool:
    if isinstance(signed, float) and isinstance(current, float) and math.isnan(signed) and math.isnan(current):
        return True
    if isinstance(signed, Mapping) and isinstance(current, Mapping):
        return signed.keys() == current.keys() and all(_same(v, current[k]) for k, v in signed.items())
    return bool(signed == current)


def _inputs(body: Mapping[str, Any]) -> list[str]:
    return sorted(str(input_digest(i)) for i in body.get("inputs") or [] if isinstance(i, Mapping))


def _run_changes(signed: Mapping[str, Any], current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each attested field that differs: params and metrics key by key, the rest as a whole."""
    changes: list[dict[str, Any]] = []
    for name in _RUN_FIELDS:
        if name not in signed:
            continue  # a record from before the field existed attests nothing about it
        if name in ("params", "metrics"):
            old, new = signed.get(name) or {}, current.get(name) or {}
            for key in sorted(set(old) | set(new)):
                if key not in new or key not in old or not _same(old[key], new[key]):
                    changes.append({"field": f"{name[:-1]} {key}", "signed": old.get(key), "current": new.get(key)})
        elif name == "inputs":
            if _inputs(signed) != _inputs(current):
                changes.append({"field": "inputs", "signed": _inputs(signed), "current": _inputs(current)})
        elif not _same(signed.get(name), current.get(name)):
            changes.append({"field": name.replace("_", " "), "signed": signed.get(name),
                            "current": current.get(name)})
    return changes


def _value(value: Any) -> str:
    return "(none)" if value is None else repr(value) if isinstance(value, str) else str(value)


def _mlflow(graph: LedgerGraph, tracking: TrackingState, checked: dict[str, int],
            progress: Progress | None) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    seen: set[str] = set()
    runs = 0
    for run in tracking.runs(progress):
        runs += 1
        seen.add(run.run_id)
        records = graph.runs.get(run.run_id, [])
        if not records:
            if run.finished and not run.deleted:
                name = run.body.get("run_name") or run.run_id
                found.append(Discrepancy("unattested-run", f"run:{run.run_id}",
                                         f"MLflow run {run.run_id} ({name}, {run.body.get('status')}) has no record",
                                         details={"experiment_id": run.body.get("experiment_id")}))
            continue
        if run.deleted:
            found.append(Discrepancy("run-deleted", f"run:{run.run_id}",
                                     f"recorded run {run.run_id} is deleted in MLflow",
                                     tuple(r.id for r in records)))
            continue
        # One discrepancy per changed field, naming every record (client and server attestations) that differs.
        changed: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for record in records:
            for change in _run_changes(record.body, run.body):
                changed.setdefault(change["field"], (change, []))[1].append(record.id)
        for name, (change, ids) in changed.items():
            found.append(Discrepancy(
                "run-changed", f"run:{run.run_id}",
                f"run {run.run_id}: {name} was signed as {_value(change['signed'])}, MLflow now has "
                f"{_value(change['current'])}", tuple(ids), {"run_id": run.run_id, **change}))
    for run_id, records in graph.runs.items():
        if run_id not in seen:
            backend = records[-1].body.get("backend")
            elsewhere = f" (recorded from {backend})" if backend and backend != tracking.backend else ""
            found.append(Discrepancy("run-deleted", f"run:{run_id}",
                                     f"recorded run {run_id} is not in MLflow at {tracking.backend}{elsewhere}",
                                     tuple(r.id for r in records), {"backend": backend}))
    versions = 0
    registered: set[tuple[str, str]] = set()
    for version in tracking.model_versions():
        versions += 1
        key = (version.name, version.version)
        registered.add(key)
        records = graph.versions.get(key, [])
        same = [r for r in records if version.model_id is None or r.body.get("model_id") in (None, version.model_id)]
        label = f"model:{version.name}@{version.version}"
        if not same:
            why = " (its records attest another logged model: registered again?)" if records else ""
            found.append(Discrepancy("unattested-model-version", label,
                                     f"model version {version.name}@{version.version} has no record{why}",
                                     tuple(r.id for r in records), {"run_id": version.run_id,
                                                                     "model_id": version.model_id}))
            continue
        for record in same:
            signed_run = record.body.get("run_id")
            if signed_run and version.run_id and signed_run != version.run_id:
                found.append(Discrepancy("model-version-changed", label,
                                         f"model version {version.name}@{version.version} was signed as trained by "
                                         f"run {signed_run}, MLflow now says run {version.run_id}", (record.id,),
                                         {"field": "run_id", "signed": signed_run, "current": version.run_id}))
    for key, records in sorted(graph.versions.items()):
        if key not in registered:
            found.append(Discrepancy("model-version-deleted", f"model:{key[0]}@{key[1]}",
                                     f"recorded model version {key[0]}@{key[1]} is not in the registry at "
                                     f"{tracking.backend}", tuple(r.id for r in records)))
    checked["runs"] = runs
    checked["model_versions"] = versions
    return found


def _unknown_inputs(graph: LedgerGraph) -> list[Discrepancy]:
    """Run inputs (as their records attest them) whose digest no dataset record or recorded stage output has."""
    known = set(graph.datasets)
    for stage in graph.by_kind.get("stage", []):
        known.update(str(o.get("hash")) for o in stage.body.get("outs") or [] if isinstance(o, Mapping))
    unknown: dict[str, tuple[str, list[str], list[str]]] = {}
    for run_id, records in graph.runs.items():
        for item in records[-1].body.get("inputs") or []:
            if not isinstance(item, Mapping):
                continue
            digest = str(input_digest(item))
            if digest not in known:
                entry = unknown.setdefault(digest, (str(item.get("name") or digest), [], []))
                if run_id not in entry[1]:
                    entry[1].append(run_id)
                    entry[2].append(records[-1].id)
    return [Discrepancy("unknown-input", f"input:{digest}",
                        f"dataset {name!r} ({digest}) used by {len(runs)} run(s) matches no dataset record or "
                        f"recorded stage output", tuple(ids), {"digest": digest, "name": name, "runs": runs})
            for digest, (name, runs, ids) in sorted(unknown.items())]


# -- DVC ------------------------------------------------------------------------------------------------------


Newest = Callable[[str, str], "tuple[str, Mapping[str, Any]] | None"]
Linked = Callable[[str, str], "Iterable[tuple[str, Mapping[str, Any]]]"]


def newest_in_graph(graph: LedgerGraph) -> Newest:
    """The newest record of ``kind`` linking ``link``, as (id, body), from a graph already in memory."""

    def newest(link: str, kind: str) -> tuple[str, Mapping[str, Any]] | None:
        linked = graph.linking(link, kind)
        fact = max(linked, key=lambda f: (instant(f.time), f.id)) if linked else None
        return (fact.id, fact.body) if fact else None

    return newest


def linked_in_graph(graph: LedgerGraph) -> Linked:
    """Every record of ``kind`` linking ``link``, as (id, body), from a graph already in memory."""
    return lambda link, kind: ((f.id, f.body) for f in graph.linking(link, kind))


def _artifact_changes(signed: Any, current: Sequence[tuple[str, str | None]], what: str) -> list[dict[str, Any]]:
    before = {str(a.get("path")): a.get("hash") for a in signed or [] if isinstance(a, Mapping)}
    now = dict(current)
    return [{"field": f"{what} {path}", "signed": before.get(path), "current": now.get(path)}
            for path in sorted(set(before) | set(now)) if before.get(path) != now.get(path)]


def dvc_discrepancies(state: DvcState, newest: Newest, linked: Linked | None = None) -> list[Discrepancy]:
    """``dvc.lock`` entries and ``.dvc`` outputs with no record, or differing from their newest record (an entry
    an experiment recorded, brought back by ``dvc exp apply``, is recorded: :func:`applied_experiment`).

    ``newest`` and ``linked`` look records up: :func:`newest_in_graph` and :func:`linked_in_graph` here, the
    ledger's index in ``openledger dvc status`` (which must stay fast on every call and never reads the whole
    ledger; ``linked`` is only asked about an entry that differs from its newest record).
    """
    found: list[Discrepancy] = []
    for stage in state.stages:
        subject = f"stage:{stage.dvcfile}:{stage.name}"
        where = {"dvcfile": stage.dvcfile, "stage": stage.name}
        found_record = newest(dvc_stage_key(stage.dvcfile, stage.name), "stage")
        if found_record is None:
            found.append(Discrepancy("unrecorded-stage", subject,
                                     f"{stage.dvcfile} stage {stage.name!r} is in dvc.lock but has no stage record",
                                     details=where))
            continue
        record_id, body = found_record
        if body.get("lock_digest") == stage.lock_digest or (
                linked is not None and applied_experiment(linked(dvc_stage_key(stage.dvcfile, stage.name), "stage"),
                                                          stage.lock_digest)):
            continue
        changes = (_artifact_changes(body.get("outs"), stage.outs, "out")
                   or _artifact_changes(body.get("deps"), stage.deps, "dep"))
        what = "; ".join(f"{c['field']} {_short(c['signed'])} -> {_short(c['current'])}" for c in changes[:3])
        found.append(Discrepancy("stage-changed", subject,
                                 f"{stage.dvcfile} stage {stage.name!r}: dvc.lock differs from its newest record"
                                 + (f" ({what})" if what else " (params or command)"), (record_id,),
                                 {**where, "changes": changes}))
    for dataset in state.datasets:
        if newest(dataset_key(dataset.path, dataset.digest), "dataset") is None:
            found.append(Discrepancy("unrecorded-dataset", f"dataset:{dataset.path}@{dataset.digest}",
                                     f"{dataset.path} ({dataset.digest[:20]}, {dataset.dvcfile}) has no dataset "
                                     "record", details={"dvcfile": dataset.dvcfile, "path": dataset.path,
                                                       "digest": dataset.digest}))
    return found


def _short(digest: Any) -> str:
    return "(none)" if digest is None else str(digest)[:16]


# -- git ------------------------------------------------------------------------------------------------------


def _commits(graph: LedgerGraph, root: Path, checked: dict[str, int]) -> list[Discrepancy]:
    """Records naming a commit that is not in this repository (history rewritten, or never pushed)."""
    naming: dict[str, list[str]] = defaultdict(list)
    for kind in ("run", "stage", "commit"):
        for fact in graph.by_kind.get(kind, []):
            commit = fact.body.get("commit") if kind == "commit" else (fact.body.get("git") or {}).get("commit")
            if isinstance(commit, str) and commit:
                naming[commit].append(fact.id)
    checked["commits"] = len(naming)
    if not naming:
        return []
    shas = sorted(naming)
    output = git_output(root, "cat-file", "--batch-check=%(objectname) %(objecttype)",
                        stdin="".join(f"{sha}\n" for sha in shas))
    if output is None:
        return []  # not a git repository: nothing to compare with
    answers = output.splitlines()
    return [Discrepancy("unknown-commit", f"commit:{sha}",
                        f"{len(naming[sha])} record(s) name commit {sha[:10]}, which this repository does not have",
                        tuple(naming[sha]), {"commit": sha})
            for sha, answer in zip(shas, answers, strict=False) if not answer.endswith(" commit")]
