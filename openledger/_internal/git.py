"""The git commands the core runs (code authors, commits records name, the current branch): one place that
starts git, always with a fixed argv and never through a shell.

>>> import tempfile; git_output(__import__("pathlib").Path(tempfile.mkdtemp()), "rev-parse", "HEAD") is None
True
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["current_branch", "git_blobs", "git_output"]


def git_output(root: Path, *args: str, stdin: str | None = None) -> str | None:
    """git's stdout for ``git ARGS`` run in ``root`` (``stdin`` fed to it); ``None`` when git fails, as it does
    outside a repository."""
    result = subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


def git_blobs(root: Path, specs: list[str]) -> list[bytes | None]:
    """The bytes of each ``<rev>:<path>`` in ``specs`` (``None`` where git has none), from one
    ``git cat-file --batch``; all ``None`` outside a repository."""
    if not specs:
        return []
    result = subprocess.run(["git", "cat-file", "--batch"], cwd=root, input="".join(f"{s}\n" for s in specs).encode(),
                            capture_output=True, check=False)
    output, at = result.stdout, 0
    found: list[bytes | None] = []
    for _ in specs:
        end = output.find(b"\n", at)
        header = output[at:end].split() if end >= 0 else []
        at = end + 1
        if len(header) < 3 or header[-1] == b"missing":
            found.append(None)
            continue
        size = int(header[2])
        found.append(output[at:at + size])
        at += size + 1
    return found


def current_branch(root: Path) -> str | None:
    """The checked-out branch, also in a repository with no commit yet; ``None`` when HEAD is detached."""
    return (git_output(root, "symbolic-ref", "--short", "-q", "HEAD") or "").strip() or None
