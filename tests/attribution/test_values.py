"""The arithmetic of measured attribution, checked against independent computations (scipy, brute force over
coalitions with exact fractions, closed forms), with an in-process game standing in for the pipeline: these
tests are about the values, the DVC tests (test_attribute_dvc.py) about the runs."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from openledger._internal.stats import t_cdf, t_quantile
from openledger.attribution import engine
from openledger.attribution.engine import AttributionOptions, Game, attribute
from openledger.attribution.players import Contributor, CreditedVersion, DataFile, Player, players_of
from openledger.attribution.record import split_pool
from openledger.attribution.runs import CoalitionTable, RunRequest, RunResult
from openledger.attribution.values import (
    Estimate,
    banzhaf_exact,
    leave_one_out,
    permutation_marginals,
    shapley_exact,
)
from openledger.errors import BadInputError


@pytest.mark.parametrize("df", [1, 2, 3, 4.5, 9, 29, 200, 1e6])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.9995, 0.99999])
def test_t_quantiles_match_scipy(df: float, p: float) -> None:
    assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)
    assert t_quantile(1 - p, df) == pytest.approx(stats.t.ppf(1 - p, df), rel=1e-9)
    assert t_cdf(stats.t.ppf(p, df), df) == pytest.approx(p, rel=1e-9)


def _brute(values: Sequence[float], k: int) -> tuple[list[Fraction], list[Fraction]]:
    """Shapley and Banzhaf by the textbook formulas, in exact fractions."""
    v = [Fraction(x) for x in values]
    shapley, banzhaf = [], []
    for i in range(k):
        others = [j for j in range(k) if j != i]
        s = b = Fraction(0)
        for size in range(k):
            for rest in itertools.combinations(others, size):
                mask = sum(1 << j for j in rest)
                gain = v[mask | 1 << i] - v[mask]
                s += gain * Fraction(math.factorial(size) * math.factorial(k - size - 1), math.factorial(k))
                b += gain / 2 ** (k - 1)
        shapley.append(s)
        banzhaf.append(b)
    return shapley, banzhaf


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6).flatmap(lambda k: st.tuples(st.just(k), st.lists(
    st.integers(-1000, 1000).map(lambda x: x / 8), min_size=1 << k, max_size=1 << k))))
def test_exact_values_equal_the_textbook_formulas_and_shapley_adds_up(game: tuple[int, list[float]]) -> None:
    k, values = game
    shapley, banzhaf = shapley_exact(values, k), banzhaf_exact(values, k)
    expected_shapley, expected_banzhaf = _brute(values, k)
    assert shapley == pytest.approx([float(x) for x in expected_shapley], abs=1e-9)
    assert banzhaf == pytest.approx([float(x) for x in expected_banzhaf], abs=1e-9)
    assert sum(shapley) == pytest.approx(values[-1] - values[0], abs=1e-9)  # efficiency
    assert leave_one_out(values, k) == [values[-1] - values[((1 << k) - 1) & ~(1 << i)] for i in range(k)]


def test_a_wrong_sized_table_is_refused() -> None:
    with pytest.raises(ValueError, match="16 coalitions"):
        shapley_exact([0.0] * 15, 4)


def test_truncated_walks_stop_at_the_first_prefix_close_to_the_full_value() -> None:
    # order 2, 0, 1: prefix values 0, 5, 9, 10; with tolerance 1 the walk stops after {2, 0} (|10 - 9| <= 1)
    assert permutation_marginals([2, 0, 1], [0.0, 5.0, 9.0, 10.0], 0.0) == [4.0, 1.0, 5.0]
    assert permutation_marginals([2, 0, 1], [0.0, 5.0, 9.0, 10.0], 1.0) == [4.0, 0.0, 5.0]


# -- the engine with an in-process game --------------------------------------------------------------------


class GameExecutor:
    """Runs a game in process: the metric of a coalition is ``game(frozenset of player indices, seed)``.
    Counts runs; can report every run twice (as a retried task might) or fail some coalitions."""

    def __init__(self, game: Callable[[frozenset[int], int | None], float | None], *, twice: bool = False) -> None:
        self.game = game
        self.twice = twice
        self.runs = 0
        self.done: dict[str, RunResult] = {}

    def completed(self, requests: Sequence[RunRequest]) -> Mapping[str, RunResult]:
        return {r.key: self.done[r.key] for r in requests if r.key in self.done}

    def run(self, requests: Sequence[RunRequest], done: Callable[[RunResult], None]) -> None:
        for request in requests:
            self.runs += 1
            value = self.game(frozenset(request.coalition), request.seed)
            result = RunResult(request.key, value is not None, {"score": value} if value is not None else {},
                               experiment=request.experiment, error=None if value is not None else "failed")
            self.done[request.key] = result
            for _ in range(2 if self.twice else 1):
                done(result)


def players(k: int, *, null: Sequence[int] = ()) -> tuple[Player, ...]:
    return tuple(Player(Contributor(f"p{i:02d}", f"P{i}", f"p{i}@example.org"),
                        () if i in null else (DataFile("data", f"f{i}", f"md5:{i:032x}"),)) for i in range(k))


def oracle(weights: Sequence[float], team: frozenset[int], bonus: float) -> Callable[[frozenset[int], int | None],
                                                                                     float]:
    def game(coalition: frozenset[int], seed: int | None) -> float:
        return sum(weights[i] for i in coalition) + (bonus if team <= coalition else 0.0)
    return game


@pytest.mark.parametrize("k", [4, 10])
def test_exact_mode_gives_the_oracle_closed_form(k: int) -> None:
    weights, team, bonus = [1.5 * (i + 1) for i in range(k)], frozenset({0, 1, 2}), 6.0
    executor = GameExecutor(oracle(weights, team, bonus))
    result = attribute(Game(players(k), ("data",), "0" * 40, "score"), executor, AttributionOptions(exact_max=k))
    assert executor.runs == 2 ** k - 1 and result.mode == "exact"
    for i, value in enumerate(result.values):
        assert value.shapley.value == pytest.approx(weights[i] + (bonus / 3 if i in team else 0), abs=1e-9)
        assert value.banzhaf.value == pytest.approx(weights[i] + (bonus / 4 if i in team else 0), abs=1e-9)
        assert value.loo.value == pytest.approx(weights[i] + (bonus if i in team else 0), abs=1e-9)


def test_sampling_at_ten_players_ranks_like_exact_and_its_intervals_hold_over_many_sample_seeds() -> None:
    """The estimators' claims, checked over 40 independent sample seeds (the DVC test checks one, for real)."""
    k, team, bonus = 10, frozenset({0, 1, 2}), 6.0
    weights = [1.5 * (i + 1) for i in range(k)]
    exact = [w + (bonus / 3 if i in team else 0) for i, w in enumerate(weights)]
    exact_banzhaf = [w + (bonus / 4 if i in team else 0) for i, w in enumerate(weights)]
    covered = ranked = 0
    for seed in range(40):
        executor = GameExecutor(oracle(weights, team, bonus))
        result = attribute(Game(players(k), ("data",), "0" * 40, "score"), executor,
                           AttributionOptions(budget=150, sample_seed=seed))
        assert result.mode == "sampled" and executor.runs <= 150
        ranked += stats.spearmanr([v.shapley.value for v in result.values], exact)[0] >= 0.9
        covered += all(v.shapley.contains(s) and v.banzhaf.contains(b) and v.shapley.low is not None
                       for v, s, b in zip(result.values, exact, exact_banzhaf, strict=True))
        assert [v.loo.value for v in result.values] == pytest.approx([w + (bonus if i in team else 0)
                                                                      for i, w in enumerate(weights)])
    assert ranked >= 36 and covered >= 36  # 95% claimed; 90% of 40 leaves room for chance, not for a bias


