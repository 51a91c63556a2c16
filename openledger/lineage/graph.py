"""The lineage graph: what went into a model version, joined from the ledger's records.

registered model version -> logged model -> run -> dataset versions -> stages -> source data, plus code (the
commit the run or stage ran at, and the git authors of the code files the training stage depends on), reviews
and feedback. Joins are by MLflow run id, content digest, the links stage records carry (dataset records,
upstream stages, MLflow runs) and git commit. Several records about one thing (a run captured by the client
and by the server) are one node with several attestations.

The graph reads the whole ledger once with :meth:`Ledger.scan` (hashes checked, signatures not) and builds
dictionaries; a lineage is then a walk over them. Reports check the signatures of the records they show.

>>> import tempfile; from pathlib import Path
>>> graph = LedgerGraph.load(Ledger.init(Path(tempfile.mkdtemp())))
>>> graph.model_versions()
[]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from openledger._internal.memory import paused_gc
from openledger.credit.contributions import credited_identity
from openledger.errors import NotFoundError
from openledger.identity.trust import in_time_order
from openledger.lineage.authorship import CodeAuthor, CodeAuthorship
from openledger.lineage.datasets import is_mlflow_dataset, superseded_mlflow_datasets
from openledger.lineage.joins import input_digest
from openledger.lineage.nodes import CommitRef, DatasetRef, Edge, ModelRef, NodeRef, RunRef, StageRef
from openledger.store.ledger import TRUST_KINDS, Fact, Ledger

__all__ = ["REPORT_FIELDS", "CodeAuthor", "LedgerGraph", "Lineage", "Node"]

LINEAGE_KINDS = ("identity", "revocation", "dataset", "stage", "run", "model", "review", "feedback", "commit",
                 "attribution")

# What the reports (contributors, model, CI's summary of them) read of a feedback record's body: the fields they
# show and credit by. Captured MLflow feedback has a dozen and makes up most of a busy ledger, so a graph for the
# reports keeps these (LedgerGraph.load(ledger, fields=REPORT_FIELDS)); reconcile compares the others with
# MLflow and loads them all.
REPORT_FIELDS: Mapping[str, tuple[str, ...]] = {"feedback": ("comment", "label", "score", "source", "target")}


@dataclass
class Node:
    """One thing in a lineage (a model version, a run, a dataset version, a stage execution, a commit), with
    every record that attests it (newest last). Its identity is the typed ``ref``; ``label`` is how it is
    shown (a run's name, a stage's name)."""

    ref: NodeRef
    label: str
    records: list[Fact] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def kind(self) -> str:
        return self.ref.kind

    @property
    def body(self) -> Mapping[str, Any]:
        return self.records[-1].body if self.records else {}

    @property
    def record_ids(self) -> list[str]:
        return [r.id for r in self.records]


@dataclass
class Lineage:
    """Everything that went into one model version, and who reviewed and commented on it."""

    model: Node
    runs: list[Node] = field(default_factory=list)
    datasets: list[Node] = field(default_factory=list)
    stages: list[Node] = field(default_factory=list)
    commits: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    code_authors: list[CodeAuthor] = field(default_factory=list)
    code_files: list[str] = field(default_factory=list)
    reviews: list[Fact] = field(default_factory=list)
    feedback: list[Fact] = field(default_factory=list)
    promotions: list[Fact] = field(default_factory=list)

    @property
    def nodes(self) -> list[Node]:
        return [self.model, *self.runs, *self.stages, *self.datasets, *self.commits]

    def record_ids(self) -> list[str]:
        ids = [rid for node in self.nodes for rid in node.record_ids]
        ids += [f.id for f in (*self.reviews, *self.feedback, *self.promotions)]
        return list(dict.fromkeys(ids))


def _spelled(value: Any) -> tuple[str, str] | None:
    """A JSON value as a memo key, one spelling per value: its type's name (the string "null" is not None) and
    orjson's text, five times faster than repr; repr where orjson would lose something (NaN and the
    infinities, which it writes as null; integers past 64 bits, which it refuses)."""
    if value is None:
        return None
    if type(value) is str:
        return "str", value
    try:
        text = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return type(value).__name__, repr(value)
    return type(value).__name__, repr(value) if b"null" in text else text.decode()


def _version_of(body: Mapping[str, Any]) -> str:
    return str(body.get("version", "?"))


class LedgerGraph:
    """The ledger's records indexed for lineage walks."""

    def __init__(self, ledger: Ledger, facts: Iterable[Fact], damaged: list[tuple[str, str]] | None = None) -> None:
        self.ledger = ledger
        self.damaged = damaged or []
        self.facts: dict[str, Fact] = {}
        self.by_kind: dict[str, list[Fact]] = defaultdict(list)
        self._linking: dict[str, dict[str, list[Fact]]] = {}  # kind -> link target -> its records linking it
        self._activity: dict[str, list[Fact]] | None = None  # record id -> reviews and feedback linking it
        self.runs: dict[str, list[Fact]] = defaultdict(list)
        self.versions: dict[tuple[str, str], list[Fact]] = defaultdict(list)
        self.promotions: dict[tuple[str, str], list[Fact]] = defaultdict(list)
        self.datasets: dict[str, list[Fact]] = defaultdict(list)  # digest -> dataset records
        self.by_target: dict[str, list[Fact]] = defaultdict(list)  # "model:NAME@V" -> feedback naming it
        self.bindings: dict[str, list[Fact]] = defaultdict(list)  # git commit -> commit records naming it
        with paused_gc():  # 100k facts and their link lists, all kept: see _internal/memory.py
            ordered = in_time_order(facts)
            for fact in ordered:
                self.facts[fact.id] = fact
                self.by_kind[fact.kind].append(fact)
                body = fact.body
                if fact.kind == "run" and isinstance(body.get("run_id"), str):
                    self.runs[body["run_id"]].append(fact)
                elif fact.kind == "model" and isinstance(body.get("name"), str):
                    key = (body["name"], _version_of(body))
                    (self.promotions if "action" in body else self.versions)[key].append(fact)
                elif fact.kind == "dataset" and isinstance(body.get("digest"), str):
                    self.datasets[body["digest"]].append(fact)
                elif (fact.kind == "feedback" and isinstance(target := body.get("target"), str)
                      and target.startswith("model:")):  # the only targets asked about
                    self.by_target[target].append(fact)
                elif fact.kind == "commit" and isinstance(body.get("commit"), str):
                    self.bindings[body["commit"]].append(fact)
        self.superseded = superseded_mlflow_datasets(self.by_kind.get("dataset", []), self.by_kind.get("stage", []))
        for records in self.datasets.values():  # MLflow's records first where DVC's share the digest: DVC's win
            records.sort(key=lambda f: not is_mlflow_dataset(f.body))
        # Lineages share code: git is asked once per question, whatever the number of model versions.
        self.authorship = CodeAuthorship(ledger.root.parent)
        self._credits: dict[tuple[str, str, tuple[str, str] | None], tuple[str, str | None] | None] = {}
        self._credits_of: dict[tuple[str, str, int], tuple[object, tuple[str, str | None] | None]] = {}
        # Trust is what identity and revocation records establish, and `load` checks those in full (the other
        # facts are hash-checked only): an endorsement with a forged signature must not count.
        self.trust = ledger.trust_of((*self.by_kind["identity"], *self.by_kind["revocation"]))

    @classmethod
    def load(cls, ledger: Ledger, *, fields: Mapping[str, tuple[str, ...]] | None = None,
             cache: bool = False) -> LedgerGraph:
        """The graph of every lineage record (:meth:`Ledger.scan`): with ``fields``, bodies keep only those
        fields (:data:`REPORT_FIELDS` for the reports); with ``cache``, packs decoded by an earlier load are read
        from this user's fact cache (:mod:`openledger.store.factcache`)."""
        damaged: list[tuple[str, str]] = []
        with paused_gc():
            facts = ledger.scan(LINEAGE_KINDS, damaged, checked=TRUST_KINDS, fields=fields, cache=cache)
            return cls(ledger, facts, damaged)

    # -- links --------------------------------------------------------------------------------------------

    def linking(self, target: str, kind: str) -> list[Fact]:
        """The records of ``kind`` that link ``target`` (a record id or a join key such as ``mlflowrun:ID``),
        oldest first. Indexed per kind on first use: a million feedback records carry four million links,
        which a report that never asks about them should not index."""
        index = self._linking.get(kind)
        if index is None:
            index = self._linking[kind] = defaultdict(list)
            with paused_gc():
                for fact in self.by_kind.get(kind, ()):
                    for link in fact.links:
                        index[link].append(fact)
        return index.get(target, [])

    def activity(self, record_id: str) -> list[Fact]:
        """The reviews and feedback that link the record ``record_id`` of this graph (reviews first, each kind
        oldest first). Only links to the graph's records are indexed: captured feedback's join keys (its
        trace, run and assessment) are not asked about here."""
        if self._activity is None:
            self._activity = defaultdict(list)
            with paused_gc():
                known, index = self.facts.__contains__, self._activity
                for kind in ("review", "feedback"):
                    for fact in self.by_kind.get(kind, ()):
                        for link in filter(known, fact.links):
                            index[link].append(fact)
        return self._activity.get(record_id, [])

    # -- model versions -------------------------------------------------------------------------------------

    def model_versions(self, name: str | None = None) -> list[tuple[str, str]]:
        """(name, version) of every recorded model version, by name then numeric version."""
        keys = [k for k in self.versions if name is None or k[0] == name]
        return sorted(keys, key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else 0, k[1]))

    def resolve(self, name: str, version: str | None) -> tuple[str, str]:
        """A model version by number (``None``: the newest recorded one)."""
        candidates = self.model_versions(name)
        if not candidates:
            raise NotFoundError(f"no model named {name!r} in the ledger",
                                hint="`openledger log --kind model` lists the recorded models")
        if version is None:
            return candidates[-1]
        if (name, version) not in self.versions:
            known = ", ".join(v for _, v in candidates)
            raise NotFoundError(f"no record of {name} version {version} (recorded versions: {known})",
                                hint="record it with `openledger capture mlflow`")
        return name, version

    # -- lineage --------------------------------------------------------------------------------------------

    def lineage(self, name: str, version: str) -> Lineage:
        return self.lineages([(name, version)])[(name, version)]

    def lineages(self, versions: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Lineage]:
        """The lineages of several model versions, keyed by (name, version). Git is asked about their code
        together, so a report over fifty versions makes a handful of git calls rather than fifty."""
        walked = {key: self._walk(*key) for key in dict.fromkeys(versions)}
        self.authorship.prefetch([(commit, lineage.code_files) for lineage, commit in walked.values()])
        for lineage, commit in walked.values():
            lineage.code_authors = self.authorship.authors(commit, lineage.code_files)
        return {key: lineage for key, (lineage, _) in walked.items()}

    def _walk(self, name: str, version: str) -> tuple[Lineage, Any]:
        """A lineage without its code authors, and the commit its training stage ran at (to ask git about)."""
        model_records = self.versions[(name, version)]
        model = Node(ModelRef(name, version), f"{name} v{version}", list(model_records))
        lineage = Lineage(model, promotions=list(self.promotions.get((name, version), ())))
        seen: dict[str, Node] = {model.key: model}

        def add(node: Node, bucket: list[Node]) -> Node:
            if node.key in seen:
                existing = seen[node.key]
                known = set(existing.record_ids)  # once: a commit binds thousands of records
                existing.records += [r for r in node.records if r.id not in known]
                return existing
            seen[node.key] = node
            bucket.append(node)
            return node

        run_ids = list(dict.fromkeys(str(r.body["run_id"]) for r in model_records if r.body.get("run_id")))
        training_stages: list[Fact] = []
        for run_id in run_ids:
            run_facts = self.runs.get(run_id, [])
            body = run_facts[-1].body if run_facts else {}
            run = add(Node(RunRef(run_id), str(body.get("run_name") or run_id), list(run_facts)), lineage.runs)
            lineage.edges.append(Edge(model.ref, run.ref, "trained by"))
            for dataset_input in body.get("inputs") or []:
                digest = input_digest(dataset_input) if isinstance(dataset_input, Mapping) else None
                if isinstance(digest, str):
                    dataset = self._dataset_node(digest, dataset_input)
                    lineage.edges.append(Edge(run.ref, add(dataset, lineage.datasets).ref, "used"))
            for fact in run_facts:
                for stage in self.linking(fact.id, "stage"):
                    if stage not in training_stages:
                        training_stages.append(stage)
                        lineage.edges.append(Edge(self._stage_ref(stage), run.ref, "ran"))
            self._add_commit(lineage, add, run.ref, (body.get("git") or {}).get("commit"))
        queue = list(training_stages)
        while queue:
            stage = queue.pop(0)
            node = Node(self._stage_ref(stage), str(stage.body.get("name")), [stage])
            if node.key in seen:
                continue
            add(node, lineage.stages)
            self._add_commit(lineage, add, node.ref, (stage.body.get("git") or {}).get("commit"))
            for target in stage.links:
                linked = self.facts.get(target)
                if linked is None:
                    continue
                if linked.kind == "stage" and linked.body.get("name") != stage.body.get("name"):
                    lineage.edges.append(Edge(node.ref, self._stage_ref(linked), "after"))
                    queue.append(linked)
                elif linked.kind == "dataset":
                    dataset = add(self._dataset_node(str(linked.body.get("digest")), None), lineage.datasets)
                    lineage.edges.append(Edge(node.ref, dataset.ref, "read"))
        self._link_outputs(lineage)
        commit = None
        if training_stages:
            commit = (training_stages[-1].body.get("git") or {}).get("commit")
            lineage.code_files = self._code_files(training_stages[-1])
        self._attach_activity(lineage, name, version)
        return lineage, commit

    @staticmethod
    def _link_outputs(lineage: Lineage) -> None:
        """A dataset that is a pipeline output (no dataset record of its own) points at the stage that made it."""
        for dataset in lineage.datasets:
            assert isinstance(dataset.ref, DatasetRef)
            digest = dataset.ref.digest
            for stage in lineage.stages:
                if any(isinstance(o, Mapping) and o.get("hash") == digest for o in stage.body.get("outs") or []):
                    lineage.edges.append(Edge(dataset.ref, stage.ref, "output of"))

    def _attach_activity(self, lineage: Lineage, name: str, version: str) -> None:
        """Reviews and feedback on any record of the lineage (or naming the model version as their target)."""
        found: dict[str, Fact] = {}
        for record_id in lineage.record_ids():
            for fact in self.activity(record_id):
                found.setdefault(fact.id, fact)
        for fact in self.by_target.get(f"model:{name}@{version}", []):
            found.setdefault(fact.id, fact)
        for fact in in_time_order(found.values()):
            (lineage.reviews if fact.kind == "review" else lineage.feedback).append(fact)

    @staticmethod
    def _stage_ref(stage: Fact) -> StageRef:
        return StageRef(str(stage.body.get("dvcfile", "dvc.yaml")), str(stage.body.get("name")), stage.id)

    def _dataset_node(self, digest: str, dataset_input: Mapping[str, Any] | None) -> Node:
        records = self.datasets.get(digest, [])
        same = next((str(r.body["dvc"].get("hash")) for r in records if r.id in self.superseded
                     and isinstance(r.body.get("dvc"), Mapping)), None)
        if same and same != digest and self.datasets.get(same):
            # MLflow's fingerprint of a file DVC tracks: one node, the DVC version's, with both records
            digest, records = same, [*records, *self.datasets[same]]
        path = str(records[-1].body.get("path")) if records else str((dataset_input or {}).get("name") or digest)
        return Node(DatasetRef(path, digest), f"{path} {digest[:16]}", list(records))

    def _add_commit(self, lineage: Lineage, add: Any, source: NodeRef, commit: Any) -> None:
        if not isinstance(commit, str) or not commit:
            return
        node = add(Node(CommitRef(commit), commit[:10], list(self.bindings.get(commit, ()))), lineage.commits)
        edge = Edge(source, node.ref, "at")
        if edge not in lineage.edges:
            lineage.edges.append(edge)

    def _code_files(self, stage: Fact) -> list[str]:
        """The training stage's deps that git tracks (code, configs), not DVC-tracked data."""
        return self.authorship.tracked([str(d.get("path")) for d in stage.body.get("deps") or []
                                        if isinstance(d, Mapping)])

    def credited(self, fact: Fact) -> tuple[str, str | None] | None:
        """:func:`~openledger.credit.contributions.credited_identity` of a review or feedback record, remembered per
        (kind, signer, source): matching a source to an identity compares it with every identity, and
        captured feedback repeats the same few sources thousands of times."""
        source = fact.body.get("source")
        if type(source) is dict:  # a scan shares equal sources (REPORT_FIELDS): one memo entry per object
            seen = self._credits_of.get((fact.kind, fact.actor, id(source)))
            if seen is not None:
                return seen[1]
        key = (fact.kind, fact.actor, _spelled(source))
        if key not in self._credits:
            self._credits[key] = credited_identity(fact, self.trust)
        if type(source) is dict:  # kept with the object: its id is not reused while the memo holds it
            self._credits_of[(fact.kind, fact.actor, id(source))] = (source, self._credits[key])
        return self._credits[key]

    def data_contributors(self, fact: Fact) -> list[Mapping[str, Any]]:
        """Whom a dataset record credits in the data role: its ``contributors``, except for an MLflow dataset
        record of data DVC tracks and the ledger has a DVC record of (that record's credit, per file, wins)."""
        if fact.id in self.superseded:
            return []
        return [entry for entry in fact.body.get("contributors") or [] if isinstance(entry, Mapping)]

    def person(self, keyid: str) -> str:
        return self.trust.describe(keyid)

    def key_for_email(self, email: str) -> str | None:
        """The key this email credits (:meth:`TrustState.key_for_email`): ``None`` when contested or unclaimed."""
        return self.trust.key_for_email(email)

    def root_path(self) -> Path:
        return self.ledger.root.parent
