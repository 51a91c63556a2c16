"""Every git command OpenLedger runs (the core, the DVC hooks, the MLflow run tags): one place that starts git,
always with a fixed argv, never through a shell, never through gitpython (the record stage and the post-commit
hook run on every repro and commit, and importing gitpython costs more than their work).

>>> import tempfile; git_output(__import__("pathlib").Path(tempfile.mkdtemp()), "rev-parse", "HEAD") is None
True
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openledger.errors import BadInputError

__all__ = ["GitState", "current_branch", "git_blobs", "git_output", "git_run", "git_state", "toplevel"]


def git_run(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``git ARGS`` in ``root`` with text I/O; the caller reads the return code. Bytes that are not UTF-8 (a file
    name in another encoding) survive as surrogate escapes instead of failing the command. An argument with a
    NUL character (a path from a hostile record: no file can have one) fails like a git error, unrun."""
    if any("\x00" in arg for arg in args):
        return subprocess.CompletedProcess(["git", *args], 128, "", "fatal: an argument contains a NUL character")
    return subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, check=False,
                          encoding="utf-8", errors="surrogateescape")


def git_output(root: Path, *args: str, stdin: str | None = None) -> str | None:
    """git's stdout for ``git ARGS`` run in ``root`` (``stdin`` fed to it); ``None`` when git fails, as it does
    outside a repository."""
    result = git_run(root, *args, stdin=stdin)
    return result.stdout if result.returncode == 0 else None


def git_blobs(root: Path, revisions: Sequence[str]) -> list[bytes | None]:
    """The contents of ``<commit>:<path>`` revisions in one ``git cat-file --batch`` (``None`` where git has
    no such object, e.g. the file was deleted in that commit)."""
    if not revisions:
        return []
    request = "".join(f"{revision}\n" for revision in revisions).encode()
    result = subprocess.run(["git", "cat-file", "--batch"], cwd=root, input=request, capture_output=True,
                            check=False)
    if result.returncode != 0:
        raise BadInputError(f"git cat-file failed in {root}: {result.stderr.decode(errors='replace').strip()}")
    output, at = result.stdout, 0
    blobs: list[bytes | None] = []
    for _ in revisions:  # "<oid> blob <size>\n<bytes>\n", or "<name> missing\n"
        header_end = output.index(b"\n", at)
        header = output[at:header_end].split()
        at = header_end + 1
        if header[-1] == b"missing":
            blobs.append(None)
            continue
        size = int(header[2])
        blobs.append(output[at:at + size])
        at += size + 1
    return blobs


def toplevel(root: Path) -> Path | None:
    """The top of the working tree around ``root``; ``None`` outside a git repository."""
    top = git_output(root, "rev-parse", "--show-toplevel")
    return Path(top.strip()) if top else None


def current_branch(root: Path) -> str | None:
    """The checked-out branch, also in a repository with no commit yet; ``None`` when HEAD is detached."""
    return (git_output(root, "symbolic-ref", "--short", "-q", "HEAD") or "").strip() or None


@dataclass(frozen=True, slots=True)
class GitState:
    """HEAD's commit (``None`` before the first commit), branch (``None`` when detached) and whether tracked
    files differ from it."""

    commit: str | None
    branch: str | None
    dirty: bool


def git_state(root: Path, *, ignore: Sequence[str] = ()) -> GitState | None:
    """The state of the repository around ``root``; ``None`` outside one. Dirty means a tracked file under
    ``root`` differs from HEAD, except those matching the ``ignore`` pathspecs (the DVC record stage ignores the
    ``dvc.lock`` files the repro it records rewrites, and the ledger its own recording writes)."""
    head = git_run(root, "rev-parse", "--verify", "-q", "HEAD")
    if head.returncode not in (0, 1) or "fatal" in head.stderr:
        return None  # not a repository (1 with no output is a repository with no commit yet)
    commit = head.stdout.strip() or None
    excludes = [spec if spec.startswith(":(") else f":(exclude){spec}" for spec in ignore]
    dirty = commit is not None and git_run(root, "diff-index", "--quiet", "HEAD", "--", ".",
                                           *excludes).returncode == 1
    return GitState(commit, current_branch(root), dirty)
