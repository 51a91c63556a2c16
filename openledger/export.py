"""Standard exports of one model version's provenance: W3C PROV-JSON, an in-toto Statement in a signed DSSE
envelope, and a CycloneDX 1.6 ML-BOM.

Each builder takes the report of :func:`openledger.report.model_report` (the lineage, its people and the
verification status of every record) and returns a JSON document as text::

    report = model_report(LedgerGraph.load(ledger), "wine-classifier", "2")
    prov_json(report)                                        # PROV-JSON, through the prov library
    intoto_envelope(intoto_statement(report), signer)        # DSSE envelope around an in-toto Statement v1
    cyclonedx_json(report)                                   # CycloneDX 1.6, through cyclonedx-python-lib

prov and cyclonedx-python-lib are the optional ``export`` extra: they are imported when a builder runs, so
the core imports without them; a missing one is a :class:`BadInputError` naming the extra to install.
Every element carries the ids of the ledger records behind it, in OpenLedger's own namespace
(``ol:record`` in PROV, ``records`` in the in-toto predicate, ``openledger:record`` properties in CycloneDX).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from openledger import __version__
from openledger.errors import BadInputError, IntegrityError
from openledger.store.canonical import canonical_bytes, tag_nonfinite
from openledger.store.dsse import pae
from openledger.store.keys import Signer

if TYPE_CHECKING:
    from cyclonedx.model.bom import Bom
    from prov.model import ProvDocument

__all__ = [
    "EXPORT_FORMATS",
    "INTOTO_PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "PROV_NAMESPACE",
    "cyclonedx_bom",
    "cyclonedx_json",
    "intoto_envelope",
    "intoto_statement",
    "prov_document",
    "prov_json",
    "unverified_records",
]

EXPORT_FORMATS = ("prov-json", "in-toto", "cyclonedx")
PROV_NAMESPACE = "https://openledger.dev/ns/prov#"
# Element identifiers are the lineage graph's node ids (model:NAME@VERSION, run:ID, dataset:PATH@DIGEST,
# stage:FILE:NAME@RECORD, commit:SHA) and agent:<person id> under one URN prefix: stable across exports.
ID_NAMESPACE = "urn:openledger:"
INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://openledger.dev/attestation/model-provenance/v1"
_INSTALL_HINT = "pip install 'openledger-mlops[export]'"


def _missing_extra(library: str) -> BadInputError:
    return BadInputError(f"{library} is not installed (the export formats need the export extra)",
                         hint=_INSTALL_HINT)


# -- what every format needs from the report -------------------------------------------------------------


def _people(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every person the report names, by person id (a key id when the person has an identity)."""
    found: dict[str, dict[str, Any]] = {}

    def add(person: Mapping[str, Any] | None) -> None:
        if person and person.get("id"):
            found.setdefault(str(person["id"]), dict(person))

    for entry in report["contributors"]:
        add(entry["person"])
    for run in report["runs"]:
        add(run.get("trainer"))
    for dataset in report["datasets"]:
        for entry in dataset["contributors"]:
            add(entry["person"])
    for author in report["code"]["authors"]:
        add(author["person"])
    for review in report["reviews"]:
        add(review["reviewer"])
    for item in report["feedback"]:
        add(item.get("by"))
    return found


def _signers(report: Mapping[str, Any]) -> dict[str, str]:
    """Key id -> how the ledger describes it, for every key that signed a record of the report."""
    return {str(entry["signer_key"]): str(entry.get("signer") or entry["signer_key"])
            for entry in report["records"].values() if entry.get("signer_key")}


def _elements_with(report: Mapping[str, Any], record_ids: Iterable[str]) -> list[str]:
    """The lineage nodes (model, runs, stages, datasets) whose records include any of ``record_ids``."""
    wanted = set(record_ids)
    nodes = [report["model"] | {"id": _model_id(report)}, *report["runs"], *report["stages"], *report["datasets"]]
    return [str(node["id"]) for node in nodes if wanted & set(node.get("records") or [])]


def _model_id(report: Mapping[str, Any]) -> str:
    return f"model:{report['model']['name']}@{report['model']['version']}"


def _subject_ref(report: Mapping[str, Any]) -> str:
    return f"{report['model']['name']}@{report['model']['version']}"


def _edges(report: Mapping[str, Any], relation: str) -> Iterator[tuple[str, str]]:
    for edge in report["graph"]["edges"]:
        if edge["relation"] == relation:
            yield str(edge["from"]), str(edge["to"])


