"""Coalition runs on a Ray cluster: ``openledger attribute … --executor ray [--address ADDRESS]``.

Each coalition run is one Ray task. On a worker, the task hands the run to a long-lived
:mod:`dvc_hooks.coalition_worker` process of that Ray worker (started on its first task, so DVC is imported
and the repository cloned once per worker, as with the local executor): a clone of the project's git
repository at the valued commit, using a **shared DVC cache**, where ``dvc exp run`` makes the run and the
record stage signs its stages — with the **worker's own key** (``OPENLEDGER_SIGNING_KEY`` in the worker's
environment, else its default key), into a private ledger of that worker, in a feed of the run's own. The
task returns the run's signed stage records, its experiment commit as a git bundle, and where it ran.

The driver (whoever ran ``attribute``) accepts a result only when it checks out:

* every stage record opens (id, signature by its actor, schema), is a stage record of this run, and is
  signed by a key the project's trust mode accepts at the record's time (``tofu``: a published identity;
  ``endorsed``: an endorsement) — one key per run;
* every stage that reads a valued dataset read the coalition's data (the DVC hash it signed is the
  coalition's manifest), and the experiment commit's ``.dvc`` file names it too;
* the experiment commit's ``dvc.lock`` has a signed record for each of its stages (the local executor's
  checks, :meth:`_Evidence.read`), and the metric comes from that commit.

The experiment commit's objects enter the project's repository first, referenced by nothing while the
run is checked. Then the records enter the project's ledger as they are (:meth:`Ledger.receive`) and the
experiment commit becomes ``refs/exps/…`` in the project's repository, exactly where the local executor's
runs are: a later attribution, on either executor, reuses it. A result that does not check out is rejected
and the run is submitted again, on another node when there is one; ``rejections`` rejections give the run
up (exit 2).

Where the code and data come from (docs/cluster.md): workers clone ``attribution.ray.repo`` (default: the
project's directory, so on a cluster it must be on a shared filesystem at the same path) and use the DVC cache
``attribution.ray.cache`` (default: the project's cache, likewise shared), which holds the valued files and the
coalition manifests the driver writes. Ray itself is imported only by this module (the ``ray`` extra).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dvc_hooks.attribution import DvcExecutorBase, ValuedData, clean_stale, subset_manifest
from dvc_hooks.project import DvcProject
from dvc_hooks.record import ENV_ATTRIBUTION_RUN
from openledger.attribution.runs import RunRequest, RunResult
from openledger.errors import BadInputError, OpenLedgerError
from openledger.store.keys import KeyStore, short_keyid
from openledger.store.ledger import Ledger
from openledger.store.records import Record, open_record

__all__ = ["RayDvcExecutor", "RaySettings", "prepare_worker", "run_coalition"]

_HEX40 = re.compile(r"[0-9a-f]{40}")
MAX_BUNDLE = 64 << 20  # an experiment commit holds .dvc files, dvc.lock, small metrics: far less


@dataclass(frozen=True)
class RaySettings:
    """``attribution.ray`` in config.yaml (docs/cluster.md); ``--address`` wins over ``address``."""

    address: str | None = None  # None: RAY_ADDRESS, else a Ray instance started on this machine
    repo: str | None = None  # what workers clone (None: the project's directory)
    cache: str | None = None  # the DVC cache workers use (None: the project's)
    workdir: str | None = None  # where workers keep their clones (None: their temporary directory)
    cpus: float = 1.0  # CPUs a run reserves
    retries: int = 3  # Ray retries of a run whose worker died
    rejections: int = 3  # results of one run rejected before it is given up
    runtime_env: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, *, address: str | None = None) -> RaySettings:
        """From ``attribution.ray``, which :class:`~openledger.config.LedgerConfig` has checked against its
        schema (types, bounds, no unknown setting) when the ledger was opened."""
        section = section or {}
        return cls(address=address or section.get("address"), repo=section.get("repo"), cache=section.get("cache"),
                   workdir=section.get("workdir"), cpus=float(section.get("cpus", 1.0)),
                   retries=int(section.get("retries", 3)), rejections=int(section.get("rejections", 3)),
                   runtime_env=dict(section.get("runtime_env") or {}))


# -- on a worker ---------------------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The coalition worker ends with the Ray worker that started it (a killed Ray worker leaves no run)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Session:
    """One coalition worker process of this Ray worker, with its clone and its private ledger."""

    def __init__(self, setup: Mapping[str, Any]) -> None:
        KeyStore().load_signer()  # no key, no signed runs: say so before cloning anything
        workdir = Path(setup.get("workdir") or tempfile.gettempdir()) / "openledger-ray"
        workdir.mkdir(parents=True, exist_ok=True)
        clean_stale(workdir)
        self.clone = Path(tempfile.mkdtemp(prefix="w", dir=workdir))
        self.ledger = Ledger.init(self.clone.with_suffix(".ledger"))  # the record stage signs into it
        self.log = self.clone.with_suffix(".log")
        env = dict(os.environ)
        env.update({"OPENLEDGER_DIR": str(self.ledger.root), "DVC_NO_ANALYTICS": "1",
                     "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
        env.pop(ENV_ATTRIBUTION_RUN, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dvc_hooks.coalition_worker"], cwd=workdir, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # noqa: PLW1509
        self._send({**setup, "clone": str(self.clone), "lock": str(self.clone.with_suffix(".lock")),
                    "log": str(self.log), "push": False})
        ready = self._receive()
        if not ready.get("ready"):
            self.close()
            raise RuntimeError(f"could not prepare a clone: {ready.get('error')}")

    def _send(self, message: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the coalition worker exited ({self.process.wait()})")
        answer = json.loads(line)
        assert isinstance(answer, dict)
        return answer

    def ask(self, job: Mapping[str, Any]) -> dict[str, Any]:
        self._send(job)
        return self._receive()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.ledger.close()
        for path in (self.clone, self.ledger.root.parent):
            shutil.rmtree(path, ignore_errors=True)
        for suffix in (".lock", ".log"):
            self.clone.with_suffix(suffix).unlink(missing_ok=True)


_SESSIONS: dict[str, _Session] = {}


@atexit.register
def _close_sessions() -> None:
    while _SESSIONS:
        _SESSIONS.popitem()[1].close()


def _session(setup: Mapping[str, Any]) -> _Session:
    name = json.dumps(setup, sort_keys=True)
    session = _SESSIONS.get(name)
    if session is not None and session.process.poll() is None:
        return session
    _close_sessions()  # another attribution's (or a dead) worker: one clone per Ray worker at a time
    _SESSIONS[name] = session = _Session(setup)
    return session


def _bundle(clone: Path, ref: str, base: str) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "run.bundle"
        done = subprocess.run(["git", "bundle", "create", "-q", str(path), ref, f"^{base}"], cwd=clone,
                              capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"git bundle: {done.stderr.decode('utf-8', 'replace').strip()}")
        return path.read_bytes()


def prepare_worker(setup: Mapping[str, Any]) -> bool:
    """A Ray task that prepares this worker's clone ahead of its first run (False when it cannot: the run then
    says why)."""
    try:
        _session(setup)
    except Exception:
        return False
    return True


def run_coalition(setup: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """One coalition run, as a Ray task (see the module docstring). Never raises for a run that fails: the
    answer says so (``infra`` when the worker could not run it at all, which the driver does not count)."""
    started = time.monotonic()
    where: dict[str, Any] = {"key": job["key"], "host": socket.gethostname(), "pid": os.getpid()}
    with contextlib.suppress(Exception):
        import ray

        where["node"] = ray.get_runtime_context().get_node_id()
    try:
        session = _session(setup)
        answer = session.ask(job)
    except Exception as exc:  # a worker that cannot run anything: not the run's failure
        return {**where, "ok": False, "infra": True, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    seconds = time.monotonic() - started
    if not answer.get("ok"):
        return {**where, "ok": False, "error": str(answer.get("error") or "the run failed"), "seconds": seconds}
    try:
        bundle = _bundle(session.clone, str(answer["ref"]), str(setup["rev"]))
        ledger = session.ledger
        records = [ledger.stored_bytes(i) for i in ledger.ids(kind="stage", links_to=str(job["key"]))]
    except Exception as exc:
        return {**where, "ok": False, "infra": True, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    return {**where, "ok": True, "rev": answer["rev"], "ref": answer["ref"], "bundle": bundle,
            "records": records, "seconds": seconds}


# -- on the driver -------------------------------------------------------------------------------------------


class _RejectedError(Exception):
    """A worker's result that does not check out (the message says why)."""


