"""The provenance of one model version: its lineage (runs, pipeline stages, dataset versions and who supplied
them, the code and its authors), reviews, feedback and promotions, and the verification status of every record
shown (hash, signature, schema, and whether its signer is trusted).

:func:`model_report` builds a :class:`ModelReport` from a :class:`~openledger.lineage.graph.LedgerGraph`: frozen
views with typed fields (a node's :mod:`~openledger.lineage.nodes` reference, a
:class:`~openledger.credit.people.Person` wherever someone is named) that the Markdown, HTML, SVG and terminal
renderers and the PROV, in-toto and CycloneDX exporters read. :meth:`ModelReport.to_json` is the published
JSON (``schemas/report-model.json``).

A record goes from the ledger to a Markdown line in four hops: :meth:`Ledger.scan` reads it as a ``Fact``
(hash checked); :class:`LedgerGraph` files it under its run, dataset, stage or model and walks the lineage into
``Node`` objects; :func:`model_report` checks the signature of every record it shows (:meth:`Ledger.get`) and
builds the views; a renderer formats the views.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from openledger._internal.memory import paused_gc
from openledger.anchors.anchoring import AnchorBound, AnchorIndex
from openledger.attribution.record import newest_attribution
from openledger.credit.people import People, Person
from openledger.errors import BadInputError, IntegrityError, OpenLedgerError
from openledger.lineage.authorship import CodeAuthor
from openledger.lineage.graph import LedgerGraph, Lineage, Node
from openledger.lineage.nodes import CommitRef, DatasetRef, Edge, ModelRef, NodeRef, RunRef, StageRef, parse_node_key
from openledger.store.canonical import tag_nonfinite, untag_nonfinite
from openledger.store.ledger import Fact

__all__ = [
    "MODEL_SCHEMA",
    "Attestation",
    "AttributionLink",
    "AuthorView",
    "CodeView",
    "DataCredit",
    "DatasetView",
    "FeedbackView",
    "GraphNode",
    "GraphView",
    "LineagePerson",
    "ModelReport",
    "ModelVersionView",
    "PromotionView",
    "RecordCheck",
    "ReviewView",
    "RunView",
    "StageView",
    "model_report",
]

MODEL_SCHEMA = "openledger.report.model/2"


@dataclass(frozen=True, slots=True)
class ModelVersionView:
    ref: ModelRef
    run_id: str | None
    model_id: str | None
    source: str | None
    artifact_digest: str | None
    aliases: tuple[str, ...]
    records: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.ref.name, "version": self.ref.version, "run_id": self.run_id,
                "model_id": self.model_id, "source": self.source, "artifact_digest": self.artifact_digest,
                "aliases": list(self.aliases), "records": list(self.records)}

    @classmethod
    def from_json(cls, data: Any) -> ModelVersionView:
        return cls(ModelRef(str(data["name"]), str(data["version"])), data.get("run_id"), data.get("model_id"),
                   data.get("source"), data.get("artifact_digest"), tuple(data.get("aliases") or ()),
                   tuple(data.get("records") or ()))


@dataclass(frozen=True, slots=True)
class Attestation:
    """One record attesting a run (a run captured by the client and by the server has two)."""

    record: str
    signer: Person
    captured: str | None

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record, "signer": self.signer.to_json(), "captured": self.captured}

    @classmethod
    def from_json(cls, data: Any) -> Attestation:
        return cls(str(data["record"]), Person.from_json(data["signer"]), data.get("captured"))


@dataclass(frozen=True, slots=True)
class RunView:
    ref: RunRef
    name: str | None
    experiment_id: str | None
    status: str | None
    start_time: Any
    end_time: Any
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]  # non-finite values stay floats here; JSON tags them
    user_id: str | None
    trainer: Person | None
    git: Mapping[str, Any] | None
    dvc: Mapping[str, Any] | None
    records: tuple[str, ...]
    attestations: tuple[Attestation, ...]

    @property
    def run_id(self) -> str:
        return self.ref.run_id

    def to_json(self) -> dict[str, Any]:
        return {"id": self.ref.key, "run_id": self.ref.run_id, "name": self.name,
                "experiment_id": self.experiment_id, "status": self.status, "start_time": self.start_time,
                "end_time": self.end_time, "params": dict(self.params),
                "metrics": tag_nonfinite(dict(self.metrics)), "user_id": self.user_id,
                "trainer": self.trainer.to_json() if self.trainer else None, "git": self.git, "dvc": self.dvc,
                "records": list(self.records), "attestations": [a.to_json() for a in self.attestations]}

    @classmethod
    def from_json(cls, data: Any) -> RunView:
        trainer = data.get("trainer")
        return cls(RunRef(str(data["run_id"])), data.get("name"), data.get("experiment_id"), data.get("status"),
                   data.get("start_time"), data.get("end_time"), dict(data.get("params") or {}),
                   untag_nonfinite(dict(data.get("metrics") or {})), data.get("user_id"),
                   Person.from_json(trainer) if trainer else None, data.get("git"), data.get("dvc"),
                   tuple(data.get("records") or ()),
                   tuple(Attestation.from_json(a) for a in data.get("attestations") or ()))


@dataclass(frozen=True, slots=True)
class StageView:
    ref: StageRef
    dvcfile: str | None  # as the stage record names it (None for a record without one: the ref says dvc.yaml)
    cmd: Any
    experiment: str | None
    params: Mapping[str, Any]
    deps: tuple[Mapping[str, Any], ...]
    outs: tuple[Mapping[str, Any], ...]
    git: Mapping[str, Any] | None
    records: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def commit(self) -> str | None:
        commit = (self.git or {}).get("commit")
        return commit if isinstance(commit, str) else None

    def output_refs(self) -> list[DatasetRef]:
        """What the stage wrote, as dataset versions (path and DVC's hash)."""
        return [DatasetRef(str(out.get("path")), str(out.get("hash"))) for out in self.outs]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.ref.key, "name": self.ref.name, "dvcfile": self.dvcfile, "cmd": self.cmd,
                "experiment": self.experiment, "params": self.params, "deps": list(self.deps),
                "outs": list(self.outs), "git": self.git, "records": list(self.records)}

    @classmethod
    def from_json(cls, data: Any) -> StageView:
        records = tuple(data.get("records") or ())
        ref = StageRef(str(data.get("dvcfile") or "dvc.yaml"), str(data["name"]), records[-1] if records else "")
        return cls(ref, data.get("dvcfile"), data.get("cmd"), data.get("experiment"), data.get("params") or {},
                   tuple(data.get("deps") or ()), tuple(data.get("outs") or ()), data.get("git"),
                   tuple(data.get("records") or ()))