def _reads(report: Mapping[str, Any]) -> dict[str, list[str]]:
    """Stage id -> the datasets it read."""
    read: dict[str, list[str]] = {}
    for stage, dataset in _edges(report, "read"):
        read.setdefault(stage, []).append(dataset)
    return read


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    # RFC 3339 with "Z": datetime.fromisoformat reads "Z" only from Python 3.11 on
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _json_text(value: Any) -> str:
    """A structured value (params, metrics) as one attribute: compact sorted JSON, non-finite numbers tagged."""
    return json.dumps(tag_nonfinite(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _label(person: Mapping[str, Any]) -> str:
    email = person.get("email")
    return f"{person['name']} <{email}>" if email and email != person["name"] else str(person["name"])


def _digest_set(digest: str) -> dict[str, str]:
    """An OpenLedger digest as an in-toto DigestSet. DVC's directory hash (``md5:<hex>.dir``) is the MD5 of
    DVC's manifest, not of any file, so it gets an algorithm name of its own instead of posing as ``md5``."""
    algorithm, _, value = digest.partition(":")
    if value.endswith(".dir"):
        return {"dvcDirMd5": value.removesuffix(".dir")}
    if value and algorithm:
        return {algorithm: value}
    return {}


# -- W3C PROV ----------------------------------------------------------------------------------------------


def prov_document(report: Mapping[str, Any]) -> ProvDocument:
    """The provenance as a :class:`prov.model.ProvDocument`.

    Entities: the model version (with its artifact digest), dataset versions, stage outputs and code
    commits. Activities: MLflow runs (with start and end times), DVC stage executions, reviews, feedback
    and promotions. Agents: the people the report names and every key that signed one of its records.
    Relations carry ``prov:role`` (``ol:data``, ``ol:code``, ``ol:training``, ``ol:review``, ``ol:feedback``,
    ``ol:signer``) and the ``ol:record`` ids behind them.
    """
    try:
        from prov.model import ProvDocument  # noqa: PLC0415 - the export extra is optional
    except ImportError:
        raise _missing_extra("prov") from None
    return _ProvBuilder(ProvDocument(), report).build()


def prov_json(report: Mapping[str, Any]) -> str:
    """PROV-JSON text (https://www.w3.org/submissions/prov-json/)."""
    text = prov_document(report).serialize(format="json", indent=2, sort_keys=True)
    return f"{text}\n"


class _ProvBuilder:
    def __init__(self, doc: ProvDocument, report: Mapping[str, Any]) -> None:
        self.doc = doc
        self.report = report
        self.ol = doc.add_namespace("ol", PROV_NAMESPACE)
        self.ids = doc.add_namespace("ledger", ID_NAMESPACE)
        self.entities: set[str] = set()
        self.activities: set[str] = set()
        self.generated: set[tuple[str, str]] = set()

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
            status = (self.report["records"].get(rid) or {}).get("status")
            if status not in (None, "verified"):
                pairs.append((self.ol["unverifiedRecord"], f"{rid} {status}"))
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
        people = _people(self.report)
        signers = _signers(self.report)
        for person_id, person in people.items():
            kinds = [("prov:type", self.doc.valid_qualified_name("prov:Person"))]
            if person_id in signers:
                kinds.append(("prov:type", self.ol["Signer"]))
            values = {"name": person.get("name"), "email": person.get("email"), "keyId": person.get("key")}
            self.doc.agent(self.agent(person_id), [*kinds, ("prov:label", _label(person)),
                                                   *[(self.ol[k], v) for k, v in values.items() if v]])
        for keyid, label in signers.items():
            if keyid not in people:
                self.doc.agent(self.agent(keyid), [("prov:type", self.ol["Signer"]), ("prov:label", label),
                                                   (self.ol["keyId"], keyid)])

    def entities_of_lineage(self) -> None:
        report = self.report
        model = report["model"]
        self.entity(_model_id(report), "ModelVersion",
                    {"name": model["name"], "version": model["version"], "runId": model.get("run_id"),
                     "modelId": model.get("model_id"), "source": model.get("source"),
                     "artifactDigest": model.get("artifact_digest"), "alias": model.get("aliases") or []},
                    model["records"], label=f"{model['name']} v{model['version']}")
        for dataset in report["datasets"]:
            evidence = dataset["records"] or self.records_naming(dataset["id"])
            self.entity(dataset["id"], "Dataset",
                        {"path": dataset["path"], "digest": dataset["digest"], "files": dataset.get("files"),
                         "size": dataset.get("size"), "commit": dataset.get("commit"),
                         "complete": dataset.get("complete"), "recorded": dataset["recorded"]},
                        evidence, label=dataset["path"])
        for stage in report["stages"]:
            for out in stage["outs"]:
                ident = f"dataset:{out.get('path')}@{out.get('hash')}"
                if ident not in self.entities:
                    self.entity(ident, "StageOutput", {"path": out.get("path"), "digest": out.get("hash"),
                                                       "size": out.get("size")}, stage["records"],
                                label=str(out.get("path")))
        bindings = report["code"].get("commit_records") or {}
        for sha in report["code"]["commits"]:
            evidence = bindings.get(sha) or self.records_naming(f"commit:{sha}")
            self.entity(f"commit:{sha}", "CodeCommit", {"commit": sha}, evidence, label=sha[:10])

    def records_naming(self, node_id: str) -> list[str]:
        """For an element with no record of its own (a pipeline output): the records that name it."""
        neighbours = {b for a, b in ((e["from"], e["to"]) for e in self.report["graph"]["edges"]) if a == node_id}
        neighbours |= {e["from"] for e in self.report["graph"]["edges"] if e["to"] == node_id}
        return [rid for node in (*self.report["runs"], *self.report["stages"]) if node["id"] in neighbours
                for rid in node["records"]]

    def runs_and_stages(self) -> None:
        for run in self.report["runs"]:
            values = {"runId": run["run_id"], "name": run.get("name"), "experimentId": run.get("experiment_id"),
                      "status": run.get("status"), "params": _json_text(run["params"]),
                      "metrics": _json_text(run["metrics"]), "gitCommit": (run.get("git") or {}).get("commit"),
                      "gitDirty": (run.get("git") or {}).get("dirty"), "userId": run.get("user_id"),
                      "dvcStage": (run.get("dvc") or {}).get("stage")}
            self.doc.activity(self.q(run["id"]), _time(run.get("start_time")), _time(run.get("end_time")),
                              [*self.attrs("MlflowRun", values, run["records"]),
                               ("prov:label", run.get("name") or run["run_id"])])
            self.activities.add(run["id"])
            if run.get("trainer"):
                self.doc.association(self.q(run["id"]), self.agent(run["trainer"]["id"]),
                                     other_attributes=self.role("training", run["records"][:1]))
        for stage in self.report["stages"]:
            values = {"name": stage["name"], "dvcfile": stage.get("dvcfile"), "cmd": stage["cmd"],
                      "experiment": stage.get("experiment"), "params": _json_text(stage.get("params") or {}),
                      "gitCommit": (stage.get("git") or {}).get("commit")}
            # DVC records no start or end time of a stage execution: only the record's own time is known
            self.doc.activity(self.q(stage["id"]), None, None,
                              [*self.attrs("DvcStageExecution", values, stage["records"]),
                               ("prov:label", stage["name"])])
            self.activities.add(stage["id"])

    def generation(self, entity: str, activity: str, records: Iterable[str] = ()) -> None:
        if (entity, activity) not in self.generated and entity in self.entities:
            self.generated.add((entity, activity))
            self.doc.generation(self.q(entity), self.q(activity),
                                other_attributes=[(self.ol["record"], r) for r in records] or None)

    def lineage_relations(self) -> None:
        report = self.report
        records = {node["id"]: node["records"] for node in (*report["runs"], *report["stages"])}
        for model, run in _edges(report, "trained by"):
            self.generation(model, run, records.get(run, []))
        for run, dataset in _edges(report, "used"):
            self.doc.usage(self.q(run), self.q(dataset), other_attributes=self.role("input", records.get(run, [])))
            for model, trained_by in _edges(report, "trained by"):
                if trained_by == run:
                    self.doc.derivation(self.q(model), self.q(dataset), self.q(run))
        for stage, run in _edges(report, "ran"):
            # the MLflow run was started by the stage's command, inside the DVC stage execution
            self.doc.start(self.q(run), starter=self.q(stage))
        for stage, upstream in _edges(report, "after"):
            self.doc.communication(self.q(stage), self.q(upstream))
        read = _reads(report)
        for stage, dataset in _edges(report, "read"):
            self.doc.usage(self.q(stage), self.q(dataset), other_attributes=self.role("input", records[stage]))
        for source, commit in _edges(report, "at"):
            if commit in self.entities:
                self.doc.usage(self.q(source), self.q(commit), other_attributes=self.role("code", records[source]))
        for dataset, stage in _edges(report, "output of"):
            self.generation(dataset, stage, records[stage])
        for stage in report["stages"]:
            for out in stage["outs"]:
                output = f"dataset:{out.get('path')}@{out.get('hash')}"
                self.generation(output, stage["id"], stage["records"])
                for source in read.get(stage["id"], []):
                    if source != output:
                        self.doc.derivation(self.q(output), self.q(source), self.q(stage["id"]))

    def credit(self) -> None:
        report = self.report
        for dataset in report["datasets"]:
            for entry in dataset["contributors"]:
                self.doc.attribution(self.q(dataset["id"]), self.agent(entry["person"]["id"]), other_attributes=[
                    *self.role("data", dataset["records"][-1:], files=entry.get("files"), bytes=entry.get("bytes")),
                    *[(self.ol["gitCommit"], sha) for sha in entry.get("commits") or []]])
        runs = {run["id"] for run in report["runs"]}
        run_commits = [commit for source, commit in _edges(report, "at") if source in runs]
        code_commits = [f"commit:{sha}" for sha in report["code"]["commits"]]
        trained_at = [c for c in code_commits if c in run_commits] or code_commits
        for author in report["code"]["authors"]:
            for commit in trained_at:
                self.doc.attribution(self.q(commit), self.agent(author["person"]["id"]), other_attributes=[
                    *self.role("code"), *[(self.ol["gitCommit"], sha) for sha in author["commits"]],
                    *[(self.ol["file"], path) for path in author["files"]]])

    def on_subjects(self, activity: str, links: Iterable[str], fallback: str | None) -> None:
        subjects = _elements_with(self.report, links) or ([fallback] if fallback else [])
        for subject in subjects:
            if subject in self.activities:
                self.doc.communication(self.q(activity), self.q(subject))
            else:
                self.doc.usage(self.q(activity), self.q(subject), other_attributes=[("prov:role", self.ol["subject"])])

    def record_activity(self, kind: str, item: Mapping[str, Any], values: Mapping[str, Any], role: str,
                        person: Mapping[str, Any] | None) -> str:
        """A review, feedback or promotion: an activity at its record's time, associated with its author."""
        ident = f"{kind.lower()}:{item['record']}"
        when = _time(item.get("time"))
        self.doc.activity(self.q(ident), when, when, self.attrs(kind, values, [item["record"]]))
        self.activities.add(ident)
        if person:
            self.doc.association(self.q(ident), self.agent(person["id"]),
                                 other_attributes=self.role(role, [item["record"]]))
        return ident

    def activity_on_lineage(self) -> None:
        report = self.report
        model = _model_id(report)
        for review in report["reviews"]:
            values = {"decision": review.get("decision"), "message": review.get("message"),
                      "target": review.get("target"), "trusted": review.get("trusted")}
            ident = self.record_activity("Review", review, values, "review", review["reviewer"])
            self.on_subjects(ident, review.get("links") or [], model)
        for item in report["feedback"]:
            score = item.get("score")
            values = {"label": item.get("label"), "comment": item.get("comment"), "target": item.get("target"),
                      "score": score if isinstance(score, int | float) else None}
            ident = self.record_activity("Feedback", item, values, "feedback", item.get("by"))
            self.on_subjects(ident, item.get("links") or [], None)
        for promotion in report["promotions"]:
            # the promoter is the promotion record's signer, associated with it in signatures()
            ident = self.record_activity("Promotion", promotion, {"alias": promotion.get("alias")}, "signer", None)
            self.doc.usage(self.q(ident), self.q(model), other_attributes=[("prov:role", self.ol["subject"])])

    def signatures(self) -> None:
        """Each record's signer is responsible for what the record attests: attribution for an entity,
        association for an activity, with the record's id."""
        statuses = self.report["records"]
        elements = [(_model_id(self.report), self.report["model"]["records"]),
                    *((n["id"], n["records"]) for n in (*self.report["runs"], *self.report["stages"],
                                                        *self.report["datasets"])),
                    *((f"review:{r['record']}", [r["record"]]) for r in self.report["reviews"]),
                    *((f"feedback:{f['record']}", [f["record"]]) for f in self.report["feedback"]),
                    *((f"promotion:{p['record']}", [p["record"]]) for p in self.report["promotions"])]
        bindings = self.report["code"].get("commit_records") or {}
        elements += [(f"commit:{sha}", ids) for sha, ids in bindings.items() if f"commit:{sha}" in self.entities]
        for element, records in elements:
            for rid in records:
                signer = (statuses.get(rid) or {}).get("signer_key")
                if not signer:
                    continue
                attributes = self.role("signer", [rid], status=statuses[rid].get("status"))
                if element in self.activities:
                    self.doc.association(self.q(element), self.agent(signer), other_attributes=attributes)
                else:
                    self.doc.attribution(self.q(element), self.agent(signer), other_attributes=attributes)


# -- in-toto -----------------------------------------------------------------------------------------------


def unverified_records(report: Mapping[str, Any]) -> str | None:
    """What fails verification among the report's records, in a few words; None when everything verifies."""
    counts: dict[str, int] = {}
    for entry in report["records"].values():
        if entry["status"] != "verified":
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or None


def intoto_statement(report: Mapping[str, Any], *, subject_digest: str | None = None,
                     allow_unverified: bool = False) -> dict[str, Any]:
    """An in-toto Statement v1 about the model artifact, with OpenLedger's provenance as its predicate.

    The subject is ``NAME@VERSION`` with the SHA-256 of the artifact directory from the model record
    (``model.artifact_digest``). ``subject_digest`` (``sha256:<hex>``) is a digest the exporter computed
    from a local copy of the artifact: used when the record has none, and it must equal the record's when
    it has one (else :class:`IntegrityError`). Without either there is no artifact to name: :class:`BadInputError`.

    A signed statement vouches for its predicate, so it is refused (:class:`IntegrityError`) when a record
    of the report is damaged or its signer untrusted, unless ``allow_unverified``; the predicate's
    ``verification`` lists every record's status either way.
    """
    problems = unverified_records(report)
    if problems and not allow_unverified:
        raise IntegrityError(f"the provenance of {_subject_ref(report)} has records that fail verification "
                             f"({problems}): no statement is made over them", hint="run `openledger verify`")
    model = report["model"]
    recorded = model.get("artifact_digest")
    if recorded and subject_digest and recorded != subject_digest:
        raise IntegrityError(f"the artifact given has digest {subject_digest}, but the model record of "
                             f"{_subject_ref(report)} says {recorded}")
    digest = recorded or subject_digest
    if not digest:
        raise BadInputError(
            f"the model record of {_subject_ref(report)} has no artifact digest, so an in-toto statement has no "
            "subject (the artifacts were not on a local path when the version was recorded, e.g. behind a "
            "tracking server's artifact proxy)",
            hint="download the model's artifacts and pass --artifact DIR to name them by their digest")
    value = _hex_of(digest, "sha256", 64)
    if value is None:
        raise BadInputError(f"the artifact digest of {_subject_ref(report)} is not sha256:<64 hex>: {digest}")
    predicate = {
        "model": {"name": model["name"], "version": model["version"], "run_id": model.get("run_id"),
                  "model_id": model.get("model_id"), "source": model.get("source"), "aliases": model["aliases"],
                  "artifact_digest": digest,
                  "artifact_digest_from": "model-record" if recorded else "exporter",
                  "records": model["records"]},
        "runs": [{"run_id": r["run_id"], "name": r.get("name"), "experiment_id": r.get("experiment_id"),
                  "status": r.get("status"), "start_time": r.get("start_time"), "end_time": r.get("end_time"),
                  "params": r["params"], "metrics": r["metrics"], "git": r.get("git"), "dvc": r.get("dvc"),
                  "trainer": r.get("trainer"), "records": r["records"]} for r in report["runs"]],
        "stages": [{"name": s["name"], "dvcfile": s.get("dvcfile"), "cmd": s["cmd"],
                    "experiment": s.get("experiment"), "params": s.get("params") or {},
                    "deps": [_resource(d) for d in s["deps"]], "outs": [_resource(o) for o in s["outs"]],
                    "git": s.get("git"), "records": s["records"]} for s in report["stages"]],
        "datasets": [{"name": d["path"], "digest": _digest_set(d["digest"]), "ledger_digest": d["digest"],
                      "files": d.get("files"), "size": d.get("size"), "source": d.get("source"),
                      "commit": d.get("commit"), "complete": d.get("complete"), "recorded": d["recorded"],
                      "contributors": [{"person": c["person"], "files": c.get("files"), "bytes": c.get("bytes"),
                                        "commits": c.get("commits") or []} for c in d["contributors"]],
                      "records": d["records"]} for d in report["datasets"]],
        "code": {"commits": [{"digest": {"gitCommit": sha},
                              "records": (report["code"].get("commit_records") or {}).get(sha, [])}
                             for sha in report["code"]["commits"]],
                 "files": report["code"]["files"], "authors": report["code"]["authors"]},
        "contributors": report["contributors"],
        "reviews": [{k: v for k, v in r.items() if k != "links"} for r in report["reviews"]],
        "feedback": [{k: v for k, v in f.items() if k != "links"} for f in report["feedback"]],
        "promotions": report["promotions"],
        "verification": {"verified": report["verified"],
                         "records": {rid: {"kind": e.get("kind"), "status": e["status"],
                                           "signer": e.get("signer_key"), "time": e.get("time")}
                                     for rid, e in report["records"].items()}},
        "exporter": {"name": "openledger", "version": __version__},
    }
    return {"_type": INTOTO_STATEMENT_TYPE,
            "subject": [{"name": _subject_ref(report), "digest": {"sha256": value}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": tag_nonfinite(predicate)}


def _resource(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A DVC dep or out as an in-toto ResourceDescriptor-like object: path, digest set, DVC's spelling."""
    digest = str(entry.get("hash") or "")
    return {"name": entry.get("path"), "digest": _digest_set(digest), "ledger_digest": digest or None,
            "size": entry.get("size")}


def intoto_envelope(statement: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """The statement in a DSSE envelope signed by ``signer`` (Ed25519 over PAE, ``keyid`` = its key id)."""
    payload = canonical_bytes(statement)
    signature = signer.sign(pae(INTOTO_PAYLOAD_TYPE, payload))
    return {"payloadType": INTOTO_PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode("ascii"),
            "signatures": [{"keyid": signer.keyid, "sig": base64.b64encode(signature).decode("ascii")}]}


# -- CycloneDX ---------------------------------------------------------------------------------------------


def cyclonedx_bom(report: Mapping[str, Any]) -> Bom:
    """The provenance as a CycloneDX ML-BOM (:class:`cyclonedx.model.bom.Bom`), without the model card:
    cyclonedx-python-lib has no model card type yet, :func:`cyclonedx_json` adds it to the JSON."""
    try:
        from cyclonedx.model import HashAlgorithm, HashType, IdentifiableAction, Property  # noqa: PLC0415
        from cyclonedx.model.bom import Bom  # noqa: PLC0415
        from cyclonedx.model.component import Commit, Component, ComponentType, Pedigree  # noqa: PLC0415
        from cyclonedx.model.contact import OrganizationalContact  # noqa: PLC0415
    except ImportError:
        raise _missing_extra("cyclonedx-python-lib") from None

    def props(pairs: Iterable[tuple[str, Any]]) -> list[Property]:
        return [Property(name=f"openledger:{name}", value=str(value)) for name, value in pairs if value is not None]

    def contact(person: Mapping[str, Any]) -> OrganizationalContact:
        return OrganizationalContact(name=person.get("name"), email=person.get("email"))

    model = report["model"]
    makers = {run["trainer"]["id"]: run["trainer"] for run in report["runs"] if run.get("trainer")}
    makers |= {a["person"]["id"]: a["person"] for a in report["code"]["authors"]}
    pairs: list[tuple[str, Any]] = [("record", rid) for rid in model["records"]]
    pairs += [("run-id", run["run_id"]) for run in report["runs"]]
    pairs += [("run-record", rid) for run in report["runs"] for rid in run["records"]]
    pairs += [("stage", f"{s['name']} {rid}") for s in report["stages"] for rid in s["records"]]
    pairs += [("model-id", model.get("model_id")), ("source", model.get("source"))]
    pairs += [("alias", alias) for alias in model["aliases"]]
    pairs += [(f"contributor:{role}", f"{_label(entry['person'])} {evidence}")
              for entry in report["contributors"] for role, ids in sorted(entry["roles"].items()) for evidence in ids]
    pairs += [("review", f"{r['decision']} by {_label(r['reviewer'])} {r['record']}") for r in report["reviews"]]
    pairs += [("feedback", f"{f.get('label') or f.get('score') or f.get('comment')} on {f.get('target')} by "
                           f"{_label(f['by']) if f.get('by') else 'unknown'} {f['record']}")
              for f in report["feedback"]]
    pairs += [("verified", str(report["verified"]).lower())]
    authored = {sha: a["person"] for a in report["code"]["authors"] for sha in a["commits"]}
    commits = [Commit(uid=sha, author=IdentifiableAction(name=authored[sha].get("name"),
                                                         email=authored[sha].get("email"))
                      if sha in authored else None)
               for sha in dict.fromkeys([*report["code"]["commits"], *authored])]
    artifact = _hex_of(model.get("artifact_digest"), "sha256", 64)
    model_component = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=model["name"], version=str(model["version"]),
        bom_ref=_model_id(report), description=f"{model['name']} version {model['version']}, provenance "
                                                "from its signed OpenLedger records",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=artifact)] if artifact else None,
        authors=[contact(p) for p in makers.values()], properties=props(pairs),
        pedigree=Pedigree(commits=commits) if commits else None)
    datasets: dict[str, Component] = {}
    for dataset in report["datasets"]:
        md5 = _hex_of(str(dataset["digest"]).removesuffix(".dir"), "md5", 32)
        hashes = [HashType(alg=HashAlgorithm.MD5, content=md5)] if md5 else []
        details = [("record", rid) for rid in dataset["records"]]
        details += [("digest", dataset["digest"]), ("files", dataset.get("files")), ("size", dataset.get("size")),
                    ("commit", dataset.get("commit")), ("recorded", str(dataset["recorded"]).lower())]
        details += [("contributor:data", f"{_label(c['person'])} {c.get('files')} files {' '.join(dataset['records'])}")
                    for c in dataset["contributors"]]
        datasets[dataset["id"]] = Component(
            type=ComponentType.DATA, name=dataset["path"], version=dataset["digest"], bom_ref=dataset["id"],
            hashes=hashes, authors=[contact(c["person"]) for c in dataset["contributors"]], properties=props(details))
    tool = Component(type=ComponentType.APPLICATION, name="openledger", version=__version__)
    # a fresh serialNumber on every export, as the spec asks even when the content has not changed
    bom = Bom(components=[model_component, *datasets.values()])
    bom.metadata.tools.components.add(tool)
    bom.register_dependency(model_component, list(datasets.values()))
    for derived, sources in _dataset_sources(report).items():
        if derived in datasets:
            bom.register_dependency(datasets[derived], [datasets[s] for s in sources if s in datasets])
    return bom


def _hex_of(digest: str | None, algorithm: str, length: int) -> str | None:
    """The hex of ``algorithm:<hex>`` when it is that algorithm's length (CycloneDX's hash content patterns)."""
    prefix, _, value = (digest or "").partition(":")
    return value if prefix == algorithm and re.fullmatch(f"[0-9a-f]{{{length}}}", value) else None


def _dataset_sources(report: Mapping[str, Any]) -> dict[str, list[str]]:
    """A pipeline output's source datasets: those read by the stage that wrote it."""
    read = _reads(report)
    return {dataset: read.get(stage, []) for dataset, stage in _edges(report, "output of")}


def _model_card(report: Mapping[str, Any]) -> dict[str, Any]:
    metrics = [{"type": name, "value": repr(float(value))} for run in report["runs"]
               for name, value in sorted(run["metrics"].items())
               if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)]
    card: dict[str, Any] = {}
    if report["datasets"]:
        card["modelParameters"] = {"datasets": [{"ref": d["id"]} for d in report["datasets"]]}
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    params = [{"name": f"openledger:param:{name}", "value": str(value)} for run in report["runs"]
              for name, value in sorted(run["params"].items())]
    if params:
        card["properties"] = params
    return card


def cyclonedx_json(report: Mapping[str, Any]) -> str:
    """CycloneDX 1.6 JSON: :func:`cyclonedx_bom` serialised by the library, plus the model's ``modelCard``
    (datasets by reference, final metrics as performance metrics, params as properties)."""
    try:
        from cyclonedx.output.json import JsonV1Dot6  # noqa: PLC0415 - the export extra is optional
    except ImportError:
        raise _missing_extra("cyclonedx-python-lib") from None
    document = json.loads(JsonV1Dot6(cyclonedx_bom(report)).output_as_string())
    for component in document.get("components", []):
        if component.get("bom-ref") == _model_id(report):
            component["modelCard"] = _model_card(report)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