class RayDvcExecutor(DvcExecutorBase):
    """Coalition runs as Ray tasks (see the module docstring). A context manager: leaving it disconnects."""

    def __init__(self, project: DvcProject, ledger: Ledger, valued: ValuedData, *, commit: str, metric: str,
                 settings: RaySettings, env: Mapping[str, str] | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        super().__init__(project, ledger, valued, commit=commit, metric=metric, env=env)
        self.settings = settings
        self.trust = ledger.trust()
        self.warn = warn or (lambda message: None)
        self.workers: Counter[str] = Counter()  # worker key -> runs accepted from it
        self.rejected: list[tuple[str, str]] = []  # (experiment, why)
        self.setup = {"root": settings.repo or str(project.root), "rev": commit,
                      "cache": settings.cache or str(self.cache), "workdir": settings.workdir}
        self._connected = False
        self._stdout = sys.stdout
        self._warmed = False
        self._width = 1
        self._warming: list[Any] = []

    def __enter__(self) -> RayDvcExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._connected:
            import ray

            try:
                ray.shutdown()
            finally:
                self._connected = False
                sys.stdout = self._stdout

    def describe(self) -> dict[str, Any]:
        """What the attribution record says about this executor: which worker keys made how many runs."""
        return {"kind": "ray", "address": self.settings.address, "cpus_per_run": self.settings.cpus,
                "workers": dict(sorted(self.workers.items())), "rejected": len(self.rejected)}

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise BadInputError("--executor ray needs Ray", hint="pip install 'openledger-mlops[ray]'") from None
        if not ray.is_initialized():
            _reachable(self.settings.address)
            # Ray's driver prints the cluster's messages ("a worker died …") to sys.stdout from a thread of its
            # own; stdout is the command's output (JSON), so they go to stderr until ray.shutdown() ends it.
            self._stdout, sys.stdout = sys.stdout, sys.stderr
            self._connected = True
            try:
                ray.init(address=self.settings.address, runtime_env=dict(self.settings.runtime_env) or None,
                         logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                self.__exit__(None, None, None)
                where = self.settings.address or os.environ.get("RAY_ADDRESS") or "a local instance"
                raise BadInputError(f"cannot reach the Ray cluster at {where}: {str(exc).splitlines()[0]}",
                                    hint="start one with `ray start --head`, and pass its address with --address "
                                         "(docs/cluster.md)") from None
        return ray

    @property
    def parallelism(self) -> int:
        """Runs the cluster makes at a time (its CPUs over a run's). Asking connects, and starts preparing a
        clone on each worker while the first runs are decided."""
        ray = self._connect()
        if not self._warmed:
            self._warmed = True
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            self._width = max(1, int(cpus // self.settings.cpus))
            warm = ray.remote(prepare_worker).options(num_cpus=self.settings.cpus, max_retries=0)
            self._warming = [warm.remote(self.setup) for _ in range(self._width)]
        return self._width

    def _job(self, request: RunRequest) -> dict[str, Any]:
        return {"key": request.key, "name": request.experiment, "datasets": self.materialise(request),
                "params": dict(request.params), "feed": f"run-{request.key[8:24]}-{uuid.uuid4().hex[:8]}"}

    def run(self, requests: Sequence[RunRequest], done: Callable[[RunResult], None]) -> None:
        if not requests:
            return
        ray = self._connect()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(run_coalition)
        pending: dict[Any, RunRequest] = {}
        rejections: Counter[str] = Counter()

        def submit(request: RunRequest, avoid: str | None = None) -> None:
            options: dict[str, Any] = {"num_cpus": self.settings.cpus, "max_retries": self.settings.retries,
                                       "retry_exceptions": False}
            if avoid:  # elsewhere, when the cluster has another node with room for a run
                others = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["NodeID"] != avoid
                                and n.get("Resources", {}).get("CPU", 0) >= self.settings.cpus)
                if others:
                    chosen = others[rejections[request.key] % len(others)]
                    options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(chosen, soft=True)
            pending[task.options(**options).remote(self.setup, self._job(request))] = request

        for request in requests:
            submit(request)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    request = pending.pop(ref)
                    try:
                        answer = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        raise BadInputError(
                            f"run {request.experiment} failed on the cluster {self.settings.retries + 1} times: "
                            f"{_first_line(exc)}", hint="see the workers' logs (docs/cluster.md)") from None
                    try:
                        result = self._accept(request, answer)
                    except _RejectedError as exc:
                        why = str(exc)
                        rejections[request.key] += 1
                        self.rejected.append((request.experiment, why))
                        if rejections[request.key] >= self.settings.rejections:
                            raise BadInputError(f"run {request.experiment}: {rejections[request.key]} results "
                                                f"rejected, the last: {why}",
                                                hint="docs/cluster.md says what a worker needs") from None
                        self.warn(f"rejected the result of run {request.experiment} from "
                                  f"{answer.get('host') if isinstance(answer, dict) else '?'}: {why}; running it again")
                        submit(request, avoid=answer.get("node") if isinstance(answer, dict) else None)
                        continue
                    done(result)
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise

    # -- checking a worker's result ------------------------------------------------------------------------

    def _accept(self, request: RunRequest, answer: Any) -> RunResult:
        if not isinstance(answer, dict) or answer.get("key") != request.key:
            raise _RejectedError("the answer is not for this run")
        worker = {"host": str(answer.get("host"))[:200], "node": str(answer.get("node"))[:64]}
        seconds = answer.get("seconds")
        seconds = float(seconds) if isinstance(seconds, int | float) and 0 <= seconds < 1e9 else 0.0  # NaN: 0
        if answer.get("infra"):
            raise _RejectedError(f"the worker could not run it: {str(answer.get('error'))[:500]}")
        if not answer.get("ok"):
            return RunResult(request.key, False, experiment=request.experiment, seconds=seconds,
                             error=str(answer.get("error") or "the run failed")[:2000], evidence={"worker": worker})
        records = self._records(request, answer.get("records"))
        rev = answer.get("rev")
        if not isinstance(rev, str) or not _HEX40.fullmatch(rev) or not isinstance(answer.get("bundle"), bytes):
            raise _RejectedError("no experiment commit")
        if len(answer["bundle"]) > MAX_BUNDLE:
            raise _RejectedError(f"its experiment bundle is over {MAX_BUNDLE >> 20} MiB")
        by_link = {link: record for record in records for link in record.links}
        self._unbundle(answer["bundle"], str(answer.get("ref")), rev)
        try:
            result = self.evidence.read(request, rev, reused=False, seconds=seconds, find_stage=by_link.get)
        except OpenLedgerError as exc:
            raise _RejectedError(exc.message) from None
        except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _RejectedError(f"its experiment commit does not parse: {_first_line(exc)}") from None
        with _interrupts_deferred():  # the records and the ref that makes them reusable land together
            self.ledger.receive(records)
            self._git("update-ref", f"refs/exps/{self.commit[:2]}/{self.commit[2:]}/{request.experiment}", rev)
        self.workers[records[0].actor] += 1
        return replace(result, evidence={**result.evidence, "worker": worker})

    def _records(self, request: RunRequest, raw: Any) -> list[Record]:
        if not isinstance(raw, list) or not raw or not all(isinstance(r, bytes) for r in raw):
            raise _RejectedError("no signed stage records")
        try:
            records = [open_record(data) for data in raw]
        except OpenLedgerError as exc:
            raise _RejectedError(f"a stage record does not check out: {exc.message}") from None
        actors = {r.actor for r in records}
        if len(actors) != 1:
            raise _RejectedError("its stage records are signed by more than one key")
        expected = {s.path: "md5:" + subset_manifest(self.valued, s)[1] for s in request.data}
        read: set[str] = set()
        for record in records:
            body = record.body
            if record.kind != "stage" or body.get("attribution_run") != request.key or request.key not in record.links:
                raise _RejectedError(f"record {record.id} is not a stage record of this run")
            status = self.trust.status(record.actor, record.time)
            if status is not None:
                raise _RejectedError(f"worker key {short_keyid(record.actor)} is not trusted here ({status}): publish "
                                "or endorse it (docs/cluster.md)")
            for dep in body.get("deps") or []:
                path = dep.get("path") if isinstance(dep, dict) else None
                if path in expected:
                    if dep.get("hash") != expected[path]:
                        read_at = str(dep.get("hash"))[:40]
                        raise _RejectedError(f"stage {body.get('name')!r} read {path} at {read_at}, not the "
                                             "coalition's data")
                    read.add(path)
        unread = sorted(set(expected) - read)
        if unread:
            raise _RejectedError(f"no signed stage read {unread[0]}")
        return records

    def _git(self, *args: str) -> bytes:
        done = subprocess.run(["git", *args], cwd=self.project.root, capture_output=True, check=False)
        if done.returncode != 0:
            raise _RejectedError(f"git {args[0]}: {done.stderr.decode('utf-8', 'replace').strip()[:300]}")
        return done.stdout

    def _unbundle(self, bundle: bytes, name: str, rev: str) -> None:
        """The worker's experiment commit into the project's object store, referenced by nothing yet (one git
        command: no ref is written until the run is accepted; a rejected run's objects are garbage)."""
        if not name.startswith("refs/exps/"):
            raise _RejectedError("the bundle does not hold an experiment")
        with tempfile.NamedTemporaryFile(suffix=".bundle") as handle:
            handle.write(bundle)
            handle.flush()
            heads = self._git("bundle", "unbundle", handle.name).decode("utf-8", "replace").splitlines()
        if f"{rev} {name}" not in heads:
            raise _RejectedError("the bundle does not hold the experiment commit")


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (they are delivered, and raise, right after it)."""
    signals = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail at once, in one line, when a ``HOST:PORT`` address does not answer (Ray would retry for minutes)."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BadInputError(f"--address {address!r} is not HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BadInputError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
                            hint="start one with `ray start --head`, and pass its address with --address "
                                 "(docs/cluster.md)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
