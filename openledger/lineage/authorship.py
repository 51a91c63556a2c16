"""Who wrote what, from git: one engine for code credit (the authors of the files a training stage depends on)
and dataset credit (the author of each version of a DVC-tracked file, and per file of a directory version).

* :class:`CodeAuthorship` answers "who wrote FILES, up to COMMIT" (every commit that touched them, as
  ``git log COMMIT -- FILES`` lists them) for many commits at once, with a handful of git processes.
* :func:`file_history` lists every version of one file along history (commit, author, time, bytes), and
  :func:`blame_manifests` carries file ownership across versions of a ``{file: digest}`` manifest: a file keeps
  the author who added it until a version changes it (a file-level ``git blame``).

>>> blame_manifests([({"a": "1"}, "ann"), ({"a": "1", "b": "2"}, "ben"), ({"a": "3", "b": "2"}, "cat")])
[{'a': 'ann'}, {'a': 'ann', 'b': 'ben'}, {'a': 'cat', 'b': 'ben'}]
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from openledger.lineage.git import git_blobs, git_output, git_run

__all__ = ["Author", "Change", "CodeAuthor", "CodeAuthorship", "blame_manifests", "code_authors", "file_history",
           "git_user", "is_commit_id", "parse_log"]

_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
LOG_FORMAT = "--format=%H%x00%an%x00%ae"
_Credit = TypeVar("_Credit")


def is_commit_id(value: Any) -> bool:
    """A full SHA-1 or SHA-256 commit id, as git prints them."""
    return isinstance(value, str) and _COMMIT.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Author:
    """A git author as the commit names them (unauthenticated: git lets anyone write any name)."""

    name: str
    email: str

    @property
    def key(self) -> str:
        """What makes two commits the same author's: the email, case-insensitively (the name if there is none)."""
        return self.email.lower() or self.name


@dataclass(frozen=True, slots=True)
class Change:
    """A commit as ``git log --name-only`` shows it: its id, author and the files it changed."""

    sha: str
    author: Author
    files: frozenset[str]


@dataclass(frozen=True, slots=True)
class CodeAuthor:
    """One author of a set of files: the commits they made that touched them, and which of the files."""

    name: str
    email: str
    commits: tuple[str, ...]
    files: tuple[str, ...]


def parse_log(output: str) -> list[Change]:
    """``git log --format=%H%x00%an%x00%ae --name-only`` output, commit by commit in git's order."""
    changes: list[tuple[str, Author, set[str]]] = []
    for line in output.splitlines():
        if "\0" in line:
            sha, name, email = line.split("\0")
            changes.append((sha, Author(name, email), set()))
        elif line.strip() and changes:
            changes[-1][2].add(line.strip())
    return [Change(sha, author, frozenset(files)) for sha, author, files in changes]


def code_authors(changes: Iterable[Change]) -> list[CodeAuthor]:
    """Authors of commits (newest first): by commits made, then email; each with the files they touched."""
    authors: dict[str, tuple[str, str, list[str], set[str]]] = {}
    for change in changes:
        entry = authors.setdefault(change.author.email.lower(), (change.author.name, change.author.email, [], set()))
        entry[2].append(change.sha)
        entry[3].update(change.files)
    return [CodeAuthor(name, email, tuple(commits), tuple(sorted(touched)))
            for name, email, commits, touched in sorted(authors.values(), key=lambda a: (-len(a[2]), a[1]))]


