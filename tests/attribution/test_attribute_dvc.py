"""`openledger attribute` end to end: real git, real `dvc exp run`, the record stage, scikit-learn, real keys.

The oracle's values are known in closed form; the planted classifier's contributors are known to help, hurt,
copy or add noise. Every run is a DVC experiment signed by the record stage.
"""

from __future__ import annotations

import fcntl
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import spearmanr

from openledger import Ledger
from tests.attribution.conftest import Oracle, Template, copy_project
from tests.dvc_hooks.conftest import DvcRepo

pytestmark = pytest.mark.timeout(900)
WORKDIR = Path(".dvc", "tmp", "openledger-attribution")


def attribute(repo: DvcRepo, *args: str) -> dict[str, Any]:
    result = repo.openledger("attribute", *args, "--format", "json")
    body = json.loads(result.stdout)
    assert isinstance(body, dict)
    return body


def by_email(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    players = body["players"]
    return {players[v["index"]]["email"]: v for v in body["values"]}


def brute_force(body: dict[str, Any], seed: Any = "all") -> dict[str, dict[str, float]]:
    """Shapley and Banzhaf values recomputed from the record's runs alone, with no OpenLedger code: the value of
    a coalition is its metric (negated when lower is better), averaged over seeds; a failed run, and the empty
    coalition, count as the baseline."""
    sign = 1.0 if body["direction"] == "maximize" else -1.0
    baseline = sign * float(body["baseline"])
    measured: dict[frozenset[int], dict[Any, float]] = defaultdict(dict)
    for run in body["runs"]:
        ok = run["status"] == "ok" and run["metric"] is not None
        measured[frozenset(run["coalition"])][run["seed"]] = sign * run["metric"] if ok else baseline

    def v(coalition: tuple[int, ...]) -> float:
        if not coalition:
            return baseline
        runs = measured[frozenset(coalition)]
        assert len(runs) == len(body["seeds"]), f"coalition {coalition} lacks runs"
        chosen = list(runs.values()) if seed == "all" else [runs[seed]]
        return sum(chosen) / len(chosen)

    players = [i for i, p in enumerate(body["players"]) if p["files"] > 0]
    n = len(players)
    result = {}
    for i in players:
        others = [j for j in players if j != i]
        shapley = banzhaf = 0.0
        for size in range(n):
            for rest in combinations(others, size):
                gain = v(tuple(sorted((*rest, i)))) - v(rest)
                shapley += gain / (n * math.comb(n - 1, size))
                banzhaf += gain / 2 ** (n - 1)
        result[body["players"][i]["email"]] = {"shapley": shapley, "banzhaf": banzhaf}
    return result


def experiments(repo: DvcRepo, commit: str) -> dict[str, str]:
    prefix = f"refs/exps/{commit[:2]}/{commit[2:]}/"
    listing = repo.git("for-each-ref", "--format=%(objectname) %(refname)", prefix)
    return {ref[len(prefix):]: sha for sha, _, ref in (line.partition(" ") for line in listing.splitlines())}


# -- the oracle, four players -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def attributed(oracle_templates: dict[int, Template], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Template, dict[str, Any]]]:
    """The four-player oracle after one exact attribution (-j 2), to be copied by the tests that read it."""
    template = oracle_templates[4]
    base = tmp_path_factory.mktemp("attributed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLEDGER_HOME", str(base / "home"))
        repo = copy_project(template, base / "repo", base / "home")
        body = attribute(repo, "--data", "data", "--metric", "score", "-j", "2")
    yield Template(base / "repo", base / "home"), body


def test_oracle_exact_values_are_the_closed_form_and_each_run_is_a_signed_experiment(
        attributed: tuple[Template, dict[str, Any]], tmp_path: Path, isolated_environment: Path) -> None:
    template, body = attributed
    oracle = Oracle(DvcRepo(template.root, ""), 4, [1.5, 3.0, 4.5, 6.0])
    assert body["mode"] == "exact"
    assert body["cost"]["runs"] == 15 and body["cost"]["new_runs"] == 15 and body["cost"]["failed_runs"] == 0
    values = by_email(body)
    for email, expected in oracle.closed_form().items():
        for method in ("shapley", "banzhaf", "loo"):
            assert values[email][method]["value"] == pytest.approx(expected[method], abs=1e-9), (email, method)
            # one seed: exact, with the noise not measured
            assert values[email][method]["low"] == values[email][method]["high"] == values[email][method]["value"]
    # an independent computation from the table the record stores gives the same values
    for email, expected in brute_force(body).items():
        assert values[email]["shapley"]["value"] == pytest.approx(expected["shapley"], abs=1e-12)
        assert values[email]["banzhaf"]["value"] == pytest.approx(expected["banzhaf"], abs=1e-12)
    # every run: a DVC experiment at the valued commit, its stage signed for that run, on the coalition's data
    repo = copy_project(template, tmp_path / "repo", isolated_environment)
    found = experiments(repo, body["commit"])
    shown = repo.dvc("exp", "show", "--json").stdout
    ledger = Ledger.open(repo.root / ".openledger")
    for run in body["runs"]:
        assert found[run["experiment"]] == run["rev"]
        assert run["experiment"] in shown
        (record,) = [ledger.get(r) for r in run["records"]]
        assert record.kind == "stage" and record.body["attribution_run"] == run["key"]
        assert record.body["experiment"] == run["experiment"]
        assert run["data"][0]["digest"] in {d["hash"] for d in record.body["deps"]}
        metrics = json.loads(repo.git("show", f"{run['rev']}:metrics.json"))
        assert metrics["score"] == run["metric"]
    record = ledger.get(body["record"])
    assert record.kind == "attribution" and record.body["values"] == body["values"]
    assert repo.openledger("verify", "--strict").returncode == 0
    assert repo.openledger("reconcile", "--strict").returncode == 0


def test_sampled_values_reuse_the_runs_and_hold_the_truth_within_their_intervals(
        attributed: tuple[Template, dict[str, Any]], tmp_path: Path, isolated_environment: Path) -> None:
    template, _ = attributed
    repo = copy_project(template, tmp_path / "repo", isolated_environment)
    oracle = Oracle(repo, 4, [1.5, 3.0, 4.5, 6.0])
    body = attribute(repo, "--data", "data", "--metric", "score", "--exact-max", "3", "--budget", "15")
    assert body["mode"] == "sampled"
    assert body["cost"]["new_runs"] == 0  # (data, commit, params) already run: nothing runs again
    values = by_email(body)
    for email, expected in oracle.closed_form().items():
        for method in ("shapley", "banzhaf", "loo"):
            estimate = values[email][method]
            assert estimate["low"] is not None and estimate["high"] is not None, (email, method)
            assert estimate["low"] - 1e-9 <= expected[method] <= estimate["high"] + 1e-9, (email, method, estimate)


def test_ten_players_sampled_rank_like_the_exact_values_with_a_seventh_of_the_runs(
        oracle_templates: dict[int, Template], tmp_path: Path, isolated_environment: Path) -> None:
    repo = copy_project(oracle_templates[10], tmp_path / "repo", isolated_environment)
    oracle = Oracle(repo, 10, [1.5 * (i + 1) for i in range(10)])
    body = attribute(repo, "--data", "data", "--metric", "score", "-j", "2", "--budget", "150")
    assert body["mode"] == "sampled" and body["cost"]["runs"] <= 2 ** 10 // 4
    values, exact = by_email(body), oracle.closed_form()
    emails = sorted(exact)
    rho = spearmanr([values[e]["shapley"]["value"] for e in emails], [exact[e]["shapley"] for e in emails])[0]
    assert rho >= 0.9
    for email in emails:
        assert values[email]["loo"]["value"] == pytest.approx(exact[email]["loo"], abs=1e-9)  # exact, k + 1 runs
        for method in ("shapley", "banzhaf"):
            estimate = values[email][method]
            assert estimate["low"] is not None, (email, method)
            assert estimate["low"] - 1e-9 <= exact[email][method] <= estimate["high"] + 1e-9, (email, method)


# -- the planted classifier ---------------------------------------------------------------------------------


def test_planted_contributors_clean_first_flipper_negative_copier_zero_noise_near_zero(
        planted_template: tuple[Template, float], tmp_path: Path, isolated_environment: Path) -> None:
    template, chance = planted_template
    repo = copy_project(template, tmp_path / "repo", isolated_environment)
    body = attribute(repo, "--data", "data", "--metric", "accuracy", "--repeats", "3", "-j", "2")
    assert body["seeds"] == [0, 1, 2] and body["baseline"] == pytest.approx(chance)
    assert body["cost"]["runs"] == 15 * 3  # the copier holds no file of their own: four players
    files = {p["email"]: p["files"] for p in body["players"]}
    assert files["cody@example.org"] == 0 and files["ada@example.org"] == 4  # her two files and their copies
    values = by_email(body)

    def check(shapley: dict[str, float]) -> None:
        clean = [shapley["ada@example.org"], shapley["bob@example.org"]]
        others = [shapley["fay@example.org"], shapley["nina@example.org"], shapley["cody@example.org"]]
        assert min(clean) > max(others)
        assert shapley["fay@example.org"] < 0
        assert shapley["cody@example.org"] == 0
        assert abs(shapley["nina@example.org"]) < 0.25 * min(clean)

    check({email: v["shapley"]["value"] for email, v in values.items()})
    for seed in (0, 1, 2):  # the same picture under each seed alone, from the stored runs
        check({email: v["shapley"] for email, v in brute_force(body, seed).items()} | {"cody@example.org": 0.0})
    flipper = values["fay@example.org"]
    assert flipper["shapley"]["high"] < 0 and flipper["banzhaf"]["value"] < 0 and flipper["loo"]["value"] < 0
    assert values["cody@example.org"]["shapley"] == {"value": 0.0, "low": 0.0, "high": 0.0, "samples": 0}


# -- nothing is disturbed -------------------------------------------------------------------------------------


def _state(repo: DvcRepo) -> dict[str, Any]:
    return {"dvc.lock": (repo.root / "dvc.lock").read_bytes(), "data.dvc": (repo.root / "data.dvc").read_bytes(),
            "head": repo.git("rev-parse", "HEAD"), "tracked": repo.git("diff", "HEAD"),
            "dvc status": repo.dvc("status").stdout,
            "openledger dvc status": repo.openledger("dvc", "status", "--format", "json").stdout}


def assert_undisturbed(repo: DvcRepo, before: dict[str, Any]) -> None:
    assert _state(repo) == before
    untracked = repo.git("status", "--porcelain", "--untracked-files=all").splitlines()
    assert all(line.startswith("?? .openledger/objects/") for line in untracked), untracked  # new records only
    assert repo.openledger("verify", "--strict").returncode == 0
    assert repo.openledger("reconcile", "--strict").returncode == 0


def _workers_gone(repo: DvcRepo, timeout: float = 180) -> None:
    """Wait until no attribution worker holds its lock (a killed attribution's workers finish their run)."""
    deadline = time.monotonic() + timeout
    for lock in (repo.root / WORKDIR).glob("*.lock"):
        with lock.open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"{lock} still held"
                    time.sleep(0.2)


def _start(repo: DvcRepo) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "openledger_cli", "attribute", "--data", "data", "--metric",
                             "score", "-j", "2", "--format", "json"], cwd=repo.root, env=repo.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_runs(repo: DvcRepo, process: subprocess.Popen[str], count: int) -> None:
    commit = repo.git("rev-parse", "HEAD").strip()
    deadline = time.monotonic() + 300
    while len(experiments(repo, commit)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _records_per_run(repo: DvcRepo) -> dict[str, int]:
    ledger = Ledger.open(repo.root / ".openledger")
    counts: dict[str, int] = defaultdict(int)
    for record in ledger.select(kind="stage"):
        if "attribution_run" in record.body:
            counts[record.body["attribution_run"]] += 1
    return counts


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_an_interrupted_attribution_disturbs_nothing_and_resumes_without_running_finished_runs(
        oracle: Oracle, how: signal.Signals) -> None:
    repo = oracle.repo
    commit = repo.git("rev-parse", "HEAD").strip()
    before = _state(repo)
    process = _start(repo)
    _wait_for_runs(repo, process, 3)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=120)
    if how == signal.SIGINT:
        assert process.returncode == 130
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert not [p for p in (repo.root / WORKDIR).iterdir() if p.is_dir()]  # workers stopped, clones removed
    else:
        assert process.returncode == -signal.SIGKILL
    _workers_gone(repo)
    kept = experiments(repo, commit)
    assert len(kept) >= 3
    assert_undisturbed(repo, before)

    body = attribute(repo, "--data", "data", "--metric", "score", "-j", "2")
    assert body["cost"]["reused_runs"] == len(kept) and body["cost"]["new_runs"] == 15 - len(kept)
    assert {r["experiment"]: r["rev"] for r in body["runs"] if r["experiment"] in kept} == kept
    for email, expected in oracle.closed_form().items():
        assert by_email(body)[email]["shapley"]["value"] == pytest.approx(expected["shapley"], abs=1e-9)
    # no run counted twice, none signed twice
    assert len({r["key"] for r in body["runs"]}) == 15
    assert all(n == 1 for n in _records_per_run(repo).values()) and len(_records_per_run(repo)) == 15
    assert not [p for p in (repo.root / WORKDIR).iterdir() if p.is_dir()]
    assert_undisturbed(repo, before)


