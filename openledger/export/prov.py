"""W3C PROV-JSON (https://www.w3.org/submissions/prov-json/) of one model version's provenance.

Entities: the model version (with its artifact digest), dataset versions, stage outputs and code commits.
Activities: MLflow runs (with start and end times), DVC stage executions, reviews, feedback and promotions.
Agents: the people the report names and every key that signed one of its records. Relations carry
``prov:role`` (``ol:data``, ``ol:code``, ``ol:training``, ``ol:review``, ``ol:feedback``, ``ol:signer``) and the
``ol:record`` ids behind them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from openledger.credit.people import Person
from openledger.export import ID_NAMESPACE, missing_extra
from openledger.lineage.nodes import CommitRef
from openledger.reports.model import ModelReport
from openledger.store.canonical import tag_nonfinite

if TYPE_CHECKING:
    from prov.model import ProvDocument

__all__ = ["PROV_NAMESPACE", "prov_document", "prov_json"]

PROV_NAMESPACE = "https://openledger.dev/ns/prov#"


def prov_document(report: ModelReport) -> ProvDocument:
    """The provenance as a :class:`prov.model.ProvDocument`."""
    try:
        from prov.model import ProvDocument  # noqa: PLC0415 - the export extra is optional
    except ImportError:
        raise missing_extra("prov") from None
    return _ProvBuilder(ProvDocument(), report).build()


def prov_json(report: ModelReport) -> str:
    """PROV-JSON text."""
    text = prov_document(report).serialize(format="json", indent=2, sort_keys=True)
    return f"{text}\n"


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    # RFC 3339 with "Z": datetime.fromisoformat reads "Z" only from Python 3.11 on
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _json_text(value: Any) -> str:
    """A structured value (params, metrics) as one attribute: compact sorted JSON, non-finite numbers tagged."""
    return json.dumps(tag_nonfinite(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class _ProvBuilder:
    def __init__(self, doc: ProvDocument, report: ModelReport) -> None:
        self.doc = doc
        self.report = report
        self.model = report.model.ref.key
        self.ol = doc.add_namespace("ol", PROV_NAMESPACE)
        self.ids = doc.add_namespace("ledger", ID_NAMESPACE)
        self.entities: set[str] = set()
        self.activities: set[str] = set()
        self.generated: set[tuple[str, str]] = set()
        self.records = {run.ref.key: run.records for run in report.runs}
        self.records.update({stage.ref.key: stage.records for stage in report.stages})

    def q(self, local: str) -> Any:
        return self.ids[local]

    def attrs(self, kind: str, values: Mapping[str, Any], records: Iterable[str] = ()) -> list[tuple[Any, Any]]:
        pairs: list[tuple[Any, Any]] = [("prov:type", self.ol[kind])]
        for key, value in values.items():
            if isinstance(value, list | tuple):
                pairs += [(self.ol[key], item) for item in value if item is not None]
            elif value is not None:
                pairs.append((self.ol[key], value))
        for rid in records:
            pairs.append((self.ol["record"], rid))
            check = self.report.records.get(rid)
            if check is not None and not check.verified:
                pairs.append((self.ol["unverifiedRecord"], f"{rid} {check.status}"))
        return pairs

    def role(self, role: str, records: Iterable[str] = (), **values: Any) -> list[tuple[Any, Any]]:
        pairs: list[tuple[Any, Any]] = [("prov:role", self.ol[role])]
        pairs += [(self.ol[key], value) for key, value in values.items() if value is not None]
        return pairs + [(self.ol["record"], rid) for rid in records]

    def entity(self, ident: str, kind: str, values: Mapping[str, Any], records: Iterable[str] = (),
               label: str | None = None) -> None:
        pairs = self.attrs(kind, values, records)
        if label:
            pairs.append(("prov:label", label))
        self.doc.entity(self.q(ident), pairs)
        self.entities.add(ident)

    def agent(self, person_id: str) -> Any:
        return self.q(f"agent:{person_id}")

    def build(self) -> ProvDocument:
        self.agents()
        self.entities_of_lineage()
        self.runs_and_stages()
        self.lineage_relations()
        self.credit()
        self.activity_on_lineage()
        self.signatures()
        return self.doc

    def agents(self) -> None:
        people = self.report.people()
        signers = {check.signer.key: check.signer for check in self.report.records.values()
                   if check.signer is not None and check.signer.key}
        for person_id, person in people.items():
            kinds = [("prov:type", self.doc.valid_qualified_name("prov:Person"))]
            if person_id in signers:
                kinds.append(("prov:type", self.ol["Signer"]))
            values = {"name": person.name, "email": person.email, "keyId": person.key}
            self.doc.agent(self.agent(person_id), [*kinds, ("prov:label", person.label),
                                                   *[(self.ol[k], v) for k, v in values.items() if v]])
        for keyid, signer in signers.items():
            if keyid not in people:
                self.doc.agent(self.agent(keyid), [("prov:type", self.ol["Signer"]), ("prov:label", signer.label),
                                                   (self.ol["keyId"], keyid)])

    def entities_of_lineage(self) -> None:
        report = self.report
        model = report.model
        self.entity(self.model, "ModelVersion",
                    {"name": model.ref.name, "version": model.ref.version, "runId": model.run_id,
                     "modelId": model.model_id, "source": model.source, "artifactDigest": model.artifact_digest,
                     "alias": list(model.aliases)},
                    model.records, label=f"{model.ref.name} v{model.ref.version}")
        for dataset in report.datasets:
            evidence = dataset.records or self.records_naming(dataset.ref.key)
            self.entity(dataset.ref.key, "Dataset",
                        {"path": dataset.ref.path, "digest": dataset.ref.digest, "files": dataset.files,
                         "size": dataset.size, "commit": dataset.commit, "complete": dataset.complete,
                         "recorded": dataset.recorded},
                        evidence, label=dataset.ref.path)
        for stage in report.stages:
            for out, ref in zip(stage.outs, stage.output_refs(), strict=True):
                if ref.key not in self.entities:
                    self.entity(ref.key, "StageOutput", {"path": out.get("path"), "digest": out.get("hash"),
                                                         "size": out.get("size")}, stage.records,
                                label=str(out.get("path")))
        for sha in report.code.commits:
            key = CommitRef(sha).key
            evidence = report.code.commit_records.get(sha) or self.records_naming(key)
            self.entity(key, "CodeCommit", {"commit": sha}, evidence, label=sha[:10])

    def records_naming(self, key: str) -> list[str]:
        """For an element with no record of its own (a pipeline output): the records that name it."""
        neighbours = self.report.graph.neighbours(key)
        return [rid for key, records in self.records.items() if key in neighbours for rid in records]

    def runs_and_stages(self) -> None:
        for run in self.report.runs:
            git, dvc = run.git or {}, run.dvc or {}
            values = {"runId": run.run_id, "name": run.name, "experimentId": run.experiment_id,
                      "status": run.status, "params": _json_text(dict(run.params)),
                      "metrics": _json_text(dict(run.metrics)), "gitCommit": git.get("commit"),
                      "gitDirty": git.get("dirty"), "userId": run.user_id, "dvcStage": dvc.get("stage")}
            self.doc.activity(self.q(run.ref.key), _time(run.start_time), _time(run.end_time),
                              [*self.attrs("MlflowRun", values, run.records),
                               ("prov:label", run.name or run.run_id)])
            self.activities.add(run.ref.key)
            if run.trainer:
                self.doc.association(self.q(run.ref.key), self.agent(run.trainer.id),
                                     other_attributes=self.role("training", run.records[:1]))
        for stage in self.report.stages:
            values = {"name": stage.name, "dvcfile": stage.dvcfile, "cmd": stage.cmd,
                      "experiment": stage.experiment, "params": _json_text(dict(stage.params)),
                      "gitCommit": stage.commit}
            # DVC records no start or end time of a stage execution: only the record's own time is known
            self.doc.activity(self.q(stage.ref.key), None, None,
                              [*self.attrs("DvcStageExecution", values, stage.records),
                               ("prov:label", stage.name)])
            self.activities.add(stage.ref.key)

    def generation(self, entity: str, activity: str, records: Iterable[str] = ()) -> None:
        if (entity, activity) not in self.generated and entity in self.entities:
            self.generated.add((entity, activity))
            self.doc.generation(self.q(entity), self.q(activity),
                                other_attributes=[(self.ol["record"], r) for r in records] or None)

    def lineage_relations(self) -> None:
        graph, records = self.report.graph, self.records
        for edge in graph.edges_of("trained by"):
            self.generation(edge.source.key, edge.target.key, records.get(edge.target.key, ()))
        trained_by = graph.edges_of("trained by")
        for edge in graph.edges_of("used"):
            run, dataset = edge.source.key, edge.target.key
            self.doc.usage(self.q(run), self.q(dataset), other_attributes=self.role("input", records.get(run, ())))
            for trained in trained_by:
                if trained.target.key == run:
                    self.doc.derivation(self.q(trained.source.key), self.q(dataset), self.q(run))
        for edge in graph.edges_of("ran"):
            # the MLflow run was started by the stage's command, inside the DVC stage execution
            self.doc.start(self.q(edge.target.key), starter=self.q(edge.source.key))
        for edge in graph.edges_of("after"):
            self.doc.communication(self.q(edge.source.key), self.q(edge.target.key))
        read = graph.reads()
        for edge in graph.edges_of("read"):
            self.doc.usage(self.q(edge.source.key), self.q(edge.target.key),
                           other_attributes=self.role("input", records[edge.source.key]))
        for edge in graph.edges_of("at"):
            if edge.target.key in self.entities:
                self.doc.usage(self.q(edge.source.key), self.q(edge.target.key),
                               other_attributes=self.role("code", records[edge.source.key]))
        for edge in graph.edges_of("output of"):
            self.generation(edge.source.key, edge.target.key, records[edge.target.key])
        for stage in self.report.stages:
            for output in stage.output_refs():
                self.generation(output.key, stage.ref.key, stage.records)
                for source in read.get(stage.ref.key, []):
                    if source.key != output.key:
                        self.doc.derivation(self.q(output.key), self.q(source.key), self.q(stage.ref.key))

    def credit(self) -> None:
        report = self.report
        for dataset in report.datasets:
            for entry in dataset.contributors:
                self.doc.attribution(self.q(dataset.ref.key), self.agent(entry.person.id), other_attributes=[
                    *self.role("data", dataset.records[-1:], files=entry.files, bytes=entry.bytes),
                    *[(self.ol["gitCommit"], sha) for sha in entry.commits]])
        runs = {run.ref.key for run in report.runs}
        run_commits = [edge.target.key for edge in report.graph.edges_of("at") if edge.source.key in runs]
        code_commits = [CommitRef(sha).key for sha in report.code.commits]
        trained_at = [c for c in code_commits if c in run_commits] or code_commits
        for author in report.code.authors:
            for commit in trained_at:
                self.doc.attribution(self.q(commit), self.agent(author.person.id), other_attributes=[
                    *self.role("code"), *[(self.ol["gitCommit"], sha) for sha in author.commits],
                    *[(self.ol["file"], path) for path in author.files]])

    def on_subjects(self, activity: str, links: Iterable[str], fallback: str | None) -> None:
        wanted = set(links)
        subjects = [key for key, records in self.report.element_records().items() if wanted & set(records)]
        for subject in subjects or ([fallback] if fallback else []):
            if subject in self.activities:
                self.doc.communication(self.q(activity), self.q(subject))
            else:
                self.doc.usage(self.q(activity), self.q(subject), other_attributes=[("prov:role", self.ol["subject"])])

    def record_activity(self, kind: str, record: str, time: str, values: Mapping[str, Any], *, role: str,
                        person: Person | None) -> str:
        """A review, feedback or promotion: an activity at its record's time, associated with its author."""
        ident = f"{kind.lower()}:{record}"
        when = _time(time)
        self.doc.activity(self.q(ident), when, when, self.attrs(kind, values, [record]))
        self.activities.add(ident)
        if person:
            self.doc.association(self.q(ident), self.agent(person.id), other_attributes=self.role(role, [record]))
        return ident

    def activity_on_lineage(self) -> None:
        report = self.report
        for review in report.reviews:
            values = {"decision": review.decision, "message": review.message, "target": review.target,
                      "trusted": review.trusted}
            ident = self.record_activity("Review", review.record, review.time, values, role="review",
                                         person=review.reviewer)
            self.on_subjects(ident, review.links, self.model)
        for item in report.feedback:
            values = {"label": item.label, "comment": item.comment, "target": item.target,
                      "score": item.score if isinstance(item.score, int | float) else None}
            ident = self.record_activity("Feedback", item.record, item.time, values, role="feedback", person=item.by)
            self.on_subjects(ident, item.links, None)
        for promotion in report.promotions:
            # the promoter is the promotion record's signer, associated with it in signatures()
            ident = self.record_activity("Promotion", promotion.record, promotion.time, {"alias": promotion.alias},
                                         role="signer", person=None)
            self.doc.usage(self.q(ident), self.q(self.model), other_attributes=[("prov:role", self.ol["subject"])])

    def signatures(self) -> None:
        """Each record's signer is responsible for what the record attests: attribution for an entity,
        association for an activity, with the record's id."""
        report = self.report
        elements: list[tuple[str, Iterable[str]]] = list(report.element_records().items())
        elements += [(f"review:{r.record}", [r.record]) for r in report.reviews]
        elements += [(f"feedback:{f.record}", [f.record]) for f in report.feedback]
        elements += [(f"promotion:{p.record}", [p.record]) for p in report.promotions]
        elements += [(CommitRef(sha).key, ids) for sha, ids in report.code.commit_records.items()
                     if CommitRef(sha).key in self.entities]
        for element, records in elements:
            for rid in records:
                check = report.records.get(rid)
                if check is None or check.signer is None or not check.signer.key:
                    continue
                attributes = self.role("signer", [rid], status=check.status)
                if element in self.activities:
                    self.doc.association(self.q(element), self.agent(check.signer.key), other_attributes=attributes)
                else:
                    self.doc.attribution(self.q(element), self.agent(check.signer.key), other_attributes=attributes)
