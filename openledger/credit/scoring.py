"""The scoring policy: how much each role weighs in a contributor's overall share, and which metric's
improvements count as impact (``scoring:`` in config.yaml; see docs/scoring.md).

>>> ScoringPolicy.from_config({"weights": {"data": 1}}).weights["data"]
1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openledger.errors import ConfigError

__all__ = ["ROLES", "ScoringPolicy"]

ROLES = ("data", "code", "training", "review", "feedback")


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
