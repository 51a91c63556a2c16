"""Writing ``stage``, ``dataset`` and ``commit`` records from what DVC and git already know.

* :func:`record_stages`: one ``stage`` record per ``dvc.lock`` entry that changed since that stage was last
  recorded (none when nothing changed), with DVC's hashes, params, the experiment name and the
  ``foreach``/``matrix`` expansion; linked to the dataset records and upstream stage records of its deps and
  to the MLflow run records its command produced.
* :func:`record_datasets`: a ``dataset`` record for every version of every ``.dvc``-tracked path not recorded
  yet, crediting contributors from git (see :mod:`dvc_hooks.history`).
* :func:`bind_commit`: after ``git commit``, one ``commit`` record linking every record not yet bound to a
  commit. Records are never rewritten: binding is a new record.

All of them append through a :class:`~openledger.capture.recorder.Recorder`; the callers decide how failures surface.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dvc_hooks.history import DatasetVersion, KeyForEmail, dataset_versions, git_state, head_commit
from dvc_hooks.lockfile import RECORD_STAGE, Artifact, LockStage, read_dvcfile, read_lock
from dvc_hooks.project import DvcProject
from openledger.capture.recorder import Recorder
from openledger.errors import BadInputError, NotFoundError
from openledger.lineage.git import current_branch
from openledger.lineage.joins import applied_experiment, attribution_stage_key, dataset_key, dvc_run_key, dvc_stage_key
from openledger.store.ledger import Ledger
from openledger.store.records import Record

DVC_EXPERIMENT_COMMIT = "dvc: commit experiment"
# Set by `openledger attribute`'s executors for the `dvc exp run` of one coalition run: its `attrrun:` key.
ENV_ATTRIBUTION_RUN = "OPENLEDGER_ATTRIBUTION_RUN"
_RUN_KEY = re.compile(r"attrrun:[0-9a-f]{32}")

__all__ = [
    "ENV_ATTRIBUTION_RUN",
    "ProjectRecording",
    "attribution_run",
    "bind_commit",
    "record_data",
    "record_datasets",
    "record_project",
    "record_stages",
]


def attribution_run() -> str | None:
    """The coalition run this repro is, when ``openledger attribute`` runs it (``None`` otherwise)."""
    value = os.environ.get(ENV_ATTRIBUTION_RUN, "").strip()
    if not value:
        return None
    if not _RUN_KEY.fullmatch(value):
        raise BadInputError(f"{ENV_ATTRIBUTION_RUN} is not an attribution run key (attrrun:<32 hex>)")
    return value


def _dataset_body(version: DatasetVersion, dvcfile: str, source: Mapping[str, Any], project: DvcProject,
                  key_for_email: KeyForEmail) -> dict[str, Any]:
    body: dict[str, Any] = {
        "path": version.path,
        "digest": version.artifact.digest,
        "dvcfile": dvcfile,
        "source": dict(source),
        "commit": version.commit,
        "committed": version.time,
        "contributors": version.contributors(project.cache, key_for_email),
        "complete": version.complete,
    }
    if version.artifact.size is not None:
        body["size"] = version.artifact.size
    body["files"] = version.artifact.nfiles if version.artifact.nfiles is not None else 1
    return body


def record_datasets(project: DvcProject, recorder: Recorder, dvcfiles: Iterable[str] | None = None) -> list[Record]:
    """Dataset records for every version of every ``.dvc``-tracked path that has none yet.

    The common case costs one index lookup per ``.dvc`` file: history is only walked for a path whose
    current version is new to the ledger.
    """
    ledger = recorder.ledger
    written: list[Record] = []
    key_for_email: KeyForEmail | None = None  # the trust evaluation is read once, when first needed
    for dvcfile in (project.data_files() if dvcfiles is None else dvcfiles):
        parsed = read_dvcfile(project.root, dvcfile)
        for out in parsed.outs:
            if out.digest is None:
                continue
            path = str(PurePosixPath(dvcfile).parent / out.path)
            if ledger.ids(kind="dataset", links_to=dataset_key(path, out.digest)):
                continue
            if key_for_email is None:
                key_for_email = ledger.trust().key_for_email
            previous: str | None = None
            for version in dataset_versions(project.root, dvcfile, out, project.cache):
                key = dataset_key(version.path, version.artifact.digest or "")
                existing = ledger.ids(kind="dataset", links_to=key)
                if existing:
                    previous = existing[-1]
                    continue
                body = _dataset_body(version, dvcfile, parsed.source, project, key_for_email)
                # linking its own digest lets stages and MLflow runs that read this version find the record
                links = [body["digest"], *([previous] if previous else [])]
                record = recorder.record("dataset", body, links, once=key)
                if record is not None:
                    written.append(record)
                    previous = record.id
    return written


def record_data(project: DvcProject, recorder: Recorder, path: Path, contributors: Sequence[str],
                description: str | None = None) -> Record | None:
    """A dataset record for ``path`` (a ``.dvc``-tracked path or a stage output), crediting ``contributors``
    (key ids): data someone else supplied. ``None`` when that exact credit is already recorded."""
    ledger = recorder.ledger
    relpath = project.relpath(path)
    artifact, dvcfile, source = _find_tracked(project, relpath)
    trust = ledger.trust()
    credited = []
    for keyid in contributors:
        identity = trust.identities.get(keyid)
        if identity is None:
            raise NotFoundError(f"no identity record for {keyid}",
                                hint="the contributor publishes their key first: `openledger keys publish`")
        credited.append({"name": identity.name, "email": identity.email, "key": keyid, "role": "data",
                         "files": artifact.nfiles or 1, **({"bytes": artifact.size} if artifact.size else {})})
    body: dict[str, Any] = {"path": relpath, "digest": artifact.digest, "dvcfile": dvcfile, "source": source,
                            "commit": None, "contributors": credited, "supplied": True, "complete": True,
                            "files": artifact.nfiles or 1}
    if artifact.size is not None:
        body["size"] = artifact.size
    if description:
        body["description"] = description
    key = dataset_key(relpath, f"{artifact.digest}:{','.join(sorted(contributors))}")
    previous = ledger.ids(kind="dataset", links_to=dataset_key(relpath, artifact.digest or ""))
    return recorder.record("dataset", body, [artifact.digest or "", *previous[-1:]], once=key)


def _find_tracked(project: DvcProject, relpath: str) -> tuple[Artifact, str, dict[str, Any]]:
    for dvcfile in project.data_files():
        parsed = read_dvcfile(project.root, dvcfile)
        for out in parsed.outs:
            if str(PurePosixPath(dvcfile).parent / out.path) == relpath and out.digest:
                return out, dvcfile, dict(parsed.source)
    for pipeline in project.pipeline_files():
        lock = project.root / PurePosixPath(pipeline).parent / "dvc.lock"
        if not lock.exists():
            continue
        for stage in read_lock(lock, dvcfile=pipeline):
            for out in stage.outs:
                if str(PurePosixPath(pipeline).parent / out.path) == relpath and out.digest:
                    return out, pipeline, {"type": "dvc-stage", "stage": stage.name}
    raise NotFoundError(f"{relpath} is not tracked by DVC here",
                        hint=f"`dvc add {relpath}` first, or make it a stage output and `dvc repro`")


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _producers(stage: LockStage, stages: list[LockStage]) -> list[LockStage]:
    """The other stages of the same dvc.lock whose outs this stage's deps read (paths equal or nested)."""
    return [other for other in stages if other.name != stage.name
            and any(_overlaps(dep.path, out.path) for dep in stage.deps for out in other.outs)]


