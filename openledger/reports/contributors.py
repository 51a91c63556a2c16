"""The contributors report: credit per person by role (data, code, training, review, feedback), a share per role
and overall under the scoring policy in ``config.yaml``, and the impact along each model's lineage: measured
(the Shapley values of an ``attribution`` record, with intervals) for a model version that has one, the
heuristic of :mod:`openledger.credit.impact` for one that has not. Every number carries the record ids behind it.

:func:`contributors_report` builds a :class:`ContributorsReport`, a frozen view that the terminal, Markdown and
HTML renderers and the CI summary read; :meth:`ContributorsReport.to_json` is the published JSON
(``schemas/report-contributors.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from openledger._internal.memory import paused_gc
from openledger.credit.impact import ImpactStep, impact_steps
from openledger.credit.measured import MeasuredAttribution, PoolSplit, measured_attributions, pool_split
from openledger.credit.people import People, Person
from openledger.credit.scoring import ROLES, ScoringPolicy
from openledger.credit.tally import CreditTally
from openledger.errors import BadInputError
from openledger.identity.trust import instant
from openledger.lineage.graph import LedgerGraph

__all__ = ["CONTRIBUTORS_SCHEMA", "ContributorRow", "ContributorsReport", "RoleCredit", "Scope",
           "contributors_report"]

CONTRIBUTORS_SCHEMA = "openledger.report.contributors/1"


@dataclass(frozen=True, slots=True)
class RoleCredit:
    """One person's credit in one role: the amount (files, commits, runs, reviews, items), its share of the
    role's total, the details behind the amount (``files``, ``bytes``, ``datasets``, ``commits``, ``runs``,
    ``reviews``, ``items``) and the record ids (or ``commit:<sha>``) that back it."""

    amount: float
    share: float
    details: Mapping[str, float]
    records: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"amount": self.amount, "share": self.share, **self.details, "records": list(self.records)}

    @classmethod
    def from_json(cls, data: Any) -> RoleCredit:
        details = {k: v for k, v in data.items() if k not in ("amount", "share", "records")}
        return cls(data["amount"], data["share"], details, tuple(data.get("records") or ()))


@dataclass(frozen=True, slots=True)
class ContributorRow:
    """A person's credit: per role, overall (weighted shares), and the impact credited along lineages."""

    person: Person
    roles: Mapping[str, RoleCredit]
    overall: float
    impact: float
    impact_records: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person.to_json(), "roles": {role: c.to_json() for role, c in self.roles.items()},
                "overall": self.overall, "impact": self.impact, "impact_records": list(self.impact_records)}

    @classmethod
    def from_json(cls, data: Any) -> ContributorRow:
        return cls(Person.from_json(data["person"]),
                   {role: RoleCredit.from_json(c) for role, c in (data.get("roles") or {}).items()},
                   data["overall"], data["impact"], tuple(data.get("impact_records") or ()))


@dataclass(frozen=True, slots=True)
class Scope:
    """What the report covers: one model's versions or the whole ledger, from ``since`` on."""

    model: str | None
    since: str | None
    model_versions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "since": self.since, "model_versions": list(self.model_versions)}

    @classmethod
    def from_json(cls, data: Any) -> Scope:
        return cls(data.get("model"), data.get("since"), tuple(data.get("model_versions") or ()))


