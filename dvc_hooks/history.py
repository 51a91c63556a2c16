"""Who contributed each version of a DVC-tracked dataset, from git history and DVC's ``.dir`` manifests.

A version is one hash of a ``.dvc`` file's out. Its contributor is the author of the commit that introduced
it (the git user, for a version not committed yet). For a directory, credit is per file: every file of the
version is credited to the author of the commit that last added or changed it (a file-level ``git blame``
over the ``.dir`` manifests), so a dataset five people built credits each of them for their own files.
Manifests are read from the local DVC cache; a version whose manifest is not there is credited as a whole
to its commit's author and marked ``complete: false``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from dvc_hooks.lockfile import Artifact, cached_size, read_dir_manifest

if TYPE_CHECKING:
    import git

__all__ = ["Author", "DatasetVersion", "dataset_versions", "git_state"]

# Paths credited per contributor are listed in full up to this many; beyond it, counts and bytes only.
MAX_LISTED_PATHS = 1000


@dataclass(frozen=True, slots=True)
class Author:
    name: str
    email: str

    @property
    def key(self) -> str:
        return self.email.lower() or self.name


@dataclass(slots=True)
class DatasetVersion:
    """One version of one dataset path, with per-file credit."""

    path: str
    artifact: Artifact
    commit: str | None
    author: Author
    time: str | None
    owners: dict[str, tuple[Author, str | None]] = field(default_factory=dict)  # file -> (author, commit)
    complete: bool = True
    manifest: dict[str, str] | None = None  # file -> digest, for a directory whose .dir manifest is cached

    def contributors(self, cache: Path, identities: dict[str, str]) -> list[dict[str, Any]]:
        """Each author with the files credited to them in this version (sorted by files, then email)."""
        if not self.artifact.is_dir:
            return [_contributor(self.author, [self.commit], None, self.artifact.size, identities)]
        if self.manifest is None:  # the .dir manifest is not in this cache: the version as a whole
            whole = _contributor(self.author, [self.commit], None, self.artifact.size, identities)
            whole["files"] = self.artifact.nfiles or 0
            return [whole]
        by_author: dict[str, tuple[Author, set[str | None], list[str]]] = {}
        for relpath, (author, commit) in self.owners.items():
            entry = by_author.setdefault(author.key, (author, set(), []))
            entry[1].add(commit)
            entry[2].append(relpath)
        manifest = self.manifest or {}
        result = []
        for author, commits, paths in by_author.values():
            sizes = [cached_size(cache, manifest[p]) if p in manifest else None for p in paths]
            size = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
            result.append(_contributor(author, sorted(commits, key=str), sorted(paths), size, identities))
        result.sort(key=lambda c: (-c["files"], c["email"]))
        return result


def _contributor(author: Author, commits: Iterable[str | None], paths: list[str] | None, size: int | None,
                 identities: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": author.name, "email": author.email, "role": "data",
                             "commits": [c for c in commits if c], "files": len(paths) if paths is not None else 1}
    keyid = identities.get(author.email.lower())
    if keyid:
        entry["key"] = keyid
    if size is not None:
        entry["bytes"] = size
    if paths is not None:
        entry["paths"] = paths[:MAX_LISTED_PATHS]
        if len(paths) > MAX_LISTED_PATHS:
            entry["paths_truncated"] = True
    return entry


def _out_in(document: Any, out_path: str) -> Artifact | None:
    if not isinstance(document, dict):
        return None
    for entry in document.get("outs") or []:
        if isinstance(entry, dict) and entry.get("path") == out_path and isinstance(entry.get("md5"), str):
            return Artifact(out_path, f"md5:{entry['md5']}", entry.get("size"), entry.get("nfiles"))
    return None


def git_user(repo: git.Repo) -> Author:
    reader = repo.config_reader()
    return Author(str(reader.get_value("user", "name", "unknown")), str(reader.get_value("user", "email", "")))


def dataset_versions(repo: git.Repo, root: Path, dvcfile: str, out: Artifact, cache: Path) -> list[DatasetVersion]:
    """Every version of ``out`` (an out of the ``.dvc`` file ``dvcfile``), oldest first: one per commit that
    changed its hash, then the working tree's if it differs from the last commit's."""
    dataset_path = str(PurePosixPath(dvcfile).parent / out.path)
    versions: list[DatasetVersion] = []
    import git

    try:
        commits = list(repo.iter_commits(paths=dvcfile, reverse=True, topo_order=True))
    except (git.GitCommandError, ValueError):  # no commits yet
        commits = []
    for commit in commits:
        try:
            blob = commit.tree / dvcfile
            artifact = _out_in(yaml.safe_load(blob.data_stream.read()), out.path)
        except (KeyError, yaml.YAMLError):
            continue  # the .dvc file was deleted or broken in this commit
        if artifact is None or (versions and versions[-1].artifact.digest == artifact.digest):
            continue
        author = Author(str(commit.author.name or ""), str(commit.author.email or ""))
        versions.append(DatasetVersion(dataset_path, artifact, commit.hexsha, author,
                                       commit.authored_datetime.isoformat()))
    if not versions or versions[-1].artifact.digest != out.digest:
        versions.append(DatasetVersion(dataset_path, out, None, git_user(repo), None))
    _credit_files(versions, cache)
    return versions


def _credit_files(versions: list[DatasetVersion], cache: Path) -> None:
    """File-level blame across versions: a file keeps its owner until a version changes it."""
    previous: dict[str, str] = {}
    owners: dict[str, tuple[Author, str | None]] = {}
    known = True
    for version in versions:
        if not version.artifact.is_dir:
            continue
        manifest = read_dir_manifest(cache, version.artifact.digest or "")
        if manifest is None:
            version.complete = False
            known = False
            continue
        credit = (version.author, version.commit)
        owners = {relpath: (owners[relpath] if previous.get(relpath) == digest and relpath in owners else credit)
                  for relpath, digest in manifest.items()}
        version.owners = owners
        version.complete = known
        version.manifest = manifest
        previous = manifest


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def git_state(root: Path) -> dict[str, Any]:
    """HEAD's commit, branch and whether tracked files (other than dvc.lock and the ledger) differ from it.
    Plain git commands: the record stage runs on every repro and gitpython costs more to import."""
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD").stdout.strip() or None  # None: no commit yet
    branch = _git(root, "symbolic-ref", "-q", "--short", "HEAD").stdout.strip() or None  # None: detached
    # dvc.lock files are rewritten by the repro being recorded, and the ledger by the recording itself
    dirty = head is not None and _git(root, "diff-index", "--quiet", "HEAD", "--", ".", ":(exclude,glob)**/dvc.lock",
                                      ":(exclude).openledger").returncode == 1
    return {"commit": head, "branch": branch, "dirty": dirty}
