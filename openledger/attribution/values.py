"""Shapley values, Banzhaf values and leave-one-out, exactly from a full game table or estimated from samples.

A game over ``k`` players is a value for every coalition, indexed by bitmask (bit ``i`` set: player ``i`` is in).
Every function here is pure arithmetic; :mod:`openledger.attribution.engine` decides which coalitions to run.

* **Shapley** (exact): phi_i = sum_{S not in i} |S|! (k-|S|-1)! / k!  *  (v(S + i) - v(S)). The values add up to
  v(all) - v({}).
* **Banzhaf** (exact): beta_i = sum_{S not in i} (v(S + i) - v(S)) / 2^(k-1), every coalition weighed alike.
* **Leave-one-out**: v(all) - v(all without i).
* **Permutation sampling** (Shapley): the mean of i's marginal contribution along random orders of the
  players; with a truncation tolerance, a walk stops once the prefix is within the tolerance of v(all)
  (the later marginals count as zero; Ghorbani & Zou 2019, "TMC-Shapley").
* **Maximum sample reuse** (Banzhaf): uniformly random coalitions, each used for every player: mean of v over
  the samples containing i minus mean over those without (Wang & Jia 2023, "Data Banzhaf").

Intervals are Student-t intervals at a confidence level that holds **for all players at once** (Bonferroni:
each player's interval at 1 - (1 - level)/k).

>>> game = [0.0, 1.0, 2.0, 4.0]  # two players: alone 1 and 2, together 4 (one unit of synergy)
>>> shapley_exact(game, 2), banzhaf_exact(game, 2), leave_one_out(game, 2)
([1.5, 2.5], [1.5, 2.5], [2.0, 3.0])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from openledger._internal.stats import mean, sample_variance, t_quantile

SMALL_SAMPLE = 30  # below this many samples, intervals use the largest variance any player shows
MIN_SAMPLES = 5  # fewer random samples bound nothing: the sampling estimators leave the interval open

__all__ = [
    "METHODS",
    "Estimate",
    "PlayerValues",
    "banzhaf_exact",
    "banzhaf_msr",
    "estimate_of",
    "leave_one_out",
    "permutation_marginals",
    "shapley_exact",
    "variance_floor",
    "welch_estimate",
]


@dataclass(frozen=True, slots=True)
class Estimate:
    """A value with its interval. ``low``/``high`` are ``None`` when the samples cannot bound it (fewer than
    ``MIN_SAMPLES``); equal to ``value`` when nothing varies (an exact value with the noise not measured). ``samples``:
    how many samples the interval rests on (seeds, permutations or coalitions)."""

    value: float
    low: float | None
    high: float | None
    samples: int

    def contains(self, x: float, *, slack: float = 1e-9) -> bool:
        if self.low is None or self.high is None:
            return True
        return self.low - slack <= x <= self.high + slack

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "samples": self.samples}

    @classmethod
    def from_json(cls, data: Any) -> Estimate:
        if not isinstance(data, dict):
            raise ValueError("an estimate is an object")
        low, high = data.get("low"), data.get("high")
        return cls(float(data["value"]), None if low is None else float(low), None if high is None else float(high),
                   int(data.get("samples", 0)))


METHODS = ("shapley", "banzhaf", "loo")
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class PlayerValues(Generic[P]):
    """One player's measured values: the person, how many files of theirs were valued, and an estimate per
    method. An attribution's result and its record read back name the person as the record does
    (``PlayerValues[Contributor]``); reports as every report names people (``PlayerValues[Person]``)."""

    person: P
    files: int
    shapley: Estimate
    banzhaf: Estimate
    loo: Estimate

    def get(self, method: str) -> Estimate:
        return {"shapley": self.shapley, "banzhaf": self.banzhaf, "loo": self.loo}[method]


def _bonferroni(level: float, players: int) -> float:
    """The two-sided quantile level of one of ``players`` intervals that hold together at ``level``."""
    return 1.0 - (1.0 - level) / (2.0 * max(players, 1))


def estimate_of(samples: Sequence[float], *, level: float, players: int, floor: float = 0.0,
                minimum: int = 2) -> Estimate:
    """The mean of ``samples`` with a t interval (simultaneous over ``players``).

    With fewer than ``minimum`` samples the interval is left open. ``floor`` is a variance the interval uses
    at least: with few samples, a player whose marginals happened
    to agree every time would otherwise get a zero-width interval (the sampler passes the mean spread of all
    players' samples, :func:`variance_floor`).
    """
    centre = mean(samples)
    n = len(samples)
    if n < max(minimum, 2):
        return Estimate(centre, None, None, n)
    variance, df = max(sample_variance(samples), floor), float(n - 1)
    spread = math.sqrt(variance / n)
    if spread == 0.0:
        return Estimate(centre, centre, centre, n)
    half = t_quantile(_bonferroni(level, players), df) * spread
    return Estimate(centre, centre - half, centre + half, n)


def variance_floor(groups: Sequence[Sequence[float]], *, below: int = SMALL_SAMPLE) -> float:
    """The variance every player's interval uses at least, when there are fewer than ``below`` samples: the
    largest sample variance any player shows (0 with more samples, or none). With a handful of samples, a
    player whose marginals happened to agree every time would otherwise get a zero-width interval around a
    value that is off."""
    sizes = [len(g) for g in groups if len(g) >= 2]
    if not sizes or min(sizes) >= below:
        return 0.0
    return max(sample_variance(g) for g in groups if len(g) >= 2)


def welch_estimate(inside: Sequence[float], outside: Sequence[float], *, level: float, players: int) -> Estimate:
    """mean(inside) - mean(outside) with a Welch t interval (simultaneous over ``players``)."""
    if not inside or not outside:
        centre = (mean(inside) if inside else 0.0) - (mean(outside) if outside else 0.0)
        return Estimate(centre, None, None, len(inside) + len(outside))
    centre = mean(inside) - mean(outside)
    n1, n0 = len(inside), len(outside)
    if n1 < MIN_SAMPLES or n0 < MIN_SAMPLES:
        return Estimate(centre, None, None, n1 + n0)
    a, b = sample_variance(inside) / n1, sample_variance(outside) / n0
    if a + b == 0.0:
        return Estimate(centre, centre, centre, n1 + n0)
    df = (a + b) ** 2 / ((a * a / (n1 - 1) if a else 0.0) + (b * b / (n0 - 1) if b else 0.0))
    half = t_quantile(_bonferroni(level, players), df) * math.sqrt(a + b)
    return Estimate(centre, centre - half, centre + half, n1 + n0)


def _check(values: Sequence[float], players: int) -> None:
    if len(values) != 1 << players:
        raise ValueError(f"a game over {players} players has {1 << players} coalitions, not {len(values)}")


def shapley_exact(values: Sequence[float], players: int) -> list[float]:
    """Exact Shapley values of the game ``values`` (indexed by coalition bitmask)."""
    _check(values, players)
    weights = [math.factorial(s) * math.factorial(players - s - 1) / math.factorial(players) for s in range(players)]
    result = [0.0] * players
    for mask in range(1 << players):
        weight = weights[mask.bit_count()] if mask != (1 << players) - 1 else 0.0
        base = values[mask]
        for i in range(players):
            if not mask >> i & 1:
                result[i] += weight * (values[mask | 1 << i] - base)
    return result


def banzhaf_exact(values: Sequence[float], players: int) -> list[float]:
    """Exact Banzhaf values of the game ``values`` (indexed by coalition bitmask)."""
    _check(values, players)
    result = [0.0] * players
    for mask in range(1 << players):
        base = values[mask]
        for i in range(players):
            if not mask >> i & 1:
                result[i] += values[mask | 1 << i] - base
    scale = 1 << (players - 1)
    return [r / scale for r in result]


def leave_one_out(values: Sequence[float] | dict[int, float], players: int) -> list[float]:
    """v(all) - v(all without i), from a full table or from a mapping holding those ``k + 1`` coalitions."""
    full = (1 << players) - 1
    return [values[full] - values[full & ~(1 << i)] for i in range(players)]


def permutation_marginals(order: Sequence[int], prefix_values: Sequence[float], tolerance: float) -> list[float]:
    """Each player's marginal contribution along one order, indexed by player.

    ``prefix_values[j]`` is v of the first ``j`` players of ``order`` (``j`` from 0 to k, so v({}) first and
    v(all) last). With ``tolerance`` > 0 the walk is truncated at the first prefix within ``tolerance`` of
    v(all): later players' marginals are zero (and their prefixes need not have been run: pass anything).
    """
    k = len(order)
    marginals = [0.0] * k
    full = prefix_values[k]
    for j in range(1, k + 1):
        previous = prefix_values[j - 1]
        if tolerance > 0 and abs(full - previous) <= tolerance:
            break
        marginals[order[j - 1]] = prefix_values[j] - previous
    return marginals


def banzhaf_msr(samples: Sequence[tuple[int, float]], players: int, *, level: float) -> list[Estimate]:
    """Maximum-sample-reuse Banzhaf estimates from (coalition bitmask, value) samples."""
    result = []
    for i in range(players):
        inside = [v for mask, v in samples if mask >> i & 1]
        outside = [v for mask, v in samples if not mask >> i & 1]
        result.append(welch_estimate(inside, outside, level=level, players=players))
    return result
