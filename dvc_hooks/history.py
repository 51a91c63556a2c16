"""Who contributed each version of a DVC-tracked dataset, from git history and DVC's ``.dir`` manifests.

A version is one hash of a ``.dvc`` file's out. Its contributor is the author of the commit that introduced
it (the git user, for a version not committed yet). For a directory, credit is per file: every file of the
version is credited to the author of the commit that last added or changed it (a file-level ``git blame``
over the ``.dir`` manifests), so a dataset five people built credits each of them for their own files.
Manifests are read from the local DVC cache; a version whose manifest is not there is credited as a whole
to its commit's author and marked ``complete: false``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from dvc_hooks.lockfile import Artifact, cached_size, read_dir_manifest
from openledger.errors import BadInputError
from openledger.lineage.authorship import Author, blame_manifests, file_history, git_user
from openledger.lineage.git import git_run
from openledger.lineage.git import git_state as core_git_state

__all__ = ["Commit", "DatasetVersion", "KeyForEmail", "dataset_versions", "git_state", "head_commit"]

KeyForEmail = Callable[[str], str | None]  # TrustState.key_for_email: the ledger's one email -> key index

# Paths credited per contributor are listed in full up to this many; beyond it, counts and bytes only.
MAX_LISTED_PATHS = 1000


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

    def contributors(self, cache: Path, key_for_email: KeyForEmail) -> list[dict[str, Any]]:
        """Each author with the files credited to them in this version (sorted by files, then email), with the
        key ``key_for_email`` gives for the author's email, if any."""
        if not self.artifact.is_dir:
            return [_contributor(self.author, [self.commit], None, self.artifact.size, key_for_email)]
        if self.manifest is None:  # the .dir manifest is not in this cache: the version as a whole
            whole = _contributor(self.author, [self.commit], None, self.artifact.size, key_for_email)
            whole["files"] = self.artifact.nfiles or 0
            return [whole]
        by_author: dict[str, tuple[Author, set[str | None], list[str]]] = {}
        for relpath, (author, commit) in self.owners.items():
            entry = by_author.setdefault(author.key, (author, set(), []))
            entry[1].add(commit)
            entry[2].append(relpath)
        manifest = self.manifest or {}
        # Bytes per author from the cached objects' sizes, except for the author with the most files, who
        # gets what is left of the size DVC summed for the whole version: one stat per file of the others
        # only (a directory of 10,000 files grown by one person costs none).
        entries = sorted(by_author.values(), key=lambda entry: -len(entry[2]))
        sizes = [_cached_total(cache, manifest, paths) for _, _, paths in entries[1:]]
        rest = self.artifact.size - sum(s for s in sizes if s is not None) if self.artifact.size is not None else None
        if rest is None or None in sizes or rest < 0:
            rest = _cached_total(cache, manifest, entries[0][2])
        result = [_contributor(author, sorted(commits, key=str), sorted(paths), size, key_for_email)
                  for (author, commits, paths), size in zip(entries, [rest, *sizes], strict=True)]
        result.sort(key=lambda c: (-c["files"], c["email"]))
        return result


def _cached_total(cache: Path, manifest: dict[str, str], paths: list[str]) -> int | None:
    """The bytes of these files of a directory version, from the local cache; ``None`` if any is missing."""
    total = 0
    for path in paths:
        size = cached_size(cache, manifest[path]) if path in manifest else None
        if size is None:
            return None
        total += size
    return total


def _contributor(author: Author, commits: Iterable[str | None], paths: list[str] | None, size: int | None,
                 key_for_email: KeyForEmail) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": author.name, "email": author.email, "role": "data",
                             "commits": [c for c in commits if c], "files": len(paths) if paths is not None else 1}
    keyid = key_for_email(author.email) if author.email else None
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


def dataset_versions(root: Path, dvcfile: str, out: Artifact, cache: Path) -> list[DatasetVersion]:
    """Every version of ``out`` (an out of the ``.dvc`` file ``dvcfile``), oldest first: one per commit that
    changed its hash, then the working tree's if it differs from the last commit's."""
    dataset_path = str(PurePosixPath(dvcfile).parent / out.path)
    versions: list[DatasetVersion] = []
    for change in file_history(root, dvcfile):
        sha, author, when, content = change.commit, change.author, change.time, change.content
        if content is None:
            continue  # the .dvc file was deleted in this commit
        try:
            artifact = _out_in(yaml.safe_load(content), out.path)
        except yaml.YAMLError:
            continue  # broken in this commit
        if artifact is None or (versions and versions[-1].artifact.digest == artifact.digest):
            continue
        versions.append(DatasetVersion(dataset_path, artifact, sha, author, when))
    if not versions or versions[-1].artifact.digest != out.digest:
        versions.append(DatasetVersion(dataset_path, out, None, git_user(root), None))
    _credit_files(versions, cache)
    return versions


def _credit_files(versions: list[DatasetVersion], cache: Path) -> None:
    """File-level blame across the directory versions whose ``.dir`` manifest is in the cache; a version
    after one whose manifest is missing is incomplete (its files may have owners nobody can tell)."""
    known: list[tuple[DatasetVersion, dict[str, str]]] = []
    complete = True
    for version in versions:
        if not version.artifact.is_dir:
            continue
        manifest = read_dir_manifest(cache, version.artifact.digest or "")
        if manifest is None:
            version.complete = complete = False
            continue
        version.complete, version.manifest = complete, manifest
        known.append((version, manifest))
    blamed = blame_manifests([(manifest, (version.author, version.commit)) for version, manifest in known])
    for (version, _), owners in zip(known, blamed, strict=True):
        version.owners = owners


def git_state(root: Path) -> dict[str, Any]:
    """HEAD's commit, branch and whether tracked files (other than dvc.lock and the ledger) differ from it.
    Plain git commands: the record stage runs on every repro and gitpython costs more to import."""
    # dvc.lock files are rewritten by the repro being recorded, and the ledger by the recording itself
    state = core_git_state(root, ignore=(":(exclude,glob)**/dvc.lock", ".openledger"))
    if state is None:
        return {"commit": None, "branch": None, "dirty": False}
    return {"commit": state.commit, "branch": state.branch, "dirty": state.dirty}


@dataclass(frozen=True, slots=True)
class Commit:
    """What the post-commit hook binds to: HEAD as git describes it."""

    hexsha: str
    parents: tuple[str, ...]
    author: Author
    message: str


def head_commit(root: Path) -> Commit:
    """HEAD, from one ``git log`` (the post-commit hook runs on every commit: no gitpython import)."""
    found = git_run(root, "log", "-1", "--format=%H%x00%P%x00%an%x00%ae%x00%B")
    if found.returncode != 0:
        raise BadInputError(f"cannot read HEAD in {root}: {found.stderr.strip()}")
    hexsha, parents, name, email, message = found.stdout.split("\0", 4)
    return Commit(hexsha, tuple(parents.split()), Author(name, email), message)
