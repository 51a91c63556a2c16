"""Counting what each person did, role by role, across model lineages and the whole ledger: every piece of work
counts once, whatever the number of lineages or versions that carry it.

The amounts are what :mod:`openledger.reports.contributors` turns into shares: data files (a file counts once
per person, however many versions of a dataset carry it), code commits, training runs, reviews by trusted keys,
and feedback items. Every amount keeps the record ids (or ``commit:<sha>``) behind it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
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
        # role -> person -> the evidence counted: a million feedback ids in sets, not a million (person, role, id)
        # tuples (100 MB at a million records)
        self.counted: dict[str, dict[str, set[str]]] = defaultdict(dict)
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
        if person is None or self.before_cutoff(time):
            return
        counted = self.counted[role].setdefault(person.id, set())
        if evidence in counted:
            return
        counted.add(evidence)
        (self.tallies.get(person.id) or self.of(person)).add(role, amount, evidence, **details)

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
        self.items("training", "runs", [run.records[0] for run in lineage.runs if run.records], self._trainer)
        self.items("review", "reviews", lineage.reviews, self._reviewer)
        self.items("feedback", "items", lineage.feedback, self.people.credited)

    def items(self, role: str, unit: str, facts: Iterable[Fact], person_of: Callable[[Fact], Person | None]) -> None:
        """Credit each of ``facts`` as one ``unit`` of ``role`` to the person ``person_of`` names (None: nobody),
        once: what :meth:`tally` does for records worth one each, in one loop (a million feedback items)."""
        counted, tallies, cutoff = self.counted[role], self.tallies, self.cutoff
        for fact in facts:
            person = person_of(fact)
            if person is None or (cutoff and fact.time and instant(fact.time) < cutoff):
                continue
            seen = counted.get(person.id)
            if seen is None:
                seen = counted[person.id] = set()
            elif fact.id in seen:
                continue
            seen.add(fact.id)
            tally = tallies.get(person.id) or self.of(person)
            tally.amounts[role] += 1
            tally.details[role][unit] += 1
            tally.records[role].append(fact.id)

    def _trainer(self, run: Fact) -> Person:
        """A run credits whoever attested it first (a later capture of the same run credits nobody more)."""
        return self.people.by_key(run.actor)

    def _reviewer(self, review: Fact) -> Person | None:
        """A review counts when its signer's key was not revoked when it was signed."""
        return self.people.by_key(review.actor) if self.graph.trust.status(review.actor, review.time) is None else None

    def outside_lineages(self) -> None:
        """Work no model version's lineage reaches, for the whole-ledger report: data nobody trained on yet,
        runs that registered no model, reviews and feedback on anything (a trace, a run, a dataset). What the
        lineages counted already counts once. Code is credited through training stages only."""
        graph = self.graph
        for record in graph.by_kind.get("dataset", []):
            self.dataset(record)
        self.items("training", "runs", [facts[0] for facts in graph.runs.values()], self._trainer)
        self.items("review", "reviews", graph.by_kind.get("review", []), self._reviewer)
        self.items("feedback", "items", graph.by_kind.get("feedback", []), self.people.credited)

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