class BatchCounter(GameExecutor):
    """A game executor with workers: records the size of every batch it is given."""

    parallelism = 4

    def __init__(self, game: Callable[[frozenset[int], int | None], float | None]) -> None:
        super().__init__(game)
        self.batches: list[int] = []

    def run(self, requests: Sequence[RunRequest], done: Callable[[RunResult], None]) -> None:
        self.batches.append(len(requests))
        super().run(requests, done)


def test_sampling_without_truncation_plans_every_coalition_first_and_runs_them_as_one_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches end half empty on a cluster; planning changes the batching and nothing else: the same coalitions,
    in the same table, with the same values, as choosing them batch by batch."""
    k, budget = 7, 60
    make = lambda: BatchCounter(oracle([1.5 * (i + 1) for i in range(k)], frozenset({0, 1, 2}), 6.0))  # noqa: E731
    game, options = Game(players(k), ("data",), "0" * 40, "score"), AttributionOptions(exact_max=4, budget=budget)
    planned = make()
    result = attribute(game, planned, options)
    assert result.mode == "sampled" and planned.batches == [4, planned.runs - 4] and planned.runs <= budget

    monkeypatch.setattr(engine._Study, "plan", lambda self: contextlib.nullcontext())
    batched = make()
    again = attribute(game, batched, options)
    assert len(batched.batches) >= 4 and batched.runs == planned.runs
    assert list(again.table.results) == list(result.table.results)
    assert again.values == result.values and again.method == result.method

    truncated = make()  # a tolerance decides walks from values measured: those still run wave by wave
    attribute(game, truncated, AttributionOptions(exact_max=4, budget=budget, truncation=0.5))
    assert len(truncated.batches) > 2


def test_a_run_reported_twice_counts_once_and_failed_runs_count_as_the_baseline() -> None:
    def game(coalition: frozenset[int], seed: int | None) -> float | None:
        return None if coalition == frozenset({1}) else float(len(coalition))

    executor = GameExecutor(game, twice=True)
    result = attribute(Game(players(3), ("data",), "0" * 40, "score", baseline=-4.0), executor)
    assert len(result.table) == executor.runs == 7 and result.failed == 1
    table = CoalitionTable()
    request, first = next(iter(result.table.rows()))
    assert table.add(request, first) and not table.add(request, first)
    # v({1}) = baseline -4: player 1's marginal from the empty coalition is 0, player 0's is 1 + 4
    assert result.values[0].shapley.value == pytest.approx(
        float(_brute([-4.0, 1.0, -4.0, 2.0, 1.0, 2.0, 2.0, 3.0], 3)[0][0]))


def test_lower_is_better_metrics_value_what_lowered_them() -> None:
    executor = GameExecutor(lambda c, s: 10.0 - 3 * (0 in c) - 1 * (1 in c))  # a loss
    result = attribute(Game(players(2), ("data",), "0" * 40, "score", direction="minimize", baseline=10.0), executor)
    assert [v.shapley.value for v in result.values] == pytest.approx([3.0, 1.0])


def test_repeats_give_intervals_from_the_seeds_and_null_players_are_exactly_zero() -> None:
    # a seed moves every trained coalition by 0.1 * seed: half of it is each player's, per seed 1, 1.05, 1.1
    executor = GameExecutor(lambda c, s: len(c - {2}) + 0.1 * (s or 0))
    game = Game(players(3, null=[2]), ("data",), "0" * 40, "score", seeds=(0, 1, 2), seed_param="seed", own_seed=0)
    result = attribute(game, executor)
    assert executor.runs == 3 * 3  # two players with files, three seeds
    first = result.values[0].shapley
    assert first.value == pytest.approx(1.05) and first.samples == 3
    half = stats.t.ppf(1 - 0.05 / 4, 2) * 0.05 / math.sqrt(3)  # t, two players at once, sd 0.05 over 3 seeds
    assert (first.low, first.high) == pytest.approx((1.05 - half, 1.05 + half))
    assert result.values[2].shapley == Estimate(0.0, 0.0, 0.0, 0)
    assert {r.params.get("seed") for r, _ in result.table.rows()} == {None, 1, 2}  # seed 0 is the pipeline's own


@pytest.mark.parametrize(("holders", "message"), [(0, "only 0 contributors"), (1, "only 1 contributor")])
def test_fewer_than_two_players_with_data_is_bad_input(holders: int, message: str) -> None:
    game = Game(players(3, null=range(holders, 3)), ("data",), "0" * 40, "score")
    with pytest.raises(BadInputError, match=message):
        attribute(game, GameExecutor(lambda c, s: 1.0))


def test_a_budget_too_small_to_sample_is_bad_input_before_any_run() -> None:
    executor = GameExecutor(lambda c, s: 1.0)
    with pytest.raises(BadInputError, match="too small"):
        attribute(Game(players(10), ("data",), "0" * 40, "score"), executor, AttributionOptions(budget=15))
    assert executor.runs == 1  # the full coalition, checked first


def test_a_metric_nobody_produces_and_a_pipeline_failing_on_the_full_data_are_bad_input() -> None:
    with pytest.raises(BadInputError, match="does not produce the metric 'f1'"):
        attribute(Game(players(2), ("data",), "0" * 40, "f1"), GameExecutor(lambda c, s: 1.0))
    with pytest.raises(BadInputError, match="fails on the full data"):
        attribute(Game(players(2), ("data",), "0" * 40, "score"), GameExecutor(lambda c, s: None))


# -- players ------------------------------------------------------------------------------------------------


def _version(digest: str, committed: str | None, files: dict[str, str], owners: dict[str, Contributor]
             ) -> CreditedVersion:
    return CreditedVersion("data", f"md5:{digest * 32}.dir", f"sha256:{digest * 64}", committed, files, owners)


ADA, BOB, EVE = (Contributor(f"email:{n}@example.org", n.title(), f"{n}@example.org") for n in ("ada", "bob", "eve"))


def test_identical_files_belong_to_whoever_committed_them_first_and_copiers_are_null_players() -> None:
    a, b = "md5:" + "a" * 32, "md5:" + "b" * 32
    first = _version("1", "2026-01-01T00:00:00Z", {"x.csv": a}, {"x.csv": ADA})
    later = _version("2", "2026-02-01T00:00:00Z", {"x.csv": a, "y.csv": b, "copy.csv": a, "copy2.csv": a},
                     {"x.csv": ADA, "y.csv": BOB, "copy.csv": EVE, "copy2.csv": EVE})
    found = {p.id: p for p in players_of([later], [first, later])}
    assert [f.relpath for f in found[ADA.id].files] == ["copy.csv", "copy2.csv", "x.csv"]
    assert [f.relpath for f in found[BOB.id].files] == ["y.csv"]
    assert found[EVE.id].files == ()  # splitting copies over names earns nothing either
    # without the older version, the paths decide within the version (sorted): still one owner per content
    alone = {p.id: p for p in players_of([later], [])}
    assert sum(len(p.files) for p in alone.values()) == 4 and len({p.id for p in alone.values() if p.files}) == 2


def test_a_version_whose_record_credits_nobody_for_a_file_is_bad_input() -> None:
    version = _version("1", None, {"x.csv": "md5:" + "a" * 32, "y.csv": "md5:" + "b" * 32}, {"x.csv": ADA})
    with pytest.raises(BadInputError, match="credits nobody for 1 of its files"):
        players_of([version], [])


# -- the reward pool ----------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.floats(-5, 5, allow_nan=False), max_size=8),
       st.integers(0, 10**6).map(lambda c: Decimal(c) / 100))
def test_a_pool_splits_in_proportion_to_positive_value_to_the_cent(values: dict[str, float], amount: Decimal) -> None:
    shares = split_pool(amount, values)
    assert set(shares) == set(values)
    assert all(shares[who] == 0 for who, v in values.items() if v <= 0)
    positive = {who: v for who, v in values.items() if v > 0}
    if positive and amount > 0:
        assert sum(shares.values()) == amount
        total = sum(positive.values())
        for who, v in positive.items():  # within a cent of the exact share
            assert abs(shares[who] - amount * Decimal(v / total)) <= Decimal("0.01") + amount * Decimal("1e-12")
    else:
        assert sum(shares.values()) == 0