@dataclass(frozen=True, slots=True)
class ContributorsReport:
    """Credit per person (rows by overall share, then name), with the totals per role and the impact steps."""

    scope: Scope
    scoring: ScoringPolicy
    totals: Mapping[str, float]
    contributors: tuple[ContributorRow, ...]
    impact: tuple[ImpactStep, ...]
    measured: tuple[MeasuredAttribution, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = {"schema": CONTRIBUTORS_SCHEMA, "scope": self.scope.to_json(), "scoring": self.scoring.to_json(),
                "totals": dict(self.totals), "contributors": [row.to_json() for row in self.contributors],
                "impact": [step.to_json() for step in self.impact]}
        if self.measured:  # absent, not empty, without attributions: those reports read as before
            data["measured"] = [m.to_json() for m in self.measured]
        return data

    def pool(self, amount: Decimal) -> PoolSplit:
        """``amount`` split by the measured value of the newest attributed version of the one model in scope
        (docs/scoring.md): bad input without an attribution, or with several models attributed."""
        newest = {m.model: m for m in self.measured}  # versions in order: the last of each model is the newest
        return pool_split(amount, list(newest.values()), (row.person for row in self.contributors))

    @classmethod
    def from_json(cls, data: Any) -> ContributorsReport:
        """A report read back from ``--format json`` (schema ``openledger.report.contributors/1``)."""
        if data.get("schema") != CONTRIBUTORS_SCHEMA:
            raise BadInputError(f"not a {CONTRIBUTORS_SCHEMA} report (schema {data.get('schema')!r})")
        scoring = data["scoring"]
        policy = ScoringPolicy(dict(scoring["weights"]), scoring["primary_metric"], scoring["direction"])
        return cls(Scope.from_json(data["scope"]), policy, dict(data["totals"]),
                   tuple(ContributorRow.from_json(row) for row in data["contributors"]),
                   tuple(ImpactStep.from_json(step) for step in data["impact"]),
                   tuple(MeasuredAttribution.from_json(m) for m in data.get("measured") or ()))


@paused_gc()  # a million facts stay alive while it tallies: midway collections are pure cost
def contributors_report(graph: LedgerGraph, *, model: str | None = None, since: str | None = None,
                        scoring: ScoringPolicy | None = None) -> ContributorsReport:
    """Credit per person: over one model's versions (``model``), or over the whole ledger (every model's
    lineage, and the work outside them), counting contributions recorded at or after ``since`` (RFC 3339
    date or time). Impact is attributed along model lineages only."""
    scoring = scoring or ScoringPolicy.from_config(graph.ledger.config.scoring)
    versions = graph.model_versions(model)
    if model is not None and not versions:
        graph.resolve(model, None)  # raises the "no model named" error
    cutoff = instant(since if "T" in (since or "") else f"{since}T00:00:00Z") if since else None
    people = People.of(graph)
    credit = CreditTally(graph, people, cutoff)
    lineages = graph.lineages(versions)
    for lineage in lineages.values():
        credit.lineage(lineage)
    if model is None:
        credit.outside_lineages()
    measured = measured_attributions(graph, versions, people)
    # where a version is measured, the heuristic credits nobody for the step to it: the measurement does
    impact = impact_steps(lineages, scoring, people, credit, credit.before_cutoff,
                          attributed={key: m.record for key, m in measured.items()})
    tallies = credit.tallies
    totals = {role: sum(t.amounts.get(role, 0.0) for t in tallies.values()) for role in ROLES}
    active = [role for role in ROLES if totals[role] > 0 and scoring.weights.get(role, 0) > 0]
    weight_sum = sum(scoring.weights[role] for role in active) or 1.0
    rows: list[ContributorRow] = []
    for t in tallies.values():
        roles: dict[str, RoleCredit] = {}
        shares: dict[str, float] = {}
        for role in ROLES:
            if role not in t.amounts:
                continue
            shares[role] = t.amounts[role] / totals[role] if totals[role] else 0.0
            roles[role] = RoleCredit(t.amounts[role], round(shares[role], 4), dict(t.details[role]),
                                     tuple(t.records[role]))
        overall = sum(scoring.weights[r] * shares[r] for r in active if r in shares) / weight_sum
        rows.append(ContributorRow(t.person, roles, round(overall, 4), round(t.impact, 6), tuple(t.impact_records)))
    rows.sort(key=lambda row: (-row.overall, row.person.name))
    return ContributorsReport(Scope(model, since, tuple(f"{n}@{v}" for n, v in versions)), scoring, totals,
                              tuple(rows), tuple(impact), tuple(measured.values()))