# -- bad input ------------------------------------------------------------------------------------------------


def _bad(repo: DvcRepo, *args: str) -> str:
    result = repo.openledger("attribute", *args, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_a_metric_the_pipeline_does_not_produce_is_bad_input(
        attributed: tuple[Template, dict[str, Any]], tmp_path: Path, isolated_environment: Path) -> None:
    repo = copy_project(attributed[0], tmp_path / "repo", isolated_environment)
    line = _bad(repo, "--data", "data", "--metric", "f1")
    assert "does not produce the metric 'f1'" in line and "score" in line


def test_a_model_with_no_dataset_records_is_bad_input(oracle: Oracle) -> None:
    from openledger import KeyStore

    ledger = Ledger.open(oracle.repo.root / ".openledger")
    signer = KeyStore().load_signer()
    ledger.append(signer, "run", {"run_id": "r1", "status": "FINISHED"}, ["mlflowrun:" + "ab" * 16])
    ledger.append(signer, "model", {"name": "iris", "version": 1, "run_id": "r1"})
    line = _bad(oracle.repo, "iris@1")
    assert "iris@1 has no dataset records" in line
    assert "no model named 'rose'" in _bad(oracle.repo, "rose")


def test_a_dataset_with_one_contributor_is_bad_input(oracle: Oracle) -> None:
    repo = oracle.repo
    for path in (repo.root / "data").iterdir():
        path.write_text(path.read_text() + "\n")  # every file changed, by one person
    repo.dvc("add", "-q", "data")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "all data rewritten", GIT_AUTHOR_NAME="Solo", GIT_AUTHOR_EMAIL="solo@example.org")
    line = _bad(repo, "--data", "data", "--metric", "score")
    assert "only 1 contributor with data of their own (Solo)" in line