def _topological(stages: list[LockStage]) -> list[LockStage]:
    """Producers before consumers, otherwise dvc.lock's order."""
    order: list[LockStage] = []
    done: set[str] = set()

    def visit(stage: LockStage, trail: frozenset[str]) -> None:
        if stage.name in done or stage.name in trail:
            return
        for producer in _producers(stage, stages):
            visit(producer, trail | {stage.name})
        done.add(stage.name)
        order.append(stage)

    for stage in stages:
        visit(stage, frozenset())
    return order


def _runs_of(ledger: Ledger, stage_env: str, experiment: str | None) -> list[Record]:
    """Finished MLflow run records from this stage's command that no stage record claims yet."""
    runs = []
    for run in ledger.select(kind="run", links_to=dvc_run_key(stage_env, experiment)):
        if run.body.get("status") == "FINISHED" and not ledger.ids(kind="stage", links_to=run.id):
            runs.append(run)
    return runs


def record_stages(project: DvcProject, recorder: Recorder, pipeline: str, *, experiment: str | None = None,
                  stage_prefix: str | None = None, attribution_run: str | None = None) -> list[Record]:
    """Stage records for the entries of ``pipeline``'s ``dvc.lock`` that changed since they were last recorded,
    after dataset records for any dataset version not recorded yet (all records written are returned).

    ``stage_prefix`` is how ``DVC_STAGE`` spells this pipeline's stages in the running ``dvc`` (``""`` for
    the top ``dvc.yaml`` run from the top); with it, MLflow runs the stages logged are joined.

    ``attribution_run`` (the ``attrrun:`` key of a coalition run of ``openledger attribute``): every stage of
    the run is recorded once for that run, linked to the run's key instead of the stage's ``dvcstage:`` key,
    and no dataset record is written. A coalition's data is a subset nobody committed, described by the
    attribution record; and the newest record of each workspace stage stays the workspace's, so
    ``openledger dvc status`` and ``reconcile`` see nothing change.
    """
    lock_path = project.root / PurePosixPath(pipeline).parent / "dvc.lock"
    stages = [s for s in read_lock(lock_path, dvcfile=pipeline) if s.name != RECORD_STAGE]
    ledger = recorder.ledger
    # first: stage records link to them
    written = record_datasets(project, recorder) if attribution_run is None else []
    state: dict[str, Any] | None = None  # asked of git once a stage has changed (three git commands)
    base = PurePosixPath(pipeline).parent
    latest: dict[str, str] = {}  # stage name -> its newest record id
    for stage in _topological(stages):
        once = None
        if attribution_run is None:
            key = dvc_stage_key(pipeline, stage.name)
            previous = ledger.ids(kind="stage", links_to=key)
        else:
            key = once = attribution_stage_key(attribution_run, pipeline, stage.name, stage.lock_digest)
            previous = []
            done = ledger.ids(kind="stage", links_to=key)
            if done:
                latest[stage.name] = done[-1]
                continue
        if previous:
            latest[stage.name] = previous[-1]
        runs = _runs_of(ledger, stage_prefix + stage.name, experiment) if stage_prefix is not None else []
        if previous and not runs and (ledger.body(previous[-1]).get("lock_digest") == stage.lock_digest or (
                experiment is None  # an experiment recording an entry another one recorded ran it again
                and applied_experiment(((i, ledger.body(i)) for i in previous), stage.lock_digest))):
            continue
        if state is None:
            state = git_state(project.root)
        body: dict[str, Any] = {
            "name": stage.name,
            "dvcfile": pipeline,
            "cmd": stage.cmd,
            "deps": [rooted(dep, base) for dep in stage.deps],
            "outs": [rooted(out, base) for out in stage.outs],
            "params": dict(stage.params),
            "experiment": experiment,
            "lock_digest": stage.lock_digest,
            "git": state,
            "runs": [run.body.get("run_id") for run in runs],
        }
        if stage.expansion:
            body["expansion"] = stage.expansion
        if attribution_run is not None:
            body["attribution_run"] = attribution_run
        # what it builds on: the data it read (digests, dataset records), the records of the stages that
        # produced its deps, the MLflow runs its command logged, and its own previous record
        links = [key, *(run.id for run in runs), *previous[-1:], *([attribution_run] if attribution_run else [])]
        for dep in stage.deps:
            if dep.digest:
                links += [dep.digest, *ledger.ids(kind="dataset", links_to=dep.digest)[-1:]]
        links += [latest[p.name] for p in _producers(stage, stages) if p.name in latest]
        if once is not None:
            links.remove(once)  # append_once adds it
        record = recorder.record("stage", body, sorted(set(links)), once=once)
        if record is not None:
            written.append(record)
            latest[stage.name] = record.id
    return written


