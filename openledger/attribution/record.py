"""The signed ``attribution`` record, and the read side reports use: the newest attribution of a model version,
its values per person, and a reward pool split by measured value.

The body holds everything needed to check the values without trusting them: the players and their files'
digests, every coalition run (its coalition, seed, metric, experiment, data digest and the ids of the stage
records the record stage signed for it), the method, the values with intervals, and the cost. Anyone can
recompute the exact values from ``runs`` (tests/attribution do, independently of this code).

>>> split_pool(Decimal("100"), {"ada": 0.3, "bob": 0.1, "eve": -0.2})
{'ada': Decimal('75.00'), 'bob': Decimal('25.00'), 'eve': Decimal('0.00')}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from openledger.attribution.engine import Attribution
from openledger.attribution.players import Contributor
from openledger.attribution.target import AttributionTarget
from openledger.attribution.values import METHODS, Estimate, PlayerValues
from openledger.identity.trust import in_time_order
from openledger.lineage.joins import dataset_key, join_key
from openledger.store.ledger import Ledger
from openledger.store.records import Record, RecordSigner

if TYPE_CHECKING:
    from openledger.identity.trust import TrustState

__all__ = [
    "AttributionView",
    "attribution_body",
    "attribution_links",
    "attribution_model_key",
    "attributions_of",
    "newest_attribution",
    "record_attribution",
    "split_pool",
]


def attribution_model_key(name: str, version: str) -> str:
    """The join key an attribution of model ``name`` version ``version`` links, so reports find it by name."""
    return join_key("attrmodel", name, str(version))


def attribution_body(result: Attribution, target: AttributionTarget, *, executor: Mapping[str, Any]
                     ) -> dict[str, Any]:
    """The body of the ``attribution`` record of ``result`` (see docs/record-schema.md)."""
    game = result.game
    index = {p.id: i for i, p in enumerate(game.players)}
    runs = []
    for request, run in result.table.rows():
        metric = run.metrics.get(game.metric) if run.ok else None
        runs.append({"coalition": list(request.coalition), "seed": request.seed, "params": dict(request.params),
                     "metric": metric, **run.to_json()})
    body: dict[str, Any] = {
        "target": target.label,
        "commit": game.commit,
        "metric": game.metric,
        "direction": game.direction,
        "baseline": game.baseline,
        "seeds": list(game.seeds),
        "seed_param": game.seed_param,
        "datasets": [{"path": d.path, "digest": d.digest, "dvcfile": d.dvcfile, "record": d.record.id}
                     for d in target.datasets],
        "players": [p.to_json() for p in game.players],
        "mode": result.mode,
        "method": dict(result.method),
        "values": [{"player": v.person.id, "index": index[v.person.id],
                    **{m: v.get(m).to_json() for m in METHODS}} for v in result.values],
        "full_value": result.full_value,
        "runs": runs,
        "cost": result.cost(),
        "executor": dict(executor),
    }
    if target.model is not None:
        body["model"] = {"name": target.model[0], "version": target.model[1], "records": list(target.model_records)}
    return body


def attribution_links(result: Attribution, target: AttributionTarget) -> list[str]:
    """What the record builds on: the model version's records, the dataset records, every run's stage records,
    and a join key (the model version's, or the dataset version's) so readers find it through the index."""
    links = [*target.model_records, *(d.record.id for d in target.datasets)]
    for run in result.table.results.values():
        links += run.records
    if target.model is not None:
        links.append(attribution_model_key(*target.model))
    else:
        links += [dataset_key(d.path, d.digest) for d in target.datasets]
    return sorted(set(links))


def record_attribution(ledger: Ledger, signer: RecordSigner, result: Attribution, target: AttributionTarget, *,
                       executor: Mapping[str, Any]) -> Record:
    """Sign and append the ``attribution`` record of ``result`` (body and links as above)."""
    return ledger.append(signer, "attribution", attribution_body(result, target, executor=executor),
                         attribution_links(result, target))


@dataclass(frozen=True, slots=True)
class AttributionView:
    """An ``attribution`` record as reports read it (from a checked record)."""

    record: str
    time: str
    signer: str
    target: str
    model: tuple[str, str] | None
    metric: str
    direction: str
    mode: str
    confidence: float
    method: Mapping[str, Any]
    players: tuple[PlayerValues[Contributor], ...]
    runs: int
    cost: Mapping[str, Any]

    @classmethod
    def from_record(cls, record: Record) -> AttributionView:
        body = record.body
        players = {p["id"]: p for p in body["players"]}
        values = []
        for entry in body["values"]:
            person = players[entry["player"]]
            values.append(PlayerValues(Contributor(person["id"], person["name"], person["email"], person.get("key")),
                                       int(person.get("files", 0)), *(Estimate.from_json(entry[m]) for m in METHODS)))
        model = body.get("model")
        return cls(record.id, record.time, record.actor, str(body["target"]),
                   (str(model["name"]), str(model["version"])) if isinstance(model, Mapping) else None,
                   str(body["metric"]), str(body["direction"]), str(body["mode"]),
                   float(body["method"].get("confidence", 0.95)), dict(body["method"]), tuple(values),
                   len(body["runs"]), dict(body.get("cost") or {}))

    def value_of(self, person: str, method: str = "shapley") -> Estimate | None:
        """``person``'s estimate (by key id or ``email:<address>``), or None when they are not a player."""
        return next((p.get(method) for p in self.players if p.person.id == person), None)


def attributions_of(ledger: Ledger, name: str, version: str, *, trusted: TrustState | None = None
                    ) -> list[AttributionView]:
    """Every attribution of model ``name`` version ``version``, oldest first (records checked); with ``trusted``,
    only those whose signer that trust state counts at the record's time."""
    records = list(ledger.select(kind="attribution", links_to=attribution_model_key(name, str(version))))
    if trusted is not None:
        records = [r for r in records if trusted.status(r.actor, r.time) is None]
    records = in_time_order(records)
    return [AttributionView.from_record(r) for r in records]


def newest_attribution(ledger: Ledger, name: str, version: str, *, trusted: TrustState | None = None
                       ) -> AttributionView | None:
    """The newest attribution of a model version, or None: what `report contributors` shows as measured."""
    found = attributions_of(ledger, name, version, trusted=trusted)
    return found[-1] if found else None


def split_pool(amount: Decimal, values: Mapping[str, float] | Iterable[tuple[str, float]], *,
               decimals: int = 2) -> dict[str, Decimal]:
    """A reward pool split in proportion to positive value (docs/scoring.md): a value at or below zero gets
    nothing (nobody is charged); the shares are rounded down to ``decimals`` places and the cents left over go,
    one each, to the largest remainders (ties: the larger value, then the id), so they add up to ``amount``.
    With no positive value, everyone gets zero."""
    items = sorted(dict(values).items())
    positive = {who: Decimal(repr(v)) for who, v in items if v > 0}
    unit = Decimal(1).scaleb(-decimals)
    result = {who: Decimal(0).quantize(unit) for who, _ in items}
    total = sum(positive.values(), Decimal(0))
    if not positive or amount <= 0:
        return result
    exact = {who: amount * v / total for who, v in positive.items()}
    for who, share in exact.items():
        result[who] = share.quantize(unit, rounding=ROUND_DOWN)
    left = int((amount.quantize(unit, rounding=ROUND_DOWN) - sum(result.values())) / unit)
    order = sorted(exact, key=lambda who: (-(exact[who] - result[who]), -positive[who], who))
    for who in order[:left]:
        result[who] += unit
    return result