def test_a_pipeline_that_fails_for_every_coalition_is_bad_input(oracle: Oracle) -> None:
    repo = oracle.repo
    repo.write("train.py", "raise SystemExit('no GPU here')\n")
    repo.commit("a training script that always fails")
    line = _bad(repo, "--data", "data", "--metric", "score")
    assert "the pipeline fails on the full data" in line
    assert not [p for p in (repo.root / WORKDIR).iterdir() if p.is_dir()]


def test_repeats_need_a_seed_param(oracle: Oracle) -> None:
    line = _bad(oracle.repo, "--data", "data", "--metric", "score", "--repeats", "3")
    assert "--seed-param" in line


# -- reconcile ------------------------------------------------------------------------------------------------


def test_reconcile_flags_an_attribution_whose_runs_no_longer_match(
        attributed: tuple[Template, dict[str, Any]], tmp_path: Path, isolated_environment: Path) -> None:
    template, body = attributed
    repo = copy_project(template, tmp_path / "repo", isolated_environment)
    prefix = f"refs/exps/{body['commit'][:2]}/{body['commit'][2:]}/"
    first, second = body["runs"][0], body["runs"][-1]
    # an experiment moved to another run's results: its metric no longer matches what was signed
    repo.git("update-ref", prefix + first["experiment"], second["rev"])
    result = repo.openledger("reconcile", "--format", "json", check=False)
    assert result.returncode == 1
    codes = {d["code"]: d for d in json.loads(result.stdout)["discrepancies"]}
    assert first["experiment"] in codes["attribution-changed"]["message"]
    # an experiment removed: the attribution cannot be re-read, a warning (exit 1 only under --strict)
    repo.git("update-ref", prefix + first["experiment"], first["rev"])
    repo.git("update-ref", "-d", prefix + second["experiment"])
    result = repo.openledger("reconcile", "--format", "json", check=False)
    assert result.returncode == 0
    assert [d["code"] for d in json.loads(result.stdout)["discrepancies"]] == ["attribution-stale"]
    assert repo.openledger("reconcile", "--strict", check=False).returncode == 1