@dataclass(frozen=True, slots=True)
class DataCredit:
    """A dataset version's contributor, as its record credits them (files, bytes, commits, paths)."""

    person: Person
    files: Any
    bytes: Any
    commits: tuple[str, ...]
    paths: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person.to_json(), "files": self.files, "bytes": self.bytes,
                "commits": list(self.commits), "paths": list(self.paths)}

    @classmethod
    def from_json(cls, data: Any) -> DataCredit:
        return cls(Person.from_json(data["person"]), data.get("files"), data.get("bytes"),
                   tuple(data.get("commits") or ()), tuple(data.get("paths") or ()))


@dataclass(frozen=True, slots=True)
class DatasetView:
    ref: DatasetRef
    source: Any
    files: Any
    size: Any
    commit: Any
    complete: Any
    contributors: tuple[DataCredit, ...]
    records: tuple[str, ...]
    produced_by: tuple[str, ...]  # names of the stages that output it (a pipeline output has no record)

    @property
    def recorded(self) -> bool:
        return bool(self.records)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.ref.key, "path": self.ref.path, "digest": self.ref.digest, "source": self.source,
                "files": self.files, "size": self.size, "commit": self.commit, "complete": self.complete,
                "contributors": [c.to_json() for c in self.contributors], "recorded": self.recorded,
                "records": list(self.records), "produced_by": list(self.produced_by)}

    @classmethod
    def from_json(cls, data: Any) -> DatasetView:
        return cls(DatasetRef(str(data["path"]), str(data["digest"])), data.get("source"), data.get("files"),
                   data.get("size"), data.get("commit"), data.get("complete"),
                   tuple(DataCredit.from_json(c) for c in data.get("contributors") or ()),
                   tuple(data.get("records") or ()), tuple(data.get("produced_by") or ()))


