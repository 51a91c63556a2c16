"""Measured attribution on DVC: each coalition run is a DVC experiment of the unchanged pipeline on a subset of
the data, made by ``dvc exp run`` in a private clone of the repository and signed by the record stage.

How a coalition's data is made: the valued dataset version's ``.dir`` manifest (in DVC's cache) lists every
file with its hash; the coalition's manifest lists only its files, exactly as DVC writes manifests (sorted
JSON), so its hash is what DVC would compute. It is written to the cache once, and the coalition's ``.dvc``
file names it: no data is copied or hashed again, and DVC checks the files out from its cache.

How runs are made (:class:`LocalDvcExecutor`): ``-j N`` worker processes, each with its own clone of the
repository at the commit being valued (``.dvc/tmp/openledger-attribution/``, which git and DVC ignore), sharing
the project's DVC cache. A worker imports DVC once and runs each coalition as ``dvc exp run -n NAME`` in its
clone (DVC's own command, called in-process), with the seed as a ``-S`` param override. The record stage signs
the run's stages into the project's ledger; the experiment is pushed back to the project's git repository
(``refs/exps/…``, as ``dvc exp push`` does), where ``dvc exp show`` lists it. The user's working tree,
``dvc.lock`` and ``.dvc`` files are never written.

Why not ``dvc queue start``: its Celery workers start a ``dvc exp exec-run`` process, a temporary git
repository and a result collection for every experiment, about four times the CPU of an in-process
``dvc exp run`` per coalition here (docs/design.md). Both run the same ``dvc exp run`` machinery.

Reuse: a run's experiment name comes from its key (commit, data, params). An experiment of that name at the
valued commit, with the stage records the record stage signed for it, is a finished run: it is never run
again (after Ctrl-C, a kill, or in a later attribution).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import yaml

from dvc_hooks.lockfile import RECORD_STAGE, LockStage, cache_dir, cached_size, parse_lock, read_dir_entries
from dvc_hooks.project import DvcProject
from dvc_hooks.record import ENV_ATTRIBUTION_RUN
from openledger.attribution.metrics import parse_metrics, run_metrics
from openledger.attribution.players import DatasetSubset, Player, players_of
from openledger.attribution.runs import RunRequest, RunResult
from openledger.attribution.target import (
    AttributionTarget,
    DatasetVersion,
    credited_version,
    dataset_history,
)
from openledger.errors import BadInputError, IntegrityError, NotFoundError
from openledger.lineage.joins import attribution_stage_key
from openledger.store.ledger import Ledger
from openledger.store.records import Record

__all__ = [
    "WORKDIR",
    "DvcExecutorBase",
    "LocalDvcExecutor",
    "ValuedData",
    "clean_stale",
    "head_commit",
    "prepare",
    "seed_plan",
]

WORKDIR = PurePosixPath(".dvc", "tmp", "openledger-attribution")
_PARAMS_FILE = "params.yaml"


def _git(root: Path, *args: str, stdin: bytes | None = None, check: bool = True) -> bytes:
    result = subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, check=False)
    if check and result.returncode != 0:
        raise BadInputError(f"git {' '.join(args[:2])} failed in {root}: "
                            f"{result.stderr.decode('utf-8', 'replace').strip()}")
    return result.stdout


def _show(root: Path, rev: str, paths: Sequence[str]) -> dict[str, bytes | None]:
    """The content of each path at ``rev`` (``None`` where absent), from one ``git cat-file --batch``."""
    if not paths:
        return {}
    output = _git(root, "cat-file", "--batch", stdin="".join(f"{rev}:{p}\n" for p in paths).encode())
    result: dict[str, bytes | None] = {}
    at = 0
    for path in paths:
        end = output.index(b"\n", at)
        header = output[at:end].split()
        at = end + 1
        if header[-1] == b"missing" or len(header) < 3:
            result[path] = None
            continue
        size = int(header[2])
        result[path] = output[at:at + size]
        at += size + 1
    return result


def head_commit(project: DvcProject, rev: str = "HEAD") -> str:
    found = subprocess.run(["git", "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], cwd=project.root,
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise BadInputError(f"{rev} is not a commit of {project.root}", hint="commit the pipeline first")
    return found.stdout.strip()


# -- what is valued ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValuedData:
    """The datasets of an attribution as DVC holds them: per dataset path, its ``.dvc`` file, the out's path in
    it, and the manifest entries of the valued version (``relpath -> entry``) with each file's size."""

    target: AttributionTarget
    players: tuple[Player, ...]
    dvcfiles: Mapping[str, tuple[str, str]]  # dataset path -> (.dvc file, out path in it)
    entries: Mapping[str, Mapping[str, Mapping[str, Any]]]
    sizes: Mapping[str, Mapping[str, int]]


