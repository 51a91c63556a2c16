"""Measured attribution: choose coalitions, have an executor run them, compute every value from one table.

Up to ``exact_max`` players (default 8: 255 coalitions), every coalition is run and the Shapley values,
Banzhaf values and leave-one-out are exact. Beyond that, a run budget is spent on:

1. the full coalition and each leave-one-out coalition (``k + 1``): exact leave-one-out, and v(all) for
   truncation;
2. half of what is left on permutation sampling for Shapley values (truncated when a tolerance is set);
3. the rest on uniformly random coalitions for maximum-sample-reuse Banzhaf values.

Coalitions already run are free (the same coalition serves every estimator), and the choice of coalitions
depends only on ``sample_seed`` and on the values measured, so an interrupted attribution run again asks
for the same runs and reuses every one that finished. Without truncation (one seed, or a tolerance of 0) it
depends on no value at all: every sampled coalition is chosen first, and they run as one batch, so no worker
waits for the slowest run of a batch before the next batch starts.

The game's value of a coalition is its metric (negated when lower is better, so a positive value always
means "made the model better"), averaged over the seeds; the empty coalition, and any failed run, is worth
the ``baseline``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from openledger._internal.stats import sample_variance
from openledger.attribution.players import Contributor, Player, coalition_data
from openledger.attribution.runs import CoalitionTable, Executor, RunRequest, RunResult
from openledger.attribution.values import (
    MIN_SAMPLES,
    Estimate,
    PlayerValues,
    banzhaf_exact,
    banzhaf_msr,
    estimate_of,
    permutation_marginals,
    shapley_exact,
    variance_floor,
)
from openledger.config import LedgerConfig
from openledger.errors import BadInputError

__all__ = ["Attribution", "AttributionOptions", "AttributionSettings", "Game", "attribute"]

DEFAULT_EXACT_MAX = 8
MAX_ORDERS = 20_000  # samples per estimator, whatever the budget (free ones included)
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Game:
    """What is valued: the players (null players included), the datasets their files belong to, the commit the
    pipeline runs at, the metric and its direction, the empty coalition's value (``baseline``, in the metric's
    units), and the seeds (one per repeat; ``None`` runs with the pipeline's own) set through ``seed_param``."""

    players: tuple[Player, ...]
    datasets: tuple[str, ...]
    commit: str
    metric: str
    direction: str = "maximize"
    baseline: float = 0.0
    seeds: tuple[int | None, ...] = (None,)
    seed_param: str | None = None
    own_seed: int | None = None  # the seed param's value at the commit: a run with it needs no override

    def gain(self, metric: float) -> float:
        """A metric value on the scale values are measured in (higher is better)."""
        return metric if self.direction == "maximize" else -metric


@dataclass(frozen=True, slots=True)
class AttributionOptions:
    exact_max: int = DEFAULT_EXACT_MAX
    budget: int | None = None  # runs; None: 2**exact_max per seed
    confidence: float = 0.95
    truncation: float | None = None  # None: the standard error of v(all) when seeds measure it, else off
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if self.exact_max < 1:
            raise BadInputError("--exact-max must be at least 1")
        if self.budget is not None and self.budget < 1:
            raise BadInputError("--budget must be at least 1")
        if not 0.5 <= self.confidence < 1.0:
            raise BadInputError("attribution.confidence must be at least 0.5 and below 1")
        if self.truncation is not None and self.truncation < 0:
            raise BadInputError("attribution.truncation must be 0 (off) or a positive tolerance")


@dataclass(frozen=True, slots=True)
class AttributionSettings:
    """``attribution:`` in config.yaml (docs/attribution.md). The metric and its direction default to
    ``scoring.primary_metric`` and ``scoring.direction``; ``baseline`` is the empty coalition's value, in the
    metric's units (also what a failed run counts as)."""

    metric: str = "accuracy"
    direction: str = "maximize"
    baseline: float = 0.0
    baseline_configured: bool = False
    confidence: float = 0.95
    truncation: float | None = None
    seed_param: str = "seed"

    @classmethod
    def from_config(cls, config: LedgerConfig) -> AttributionSettings:
        section, scoring = config.attribution, config.scoring
        direction = str(section.get("direction") or scoring.get("direction") or "maximize")
        if direction not in ("maximize", "minimize"):
            raise BadInputError("config.yaml: scoring.direction must be maximize or minimize")
        truncation = section.get("truncation")
        return cls(metric=str(section.get("metric") or scoring.get("primary_metric") or "accuracy"),
                   direction=direction, baseline=float(section.get("baseline", 0.0)),
                   baseline_configured="baseline" in section, confidence=float(section.get("confidence", 0.95)),
                   truncation=None if truncation is None else float(truncation),
                   seed_param=str(section.get("seed_param") or "seed"))


@dataclass(frozen=True)
class Attribution:
    """The result: every player's values with intervals, the table they come from, and what it cost."""

    game: Game
    options: AttributionOptions
    mode: str  # exact | sampled
    values: tuple[PlayerValues[Contributor], ...]
    table: CoalitionTable
    method: Mapping[str, Any]
    seconds: float
    full_value: float

    @property
    def runs(self) -> int:
        return len(self.table)

    @property
    def reused(self) -> int:
        return sum(1 for r in self.table.results.values() if r.reused)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.table.results.values() if not r.ok)

    def cost(self) -> dict[str, Any]:
        run_seconds = sum(r.seconds for r in self.table.results.values() if not r.reused)
        return {"runs": self.runs, "new_runs": self.runs - self.reused, "reused_runs": self.reused,
                "failed_runs": self.failed, "wall_seconds": round(self.seconds, 3),
                "run_seconds": round(run_seconds, 3)}


