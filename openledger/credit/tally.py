"""Counting what each person did, role by role, across model lineages and the whole ledger: every piece of work
counts once, whatever the number of lineages or versions that carry it.

The amounts are what :mod:`openledger.reports.contributors` turns into shares: data files (a file counts once
per person, however many versions of a dataset carry it), code commits, training runs, reviews by trusted keys,
and feedback items. Every amount keeps the record ids (or ``commit:<sha>``) behind it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from openledger.credit.people import People, Person
from openledger.identity.trust import instant
from openledger.lineage.graph import LedgerGraph, Lineage
from openledger.store.ledger import Fact

__all__ = ["CreditTally", "Tally"]


@dataclass
class Tally:
    """One person's running total: amount per role, the details behind it, the evidence, the impact."""

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
        # no membership test: CreditTally.tally counts each (person, role, evidence) once already, and a list
        # scan here made a person with thousands of feedback items quadratic
        self.records[role].append(evidence)


class CreditTally:
    """Tallies what each person did across lineages; each piece of work counts once."""

    def __init__(self, graph: LedgerGraph, people: People, cutoff: str | None) -> None:
        self.graph = graph
        self.people = people
        self.cutoff = cutoff
        self.tallies: dict[str, Tally] = {}
        self.counted: set[tuple[str, str, str]] = set()  # (person, role, evidence)
        self.seen_files: dict[tuple[str, Any], set[str]] = defaultdict(set)

    def before_cutoff(self, time: str | None) -> bool:
        return bool(self.cutoff and time and instant(time) < self.cutoff)

    def of(self, person: Person) -> Tally:
        tally = self.tallies.get(person.id)
        if tally is None:  # not setdefault: that would build a Tally (three dicts) for every piece of work
            tally = self.tallies[person.id] = Tally(person)
        return tally

    def tally(self, person: Person | None, role: str, amount: float, evidence: str, time: str | None,
              **details: float) -> None:
        if person is None or self.before_cutoff(time) or (person.id, role, evidence) in self.counted:
            return
        self.counted.add((person.id, role, evidence))
        self.of(person).add(role, amount, evidence, **details)

    def lineage(self, lineage: Lineage) -> None:
        for dataset in lineage.datasets:
            if dataset.records:
                self.dataset(dataset.records[-1])
        stage_ids = [node.record_ids[-1] for node in lineage.stages if node.records]
        for author in lineage.code_authors:
            person = self.people.by_email(author.name, author.email)
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
        self.tally(self.people.by_key(run.actor), "training", 1, run.id, run.time, runs=1)

    def review(self, review: Fact) -> None:
        if self.graph.trust.status(review.actor, review.time) is None:
            self.tally(self.people.by_key(review.actor), "review", 1, review.id, review.time, reviews=1)

    def feedback(self, feedback: Fact) -> None:
        self.tally(self.people.credited(feedback), "feedback", 1, feedback.id, feedback.time, items=1)

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
        for entry in self.people.data_credits(record):
            person = self.people.contributor(entry)
            # a file counts once per person, however many versions of the dataset carry it
            paths = set(entry.get("paths") or [])
            seen = self.seen_files[(person.id, record.body.get("path"))]
            files = float(len(paths - seen)) if paths else float(entry.get("files") or 0)
            if files > 0 and not self.before_cutoff(record.time):
                seen.update(paths)
                size = float(entry.get("bytes") or 0) * (files / len(paths) if paths else 1.0)
                self.tally(person, "data", files, record.id, record.time, files=files, bytes=round(size), datasets=1)