@dataclass(frozen=True, slots=True)
class AuthorView:
    """An author of the code the training stage depends on."""

    person: Person
    commits: tuple[str, ...]
    files: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person.to_json(), "commits": list(self.commits), "files": list(self.files)}

    @classmethod
    def from_json(cls, data: Any) -> AuthorView:
        return cls(Person.from_json(data["person"]), tuple(data.get("commits") or ()), tuple(data.get("files") or ()))


@dataclass(frozen=True, slots=True)
class CodeView:
    commits: tuple[str, ...]
    files: tuple[str, ...]
    commit_records: Mapping[str, tuple[str, ...]]
    authors: tuple[AuthorView, ...]

    def to_json(self) -> dict[str, Any]:
        return {"commits": list(self.commits), "files": list(self.files),
                "commit_records": {sha: list(ids) for sha, ids in self.commit_records.items()},
                "authors": [a.to_json() for a in self.authors]}

    @classmethod
    def from_json(cls, data: Any) -> CodeView:
        return cls(tuple(data.get("commits") or ()), tuple(data.get("files") or ()),
                   {sha: tuple(ids) for sha, ids in (data.get("commit_records") or {}).items()},
                   tuple(AuthorView.from_json(a) for a in data.get("authors") or ()))


@dataclass(frozen=True, slots=True)
class ReviewView:
    record: str
    decision: Any
    target: Any
    message: Any
    reviewer: Person
    time: str
    trusted: bool
    links: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record, "decision": self.decision, "target": self.target, "message": self.message,
                "reviewer": self.reviewer.to_json(), "time": self.time, "trusted": self.trusted,
                "links": list(self.links)}

    @classmethod
    def from_json(cls, data: Any) -> ReviewView:
        return cls(str(data["record"]), data.get("decision"), data.get("target"), data.get("message"),
                   Person.from_json(data["reviewer"]), str(data.get("time")), bool(data.get("trusted")),
                   tuple(data.get("links") or ()))


@dataclass(frozen=True, slots=True)
class FeedbackView:
    record: str
    target: Any
    label: Any
    score: Any
    comment: Any
    by: Person | None  # None: automated feedback (an LLM judge, code), credited to nobody
    time: str
    links: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record, "target": self.target, "label": self.label,
                "score": tag_nonfinite(self.score), "comment": self.comment,
                "by": self.by.to_json() if self.by else None, "time": self.time, "links": list(self.links)}

    @classmethod
    def from_json(cls, data: Any) -> FeedbackView:
        by = data.get("by")
        return cls(str(data["record"]), data.get("target"), data.get("label"), untag_nonfinite(data.get("score")),
                   data.get("comment"), Person.from_json(by) if by else None, str(data.get("time")),
                   tuple(data.get("links") or ()))


@dataclass(frozen=True, slots=True)
class PromotionView:
    record: str
    alias: Any
    by: Person
    time: str

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record, "alias": self.alias, "by": self.by.to_json(), "time": self.time}

    @classmethod
    def from_json(cls, data: Any) -> PromotionView:
        return cls(str(data["record"]), data.get("alias"), Person.from_json(data["by"]), str(data.get("time")))


@dataclass(frozen=True, slots=True)
class LineagePerson:
    """Someone in the lineage, with the evidence (record ids or ``commit:<sha>``) behind each of their roles."""

    person: Person
    roles: Mapping[str, tuple[str, ...]]

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person.to_json(), "roles": {role: list(ids) for role, ids in self.roles.items()}}

    @classmethod
    def from_json(cls, data: Any) -> LineagePerson:
        return cls(Person.from_json(data["person"]),
                   {role: tuple(ids) for role, ids in (data.get("roles") or {}).items()})


