"""One worker of ``openledger attribute``'s local executor: ``dvc exp run`` for one coalition after another, in
a private clone of the repository (see :mod:`dvc_hooks.attribution`).

Protocol, one JSON object per line. The driver sends the setup first (``root``, ``rev``, ``clone``, ``lock``,
``log``, ``cache``), the worker answers ``{"ready": true}`` (or ``{"ready": false, "error": …}``), then each
job (``key``, ``name``, ``datasets``: the ``.dvc`` outs to point at the coalition's manifest, ``params``: the
overrides, optionally ``feed``: the feed its records are signed into) is answered with ``{"key", "ok", "rev",
"ref", "error"}``. With ``"push": false`` in the setup the experiment stays in the clone (a cluster worker
returns it to the driver as a git bundle). End of input ends the worker.

DVC and the pipeline's commands write to the log file, never to the protocol: file descriptors 0, 1 and 2
are moved away before DVC is imported. The worker holds an exclusive lock on ``lock`` while it lives, so a
later attribution removes the clone of a killed one only after its last run has finished.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from dvc_hooks.record import ENV_ATTRIBUTION_RUN
from openledger.store.keys import ENV_FEED


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:2])}: {result.stderr.strip()}")
    return result.stdout.strip()


def _setting(root: Path, name: str) -> str | None:
    result = subprocess.run(["git", "config", "--get", name], cwd=root, capture_output=True, text=True, check=False)
    return result.stdout.strip() or None


def _has_cache_type(root: Path) -> bool:
    import configparser

    for name in ("config", "config.local"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read(root / ".dvc" / name, encoding="utf-8")
        except configparser.Error:
            continue
        if parser.get("cache", "type", fallback=None):
            return True
    return False


def prepare_clone(setup: dict[str, Any]) -> None:
    """A clone of the project at the valued commit, using the project's DVC cache and git identity."""
    root, clone, rev = Path(setup["root"]), Path(setup["clone"]), str(setup["rev"])
    shutil.rmtree(clone, ignore_errors=True)
    _git(root, "clone", "-q", "--shared", "--no-checkout", str(root), str(clone))
    _git(clone, "checkout", "-q", "--detach", rev)
    for name in ("user.name", "user.email"):
        value = _setting(root, name)
        if value:
            _git(clone, "config", name, value)
    local = root / ".dvc" / "config.local"
    if local.is_file():
        shutil.copyfile(local, clone / ".dvc" / "config.local")
    # A coalition's training must not log to the project's tracking server or register a model version there
    # (nor sign MLflow records for it): MLflow writes to a store of this clone's own, deleted with it.
    store = f"sqlite:///{clone / '.dvc' / 'tmp' / 'openledger-mlflow.db'}"
    os.environ.update({"MLFLOW_TRACKING_URI": store, "MLFLOW_REGISTRY_URI": store})
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(name, None)
    from dvc.cli import main

    os.chdir(clone)
    if main(["config", "--local", "cache.dir", str(setup["cache"])]) != 0:
        raise RuntimeError("dvc config cache.dir failed")
    # Links, not copies, from the cache into the clone unless the project chose: a coalition run then costs no
    # copy of the data (DVC protects linked cache files by making them read-only).
    if not _has_cache_type(root) and main(["config", "--local", "cache.type", "reflink,hardlink,copy"]) != 0:
        raise RuntimeError("dvc config cache.type failed")


def _point_dvcfile(clone: Path, change: dict[str, Any]) -> None:
    """Make the ``.dvc`` file's out name the coalition's manifest (DVC's own YAML round trip keeps the rest)."""
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(clone / change["dvcfile"])) as data:
        for out in data.get("outs") or []:
            if out.get("path") == change["out"]:
                out["md5"] = change["md5"]
                out["size"] = change["size"]
                out["nfiles"] = change["nfiles"]
                out["hash"] = "md5"
                break
        else:
            raise RuntimeError(f"{change['dvcfile']} has no out {change['out']!r}")


def _errors_since(log: Path, offset: int) -> str:
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return " / ".join((errors or lines)[-3:])[:2000]


def run_job(setup: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    from dvc.cli import main

    clone, rev, log = Path(setup["clone"]), str(setup["rev"]), Path(setup["log"])
    offset = log.stat().st_size if log.exists() else 0
    try:
        for change in job["datasets"]:
            # `dvc exp run` first commits the workspace's data into its .dvc files ("to preserve state"): with
            # the last run's files still checked out it would undo the change. With none, it keeps the .dvc
            # file, and checks the coalition's files out of the cache.
            out = (clone / change["dvcfile"]).parent / change["out"]
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            else:
                out.unlink(missing_ok=True)
            _point_dvcfile(clone, change)
        # Staged, so that DVC's stash of the workspace sees the change: a .dvc file rewritten within the second
        # `git reset` wrote it, with the same size, looks unchanged to a stat-based check.
        _git(clone, "add", "--", *(str(c["dvcfile"]) for c in job["datasets"]))
        os.environ[ENV_ATTRIBUTION_RUN] = str(job["key"])
        if job.get("feed"):  # a feed of the run's own, so its records form a chain that stands alone
            os.environ[ENV_FEED] = str(job["feed"])
        ref = f"refs/exps/{rev[:2]}/{rev[2:]}/{job['name']}"
        # a run asked for again (its earlier result was rejected): this clone's earlier experiment makes way
        subprocess.run(["git", "update-ref", "-d", ref], cwd=clone, capture_output=True, check=False)
        overrides = [arg for name, value in sorted(job["params"].items()) for arg in ("-S", f"{name}={value}")]
        code = main(["exp", "run", "-n", str(job["name"]), *overrides])
        if code != 0:
            return {"key": job["key"], "ok": False, "error": _errors_since(log, offset) or f"dvc exited {code}"}
        sha = _git(clone, "rev-parse", "--verify", ref)
        if setup.get("push", True):  # what `dvc exp push` does, to the project (a cluster's driver fetches it)
            _git(clone, "push", "-q", "--force", "origin", f"{ref}:{ref}")
        return {"key": job["key"], "ok": True, "rev": sha, "ref": ref}
    except Exception as exc:  # a failed run is an answer, not a crash
        return {"key": job["key"], "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        os.environ.pop(ENV_ATTRIBUTION_RUN, None)
        if job.get("feed"):
            os.environ.pop(ENV_FEED, None)
        subprocess.run(["git", "reset", "-q", "--hard"], cwd=clone, capture_output=True, check=False)


def _send(channel: IO[bytes], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message).encode() + b"\n")
    channel.flush()


def main() -> int:
    commands = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    setup = json.loads(commands.readline())
    lock = Path(setup["lock"]).open("a")  # noqa: SIM115 - held for the life of the process
    fcntl.flock(lock, fcntl.LOCK_EX)
    log = os.open(setup["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # a stage command reading stdin must not eat the protocol
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        prepare_clone(setup)
    except Exception as exc:
        _send(answers, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _send(answers, {"ready": True})
    for line in commands:
        if line.strip():
            _send(answers, run_job(setup, json.loads(line)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
