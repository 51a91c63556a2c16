"""Provenance and contribution reports as plain JSON-ready data (renderers turn them into text, Markdown, HTML).

* :func:`model_report`: one model version's lineage (runs, stages, dataset versions with their contributors,
  code commit and authors, reviews, feedback, promotions), a graph of it, and the verification status of every
  record shown (hash, signature, schema; and whether its signer is trusted).
* :func:`contributors_report`: per-person credit by role (data, code, training, review, feedback), a share per
  role and overall under the scoring policy in ``config.yaml``, and the impact attributed along each model's
  lineage. Every number carries the record ids behind it.

Both are built from a :class:`~openledger.lineage.graph.LedgerGraph`; the JSON shapes are published as
``schemas/report-model.json`` and ``schemas/report-contributors.json`` and their keys are stable.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from openledger.errors import ConfigError, IntegrityError, OpenLedgerError
from openledger.identity.trust import instant
from openledger.lineage.graph import LedgerGraph, Lineage, Node
from openledger.store.canonical import tag_nonfinite
from openledger.store.ledger import Fact

__all__ = ["ROLES", "ScoringPolicy", "contributors_report", "model_report"]

ROLES = ("data", "code", "training", "review", "feedback")
MODEL_SCHEMA = "openledger.report.model/1"
CONTRIBUTORS_SCHEMA = "openledger.report.contributors/1"


@dataclass(frozen=True)
class ScoringPolicy:
    """How credit is weighed (``scoring:`` in config.yaml); see docs/scoring.md.

    ``weights``: each role's part of the overall share (normalised over the roles anyone has credit in).
    ``primary_metric`` / ``direction``: the metric whose improvement between successive model versions is
    attributed to the contributors of what changed.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: {"data": 0.3, "code": 0.25, "training": 0.25,
                                                                  "review": 0.1, "feedback": 0.1})
    primary_metric: str = "accuracy"
    direction: str = "maximize"

    @classmethod
    def from_config(cls, scoring: Mapping[str, Any]) -> ScoringPolicy:
        default = cls()
        weights = dict(default.weights)
        given = scoring.get("weights") or {}
        if not isinstance(given, Mapping):
            raise ConfigError("config.yaml: scoring.weights must map roles to numbers")
        for role, weight in given.items():
            if role not in ROLES:
                raise ConfigError(f"config.yaml: scoring.weights.{role} is not a role (one of {', '.join(ROLES)})")
            if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
                raise ConfigError(f"config.yaml: scoring.weights.{role} must be a number >= 0")
            weights[role] = float(weight)
        direction = str(scoring.get("direction", default.direction))
        if direction not in ("maximize", "minimize"):
            raise ConfigError("config.yaml: scoring.direction must be maximize or minimize")
        return cls(weights, str(scoring.get("primary_metric", default.primary_metric)), direction)

    def to_json(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "primary_metric": self.primary_metric, "direction": self.direction}


# -- people ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    id: str  # a key id when the person has an identity in the ledger, else "email:<address>" / the source id
    name: str
    email: str | None
    key: str | None

    @property
    def label(self) -> str:
        return f"{self.name} <{self.email}>" if self.email and self.email != self.name else self.name

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "key": self.key}


def _by_key(graph: LedgerGraph, keyid: str) -> Person:
    identity = graph.trust.identities.get(keyid)
    if identity is None:
        return Person(keyid, keyid[:20], None, keyid)
    return Person(keyid, identity.name, identity.email, keyid)


def _by_email(graph: LedgerGraph, name: str, email: str, key: str | None = None) -> Person:
    key = key or graph.key_for_email(email)
    if key:
        return _by_key(graph, key)
    return Person(f"email:{email.lower()}", name or email, email, None)


def _credited(graph: LedgerGraph, fact: Fact) -> Person | None:
    credit = graph.credited(fact)
    if credit is None:
        return None
    label, key = credit
    if key:
        return _by_key(graph, key)
    return Person(f"source:{label}", label, label if "@" in label else None, None)