class _Study:
    """The coalition table of one attribution, filled through an executor as estimators ask for coalitions."""

    def __init__(self, game: Game, executor: Executor, progress: Progress | None, total: int) -> None:
        self.game = game
        self.executor = executor
        self.progress = progress
        self.total = total
        self.active = [i for i, p in enumerate(game.players) if p.files]  # game index -> index in game.players
        self.k = len(self.active)
        self.full = (1 << self.k) - 1
        self.table = CoalitionTable()
        self.pending: dict[str, RunRequest] = {}  # run key -> its request, for every run asked for
        self.keys: dict[tuple[int, int], str] = {}  # (mask, seed index) -> run key
        self.spent: set[int] = set()
        self.planned: list[RunRequest] | None = None  # inside plan(): the runs asked for, not yet made

    @contextmanager
    def plan(self) -> Iterator[None]:
        """Coalitions asked for inside are only chosen; they run together, as one batch, when the block ends.
        Only for choices that read no value measured inside (reading one is a programming error)."""
        self.planned = []
        try:
            yield
            requests = self.planned
        finally:
            self.planned = None
        self._run(requests)

    def _request(self, mask: int, repeat: int) -> RunRequest:
        members = tuple(self.active[i] for i in range(self.k) if mask >> i & 1)
        seed = self.game.seeds[repeat]
        param = self.game.seed_param
        params = {param: seed} if param and seed is not None and seed != self.game.own_seed else {}
        return RunRequest.make(coalition=members, seed=seed, params=params,
                               data=coalition_data(self.game.players, members, self.game.datasets),
                               commit=self.game.commit)

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(len(self.table), max(self.total, len(self.table)))

    def _done(self, result: RunResult) -> None:
        request = self.pending.get(result.key)
        # a run not asked for is ignored, and a run reported twice is counted once (the table keeps the first)
        if request is not None and self.table.add(request, result):
            self._report()

    def ensure(self, masks: Iterable[int]) -> None:
        """Make sure every coalition in ``masks`` has its runs (one per seed) in the table."""
        requests: list[RunRequest] = []
        for mask in masks:
            if mask == 0:
                continue
            self.spent.add(mask)
            for repeat in range(len(self.game.seeds)):
                if (mask, repeat) in self.keys:
                    continue
                request = self._request(mask, repeat)
                self.keys[(mask, repeat)] = request.key
                self.pending[request.key] = request
                requests.append(request)
        if self.planned is not None:
            self.planned.extend(requests)
        else:
            self._run(requests)

    def _run(self, requests: Sequence[RunRequest]) -> None:
        if not requests:
            return
        for result in self.executor.completed(requests).values():
            self._done(result)
        rest = [r for r in requests if r.key not in self.table]
        if rest:
            self.executor.run(rest, self._done)
        missing = [r for r in requests if r.key not in self.table]
        if missing:
            raise RuntimeError(f"the executor did not report {len(missing)} of {len(requests)} runs")

    def result(self, mask: int, repeat: int) -> RunResult | None:
        key = self.keys.get((mask, repeat))
        if self.planned is not None and key is not None and key not in self.table:
            raise RuntimeError("a value was read before its run, while coalitions were being planned")
        return self.table.results.get(key) if key else None

    def seed_value(self, mask: int, repeat: int) -> float:
        """v(mask) under one seed, on the gain scale: the baseline for {} and for a failed run."""
        result = self.result(mask, repeat) if mask else None
        metric = _metric_of(result, self.game.metric)
        return self.game.gain(self.game.baseline if metric is None else metric)

    def value(self, mask: int) -> float:
        repeats = len(self.game.seeds)
        return sum(self.seed_value(mask, r) for r in range(repeats)) / repeats