class CodeAuthorship:
    """Who wrote which files of one repository, asked many times (a report over fifty model versions asks about
    each one's training code): answers are remembered, and :meth:`prefetch` answers many at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tracked: dict[tuple[str, ...], list[str]] = {}
        self._authors: dict[tuple[str, tuple[str, ...]], list[CodeAuthor]] = {}

    def git(self, *args: str, stdin: str | None = None) -> str | None:
        """git's output in the repository; None when git fails (tests count these calls)."""
        return git_output(self.root, *args, stdin=stdin)

    def tracked(self, paths: Sequence[str]) -> list[str]:
        """Which of ``paths`` git tracks (code, configs), not DVC-tracked data."""
        key = tuple(paths)
        if key not in self._tracked:
            names = [path for path in key if "\x00" not in path]  # no file has one: a hostile record's path
            tracked = (self.git("ls-files", "--", *names) or "").split() if names else []
            self._tracked[key] = sorted(set(tracked))
        return list(self._tracked[key])

    def authors(self, commit: Any, files: Sequence[str]) -> list[CodeAuthor]:
        """Who wrote ``files`` up to ``commit`` (every commit that touched them); none for an unknown commit."""
        if not files or not is_commit_id(commit):
            return []
        key = (commit, tuple(files))
        if key not in self._authors:
            log = self.git("log", LOG_FORMAT, "--name-only", commit, "--", *files)
            self._authors[key] = code_authors(parse_log(log or "")) if log is not None else []
        return list(self._authors[key])

    def prefetch(self, questions: Iterable[tuple[Any, Sequence[str]]]) -> None:
        """Answer several (commit, files) questions with three git calls where that gives git's own answers.

        ``git log C -- FILES`` walks C's ancestry and shows the commits that changed FILES. Without merges
        that walk is a chain, so one ``rev-list --parents`` (the chains) and one ``git log`` of all the commits
        together (who changed what) answer every C. Merges are where git's history simplification prunes
        side branches; a history with any, a single file (``log.follow`` may apply) or a commit the chains do
        not reach is left to one ``git log`` per question (:meth:`authors`).
        """
        by_files: dict[tuple[str, ...], dict[str, None]] = defaultdict(dict)  # files -> commits, in order
        for commit, files in questions:
            key = tuple(files)
            if is_commit_id(commit) and (commit, key) not in self._authors and len(key) > 1:
                by_files[key][commit] = None
        for paths, commits in by_files.items():
            revs = "".join(f"{commit}\n" for commit in commits)  # on stdin: thousands would overflow argv
            if len(commits) < 2 or self.git("rev-list", "--min-parents=2", "--count", "--stdin", "--",
                                            stdin=revs) != "0\n":
                continue
            chains = self.git("rev-list", "--parents", "--stdin", "--", stdin=revs)
            log = self.git("log", LOG_FORMAT, "--name-only", "--stdin", "--", *paths, stdin=revs) if chains else None
            if chains is None or log is None:
                continue
            parent: dict[str, str | None] = {}
            for line in chains.splitlines():
                child, *parents = line.split()
                parent[child] = parents[0] if parents else None
            changed = {change.sha: change for change in parse_log(log)}
            for commit in commits:
                if commit not in parent:
                    continue  # not a commit id as rev-list spells it (a tag's id, say): asked on its own
                chain: list[Change] = []
                at: str | None = commit
                while at is not None:
                    if at in changed:
                        chain.append(changed[at])
                    at = parent.get(at)
                self._authors[(commit, paths)] = code_authors(chain)


def git_user(root: Path) -> Author:
    """Who is committing here (git's ``user.name`` and ``user.email``): the author of work not committed yet."""
    name = (git_output(root, "config", "--get", "user.name") or "").strip() or "unknown"
    return Author(name, (git_output(root, "config", "--get", "user.email") or "").strip())


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One commit that changed a file: its id, author, author time (ISO 8601) and the file's bytes in it
    (``None`` where the commit deleted it)."""

    commit: str
    author: Author
    time: str
    content: bytes | None


def file_history(root: Path, path: str) -> list[FileVersion]:
    """Each commit that changed ``path``, oldest first (as ``git log --reverse --topo-order`` lists them), with
    the file's bytes in it. Two git processes whatever the length of the history; no commits is no history."""
    log = git_run(root, "log", "--reverse", "--topo-order", "--format=%H%x00%an%x00%ae%x00%aI", "--", path)
    if log.returncode != 0:
        return []
    commits = [line.split("\0") for line in log.stdout.splitlines() if line]
    blobs = git_blobs(root, [f"{sha}:{path}" for sha, *_ in commits])
    return [FileVersion(sha, Author(name, email), when, content)
            for (sha, name, email, when), content in zip(commits, blobs, strict=True)]


def blame_manifests(versions: Sequence[tuple[Mapping[str, str], _Credit]]) -> list[dict[str, _Credit]]:
    """File-level blame across versions of a ``{file: digest}`` manifest, oldest first: each file of each version
    is credited to the version that last added or changed it (a file keeps its owner until a version changes
    it; a file deleted and added again is new)."""
    owners: dict[str, _Credit] = {}
    previous: Mapping[str, str] = {}
    blamed: list[dict[str, _Credit]] = []
    for manifest, credit in versions:
        owners = {path: (owners[path] if previous.get(path) == digest and path in owners else credit)
                  for path, digest in manifest.items()}
        blamed.append(owners)
        previous = manifest
    return blamed
