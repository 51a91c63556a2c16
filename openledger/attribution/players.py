"""The players of a measured attribution: data contributors, each with the files dataset records credit them.

A dataset record credits each file of a directory version to the author of the commit that last added or
changed it. Attribution adds one rule: **byte-identical files are one file**, credited to whoever committed
that content first (the earliest dataset version holding it). So copying someone else's files, or splitting
one's own files over several identities, earns nothing: the copies belong to the first committer, and a
player left without files of their own is a null player whose value is exactly zero.

A coalition's data is every file (every path, copies included) whose content belongs to a player of the
coalition: the full coalition reproduces the dataset as committed.

>>> ada, bob = Contributor("key:ada", "Ada", "ada@example.org"), Contributor("key:bob", "Bob", "bob@example.org")
>>> v1 = CreditedVersion("data", "md5:" + "1" * 32 + ".dir", "sha256:" + "a" * 64, "2026-01-01T00:00:00Z",
...                      {"a.csv": "md5:" + "a" * 32}, {"a.csv": ada})
>>> v2 = CreditedVersion("data", "md5:" + "2" * 32 + ".dir", "sha256:" + "b" * 64, "2026-01-02T00:00:00Z",
...                      {"a.csv": "md5:" + "a" * 32, "copy.csv": "md5:" + "a" * 32, "b.csv": "md5:" + "b" * 32},
...                      {"a.csv": ada, "copy.csv": bob, "b.csv": bob})
>>> [(p.contributor.name, [f.relpath for f in p.files]) for p in players_of([v2], [v1, v2])]
[('Ada', ['a.csv', 'copy.csv']), ('Bob', ['b.csv'])]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openledger.errors import BadInputError
from openledger.store.canonical import canonical_bytes

__all__ = [
    "Contributor",
    "CreditedVersion",
    "DataFile",
    "DatasetSubset",
    "Player",
    "coalition_data",
    "data_digest",
    "players_of",
]


@dataclass(frozen=True, slots=True)
class Contributor:
    """A person as dataset records name them. ``id`` is their key id when known, else ``email:<address>``."""

    id: str
    name: str
    email: str
    key: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "name": self.name, "email": self.email}
        if self.key:
            data["key"] = self.key
        return data


@dataclass(frozen=True, slots=True)
class DataFile:
    """One file of a valued dataset version: the dataset's path, the file's path inside it, its digest."""

    dataset: str
    relpath: str
    digest: str


@dataclass(frozen=True, slots=True)
class CreditedVersion:
    """One version of a DVC-tracked directory: its dataset record, DVC's file list (``relpath -> digest``, from
    the ``.dir`` manifest) and who the record credits for each file. ``committed`` orders versions (``None``: not
    committed yet, so after every committed one)."""

    path: str
    digest: str
    record: str
    committed: str | None
    files: Mapping[str, str]
    owners: Mapping[str, Contributor]


@dataclass(frozen=True, slots=True)
class Player:
    """A contributor and the files whose content they committed first (empty for a null player)."""

    contributor: Contributor
    files: tuple[DataFile, ...]

    @property
    def id(self) -> str:
        return self.contributor.id

    def digests(self) -> list[str]:
        return sorted({f.digest for f in self.files})

    def to_json(self) -> dict[str, Any]:
        return {**self.contributor.to_json(), "files": len(self.files), "digests": self.digests()}


@dataclass(frozen=True, slots=True)
class DatasetSubset:
    """The files of one dataset a coalition holds, as (relpath, digest) pairs sorted by path."""

    path: str
    files: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "files": [list(f) for f in self.files]}


def _order(version: CreditedVersion) -> tuple[bool, str]:
    return (version.committed is None, version.committed or "")


def players_of(valued: Sequence[CreditedVersion], history: Iterable[CreditedVersion]) -> list[Player]:
    """The players of ``valued`` (the dataset versions being valued), with their files.

    ``history`` is every known version of those datasets (``valued`` may be among them): the first version
    holding a content decides who committed it first. Within one version, paths are taken in sorted order.
    Players are sorted by id; the list includes null players (contributors whose every file is a copy).
    """
    versions = sorted({id(v): v for v in (*history, *valued)}.values(), key=_order)
    first: dict[str, Contributor] = {}
    contributors: dict[str, Contributor] = {}
    for version in versions:
        for relpath in sorted(version.files):
            owner = version.owners.get(relpath)
            if owner is not None:
                first.setdefault(version.files[relpath], owner)
    owned: dict[str, list[DataFile]] = {}
    for version in valued:
        missing = sorted(set(version.files) - set(version.owners))
        if missing:
            raise BadInputError(f"the dataset record of {version.path} ({version.digest[:20]}) credits nobody for "
                                f"{len(missing)} of its files (for example {missing[0]!r})",
                                hint="re-record the dataset version with `openledger dvc record`")
        for owner in version.owners.values():
            contributors.setdefault(owner.id, owner)
        for relpath in sorted(version.files):
            digest = version.files[relpath]
            owner = first[digest]
            contributors.setdefault(owner.id, owner)
            owned.setdefault(owner.id, []).append(DataFile(version.path, relpath, digest))
    return [Player(contributors[pid], tuple(owned.get(pid, ()))) for pid in sorted(contributors)]


def coalition_data(players: Sequence[Player], members: Iterable[int], datasets: Sequence[str]
                   ) -> tuple[DatasetSubset, ...]:
    """The files of each dataset that the players at indices ``members`` hold."""
    chosen: dict[str, list[tuple[str, str]]] = {path: [] for path in datasets}
    for index in members:
        for file in players[index].files:
            chosen[file.dataset].append((file.relpath, file.digest))
    return tuple(DatasetSubset(path, tuple(sorted(files))) for path, files in sorted(chosen.items()))


def data_digest(subsets: Sequence[DatasetSubset]) -> str:
    """A content digest of a coalition's data (paths and file digests of every dataset), independent of how an
    executor materialises it: the reuse key of a run."""
    return "sha256:" + hashlib.sha256(canonical_bytes([s.to_json() for s in subsets])).hexdigest()