def _metric_of(result: RunResult | None, metric: str) -> float | None:
    if result is None or not result.ok:
        return None
    value = result.metrics.get(metric)
    if value is None or not math.isfinite(value):
        return None  # a NaN or infinite metric says the run failed to measure anything
    return float(value)


def _null() -> Estimate:
    return Estimate(0.0, 0.0, 0.0, 0)


def _over_seeds(per_seed: Sequence[float], level: float, players: int) -> Estimate:
    if len(per_seed) == 1:
        return Estimate(per_seed[0], per_seed[0], per_seed[0], 1)  # exact; the noise is not measured
    return estimate_of(per_seed, level=level, players=players)


def _check_full(study: _Study) -> None:
    """The full coalition must run and produce the metric: otherwise nothing can be valued."""
    results = [study.result(study.full, r) for r in range(len(study.game.seeds))]
    ok = [r for r in results if r is not None and r.ok]
    if not ok:
        errors = [r.error for r in results if r is not None and r.error]
        why = f": {errors[0]}" if errors else ""
        raise BadInputError(f"the pipeline fails on the full data{why}",
                            hint="fix the pipeline so that `dvc exp run` succeeds at this commit, then run again")
    if all(study.game.metric not in r.metrics for r in ok):
        produced = sorted({name for r in ok for name in r.metrics})
        listed = ", ".join(produced[:12]) + (", ..." if len(produced) > 12 else "") if produced else "none"
        raise BadInputError(f"the pipeline does not produce the metric {study.game.metric!r} "
                            f"(it produces: {listed})", hint="name one of those with --metric")


def _exact(study: _Study, options: AttributionOptions) -> tuple[list[list[Estimate]], dict[str, Any]]:
    k, level = study.k, options.confidence
    study.ensure(range(1, 1 << k))
    per_seed = []
    for r in range(len(study.game.seeds)):
        game = [study.seed_value(mask, r) for mask in range(1 << k)]
        shapley, banzhaf = shapley_exact(game, k), banzhaf_exact(game, k)
        loo = [game[study.full] - game[study.full & ~(1 << i)] for i in range(k)]
        per_seed.append((shapley, banzhaf, loo))
    estimates = [[_over_seeds([seed[m][i] for seed in per_seed], level, k) for m in range(3)] for i in range(k)]
    return estimates, {"shapley": "exact", "banzhaf": "exact", "loo": "exact"}


def _tolerance(study: _Study, options: AttributionOptions) -> float:
    if options.truncation is not None:
        return options.truncation
    seeds = len(study.game.seeds)
    if seeds < 2:
        return 0.0
    values = [study.seed_value(study.full, r) for r in range(seeds)]
    return math.sqrt(sample_variance(values) / seeds)  # the standard error of v(all)