# -- verification of what is shown ---------------------------------------------------------------------------


def _record_status(graph: LedgerGraph, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """For each record shown: its own checks (hash, signature, schema) and whether its signer is trusted."""
    result: dict[str, dict[str, Any]] = {}
    for record_id in ids:
        fact = graph.facts.get(record_id)
        entry: dict[str, Any] = {"kind": fact.kind if fact else None, "signer": None, "time": None}
        try:
            record = graph.ledger.get(record_id)
        except (IntegrityError, OpenLedgerError) as exc:
            entry.update(status="damaged", detail=exc.message)
            result[record_id] = entry
            continue
        untrusted = graph.trust.status(record.actor, record.time)
        entry.update(kind=record.kind, signer=graph.person(record.actor), signer_key=record.actor, time=record.time,
                     status="verified" if untrusted is None else "untrusted", detail=untrusted)
        result[record_id] = entry
    return result


# -- the model report ----------------------------------------------------------------------------------------


def _run_json(graph: LedgerGraph, node: Node) -> dict[str, Any]:
    body = node.body
    trainer = _by_key(graph, node.records[0].actor) if node.records else None
    return {
        "id": node.key, "run_id": node.key.removeprefix("run:"), "name": body.get("run_name"),
        "experiment_id": body.get("experiment_id"), "status": body.get("status"),
        "start_time": body.get("start_time"), "end_time": body.get("end_time"),
        "params": dict(body.get("params") or {}), "metrics": tag_nonfinite(dict(body.get("metrics") or {})),
        "user_id": body.get("user_id"), "trainer": trainer.to_json() if trainer else None,
        "git": body.get("git"), "dvc": body.get("dvc"), "records": node.record_ids,
        "attestations": [{"record": r.id, "signer": graph.person(r.actor), "captured": r.body.get("captured")}
                         for r in node.records],
    }


def _dataset_json(graph: LedgerGraph, node: Node) -> dict[str, Any]:
    body = node.body
    contributors = []
    for entry in graph.data_contributors(node.records[-1]) if node.records else []:
        person = _by_email(graph, str(entry.get("name") or ""), str(entry.get("email") or ""), entry.get("key"))
        contributors.append({"person": person.to_json(), "files": entry.get("files"), "bytes": entry.get("bytes"),
                             "commits": list(entry.get("commits") or []), "paths": list(entry.get("paths") or [])})
    digest = node.key.rpartition("@")[2]
    return {"id": node.key, "path": body.get("path") or node.key.removeprefix("dataset:").rpartition("@")[0],
            "digest": digest,
            "source": body.get("source"), "files": body.get("files"), "size": body.get("size"),
            "commit": body.get("commit"), "complete": body.get("complete"), "contributors": contributors,
            "recorded": bool(node.records), "records": node.record_ids}


def _stage_json(node: Node) -> dict[str, Any]:
    body = node.body
    return {"id": node.key, "name": body.get("name"), "dvcfile": body.get("dvcfile"), "cmd": body.get("cmd"),
            "experiment": body.get("experiment"), "params": body.get("params") or {},
            "deps": body.get("deps") or [], "outs": body.get("outs") or [], "git": body.get("git"),
            "records": node.record_ids}


def _review_json(graph: LedgerGraph, fact: Fact) -> dict[str, Any]:
    person = _by_key(graph, fact.actor)
    return {"record": fact.id, "decision": fact.body.get("decision"), "target": fact.body.get("target"),
            "message": fact.body.get("message"), "reviewer": person.to_json(), "time": fact.time,
            "trusted": graph.trust.status(fact.actor, fact.time) is None, "links": list(fact.links)}


def _feedback_json(graph: LedgerGraph, fact: Fact) -> dict[str, Any]:
    person = _credited(graph, fact)
    return {"record": fact.id, "target": fact.body.get("target"), "label": fact.body.get("label"),
            "score": tag_nonfinite(fact.body.get("score")), "comment": fact.body.get("comment"),
            "by": person.to_json() if person else None, "time": fact.time, "links": list(fact.links)}


def _lineage_people(graph: LedgerGraph, lineage: Lineage) -> dict[str, dict[str, Any]]:
    """Everyone in the lineage with their roles and the record ids (or commits) behind each."""
    people: dict[str, dict[str, Any]] = {}

    def credit(person: Person | None, role: str, evidence: str) -> None:
        if person is None:
            return
        entry = people.setdefault(person.id, {"person": person.to_json(), "roles": {}})
        entry["roles"].setdefault(role, [])
        if evidence not in entry["roles"][role]:
            entry["roles"][role].append(evidence)

    for dataset in lineage.datasets:
        for entry in graph.data_contributors(dataset.records[-1]) if dataset.records else []:
            person = _by_email(graph, str(entry.get("name") or ""), str(entry.get("email") or ""), entry.get("key"))
            credit(person, "data", dataset.record_ids[-1])
    for author in lineage.code_authors:
        for sha in author.commits:
            credit(_by_email(graph, author.name, author.email), "code", f"commit:{sha}")
    for run in lineage.runs:
        if run.records:
            credit(_by_key(graph, run.records[0].actor), "training", run.records[0].id)
    for review in lineage.reviews:
        credit(_by_key(graph, review.actor), "review", review.id)
    for feedback in lineage.feedback:
        credit(_credited(graph, feedback), "feedback", feedback.id)
    return people


def _producers(lineage: Lineage, key: str) -> list[str]:
    """The names of the recorded stages whose output a dataset version is (a pipeline output has no dataset
    record of its own: the stage record that produced it is its record)."""
    names = {stage.key: str(stage.body.get("name")) for stage in lineage.stages}
    return [names[b] for a, b, r in lineage.edges if a == key and r == "output of" and b in names]


def model_report(graph: LedgerGraph, name: str, version: str | None = None) -> dict[str, Any]:
    """The provenance of one model version (``version`` None: the newest recorded)."""
    name, version = graph.resolve(name, version)
    lineage = graph.lineage(name, version)
    model = lineage.model.body
    aliases = [p.body.get("alias") for p in lineage.promotions if p.body.get("alias")]
    report: dict[str, Any] = {
        "schema": MODEL_SCHEMA,
        "model": {"name": name, "version": version, "run_id": model.get("run_id"), "model_id": model.get("model_id"),
                  "source": model.get("source"), "artifact_digest": model.get("artifact_digest"),
                  "aliases": aliases, "records": lineage.model.record_ids},
        "runs": [_run_json(graph, node) for node in lineage.runs],
        "stages": [_stage_json(node) for node in lineage.stages],
        "datasets": [dict(_dataset_json(graph, node), produced_by=_producers(lineage, node.key))
                     for node in lineage.datasets],
        "code": {"commits": [node.key.removeprefix("commit:") for node in lineage.commits],
                 "files": lineage.code_files,
                 "commit_records": {node.key.removeprefix("commit:"): node.record_ids for node in lineage.commits},
                 "authors": [{"person": _by_email(graph, a.name, a.email).to_json(), "commits": list(a.commits),
                              "files": list(a.files)} for a in lineage.code_authors]},
        "reviews": [_review_json(graph, f) for f in lineage.reviews],
        "feedback": [_feedback_json(graph, f) for f in lineage.feedback],
        "promotions": [{"record": p.id, "alias": p.body.get("alias"), "by": graph.person(p.actor), "time": p.time}
                       for p in lineage.promotions],
        "contributors": sorted(_lineage_people(graph, lineage).values(), key=lambda e: e["person"]["name"]),
        "graph": {"nodes": [{"id": n.key, "kind": n.kind, "label": n.label,
                             "recorded": bool(n.records) or n.kind == "commit" or bool(_producers(lineage, n.key))}
                            for n in lineage.nodes],
                  "edges": [{"from": a, "to": b, "relation": r} for a, b, r in lineage.edges]},
        "records": _record_status(graph, lineage.record_ids()),
    }
    report["verified"] = all(r["status"] == "verified" for r in report["records"].values())
    return report


# -- the contributors report ---------------------------------------------------------------------------------


@dataclass
class _Tally:
    person: Person
    amounts: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    details: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    records: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    impact: float = 0.0
    impact_records: list[str] = field(default_factory=list)

    def add(self, role: str, amount: float, evidence: str, **details: float) -> None:
        self.amounts[role] += amount
        for key, value in details.items():
            self.details[role][key] += value
        # no membership test: _Credit.tally counts each (person, role, evidence) once already, and a list
        # scan here made a person with thousands of feedback items quadratic
        self.records[role].append(evidence)


def _metric(graph: LedgerGraph, lineage: Lineage, metric: str) -> float | None:
    for run in lineage.runs:
        value = (run.body.get("metrics") or {}).get(metric)
        if isinstance(value, int | float) and not math.isnan(value):
            return float(value)
    return None


class _Credit:
    """Tallies what each person did across lineages; each piece of work counts once."""

    def __init__(self, graph: LedgerGraph, cutoff: str | None) -> None:
        self.graph = graph
        self.cutoff = cutoff
        self.tallies: dict[str, _Tally] = {}
        self.counted: set[tuple[str, str, str]] = set()  # (person, role, evidence)
        self.seen_files: dict[tuple[str, Any], set[str]] = defaultdict(set)

    def before_cutoff(self, time: str | None) -> bool:
        return bool(self.cutoff and time and instant(time) < self.cutoff)

    def tally(self, person: Person | None, role: str, amount: float, evidence: str, time: str | None,
              **details: float) -> None:
        if person is None or self.before_cutoff(time) or (person.id, role, evidence) in self.counted:
            return
        self.counted.add((person.id, role, evidence))
        tally = self.tallies.get(person.id)
        if tally is None:  # not setdefault: that would build a _Tally (three dicts) for every piece of work
            tally = self.tallies[person.id] = _Tally(person)
        tally.add(role, amount, evidence, **details)

    def lineage(self, lineage: Lineage) -> None:
        graph = self.graph
        for dataset in lineage.datasets:
            if dataset.records:
                self.dataset(dataset.records[-1])
        stage_ids = [node.record_ids[-1] for node in lineage.stages if node.records]
        for author in lineage.code_authors:
            person = _by_email(graph, author.name, author.email)
            for sha in author.commits:
                self.tally(person, "code", 1, f"commit:{sha}", None, commits=1)
            for rid in stage_ids[:1]:
                if person.id in self.tallies and rid not in self.tallies[person.id].records["code"]:
                    self.tallies[person.id].records["code"].append(rid)
        for run in lineage.runs:
            if run.records:
                self.training(run.records[0])
        for review in lineage.reviews:
            self.review(review)
        for feedback in lineage.feedback:
            self.feedback(feedback)

    def training(self, run: Fact) -> None:
        """A run credits whoever attested it first (a later capture of the same run credits nobody more)."""
        self.tally(_by_key(self.graph, run.actor), "training", 1, run.id, run.time, runs=1)

    def review(self, review: Fact) -> None:
        if self.graph.trust.status(review.actor, review.time) is None:
            self.tally(_by_key(self.graph, review.actor), "review", 1, review.id, review.time, reviews=1)

    def feedback(self, feedback: Fact) -> None:
        self.tally(_credited(self.graph, feedback), "feedback", 1, feedback.id, feedback.time, items=1)

    def outside_lineages(self) -> None:
        """Work no model version's lineage reaches, for the whole-ledger report: data nobody trained on yet,
        runs that registered no model, reviews and feedback on anything (a trace, a run, a dataset). What the
        lineages counted already counts once. Code is credited through training stages only."""
        graph = self.graph
        for record in graph.by_kind.get("dataset", []):
            self.dataset(record)
        for facts in graph.runs.values():
            self.training(facts[0])
        for review in graph.by_kind.get("review", []):
            self.review(review)
        for feedback in graph.by_kind.get("feedback", []):
            self.feedback(feedback)

    def dataset(self, record: Fact) -> None:
        for entry in self.graph.data_contributors(record):
            person = _by_email(self.graph, str(entry.get("name") or ""), str(entry.get("email") or ""),
                               entry.get("key"))
            # a file counts once per person, however many versions of the dataset carry it
            paths = set(entry.get("paths") or [])
            seen = self.seen_files[(person.id, record.body.get("path"))]
            files = float(len(paths - seen)) if paths else float(entry.get("files") or 0)
            if files > 0 and not self.before_cutoff(record.time):
                seen.update(paths)
                size = float(entry.get("bytes") or 0) * (files / len(paths) if paths else 1.0)
                self.tally(person, "data", files, record.id, record.time, files=files, bytes=round(size), datasets=1)


def contributors_report(graph: LedgerGraph, *, model: str | None = None, since: str | None = None,
                        scoring: ScoringPolicy | None = None) -> dict[str, Any]:
    """Credit per person: over one model's versions (``model``), or over the whole ledger (every model's
    lineage, and the work outside them), counting contributions recorded at or after ``since`` (RFC 3339
    date or time). Impact is attributed along model lineages only."""
    scoring = scoring or ScoringPolicy.from_config(graph.ledger.config.scoring)
    versions = graph.model_versions(model)
    if model is not None and not versions:
        graph.resolve(model, None)  # raises the "no model named" error
    cutoff = instant(since if "T" in (since or "") else f"{since}T00:00:00Z") if since else None
    credit = _Credit(graph, cutoff)
    lineages = graph.lineages(versions)
    for lineage in lineages.values():
        credit.lineage(lineage)
    if model is None:
        credit.outside_lineages()
    tallies = credit.tallies
    impact = _impact(graph, lineages, scoring, tallies, credit.before_cutoff)
    totals = {role: sum(t.amounts.get(role, 0.0) for t in tallies.values()) for role in ROLES}
    active = [role for role in ROLES if totals[role] > 0 and scoring.weights.get(role, 0) > 0]
    weight_sum = sum(scoring.weights[role] for role in active) or 1.0
    rows: list[dict[str, Any]] = []
    for t in tallies.values():
        roles: dict[str, dict[str, Any]] = {}
        shares: dict[str, float] = {}
        for role in ROLES:
            if role not in t.amounts:
                continue
            shares[role] = t.amounts[role] / totals[role] if totals[role] else 0.0
            roles[role] = {"amount": t.amounts[role], "share": round(shares[role], 4),
                           **t.details[role], "records": t.records[role]}
        overall = sum(scoring.weights[r] * shares[r] for r in active if r in shares) / weight_sum
        rows.append({"person": t.person.to_json(), "roles": roles, "overall": round(overall, 4),
                     "impact": round(t.impact, 6), "impact_records": t.impact_records})
    rows.sort(key=lambda row: (-row["overall"], row["person"]["name"]))
    return {
        "schema": CONTRIBUTORS_SCHEMA,
        "scope": {"model": model, "since": since, "model_versions": [f"{n}@{v}" for n, v in versions]},
        "scoring": scoring.to_json(),
        "totals": totals,
        "contributors": rows,
        "impact": impact,
    }


def _impact(graph: LedgerGraph, lineages: Mapping[tuple[str, str], Lineage], scoring: ScoringPolicy,
            tallies: dict[str, _Tally], before_cutoff: Callable[[str | None], bool]) -> list[dict[str, Any]]:
    """Each improvement of the primary metric between successive versions of a model, credited to the
    contributors of what changed between them: new dataset versions (their data contributors, by files),
    new code commits (their authors, by commits) and the new run (its trainer). The improvement is split
    across those roles by the scoring weights, then within a role by amount."""
    steps = []
    by_name: dict[str, list[tuple[str, Lineage]]] = defaultdict(list)
    for (name, version), lineage in lineages.items():
        by_name[name].append((version, lineage))
    sign = 1.0 if scoring.direction == "maximize" else -1.0
    for name, versions in by_name.items():
        metric = scoring.primary_metric
        measured = [(v, lin, m) for v, lin in versions if (m := _metric(graph, lin, metric)) is not None]
        for (old_v, old, old_m), (new_v, new, new_m) in pairwise(measured):
            if before_cutoff(new.model.records[-1].time if new.model.records else None):
                continue
            delta = (new_m - old_m) * sign
            step: dict[str, Any] = {"model": name, "from_version": old_v, "to_version": new_v,
                                    "metric": scoring.primary_metric, "from_value": old_m, "to_value": new_m,
                                    "improvement": round(delta, 6), "credited": []}
            steps.append(step)
            if delta <= 0:
                continue
            changes = _changes(graph, old, new)
            present = {role: parts for role, parts in changes.items() if parts}
            weight_sum = sum(scoring.weights.get(role, 0.0) for role in present) or 1.0
            for role, parts in present.items():
                role_total = sum(amount for _, amount, _ in parts) or 1.0
                for person, amount, evidence in parts:
                    credit = delta * scoring.weights.get(role, 0.0) / weight_sum * amount / role_total
                    step["credited"].append({"person": person.to_json(), "role": role, "amount": round(credit, 6),
                                             "records": evidence})
                    tally = tallies.setdefault(person.id, _Tally(person))
                    tally.impact += credit
                    tally.impact_records += [e for e in evidence if e not in tally.impact_records]
    return steps


def _changes(graph: LedgerGraph, old: Lineage, new: Lineage) -> dict[str, list[tuple[Person, float, list[str]]]]:
    changes: dict[str, list[tuple[Person, float, list[str]]]] = {"data": [], "code": [], "training": []}
    old_keys = {node.key for node in old.datasets}
    before: dict[tuple[Any, str], set[str]] = defaultdict(set)  # (dataset path, email) -> files credited before
    for node in old.datasets:
        for entry in node.body.get("contributors") or []:
            if isinstance(entry, Mapping):
                before[(node.body.get("path"), str(entry.get("email")).lower())].update(entry.get("paths") or [])
    for dataset in new.datasets:
        if dataset.key in old_keys or not dataset.records:
            continue
        record = dataset.records[-1]
        for entry in graph.data_contributors(record):
            # only the files this person added or changed since the version the older model used
            paths = set(entry.get("paths") or [])
            fresh = paths - before[(record.body.get("path"), str(entry.get("email")).lower())]
            amount = float(len(fresh)) if paths else float(entry.get("files") or 1)
            if amount > 0:
                person = _by_email(graph, str(entry.get("name") or ""), str(entry.get("email") or ""),
                                   entry.get("key"))
                changes["data"].append((person, amount, [record.id]))
    old_commits = {sha for author in old.code_authors for sha in author.commits}
    for author in new.code_authors:
        new_commits = [sha for sha in author.commits if sha not in old_commits]
        if new_commits:
            changes["code"].append((_by_email(graph, author.name, author.email), float(len(new_commits)),
                                    [f"commit:{sha}" for sha in new_commits]))
    old_params = [run.body.get("params") for run in old.runs]
    for run in new.runs:
        if run.records and (run.body.get("params") not in old_params or not (changes["data"] or changes["code"])):
            changes["training"].append((_by_key(graph, run.records[0].actor), 1.0, [run.records[0].id]))
    return changes