def _files(entries: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {str(e["relpath"]): f"md5:{e['md5']}" for e in entries}


def prepare(project: DvcProject, ledger: Ledger, target: AttributionTarget) -> ValuedData:
    """The players of ``target`` with their files, from the dataset records and DVC's cached manifests.
    Every valued file must be in the local cache (the runs check the data out from it)."""
    cache = cache_dir(project.root)
    trust = ledger.trust()
    valued, history = [], []
    dvcfiles: dict[str, tuple[str, str]] = {}
    entries: dict[str, dict[str, Mapping[str, Any]]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for version in target.datasets:
        listed = read_dir_entries(cache, version.digest)
        if listed is None:
            raise BadInputError(f"the manifest of {version.path} ({version.digest[:20]}) is not in the local DVC "
                                "cache", hint="`dvc pull` (or `dvc fetch`) that version first")
        files = _files(listed)
        valued.append(credited_version(version, files, trust))
        dvcfiles[version.path] = _out_of(version)
        entries[version.path] = {str(e["relpath"]): e for e in listed}
        sizes[version.path] = {}
        for relpath, digest in files.items():
            size = cached_size(cache, digest)
            if size is None:
                raise BadInputError(f"{version.path}/{relpath} ({digest}) is not in the local DVC cache",
                                    hint="`dvc pull` the valued dataset version first")
            sizes[version.path][relpath] = size
        for other in dataset_history(ledger, version.path):
            manifest = read_dir_entries(cache, other.digest) if other.is_directory else None
            if manifest is not None:
                history.append(credited_version(other, _files(manifest), trust))
    players = players_of(valued, history)
    return ValuedData(target, tuple(players), dvcfiles, entries, sizes)


def _out_of(version: DatasetVersion) -> tuple[str, str]:
    if not version.dvcfile:
        raise BadInputError(f"{version.path} is not tracked by a .dvc file")
    base = PurePosixPath(version.dvcfile).parent
    out = PurePosixPath(version.path)
    relative = out.relative_to(base) if str(base) != "." else out
    return version.dvcfile, str(relative)


def seed_plan(project: DvcProject, commit: str, param: str, repeats: int
              ) -> tuple[tuple[int | None, ...], str | None, int | None]:
    """The seeds of ``repeats`` runs per coalition: ``(seeds, param to override, the pipeline's own seed)``.

    One repeat runs with the pipeline's own params. More need an integer param (``param``, ``[FILE:]KEY``,
    in ``params.yaml`` by default); the seeds are its value and the next ``repeats - 1`` integers.
    """
    file, _, key = param.rpartition(":")
    text = _show(project.root, commit, [file or _PARAMS_FILE])[file or _PARAMS_FILE]
    value: Any = None
    if text is not None:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = None
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    own = value if isinstance(value, int) and not isinstance(value, bool) else None
    if repeats == 1:
        return (own,), None, own
    if own is None:
        raise BadInputError(f"--repeats {repeats} varies the seed through the param {key!r} of "
                            f"{file or _PARAMS_FILE}, which has no integer {key!r} at {commit[:10]}",
                            hint="name the pipeline's seed param with --seed-param [FILE:]KEY, or use --repeats 1")
    return tuple(own + r for r in range(repeats)), param, own


def check_record_stage(project: DvcProject, commit: str) -> list[str]:
    """The pipelines (``dvc.yaml`` files) at ``commit``; each must have the record stage, which signs the runs."""
    listing = _git(project.root, "ls-tree", "-r", "--name-only", "-z", commit).decode("utf-8", "surrogateescape")
    pipelines = sorted(p for p in listing.split("\0") if p == "dvc.yaml" or p.endswith("/dvc.yaml"))
    if not pipelines:
        raise BadInputError(f"there is no dvc.yaml at {commit[:10]}: no pipeline to run",
                            hint="attribution re-runs the DVC pipeline that trained the model")
    texts = _show(project.root, commit, pipelines)
    missing = [p for p in pipelines if f"{RECORD_STAGE}:" not in (texts[p] or b"").decode("utf-8", "replace")]
    if missing:
        raise BadInputError(f"{', '.join(missing)} at {commit[:10]} has no record stage, so coalition runs would "
                            "not be signed", hint="`openledger dvc install`, commit dvc.yaml, and retrain")
    return pipelines


# -- coalition data ------------------------------------------------------------------------------------------


def manifest_bytes(entries: Sequence[Mapping[str, Any]]) -> bytes:
    """A ``.dir`` manifest exactly as DVC writes one: entries sorted by path, JSON with sorted keys."""
    ordered = sorted(entries, key=lambda e: str(e["relpath"]))
    return json.dumps(ordered, sort_keys=True).encode("utf-8")


def subset_manifest(valued: ValuedData, subset: DatasetSubset) -> tuple[bytes, str]:
    """A coalition's manifest of one dataset (the valued version's entries for its files) and its DVC hash
    (``<md5>.dir``, the md5 of the manifest as DVC computes it)."""
    entries = valued.entries[subset.path]
    data = manifest_bytes([entries[relpath] for relpath, _ in subset.files])
    return data, hashlib.md5(data, usedforsecurity=False).hexdigest() + ".dir"


def _lock_of(pipeline: str) -> str:
    return str(PurePosixPath(pipeline).with_name("dvc.lock"))


def _rooted(pipeline: str, path: str) -> str:
    base = PurePosixPath(pipeline).parent
    return str(base / path) if str(base) != "." else path


def _write_object(path: Path, data: bytes) -> None:
    """Write a cache object the way DVC's cache holds them: atomically, read-only."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".openledger-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(temporary).chmod(0o444)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- evidence: what a finished experiment says ---------------------------------------------------------------


def metrics_paths(pipeline: str, text: bytes | None) -> list[str]:
    """The metrics files a ``dvc.yaml`` declares (top-level ``metrics:`` and stage ``metrics:``), repo-relative."""
    try:
        data = yaml.safe_load(text or b"")
    except yaml.YAMLError:
        return []
    if not isinstance(data, dict):
        return []
    entries: list[Any] = list(data.get("metrics") or [])
    for stage in (data.get("stages") or {}).values():
        if isinstance(stage, dict):
            entries += stage.get("metrics") or []
    paths = []
    for entry in entries:
        name = entry if isinstance(entry, str) else next(iter(entry), None) if isinstance(entry, dict) else None
        if isinstance(name, str) and "${" not in name:
            paths.append(_rooted(pipeline, name))
    return sorted(set(paths))


@dataclass
class _Evidence:
    """Reads a finished coalition run back from git, DVC's cache and the ledger."""

    project: DvcProject
    ledger: Ledger
    commit: str
    pipelines: list[str]
    valued: ValuedData
    metric: str
    _metrics: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        texts = _show(self.project.root, self.commit, self.pipelines)
        self._metrics = sorted({m for p in self.pipelines for m in metrics_paths(p, texts[p])})

    def experiments(self) -> dict[str, str]:
        """Experiment name -> commit, for the experiments of the valued commit in the project's repository."""
        prefix = f"refs/exps/{self.commit[:2]}/{self.commit[2:]}/"
        listing = _git(self.project.root, "for-each-ref", "--format=%(objectname) %(refname)", prefix)
        found = {}
        for line in listing.decode("utf-8", "replace").splitlines():
            sha, _, ref = line.partition(" ")
            found[ref[len(prefix):]] = sha
        return found

    def read(self, request: RunRequest, rev: str, *, reused: bool, seconds: float = 0.0,
             find_stage: Callable[[str], Record | None] | None = None) -> RunResult:
        """The run at experiment commit ``rev``. Raises IntegrityError when the run is not what ``request`` asked
        for (its data differs) or the record stage did not sign every stage of it.

        ``find_stage`` finds the stage record linking to a key (default: the newest in the ledger); a cluster
        executor passes the records a worker returned, checked before any of them enters the ledger."""
        find = find_stage or self._newest_stage
        dvcfiles = sorted({self.valued.dvcfiles[s.path][0] for s in request.data})
        locks = [_lock_of(p) for p in self.pipelines]
        texts = _show(self.project.root, rev, [*locks, *dvcfiles, *self._metrics])
        data: list[tuple[str, str]] = []
        for subset in request.data:
            dvcfile, out = self.valued.dvcfiles[subset.path]
            digest = _out_digest(texts.get(dvcfile), out)
            if digest is None or digest != "md5:" + subset_manifest(self.valued, subset)[1]:
                raise IntegrityError(f"experiment {rev[:10]} ran on other data than run {request.key} asks for")
            data.append((subset.path, digest))
        stages: list[tuple[str, LockStage]] = []
        for pipeline, lock in zip(self.pipelines, locks, strict=True):
            raw = texts.get(lock)
            if raw is None:
                continue
            stages += [(pipeline, s) for s in parse_lock(yaml.safe_load(raw), lock, dvcfile=pipeline)
                       if s.name != RECORD_STAGE]
        records, signers = [], set()
        for pipeline, stage in stages:
            record = find(attribution_stage_key(request.key, pipeline, stage.name, stage.lock_digest))
            if record is None:
                raise IntegrityError(f"the record stage signed no record of stage {stage.name!r} of run {request.key}")
            if record.body.get("attribution_run") != request.key:
                raise IntegrityError(f"record {record.id} is not a record of run {request.key}")
            records.append(record.id)
            signers.add(record.actor)
        metrics, evidence = self._metrics_of(texts, stages)
        return RunResult(request.key, True, metrics, request.experiment, rev, tuple(data), tuple(records),
                         min(signers) if signers else None, seconds, None, reused, evidence)

    def _newest_stage(self, key: str) -> Record | None:
        ids = self.ledger.ids(kind="stage", links_to=key)
        return self.ledger.get(ids[-1]) if ids else None

    def _metrics_of(self, texts: Mapping[str, bytes | None], stages: Sequence[tuple[str, LockStage]]
                    ) -> tuple[dict[str, float], dict[str, Any]]:
        outs = {_rooted(p, o.path): o.digest for p, s in stages for o in s.outs}
        files: dict[str, bytes] = {}
        cache = cache_dir(self.project.root)
        for path in self._metrics:
            data = texts.get(path)
            if data is None and outs.get(path):  # a metrics file DVC caches: read it from the cache
                data = _cached(cache, str(outs[path]))
            if data is not None:
                files[path] = data
        metrics = run_metrics(files)
        evidence: dict[str, Any] = {}
        for path in sorted(files):  # the file the metric comes from, with the hash its stage record signs
            if self.metric.startswith(f"{path}:") or self.metric in parse_metrics(path, files[path]):
                evidence = {"metrics_file": path, "metrics_digest": outs.get(path)}
                break
        return metrics, evidence


def _out_digest(text: bytes | None, out: str) -> str | None:
    try:
        data = yaml.safe_load(text or b"")
    except yaml.YAMLError:
        return None
    for entry in (data or {}).get("outs") or [] if isinstance(data, dict) else []:
        if isinstance(entry, dict) and entry.get("path") == out and isinstance(entry.get("md5"), str):
            return f"md5:{entry['md5']}"
    return None


def _cached(cache: Path, digest: str) -> bytes | None:
    hexdigest = digest.partition(":")[2]
    for candidate in (cache / "files" / "md5" / hexdigest[:2] / hexdigest[2:], cache / hexdigest[:2] / hexdigest[2:]):
        try:
            return candidate.read_bytes()
        except OSError:
            continue
    return None


# -- the executor --------------------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    clone: Path
    log: Path
    job: RunRequest | None = None
    started: float = 0.0
    ready: bool = False
    buffer: bytes = b""

    def send(self, message: Mapping[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(message).encode() + b"\n")
        stdin.flush()


def clean_stale(workdir: Path) -> None:
    """Remove the clones of coalition workers that were killed, once their worker has exited too (a worker
    holds ``<clone>.lock`` while it lives)."""
    if not workdir.is_dir():
        return
    for lock in workdir.glob("*.lock"):
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its worker is still finishing a run
            shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
            shutil.rmtree(lock.with_suffix(".ledger"), ignore_errors=True)
            lock.with_suffix(".log").unlink(missing_ok=True)
            lock.unlink(missing_ok=True)


class DvcExecutorBase:
    """What every executor of DVC coalition runs shares: the checked evidence of finished runs (reuse), the
    coalition manifests written into DVC's cache, and the environment a run's ``dvc exp run`` gets."""

    def __init__(self, project: DvcProject, ledger: Ledger, valued: ValuedData, *, commit: str, metric: str,
                 env: Mapping[str, str] | None = None) -> None:
        self.project = project
        self.ledger = ledger
        self.valued = valued
        self.commit = commit
        self.pipelines = check_record_stage(project, commit)
        self.evidence = _Evidence(project, ledger, commit, self.pipelines, valued, metric)
        self.cache = cache_dir(project.root)
        base_env = dict(os.environ if env is None else env)
        base_env.update({"OPENLEDGER_DIR": str(ledger.root), "DVC_NO_ANALYTICS": "1",
                         "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"})
        base_env.pop(ENV_ATTRIBUTION_RUN, None)
        self.env = base_env
        self.clock: Callable[[], float] = time.monotonic

    # -- reuse ---------------------------------------------------------------------------------------------

    def completed(self, requests: Sequence[RunRequest]) -> dict[str, RunResult]:
        found = self.evidence.experiments()
        results = {}
        for request in requests:
            rev = found.get(request.experiment)
            if rev is None:
                continue
            try:
                results[request.key] = self.evidence.read(request, rev, reused=True)
            except (IntegrityError, NotFoundError):
                continue  # not a complete run (killed before its records): it runs again, under the same name
        return results

    # -- running -------------------------------------------------------------------------------------------

    def materialise(self, request: RunRequest) -> list[dict[str, Any]]:
        """Write each dataset's coalition manifest into DVC's cache; what a worker puts in the .dvc files."""
        changes = []
        for subset in request.data:
            data, digest = subset_manifest(self.valued, subset)
            _write_object(self.cache / "files" / "md5" / digest[:2] / digest[2:], data)
            dvcfile, out = self.valued.dvcfiles[subset.path]
            sizes = self.valued.sizes[subset.path]
            changes.append({"dvcfile": dvcfile, "out": out, "md5": digest, "nfiles": len(subset.files),
                            "size": sum(sizes[relpath] for relpath, _ in subset.files)})
        return changes


class LocalDvcExecutor(DvcExecutorBase):
    """Coalition runs as DVC experiments on this machine, ``jobs`` at a time (see the module docstring).

    A context manager: leaving it stops the workers and removes their clones.
    """

    def __init__(self, project: DvcProject, ledger: Ledger, valued: ValuedData, *, commit: str, metric: str,
                 jobs: int = 1, env: Mapping[str, str] | None = None) -> None:
        if jobs < 1:
            raise BadInputError("-j must be at least 1")
        super().__init__(project, ledger, valued, commit=commit, metric=metric, env=env)
        self.jobs = self.parallelism = jobs
        self.workdir = project.root / WORKDIR
        self.workers: list[_Worker] = []

    def __enter__(self) -> LocalDvcExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(graceful=exc[0] is None)

    def _start(self) -> None:
        clean_stale(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(self.jobs - len(self.workers)):
            clone = Path(tempfile.mkdtemp(prefix="w", dir=self.workdir))
            log = clone.with_suffix(".log")
            process = subprocess.Popen([sys.executable, "-m", "dvc_hooks.coalition_worker"], cwd=self.workdir,
                                       env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
            worker = _Worker(process, clone, log)
            worker.send({"root": str(self.project.root), "rev": self.commit, "clone": str(clone),
                         "lock": str(clone.with_suffix(".lock")), "log": str(log), "cache": str(self.cache)})
            self.workers.append(worker)

    def run(self, requests: Sequence[RunRequest], done: Callable[[RunResult], None]) -> None:
        queue = list(requests)
        if not queue:
            return
        if not self.workers:
            self._start()
        selector = selectors.DefaultSelector()
        try:
            for worker in self.workers:
                assert worker.process.stdout is not None
                selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
                if worker.ready:
                    self._assign(worker, queue)
            while any(w.job is not None for w in self.workers) or (queue and any(not w.ready for w in self.workers)):
                for key, _ in selector.select():
                    worker = key.data
                    for message in self._messages(worker, key.fileobj):
                        self._handle(worker, message, queue, done)
        except BaseException:
            self.close(graceful=False)
            raise
        finally:
            selector.close()
        if queue:
            raise BadInputError("every attribution worker stopped before the runs were made")

    def _messages(self, worker: _Worker, stream: Any) -> Iterator[dict[str, Any]]:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            self._lost(worker)
            return
        worker.buffer += chunk
        while b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            yield json.loads(line)

    def _lost(self, worker: _Worker) -> None:
        worker.process.wait()
        tail = _tail(worker.log)
        self.workers.remove(worker)
        if worker.job is None and not worker.ready:
            raise BadInputError(f"an attribution worker could not start: {tail or 'no message'}")
        if worker.job is not None:
            raise BadInputError(f"an attribution worker died during run {worker.job.experiment}: "
                                f"{tail or 'no message'}")

    def _assign(self, worker: _Worker, queue: list[RunRequest]) -> None:
        if not queue or worker.job is not None:
            return
        job = queue.pop(0)
        worker.job, worker.started = job, self.clock()
        worker.send({"key": job.key, "name": job.experiment, "datasets": self.materialise(job),
                     "params": dict(job.params)})

    def _handle(self, worker: _Worker, message: Mapping[str, Any], queue: list[RunRequest],
                done: Callable[[RunResult], None]) -> None:
        if "ready" in message:
            if not message["ready"]:
                raise BadInputError(f"an attribution worker could not prepare its clone: {message.get('error')}")
            worker.ready = True
            self._assign(worker, queue)
            return
        job = worker.job
        if job is None or message.get("key") != job.key:
            return
        worker.job = None
        seconds = self.clock() - worker.started
        if message.get("ok"):
            try:
                result = self.evidence.read(job, str(message["rev"]), reused=False, seconds=seconds)
            except IntegrityError as exc:
                raise BadInputError(f"run {job.experiment} finished but cannot be checked: {exc.message}",
                                    hint="is `openledger` on PATH for DVC, with a signing key? "
                                         "(`openledger dvc record-stage` signs each run)") from None
        else:
            result = RunResult(job.key, False, experiment=job.experiment, seconds=seconds,
                               error=str(message.get("error") or "the run failed"))
        done(result)
        self._assign(worker, queue)

    def close(self, *, graceful: bool = True) -> None:
        """Stop the workers (at once unless ``graceful``) and remove their clones."""
        workers, self.workers = self.workers, []
        for worker in workers:
            with contextlib.suppress(OSError, ValueError):
                if graceful:
                    assert worker.process.stdin is not None
                    worker.process.stdin.close()
                else:
                    os.killpg(worker.process.pid, signal.SIGINT)
        deadline = time.monotonic() + (30 if graceful else 10)
        for worker in workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(worker.process.pid, signal.SIGKILL)
                worker.process.wait()
            for stream in (worker.process.stdin, worker.process.stdout):
                if stream is not None:
                    _close(stream)
            shutil.rmtree(worker.clone, ignore_errors=True)
            worker.clone.with_suffix(".lock").unlink(missing_ok=True)
            worker.log.unlink(missing_ok=True)


def _close(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        stream.close()


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text("utf-8", errors="replace")
    except OSError:
        return ""
    errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR")]
    chosen = errors[-lines:] or [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " / ".join(chosen)