def _sampled(study: _Study, options: AttributionOptions, budget: int
             ) -> tuple[list[list[Estimate]], dict[str, Any]]:
    k, level, seeds = study.k, options.confidence, len(study.game.seeds)
    coalitions = budget // seeds
    if coalitions < 2 * (k + 1):
        raise BadInputError(f"--budget {budget} is too small for {k} players",
                            hint=f"sampling needs at least {2 * (k + 1) * seeds} runs here "
                                 f"(2 x (players + 1) x repeats); exact values need {((1 << k) - 1) * seeds}")
    rng = random.Random(options.sample_seed)  # noqa: S311 - sampling coalitions, reproducibly; not a secret
    # Without truncation no choice reads a value: plan every coalition, then run them as one batch.
    untruncated = options.truncation == 0 or (options.truncation is None and seeds < 2)
    with study.plan() if untruncated else nullcontext():
        study.ensure([study.full & ~(1 << i) for i in range(k)])
        tolerance = _tolerance(study, options)
        shapley_limit = len(study.spent) + 2 * (coalitions - len(study.spent)) // 3
        orders = _OrderSampler(study, rng, tolerance)
        orders.draw(shapley_limit)
        samples = _uniform_samples(study, rng, coalitions)
        orders.draw(len(study.spent))  # orders through coalitions already run cost nothing
    loo_per_seed = [[study.seed_value(study.full, r) - study.seed_value(study.full & ~(1 << i), r)
                     for i in range(k)] for r in range(seeds)]
    loo = [_over_seeds([s[i] for s in loo_per_seed], level, k) for i in range(k)]
    by_player = [[m[i] for m in orders.value()] for i in range(k)]
    floor = variance_floor(by_player)
    shapley = [estimate_of(samples, level=level, players=k, floor=floor, minimum=MIN_SAMPLES) if samples
               else Estimate(0.0, None, None, 0) for samples in by_player]
    banzhaf = banzhaf_msr([(mask, study.value(mask)) for mask in samples], k, level=level)
    method = {"shapley": "permutation sampling" + (f", truncated at {tolerance:.6g}" if tolerance > 0 else ""),
              "banzhaf": "maximum sample reuse", "loo": "exact", "permutations": 2 * len(orders.samples),
              "samples": len(samples), "truncation": tolerance}
    return [[shapley[i], banzhaf[i], loo[i]] for i in range(k)], method


def _prefixes(order: Sequence[int]) -> list[int]:
    masks, mask = [], 0
    for player in order:
        mask |= 1 << player
        masks.append(mask)
    return masks


class _OrderSampler:
    """Permutation sampling for Shapley values, in antithetic pairs: a uniformly random order of the players,
    then the same order reversed (Mitchell et al. 2022: a player late in one is early in the other, which
    cancels much of the variance). One sample per pair: each player's mean marginal over the two orders.

    :meth:`draw` takes pairs until the first whose new coalitions do not fit under a limit; that pair stays
    next in line, so a later :meth:`draw` (with more coalitions run) continues the same sequence. Never
    skipping a pair keeps the sample uniformly random: skipping would favour orders through coalitions already
    run, and bias the estimate.
    """

    def __init__(self, study: _Study, rng: random.Random, tolerance: float) -> None:
        self.study = study
        self.rng = rng
        self.tolerance = tolerance
        self.pending: list[list[int]] | None = None
        self.samples: list[list[float]] = []
        self.unvalued: list[list[list[int]]] = []  # pairs drawn without truncation, valued by value()

    def _next(self) -> list[list[int]]:
        if self.pending is None:
            order = self.rng.sample(range(self.study.k), self.study.k)
            self.pending = [order, order[::-1]]
        return self.pending

    def draw(self, limit: int) -> None:
        study, k = self.study, self.study.k
        while len(self.samples) + len(self.unvalued) < MAX_ORDERS:
            batch: list[list[list[int]]] = []
            reserved: set[int] = set()
            while len(self.samples) + len(self.unvalued) + len(batch) < MAX_ORDERS:
                pair = self._next()
                new = {m for order in pair for m in _prefixes(order)[:-1]
                       if m not in study.spent and m not in reserved}
                if len(study.spent) + len(reserved) + len(new) > limit:
                    break
                self.pending = None
                batch.append(pair)
                reserved |= new
            if not batch:
                return
            if self.tolerance <= 0:  # every prefix runs: nothing here reads a value (the study may be planning)
                study.ensure(reserved)
                self.unvalued.extend(batch)
                continue
            orders = [order for pair in batch for order in pair]
            prefixes = [_prefixes(order) for order in orders]
            goal = study.value(study.full)  # in waves, so that a truncated walk never runs its later prefixes
            active = list(range(len(orders)))
            for j in range(k - 1):
                study.ensure({prefixes[o][j] for o in active})
                active = [o for o in active if abs(goal - study.value(prefixes[o][j])) > self.tolerance]
            self._value(batch)

    def value(self) -> list[list[float]]:
        """Every pair's sample (each player's mean marginal over the pair's two orders), in the order drawn."""
        self._value(self.unvalued)
        self.unvalued = []
        return self.samples

    def _value(self, pairs: Sequence[list[list[int]]]) -> None:
        study = self.study
        for pair in pairs:
            marginals = []
            for order in pair:
                values = [study.value(0)]
                for mask in _prefixes(order):
                    values.append(study.value(mask) if mask in study.spent or mask == study.full else values[-1])
                marginals.append(permutation_marginals(order, values, self.tolerance))
            first, second = marginals
            self.samples.append([(a + b) / 2 for a, b in zip(first, second, strict=True)])