@dataclass(frozen=True, slots=True)
class GraphNode:
    ref: NodeRef
    label: str
    recorded: bool  # a record attests it (a commit, or a pipeline output its stage record names, counts)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.ref.key, "kind": self.ref.kind, "label": self.label, "recorded": self.recorded}

    @classmethod
    def from_json(cls, data: Any, refs: Mapping[str, NodeRef] | None = None) -> GraphNode:
        """``refs``: the references the report's own sections name, by key (a key is read back only when
        none of them spells it)."""
        key = str(data["id"])
        ref = (refs or {}).get(key) or parse_node_key(key)
        return cls(ref, str(data.get("label")), bool(data.get("recorded", True)))


@dataclass(frozen=True, slots=True)
class GraphView:
    nodes: tuple[GraphNode, ...]
    edges: tuple[Edge, ...]

    def edges_of(self, relation: str) -> list[Edge]:
        return [edge for edge in self.edges if edge.relation == relation]

    def reads(self) -> dict[str, list[NodeRef]]:
        """Stage key -> the datasets that stage read."""
        read: dict[str, list[NodeRef]] = {}
        for edge in self.edges_of("read"):
            read.setdefault(edge.source.key, []).append(edge.target)
        return read

    def sources_of_outputs(self) -> dict[str, list[NodeRef]]:
        """A pipeline output's key -> the datasets the stage that wrote it read."""
        read = self.reads()
        return {edge.source.key: read.get(edge.target.key, []) for edge in self.edges_of("output of")}

    def neighbours(self, key: str) -> set[str]:
        """The keys of the nodes an edge joins to ``key``, either way."""
        return ({e.target.key for e in self.edges if e.source.key == key}
                | {e.source.key for e in self.edges if e.target.key == key})

    def to_json(self) -> dict[str, Any]:
        return {"nodes": [n.to_json() for n in self.nodes], "edges": [e.to_json() for e in self.edges]}

    @classmethod
    def from_json(cls, data: Any, refs: Mapping[str, NodeRef] | None = None) -> GraphView:
        nodes = tuple(GraphNode.from_json(n, refs) for n in data.get("nodes") or ())
        known = {**(refs or {}), **{node.ref.key: node.ref for node in nodes}}

        def ref(key: Any) -> NodeRef:
            return known.get(str(key)) or parse_node_key(str(key))

        return cls(nodes, tuple(Edge(ref(e["from"]), ref(e["to"]), e["relation"]) for e in data.get("edges") or ()))


@dataclass(frozen=True, slots=True)
class RecordCheck:
    """A shown record's own checks (hash, signature, schema) and whether its signer was trusted when it was
    signed: ``status`` is ``verified``, ``untrusted`` (``detail`` says why) or ``damaged``. ``anchored``: the
    earliest anchor proving the record existed before a time (its claimed ``time`` is the signer's word)."""

    record: str
    kind: str | None
    signer: Person | None
    time: str | None
    status: str
    detail: str | None
    anchored: AnchorBound | None = None

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def to_json(self) -> dict[str, Any]:
        found = {"kind": self.kind, "signer": self.signer.to_json() if self.signer else None, "time": self.time,
                 "status": self.status, "detail": self.detail}
        if self.anchored is not None:  # present only for anchored records, so unanchored ledgers read as before
            found["anchored_before"] = self.anchored.to_json()
        return found

    @classmethod
    def from_json_entry(cls, record: str, data: Any) -> RecordCheck:
        signer, anchored = data.get("signer"), data.get("anchored_before")
        return cls(record, data.get("kind"), Person.from_json(signer) if signer else None, data.get("time"),
                   str(data.get("status")), data.get("detail"),
                   AnchorBound(str(anchored["time"]), str(anchored["checkpoint"]), str(anchored["anchor"]),
                               str(anchored["method"])) if anchored else None)


