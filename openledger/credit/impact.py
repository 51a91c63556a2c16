"""Impact along a model's lineage: each improvement of the primary metric between successive versions, credited
to the contributors of what changed between them (new dataset files, new code commits, the new run).

This is a heuristic: it splits a measured improvement by what changed, it does not measure what each change
was worth. ``openledger attribute`` measures that by re-running the pipeline (docs/scoring.md says when each
applies).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from openledger.credit.people import People, Person
from openledger.credit.scoring import ScoringPolicy
from openledger.credit.tally import CreditTally
from openledger.lineage.graph import Lineage

__all__ = ["ImpactCredit", "ImpactStep", "impact_steps"]


@dataclass(frozen=True, slots=True)
class ImpactCredit:
    """Part of one step's improvement credited to one person in one role (rounded to 6 decimals, as shown),
    with the records behind it."""

    person: Person
    role: str
    amount: float
    records: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person.to_json(), "role": self.role, "amount": self.amount,
                "records": list(self.records)}

    @classmethod
    def from_json(cls, data: Any) -> ImpactCredit:
        return cls(Person.from_json(data["person"]), str(data["role"]), float(data["amount"]),
                   tuple(data.get("records") or ()))


@dataclass(frozen=True, slots=True)
class ImpactStep:
    """The primary metric from one model version to the next, and who the improvement is credited to (nobody
    when it did not improve)."""

    model: str
    from_version: str
    to_version: str
    metric: str
    from_value: float
    to_value: float
    improvement: float
    credited: tuple[ImpactCredit, ...]
    measured: str | None = None  # the attribution record that credits the new version instead (none credited)

    def to_json(self) -> dict[str, Any]:
        data = {"model": self.model, "from_version": self.from_version, "to_version": self.to_version,
                "metric": self.metric, "from_value": self.from_value, "to_value": self.to_value,
                "improvement": self.improvement, "credited": [c.to_json() for c in self.credited]}
        if self.measured:
            data["measured"] = self.measured
        return data

    @classmethod
    def from_json(cls, data: Any) -> ImpactStep:
        return cls(str(data["model"]), str(data["from_version"]), str(data["to_version"]), str(data["metric"]),
                   float(data["from_value"]), float(data["to_value"]), float(data["improvement"]),
                   tuple(ImpactCredit.from_json(c) for c in data.get("credited") or ()),
                   data.get("measured"))


def _metric(lineage: Lineage, metric: str) -> float | None:
    for run in lineage.runs:
        value = (run.body.get("metrics") or {}).get(metric)
        if isinstance(value, int | float) and not math.isnan(value):
            return float(value)
    return None


def impact_steps(lineages: Mapping[tuple[str, str], Lineage], scoring: ScoringPolicy, people: People,
                 credit: CreditTally, before_cutoff: Callable[[str | None], bool], *,
                 attributed: Mapping[tuple[str, str], str] | None = None) -> list[ImpactStep]:
    """Each improvement of the primary metric between successive versions of a model, credited to the
    contributors of what changed between them: new dataset versions (their data contributors, by files),
    new code commits (their authors, by commits) and the new run (its trainer). The improvement is split
    across those roles by the scoring weights, then within a role by amount. Each person's share is added to
    their tally's impact. A step to a version in ``attributed`` (model version -> attribution record) credits
    nobody: the attribution measures what each contributor was worth to that version."""
    attributed = attributed or {}
    steps = []
    by_name: dict[str, list[tuple[str, Lineage]]] = defaultdict(list)
    for (name, version), lineage in lineages.items():
        by_name[name].append((version, lineage))
    sign = 1.0 if scoring.direction == "maximize" else -1.0
    for name, versions in by_name.items():
        metric = scoring.primary_metric
        measured = [(v, lin, m) for v, lin in versions if (m := _metric(lin, metric)) is not None]
        for (old_v, old, old_m), (new_v, new, new_m) in pairwise(measured):
            if before_cutoff(new.model.records[-1].time if new.model.records else None):
                continue
            delta = (new_m - old_m) * sign
            credited: list[ImpactCredit] = []
            attribution = attributed.get((name, new_v))
            if delta > 0 and attribution is None:
                changes = _changes(people, old, new)
                present = {role: parts for role, parts in changes.items() if parts}
                weight_sum = sum(scoring.weights.get(role, 0.0) for role in present) or 1.0
                for role, parts in present.items():
                    role_total = sum(amount for _, amount, _ in parts) or 1.0
                    for person, amount, evidence in parts:
                        share = delta * scoring.weights.get(role, 0.0) / weight_sum * amount / role_total
                        credited.append(ImpactCredit(person, role, round(share, 6), tuple(evidence)))
                        tally = credit.of(person)
                        tally.impact += share
                        tally.impact_records += [e for e in evidence if e not in tally.impact_records]
            steps.append(ImpactStep(name, old_v, new_v, metric, old_m, new_m, round(delta, 6), tuple(credited),
                                    attribution))
    return steps


def _changes(people: People, old: Lineage, new: Lineage) -> dict[str, list[tuple[Person, float, list[str]]]]:
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
        for entry in people.data_credits(record):
            # only the files this person added or changed since the version the older model used
            paths = set(entry.get("paths") or [])
            fresh = paths - before[(record.body.get("path"), str(entry.get("email")).lower())]
            amount = float(len(fresh)) if paths else float(entry.get("files") or 1)
            if amount > 0:
                changes["data"].append((people.contributor(entry), amount, [record.id]))
    old_commits = {sha for author in old.code_authors for sha in author.commits}
    for author in new.code_authors:
        new_commits = [sha for sha in author.commits if sha not in old_commits]
        if new_commits:
            changes["code"].append((people.by_email(author.name, author.email), float(len(new_commits)),
                                    [f"commit:{sha}" for sha in new_commits]))
    old_params = [run.body.get("params") for run in old.runs]
    for run in new.runs:
        if run.records and (run.body.get("params") not in old_params or not (changes["data"] or changes["code"])):
            changes["training"].append((people.by_key(run.records[0].actor), 1.0, [run.records[0].id]))
    return changes