def _uniform_samples(study: _Study, rng: random.Random, limit: int) -> list[int]:
    """Uniformly random coalitions (each player in with probability 1/2), drawn until the first new one that
    does not fit under ``limit`` (coalitions already run cost nothing), or ``MAX_ORDERS``. Never skipping one
    keeps the sample uniform."""
    samples: list[int] = []
    new: set[int] = set()
    while len(samples) < MAX_ORDERS:
        mask = rng.getrandbits(study.k)
        if mask and mask not in study.spent and mask not in new:
            if len(study.spent) + len(new) + 1 > limit:
                break
            new.add(mask)
        samples.append(mask)
    study.ensure(new)
    return samples


def attribute(game: Game, executor: Executor, options: AttributionOptions | None = None, *,
              progress: Progress | None = None, clock: Callable[[], float] = time.monotonic) -> Attribution:
    """Value every player of ``game`` by running coalitions through ``executor``.

    Raises :class:`BadInputError` when there are fewer than two players with data of their own, when the
    pipeline fails on the full data or does not produce the metric, or when the budget is too small.
    ``KeyboardInterrupt`` from the executor propagates; the runs that finished are the executor's to keep.
    """
    options = options or AttributionOptions()
    started = clock()
    holders = [p for p in game.players if p.files]
    if len(holders) < 2:
        who = f" ({holders[0].contributor.name})" if holders else ""
        raise BadInputError(f"only {len(holders)} contributor{'' if len(holders) == 1 else 's'} with data of their "
                            f"own{who}: attribution needs at least two",
                            hint="the players are the people dataset records credit for the valued files")
    k, seeds = len(holders), len(game.seeds)
    exact = k <= options.exact_max
    budget = options.budget if options.budget is not None else (1 << options.exact_max) * seeds
    total = ((1 << k) - 1) * seeds if exact else budget
    study = _Study(game, executor, progress, total)
    study._report()
    # The full coalition first: nothing can be valued when the pipeline fails on it. Its first wave fills
    # every worker the executor has, with leave-one-out coalitions (every mode runs them next); at most
    # `parallelism - 1` runs are then spent in vain on a pipeline that fails.
    width = max(1, int(getattr(executor, "parallelism", 1)))
    study.ensure([study.full, *(study.full & ~(1 << i) for i in range(k))][:width])
    _check_full(study)
    estimates, method = _exact(study, options) if exact else _sampled(study, options, budget)
    method = {**method, "confidence": options.confidence, "simultaneous": True,
              "noise": f"measured over {seeds} seeds" if seeds > 1 else "not measured (one seed)"}
    by_player: dict[int, list[Estimate]] = {study.active[i]: estimates[i] for i in range(k)}
    values = tuple(PlayerValues(p.contributor, len(p.files), *(by_player.get(index) or [_null(), _null(), _null()]))
                   for index, p in enumerate(game.players))
    if progress is not None:
        progress(len(study.table), len(study.table))
    return Attribution(game, options, "exact" if exact else "sampled", values, study.table, method,
                       clock() - started, study.value(study.full))