def rooted(artifact: Artifact, base: PurePosixPath) -> dict[str, Any]:
    """An artifact with its path relative to the repository root (dvc.lock's are relative to its dvc.yaml)."""
    data = artifact.to_json()
    data["path"] = str(base / artifact.path) if str(base) != "." else artifact.path
    return data


def bind_commit(project: DvcProject, recorder: Recorder) -> Record | None:
    """One ``commit`` record binding HEAD to every record no commit record links to yet (``None`` if none)."""
    ledger = recorder.ledger
    commit = head_commit(project.root)
    if commit.message.startswith(DVC_EXPERIMENT_COMMIT):
        return None  # DVC's own commit of an experiment (refs/exps): the next commit on a branch binds them
    unbound = ledger.unreferenced("commit")
    if not unbound:
        return None
    body = {
        "commit": commit.hexsha,
        "parents": list(commit.parents),
        "branch": current_branch(project.root),
        "author": {"name": commit.author.name, "email": commit.author.email},
        "records": len(unbound),
    }
    return recorder.record("commit", body, unbound)


@dataclass(frozen=True, slots=True)
class ProjectRecording:
    """What :func:`record_project` wrote, and the pipelines it could not record because they never ran."""

    records: list[Record]
    never_run: tuple[str, ...]


def record_project(project: DvcProject, recorder: Recorder, *, require_lock: bool) -> ProjectRecording:
    """Every dataset version and changed stage of every pipeline of the project that has no record yet (what
    ``openledger dvc record`` and the post-commit hook do). Every ``dvc.lock`` is read before anything is
    written, so a corrupt one records nothing; a missing one is an error only when ``require_lock`` and no
    pipeline ran at all (the user expects stage records and would get none)."""
    pipelines, never_run = [], []
    for pipeline in project.pipeline_files():
        lock = project.root / PurePosixPath(pipeline).parent / "dvc.lock"
        if lock.exists():
            read_lock(lock, dvcfile=pipeline)
            pipelines.append(pipeline)
        else:
            never_run.append(pipeline)
    if require_lock and never_run and not pipelines:
        read_lock(project.root / PurePosixPath(never_run[0]).parent / "dvc.lock", dvcfile=never_run[0])
    written = record_datasets(project, recorder)
    for pipeline in pipelines:
        # DVC_STAGE spells stages as `dvc repro` run from the top would (for the MLflow join).
        prefix = "" if pipeline == "dvc.yaml" else f"{pipeline}:"
        written += record_stages(project, recorder, pipeline, stage_prefix=prefix)
    return ProjectRecording(written, tuple(never_run) if require_lock else ())