# -- a registered model ----------------------------------------------------------------------------------------


def test_a_registered_model_is_valued_without_touching_its_tracking_store(demo: Any, tmp_path: Path) -> None:
    """The demo's wine classifier (MLflow logs and registers it from the training stage): its data contributors
    are valued at the commit it was trained at, and no coalition logs to the project's MLflow or registers a
    model version there."""
    import sqlite3

    from openledger.attribution.record import newest_attribution

    repo = tmp_path / "wine-project"
    shutil.copytree(demo.repo, repo, symlinks=True)
    env = dict(demo.ada, MLFLOW_TRACKING_URI="ledger+sqlite:///mlflow.db")

    def versions() -> int:
        with sqlite3.connect(repo / "mlflow.db") as db:
            return int(db.execute("SELECT count(*) FROM model_versions").fetchone()[0])

    registered, models = versions(), len(Ledger.open(repo / ".openledger").ids(kind="model"))
    result = subprocess.run([sys.executable, "-m", "openledger_cli", "attribute", "wine-classifier@2", "-j", "2",
                             "--format", "json"], cwd=repo, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["target"] == "model:wine-classifier@2" and body["mode"] == "exact" and body["cost"]["runs"] == 3
    assert sorted(p["name"] for p in body["players"]) == ["Ada Lovelace", "Bob Dylan"]
    assert all(p["key"].startswith("ed25519:") for p in body["players"])  # their identities name them
    shapley = sum(v["shapley"]["value"] for v in body["values"])
    assert shapley == pytest.approx(body["full_value"] - body["baseline"])  # the values add up
    assert versions() == registered and len(Ledger.open(repo / ".openledger").ids(kind="model")) == models
    # what reports will read: the newest attribution of that version, per person
    view = newest_attribution(Ledger.open(repo / ".openledger"), "wine-classifier", "2")
    assert view is not None and view.record == body["record"] and view.metric == "accuracy"
    for player in body["players"]:
        estimate = view.value_of(player["id"])
        assert estimate is not None and estimate.value == by_email(body)[player["email"]]["shapley"]["value"]