@dataclass(frozen=True, slots=True)
class AttributionLink:
    """The measured attribution of this version (the newest trusted ``attribution`` record): where to read
    each contributor's value (``openledger report contributors --model NAME``)."""

    record: str
    time: str
    metric: str
    mode: str
    runs: int
    players: int

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record, "time": self.time, "metric": self.metric, "mode": self.mode,
                "runs": self.runs, "players": self.players}

    @classmethod
    def from_json(cls, data: Any) -> AttributionLink:
        return cls(str(data["record"]), str(data["time"]), str(data["metric"]), str(data["mode"]),
                   int(data["runs"]), int(data["players"]))


@dataclass(frozen=True, slots=True)
class ModelReport:
    model: ModelVersionView
    runs: tuple[RunView, ...]
    stages: tuple[StageView, ...]
    datasets: tuple[DatasetView, ...]
    code: CodeView
    reviews: tuple[ReviewView, ...]
    feedback: tuple[FeedbackView, ...]
    promotions: tuple[PromotionView, ...]
    contributors: tuple[LineagePerson, ...]
    graph: GraphView
    records: Mapping[str, RecordCheck]
    attribution: AttributionLink | None = None

    @property
    def verified(self) -> bool:
        return all(check.verified for check in self.records.values())

    def people(self) -> dict[str, Person]:
        """Everyone the report names, by person id, in the order they first appear."""
        found: dict[str, Person] = {}
        candidates: list[Person | None] = [c.person for c in self.contributors]
        candidates += [run.trainer for run in self.runs]
        candidates += [c.person for dataset in self.datasets for c in dataset.contributors]
        candidates += [a.person for a in self.code.authors]
        candidates += [r.reviewer for r in self.reviews] + [f.by for f in self.feedback]
        for person in candidates:
            if person is not None:
                found.setdefault(person.id, person)
        return found

    def element_records(self) -> dict[str, tuple[str, ...]]:
        """The records behind each lineage element with records (model, runs, stages, datasets), by key."""
        found: dict[str, tuple[str, ...]] = {self.model.ref.key: self.model.records}
        found.update({run.ref.key: run.records for run in self.runs})
        found.update({stage.ref.key: stage.records for stage in self.stages})
        found.update({dataset.ref.key: dataset.records for dataset in self.datasets})
        return found

    def to_json(self) -> dict[str, Any]:
        return {"schema": MODEL_SCHEMA, "model": self.model.to_json(), "runs": [r.to_json() for r in self.runs],
                "stages": [s.to_json() for s in self.stages], "datasets": [d.to_json() for d in self.datasets],
                "code": self.code.to_json(), "reviews": [r.to_json() for r in self.reviews],
                "feedback": [f.to_json() for f in self.feedback],
                "promotions": [p.to_json() for p in self.promotions],
                "contributors": [c.to_json() for c in self.contributors], "graph": self.graph.to_json(),
                "records": {rid: check.to_json() for rid, check in self.records.items()},
                "verified": self.verified,
                # absent, not null, without one: reports of unattributed versions read as before
                **({"attribution": self.attribution.to_json()} if self.attribution else {})}

    @classmethod
    def from_json(cls, data: Any) -> ModelReport:
        """A report read back from ``--format json`` (schema ``openledger.report.model/2``)."""
        if data.get("schema") != MODEL_SCHEMA:
            raise BadInputError(f"not a {MODEL_SCHEMA} report (schema {data.get('schema')!r})")
        model = ModelVersionView.from_json(data["model"])
        runs = tuple(RunView.from_json(r) for r in data["runs"])
        stages = tuple(StageView.from_json(s) for s in data["stages"])
        datasets = tuple(DatasetView.from_json(d) for d in data["datasets"])
        code = CodeView.from_json(data["code"])
        refs: dict[str, NodeRef] = {model.ref.key: model.ref}
        refs.update({run.ref.key: run.ref for run in runs})
        refs.update({stage.ref.key: stage.ref for stage in stages})
        refs.update({dataset.ref.key: dataset.ref for dataset in datasets})
        refs.update({CommitRef(sha).key: CommitRef(sha) for sha in code.commits})
        return cls(model, runs, stages, datasets, code,
                   tuple(ReviewView.from_json(r) for r in data["reviews"]),
                   tuple(FeedbackView.from_json(f) for f in data["feedback"]),
                   tuple(PromotionView.from_json(p) for p in data["promotions"]),
                   tuple(LineagePerson.from_json(c) for c in data["contributors"]),
                   GraphView.from_json(data["graph"], refs),
                   {rid: RecordCheck.from_json_entry(rid, entry) for rid, entry in data["records"].items()},
                   AttributionLink.from_json(data["attribution"]) if data.get("attribution") else None)


