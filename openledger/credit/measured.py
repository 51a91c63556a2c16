"""Measured impact: what reports show from ``attribution`` records (``openledger attribute``), and a reward pool
split by it.

A model version with a trusted attribution record is credited by measurement: each player's Shapley value
(Banzhaf and leave-one-out alongside), with its interval and method. Versions without one keep the heuristic
of :mod:`openledger.credit.impact`, labelled as such. :func:`measured_attributions` picks, per model, the
newest attributed version in scope; :func:`pool_split` divides an amount in proportion to positive Shapley
value (docs/scoring.md has the rule).

>>> e = Estimate(0.2, 0.1, 0.3, 8)
>>> PlayerValues(Person("k1", "Ada", "ada@example.org", "k1"), 3, e, e, e).shapley.value
0.2
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from openledger.attribution.record import AttributionView, newest_attribution, split_pool
from openledger.attribution.values import METHODS, Estimate, PlayerValues
from openledger.credit.people import People, Person
from openledger.errors import BadInputError
from openledger.lineage.graph import LedgerGraph

__all__ = ["MeasuredAttribution", "MeasuredValue", "PoolShare", "PoolSplit", "measured_attributions", "pool_split"]


MeasuredValue = PlayerValues[Person]  # one player's measured values, the person as every report names them


def _value_json(value: MeasuredValue) -> dict[str, Any]:
    return {"person": value.person.to_json(), "files": value.files, **{m: value.get(m).to_json() for m in METHODS}}


def _value_from_json(data: Any) -> MeasuredValue:
    return PlayerValues(Person.from_json(data["person"]), int(data["files"]),
                        *(Estimate.from_json(data[m]) for m in METHODS))


@dataclass(frozen=True, slots=True)
class MeasuredAttribution:
    """The attribution record a model version is credited by: what it valued (``metric``, ``direction``), how
    (``mode`` exact or sampled, ``method`` per estimator, the intervals' ``confidence``), at what cost (``runs``)
    and the values, highest Shapley first."""

    record: str
    model: str
    version: str
    time: str
    signer: Person
    metric: str
    direction: str
    mode: str
    confidence: float
    method: Mapping[str, Any]
    runs: int
    values: tuple[MeasuredValue, ...]

    @property
    def label(self) -> str:
        return f"{self.model}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record, "model": self.model, "version": self.version, "time": self.time,
                "signer": self.signer.to_json(), "metric": self.metric, "direction": self.direction,
                "mode": self.mode, "confidence": self.confidence, "method": dict(self.method), "runs": self.runs,
                "values": [_value_json(v) for v in self.values]}

    @classmethod
    def from_json(cls, data: Any) -> MeasuredAttribution:
        return cls(str(data["record"]), str(data["model"]), str(data["version"]), str(data["time"]),
                   Person.from_json(data["signer"]), str(data["metric"]), str(data["direction"]), str(data["mode"]),
                   float(data["confidence"]), dict(data["method"]), int(data["runs"]),
                   tuple(_value_from_json(v) for v in data["values"]))

    @classmethod
    def of(cls, view: AttributionView, people: People) -> MeasuredAttribution:
        assert view.model is not None
        values = []
        for player in view.players:
            who = player.person
            # the person as every report names them: by key when the record found one, else by email
            person = people.by_key(who.key) if who.key else Person(who.id, who.name, who.email or None, None)
            values.append(PlayerValues(person, player.files, player.shapley, player.banzhaf, player.loo))
        values.sort(key=lambda v: (-v.shapley.value, v.person.name, v.person.id))
        return cls(view.record, view.model[0], view.model[1], view.time, people.by_key(view.signer), view.metric,
                   view.direction, view.mode, view.confidence, view.method, view.runs, tuple(values))


def measured_attributions(graph: LedgerGraph, versions: Iterable[tuple[str, str]],
                          people: People) -> dict[tuple[str, str], MeasuredAttribution]:
    """The newest trusted attribution of each model version in ``versions`` that has one (records checked;
    an attribution signed by a key the trust policy does not count decides nothing)."""
    found: dict[tuple[str, str], MeasuredAttribution] = {}
    for name, version in versions:
        view = newest_attribution(graph.ledger, name, version, trusted=graph.trust)
        if view is not None and view.model is not None:
            found[(name, version)] = MeasuredAttribution.of(view, people)
    return found


@dataclass(frozen=True, slots=True)
class PoolShare:
    person: Person
    shapley: float | None
    amount: Decimal

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person.to_json(), "shapley": self.shapley, "amount": str(self.amount)}


@dataclass(frozen=True, slots=True)
class PoolSplit:
    """A reward pool split by one attribution's Shapley values (docs/scoring.md): ``shares`` in the order of
    the attribution's values; ``unmeasured`` are contributors the report credits who were no player of it."""

    amount: Decimal
    attribution: MeasuredAttribution
    shares: tuple[PoolShare, ...]
    unmeasured: tuple[Person, ...]

    def to_json(self) -> dict[str, Any]:
        return {"amount": str(self.amount), "attribution": self.attribution.record,
                "model": self.attribution.label, "metric": self.attribution.metric,
                "rule": "proportional to positive Shapley value; zero for a value at or below zero and for "
                        "contributors the attribution did not value",
                "shares": [s.to_json() for s in self.shares],
                "unmeasured": [p.to_json() for p in self.unmeasured]}


def pool_split(amount: Decimal, measured: Sequence[MeasuredAttribution], contributors: Iterable[Person] = ()
               ) -> PoolSplit:
    """``amount`` split by the one measured attribution in scope. None, or several (one per model: their
    metrics do not add up), is bad input: the pool is never split by the heuristic."""
    if not amount.is_finite() or amount < 0:
        raise BadInputError(f"--pool {amount} is not an amount (a number at or above zero)")
    if not measured:
        raise BadInputError("no attribution record covers the model versions in this report: a pool is split "
                            "by measured value only", hint="run `openledger attribute NAME@VERSION` first")
    if len(measured) > 1:
        names = ", ".join(m.label for m in measured)
        raise BadInputError(f"several models have attributions ({names}): choose one with --model NAME")
    attribution = measured[0]
    split = split_pool(amount, {v.person.id: v.shapley.value for v in attribution.values})
    shares = tuple(PoolShare(v.person, v.shapley.value, split[v.person.id]) for v in attribution.values)
    players = {v.person.id for v in attribution.values}
    unmeasured = tuple({p.id: p for p in contributors if p.id not in players}.values())
    return PoolSplit(amount, attribution, shares, unmeasured)
