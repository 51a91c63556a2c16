"""The things a lineage is made of, each with a typed identity: a model version, an MLflow run, a dataset
version, a DVC stage execution, a git commit.

A reference carries its fields (a dataset version's path and digest, a stage's pipeline file, name and record),
and :attr:`key` spells it as one stable string for the places that need one (JSON ids, Mermaid and SVG
node ids, PROV and CycloneDX element ids). Code reads the fields; nothing parses a key back.

>>> DatasetRef("data/wine.csv", "md5:" + "a" * 32).key
'dataset:data/wine.csv@md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
>>> Edge(ModelRef("iris", "3"), RunRef("ab12"), "trained by").to_json()
{'from': 'model:iris@3', 'to': 'run:ab12', 'relation': 'trained by'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

__all__ = ["RELATIONS", "CommitRef", "DatasetRef", "Edge", "ModelRef", "NodeRef", "RunRef", "StageRef",
           "parse_node_key"]

Relation = Literal["trained by", "used", "ran", "at", "after", "read", "output of"]
# What an edge from A to B says: A was trained by run B, run A used dataset B, stage A ran run B, A ran at
# commit B, stage A ran after stage B, stage A read dataset B, dataset A is an output of stage B.
RELATIONS: tuple[Relation, ...] = ("trained by", "used", "ran", "at", "after", "read", "output of")


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A registered model version."""

    name: str
    version: str
    kind: ClassVar[str] = "model"

    @property
    def key(self) -> str:
        return f"model:{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class RunRef:
    """An MLflow run."""

    run_id: str
    kind: ClassVar[str] = "run"

    @property
    def key(self) -> str:
        return f"run:{self.run_id}"


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """One version of a dataset: its path (relative to the repository, or the name MLflow gave an input) and
    its digest (DVC's hash, or MLflow's)."""

    path: str
    digest: str
    kind: ClassVar[str] = "dataset"

    @property
    def key(self) -> str:
        return f"dataset:{self.path}@{self.digest}"


@dataclass(frozen=True, slots=True)
class StageRef:
    """One execution of a DVC stage: its pipeline file, its name in ``dvc.lock``, and the stage record."""

    dvcfile: str
    name: str
    record: str
    kind: ClassVar[str] = "stage"

    @property
    def key(self) -> str:
        return f"stage:{self.dvcfile}:{self.name}@{self.record[7:19]}"


@dataclass(frozen=True, slots=True)
class CommitRef:
    """A git commit."""

    sha: str
    kind: ClassVar[str] = "commit"

    @property
    def key(self) -> str:
        return f"commit:{self.sha}"


NodeRef = ModelRef | RunRef | DatasetRef | StageRef | CommitRef


def parse_node_key(key: str) -> NodeRef:
    """The reference a key spells, for reading a report's JSON back (code that has the typed reference never
    needs this). A stage key holds only the start of its record id, so the record field is that prefix; a key
    of no known kind is a :class:`ValueError`.

    >>> parse_node_key("dataset:data/a@b@md5:1")
    DatasetRef(path='data/a@b', digest='md5:1')
    """
    kind, _, rest = key.partition(":")
    if kind == "model" and "@" in rest:
        name, _, version = rest.rpartition("@")
        return ModelRef(name, version)
    if kind == "run":
        return RunRef(rest)
    if kind == "dataset" and "@" in rest:
        path, _, digest = rest.rpartition("@")
        return DatasetRef(path, digest)
    if kind == "stage" and "@" in rest and ":" in rest:
        head, _, record = rest.rpartition("@")
        dvcfile, _, name = head.rpartition(":")
        return StageRef(dvcfile, name, f"sha256:{record}")
    if kind == "commit":
        return CommitRef(rest)
    raise ValueError(f"{key!r} is not a lineage node key")


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` is related to ``target`` by ``relation`` (read "source <relation> target")."""

    source: NodeRef
    target: NodeRef
    relation: Relation

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source.key, "to": self.target.key, "relation": self.relation}

    @classmethod
    def from_json(cls, data: Any) -> Edge:
        return cls(parse_node_key(str(data["from"])), parse_node_key(str(data["to"])), data["relation"])