# -- building ----------------------------------------------------------------------------------------------


def _checks(graph: LedgerGraph, people: People, ids: Iterable[str]) -> dict[str, RecordCheck]:
    """For each record shown: its own checks (hash, signature, schema), whether its signer is trusted, and
    the anchor that bounds its time, if any."""
    anchors = AnchorIndex.load(graph.ledger)
    result: dict[str, RecordCheck] = {}
    for record_id in ids:
        try:
            record = graph.ledger.get(record_id)
        except (IntegrityError, OpenLedgerError) as exc:
            fact = graph.facts.get(record_id)
            result[record_id] = RecordCheck(record_id, fact.kind if fact else None, None, None, "damaged",
                                            exc.message)
            continue
        untrusted = graph.trust.status(record.actor, record.time)
        result[record_id] = RecordCheck(record_id, record.kind, people.by_key(record.actor), record.time,
                                        "verified" if untrusted is None else "untrusted", untrusted,
                                        anchors.anchored_before(record_id))
    return result


def _run(people: People, node: Node) -> RunView:
    body = node.body
    assert isinstance(node.ref, RunRef)
    return RunView(node.ref, body.get("run_name"), body.get("experiment_id"), body.get("status"),
                   body.get("start_time"), body.get("end_time"), body.get("params") or {},
                   body.get("metrics") or {}, body.get("user_id"),
                   people.by_key(node.records[0].actor) if node.records else None, body.get("git"),
                   body.get("dvc"), tuple(node.record_ids),
                   tuple(Attestation(r.id, people.by_key(r.actor), r.body.get("captured")) for r in node.records))


def _stage(node: Node) -> StageView:
    body = node.body
    assert isinstance(node.ref, StageRef)
    return StageView(node.ref, body.get("dvcfile"), body.get("cmd"), body.get("experiment"),
                     body.get("params") or {}, tuple(body.get("deps") or ()), tuple(body.get("outs") or ()),
                     body.get("git"), tuple(node.record_ids))


def _dataset(people: People, node: Node, produced_by: tuple[str, ...]) -> DatasetView:
    body = node.body
    assert isinstance(node.ref, DatasetRef)
    credits = tuple(DataCredit(people.contributor(entry), entry.get("files"), entry.get("bytes"),
                               tuple(entry.get("commits") or ()), tuple(entry.get("paths") or ()))
                    for entry in (people.data_credits(node.records[-1]) if node.records else ()))
    return DatasetView(node.ref, body.get("source"), body.get("files"), body.get("size"), body.get("commit"),
                       body.get("complete"), credits, tuple(node.record_ids), produced_by)


def _review(graph: LedgerGraph, people: People, fact: Fact) -> ReviewView:
    body = fact.body
    return ReviewView(fact.id, body.get("decision"), body.get("target"), body.get("message"),
                      people.by_key(fact.actor), fact.time, graph.trust.status(fact.actor, fact.time) is None,
                      fact.links)


def _feedback(people: People, fact: Fact) -> FeedbackView:
    body = fact.body
    return FeedbackView(fact.id, body.get("target"), body.get("label"), body.get("score"), body.get("comment"),
                        people.credited(fact), fact.time, fact.links)


def _lineage_people(people: People, lineage: Lineage) -> list[LineagePerson]:
    """Everyone in the lineage with their roles and the record ids (or commits) behind each, by name."""
    found: dict[str, tuple[Person, dict[str, list[str]]]] = {}

    def credit(person: Person | None, role: str, evidence: str) -> None:
        if person is None:
            return
        roles = found.setdefault(person.id, (person, {}))[1]
        roles.setdefault(role, [])
        if evidence not in roles[role]:
            roles[role].append(evidence)

    for dataset in lineage.datasets:
        for entry in people.data_credits(dataset.records[-1]) if dataset.records else ():
            credit(people.contributor(entry), "data", dataset.record_ids[-1])
    for author in lineage.code_authors:
        for sha in author.commits:
            credit(people.by_email(author.name, author.email), "code", f"commit:{sha}")
    for run in lineage.runs:
        if run.records:
            credit(people.by_key(run.records[0].actor), "training", run.records[0].id)
    for review in lineage.reviews:
        credit(people.by_key(review.actor), "review", review.id)
    for feedback in lineage.feedback:
        credit(people.credited(feedback), "feedback", feedback.id)
    rows = [LineagePerson(person, {role: tuple(ids) for role, ids in roles.items()})
            for person, roles in found.values()]
    return sorted(rows, key=lambda row: row.person.name)


def _producers(lineage: Lineage) -> dict[str, tuple[str, ...]]:
    """Dataset key -> the names of the recorded stages whose output it is (a pipeline output has no dataset
    record of its own: the stage record that produced it is its record)."""
    names = {stage.key: str(stage.body.get("name")) for stage in lineage.stages}
    produced: dict[str, list[str]] = {}
    for edge in lineage.edges:
        if edge.relation == "output of" and edge.target.key in names:
            produced.setdefault(edge.source.key, []).append(names[edge.target.key])
    return {key: tuple(stages) for key, stages in produced.items()}


def _author(people: People, author: CodeAuthor) -> AuthorView:
    return AuthorView(people.by_email(author.name, author.email), author.commits, author.files)


@paused_gc()  # a million facts stay alive while it tallies: midway collections are pure cost
def model_report(graph: LedgerGraph, name: str, version: str | None = None) -> ModelReport:
    """The provenance of one model version (``version`` None: the newest recorded)."""
    name, version = graph.resolve(name, version)
    lineage = graph.lineage(name, version)
    people = People.of(graph)
    model = lineage.model.body
    assert isinstance(lineage.model.ref, ModelRef)
    aliases = tuple(str(p.body["alias"]) for p in lineage.promotions if p.body.get("alias"))
    produced = _producers(lineage)
    commit_shas = tuple(node.ref.sha for node in lineage.commits if isinstance(node.ref, CommitRef))
    nodes = tuple(GraphNode(n.ref, n.label, bool(n.records) or n.kind == "commit" or bool(produced.get(n.key)))
                  for n in lineage.nodes)
    return ModelReport(
        model=ModelVersionView(lineage.model.ref, model.get("run_id"), model.get("model_id"), model.get("source"),
                               model.get("artifact_digest"), aliases, tuple(lineage.model.record_ids)),
        runs=tuple(_run(people, node) for node in lineage.runs),
        stages=tuple(_stage(node) for node in lineage.stages),
        datasets=tuple(_dataset(people, node, produced.get(node.key, ())) for node in lineage.datasets),
        code=CodeView(commit_shas, tuple(lineage.code_files),
                      {node.ref.sha: tuple(node.record_ids) for node in lineage.commits
                       if isinstance(node.ref, CommitRef)},
                      tuple(_author(people, a) for a in lineage.code_authors)),
        reviews=tuple(_review(graph, people, f) for f in lineage.reviews),
        feedback=tuple(_feedback(people, f) for f in lineage.feedback),
        promotions=tuple(PromotionView(p.id, p.body.get("alias"), people.by_key(p.actor), p.time)
                         for p in lineage.promotions),
        contributors=tuple(_lineage_people(people, lineage)),
        graph=GraphView(nodes, tuple(lineage.edges)),
        records=_checks(graph, people, lineage.record_ids()),
        attribution=_attribution(graph, name, version),
    )


def _attribution(graph: LedgerGraph, name: str, version: str) -> AttributionLink | None:
    view = newest_attribution(graph.ledger, name, version, trusted=graph.trust)
    if view is None:
        return None
    return AttributionLink(view.record, view.time, view.metric, view.mode, view.runs,
                           sum(1 for p in view.players if p.files))
