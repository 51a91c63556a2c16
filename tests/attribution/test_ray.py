"""`openledger attribute --executor ray` on a real Ray cluster, started on 127.0.0.1 by this module (`ray start
--head` with two worker CPUs, so two worker processes), with real git, `dvc exp run`, the record stage and keys.

The workers sign with a key of their own (OPENLEDGER_SIGNING_KEY in the cluster's environment), published in
the project as a tofu identity, as docs/cluster.md tells an operator to do. A worker that lies is a worker
whose Python is patched through Ray's runtime_env (a sitecustomize on its PYTHONPATH): nothing in the code
under test knows it is being tested.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.attribution_ray import stop_cluster
from openledger import Ledger
from openledger.store.keys import signer_from_seed
from tests.attribution.conftest import Oracle, Template, copy_project
from tests.dvc_hooks.conftest import BIN, DvcRepo

pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class RayCluster:
    address: str
    keyid: str  # the workers' key
    seed: str  # its base64 seed, as OPENLEDGER_SIGNING_KEY
    temp: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Ray resolves 127.0.0.1 to the machine's network address unless told this is a one-machine cluster.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    temp = Path(tempfile.mkdtemp(prefix="olray"))  # short: Ray's unix sockets live under it
    seed = base64.b64encode(os.urandom(32)).decode()
    keyid = signer_from_seed(base64.b64decode(seed), device="ci").keyid
    env = {name: value for name, value in os.environ.items() if not name.startswith("OPENLEDGER_")}
    env.update(LOOPBACK, OPENLEDGER_SIGNING_KEY=seed, OPENLEDGER_HOME=str(temp / "home"), DVC_NO_ANALYTICS="1",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    port = _free_port()
    started = subprocess.run([str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", "2",
                              "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp / "t")],
                             env=env, capture_output=True, text=True, check=False, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield RayCluster(f"127.0.0.1:{port}", keyid, seed, temp)
    finally:
        stop_cluster(temp)  # only this cluster: `ray stop` would stop every Ray on the machine
        shutil.rmtree(temp, ignore_errors=True)


def _project(template: Template, tmp_path: Path, home: Path, cluster: RayCluster, *, publish: bool = True,
             ray: dict[str, Any] | None = None) -> DvcRepo:
    repo = copy_project(template, tmp_path / "repo", home)
    if publish:  # what an operator does once per worker key (docs/cluster.md)
        repo.openledger("keys", "publish", "--name", "Ray worker", "--email", "ray-worker@example.org",
                        OPENLEDGER_SIGNING_KEY=cluster.seed)
    if ray:
        config = repo.root / ".openledger" / "config.yaml"
        data = yaml.safe_load(config.read_text())
        data.setdefault("attribution", {})["ray"] = ray
        config.write_text(yaml.safe_dump(data))
    return repo


def _ol(repo: DvcRepo, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The CLI in ``repo``, with Ray kept on loopback."""
    return repo.openledger(*args, check=check, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")


def _ray_args(cluster: RayCluster) -> list[str]:
    return ["--data", "data", "--metric", "score", "--executor", "ray", "--address", cluster.address,
            "--format", "json"]


def _attribute(repo: DvcRepo, *args: str) -> dict[str, Any]:
    result = _ol(repo, "attribute", *args)
    body = json.loads(result.stdout)
    assert isinstance(body, dict)
    return body


def _values(body: dict[str, Any]) -> dict[str, dict[str, float]]:
    players = body["players"]
    return {players[v["index"]]["email"]: {m: v[m]["value"] for m in ("shapley", "banzhaf", "loo")}
            for v in body["values"]}


def _assert_closed_form(body: dict[str, Any], k: int) -> None:
    oracle = Oracle(DvcRepo(Path("."), ""), k, [1.5 * (i + 1) for i in range(k)])
    values = _values(body)
    for email, expected in oracle.closed_form().items():
        for method, value in expected.items():
            assert values[email][method] == pytest.approx(value, abs=1e-9), (email, method)


def _stage_records_by_run(repo: DvcRepo) -> Counter[str]:
    ledger = Ledger.open(repo.root / ".openledger")
    try:
        return Counter(str(r.body.get("attribution_run")) for r in ledger.select(kind="stage")
                       if r.body.get("attribution_run"))
    finally:
        ledger.close()


def test_oracle_k6_on_ray_equals_the_closed_form_and_the_local_executor(
        ray_cluster: RayCluster, oracle_templates: dict[int, Template], tmp_path: Path,
        isolated_environment: Path) -> None:
    template = oracle_templates[6]
    repo = _project(template, tmp_path / "ray", isolated_environment, ray_cluster)
    body = _attribute(repo, *_ray_args(ray_cluster))
    assert body["mode"] == "exact" and body["cost"]["runs"] == 63 and body["cost"]["new_runs"] == 63
    _assert_closed_form(body, 6)
    # which worker key made which run: every run is the workers', none the runner's
    assert body["executor"]["kind"] == "ray"
    assert body["executor"]["workers"] == {ray_cluster.keyid: 63} and body["executor"]["rejected"] == 0
    assert {run["signer"] for run in body["runs"]} == {ray_cluster.keyid}
    ledger = Ledger.open(repo.root / ".openledger")
    assert ledger.get(body["record"]).actor == repo.keyid  # the attribution itself: signed by whoever ran it
    ledger.close()
    # each run's stage record is in the project's ledger once, its experiment is in the project's repository
    assert set(_stage_records_by_run(repo).values()) == {1} and len(_stage_records_by_run(repo)) == 63
    refs = repo.git("for-each-ref", "--format=%(objectname) %(refname:lstrip=4)", f"refs/exps/{body['commit'][:2]}")
    found = {name: sha for sha, name in (line.split(" ", 1) for line in refs.splitlines())}
    assert all(found[run["experiment"]] == run["rev"] for run in body["runs"])
    assert repo.openledger("verify", check=False).returncode == 0
    # the same game on this machine's executor gives the same values, to the bit
    local = _project(template, tmp_path / "local", isolated_environment, ray_cluster, publish=False)
    local_body = _attribute(local, "--data", "data", "--metric", "score", "-j", "2", "--format", "json")
    assert _values(local_body) == _values(body)
    # running it again on the cluster reuses every run (from the refs and records the first one stored)
    again = _attribute(repo, *_ray_args(ray_cluster))
    assert again["cost"]["reused_runs"] == 63 and again["cost"]["new_runs"] == 0
    assert _values(again) == _values(body)


def _ray_worker_of(pid: int) -> int | None:
    """The Ray worker process above ``pid`` (train.py, under dvc, under the coalition worker)."""
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return None
        if b"default_worker.py" in cmdline or cmdline.startswith(b"ray::"):
            return pid
        pid = int(stat.rpartition(")")[2].split()[1])
    return None


def _slow_attribution(cluster: RayCluster, template: Template, tmp_path: Path, home: Path, sleep: float
                      ) -> tuple[DvcRepo, Path, subprocess.Popen[str]]:
    """`attribute --executor ray` started in the background on a 3-player oracle whose runs each leave a mark
    named by their pid in the returned directory, then take ``sleep`` seconds."""
    marks = tmp_path / "marks"
    marks.mkdir()
    repo = _project(template, tmp_path, home, cluster,
                    ray={"runtime_env": {"env_vars": {"ORACLE_MARK": str(marks), "ORACLE_SLEEP": str(sleep)}}})
    process = subprocess.Popen([sys.executable, "-m", "openledger_cli", "attribute", *_ray_args(cluster)],
                               cwd=repo.root, env=repo.env(**LOOPBACK), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    return repo, marks, process


def test_a_worker_killed_during_a_run_is_retried_and_counted_once(
        ray_cluster: RayCluster, oracle_templates: dict[int, Template], tmp_path: Path,
        isolated_environment: Path) -> None:
    repo, marks, process = _slow_attribution(ray_cluster, oracle_templates[3], tmp_path, isolated_environment, 1.5)
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and process.poll() is None:
        for mark in marks.iterdir():
            worker = _ray_worker_of(int(mark.name))
            if worker is not None:
                os.kill(worker, signal.SIGKILL)
                killed = worker
                break
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=400)
    assert killed is not None, "no run was seen in progress"
    assert process.returncode == 0, stderr
    body = json.loads(stdout)
    _assert_closed_form(body, 3)
    assert body["cost"]["runs"] == 7 and body["cost"]["failed_runs"] == 0
    assert len({run["key"] for run in body["runs"]}) == 7
    # every run's stage record entered the ledger once: the killed attempt's never did
    assert _stage_records_by_run(repo) == Counter({run["key"]: 1 for run in body["runs"]})
    assert repo.openledger("verify", check=False).returncode == 0


def test_an_interrupted_driver_keeps_every_accepted_run_and_the_next_one_reuses_them(
        ray_cluster: RayCluster, oracle_templates: dict[int, Template], tmp_path: Path,
        isolated_environment: Path) -> None:
    repo, _, process = _slow_attribution(ray_cluster, oracle_templates[3], tmp_path, isolated_environment, 1.0)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and not _stage_records_by_run(repo):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    kept = _stage_records_by_run(repo)
    assert 1 <= len(kept) < 7 and set(kept.values()) == {1}, (kept, stderr)
    body = _attribute(repo, *_ray_args(ray_cluster))
    assert body["cost"]["reused_runs"] == len(kept) and body["cost"]["new_runs"] == 7 - len(kept)
    _assert_closed_form(body, 3)
    assert set(_stage_records_by_run(repo).values()) == {1}  # nothing counted or stored twice


HOSTILE = '''
import base64, os, pathlib, sys
import dvc_hooks.attribution_ray as target
from openledger.store.dsse import encode_envelope, parse_envelope
from openledger.store.keys import signer_from_seed
from openledger.store.records import Payload, open_record, sign_record

honest = target.run_coalition
COUNT = pathlib.Path(os.environ["HOSTILE_COUNT"])


def forged(setup, job):
    answer = honest(setup, job)
    if not answer.get("ok"):
        return answer
    with open(COUNT, "a+") as handle:  # one forgery of each kind, then honest
        handle.seek(0)
        done = len(handle.read())
        handle.write("x")
    record = open_record(answer["records"][0])
    answer["host"] = "evil\\x1b]0;owned\\x07\\u2028host"  # what it says of itself reaches the runner's terminal
    if done == 0:  # a byte changed after signing: the signature no longer holds
        envelope = parse_envelope(answer["records"][0])
        answer["records"][0] = encode_envelope(envelope.payload.replace(b"train", b"trian", 1), envelope.keyid,
                                               envelope.signature)
    elif done == 1:  # validly signed by the worker's key, but claiming to have read other data
        body = dict(record.body)
        body["deps"] = [dict(d, hash="md5:" + "0" * 32 + ".dir") if d["path"] == "data" else d for d in body["deps"]]
        signer = signer_from_seed(base64.b64decode(os.environ["OPENLEDGER_SIGNING_KEY"]), feed=record.feed)
        payload = Payload(kind="stage", actor=record.actor, feed=record.feed, seq=record.seq, prev=record.prev,
                          time=record.payload.time, links=record.links, body=body)
        answer["records"][0] = sign_record(payload, signer).envelope
    return answer


target.run_coalition = forged
'''


def test_a_tampered_worker_result_is_rejected_and_run_again(
        ray_cluster: RayCluster, oracle_templates: dict[int, Template], tmp_path: Path,
        isolated_environment: Path) -> None:
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "sitecustomize.py").write_text(HOSTILE)
    count = tmp_path / "count"
    pythonpath = os.pathsep.join([str(hostile), str(Path(__file__).resolve().parents[2])])
    repo = _project(oracle_templates[3], tmp_path, isolated_environment, ray_cluster,
                    ray={"runtime_env": {"env_vars": {"PYTHONPATH": pythonpath, "HOSTILE_COUNT": str(count)}}})
    result = _ol(repo, "attribute", *_ray_args(ray_cluster))
    assert count.read_text() == "x" * 9  # the hostile worker really answered: 7 runs, 2 of them twice
    body = json.loads(result.stdout)
    _assert_closed_form(body, 3)
    assert body["executor"]["rejected"] == 2 and body["cost"]["runs"] == 7
    warnings = [line for line in result.stderr.splitlines() if "rejected the result" in line]
    assert len(warnings) == 2, result.stderr
    assert "does not check out" in warnings[0] and "not the coalition's data" in warnings[1]
    assert "\x1b" not in result.stderr and "\u2028" not in result.stderr  # shown escaped, never obeyed
    assert all("evil\\x1b]0;owned\\x07\\u2028host" in line for line in warnings)
    assert {run["evidence"]["worker"]["host"] for run in body["runs"]} == {"evil\x1b]0;owned\x07\u2028host"}
    # neither forgery entered the ledger; what did is whole
    ledger = Ledger.open(repo.root / ".openledger")
    stages = [r for r in ledger.select(kind="stage") if r.body.get("attribution_run")]
    assert len(stages) == 7
    assert all(dep["hash"] != "md5:" + "0" * 32 + ".dir" for r in stages for dep in r.body["deps"])
    ledger.close()
    assert repo.openledger("verify", check=False).returncode == 0


def test_an_untrusted_worker_key_decides_nothing(
        ray_cluster: RayCluster, oracle_templates: dict[int, Template], tmp_path: Path,
        isolated_environment: Path) -> None:
    repo = _project(oracle_templates[2], tmp_path, isolated_environment, ray_cluster, publish=False,
                    ray={"rejections": 2})
    result = _ol(repo, "attribute", *_ray_args(ray_cluster), check=False)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "2 results rejected" in last and "not trusted here (unknown-key)" in last
    assert "Traceback" not in result.stderr
    assert _stage_records_by_run(repo) == Counter()
    assert repo.git("for-each-ref", "refs/exps/") == ""


@pytest.mark.parametrize(("ray", "message"), [
    ({"cpus": 0}, "attribution.ray.cpus"),
    ({"nodes": 3}, "attribution.ray"),
    ("head:6379", "attribution.ray"),
])
def test_bad_ray_settings_are_one_line(ray_cluster: RayCluster, oracle_templates: dict[int, Template],
                                       tmp_path: Path, isolated_environment: Path, ray: Any, message: str) -> None:
    repo = _project(oracle_templates[2], tmp_path, isolated_environment, ray_cluster, publish=False, ray=ray)
    result = _ol(repo, "attribute", *_ray_args(ray_cluster), check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_cluster_is_one_line(oracle_templates: dict[int, Template], tmp_path: Path,
                                            isolated_environment: Path) -> None:
    repo = copy_project(oracle_templates[2], tmp_path / "repo", isolated_environment)
    result = _ol(repo, "attribute", "--data", "data", "--metric", "score", "--executor", "ray", "--address",
                 f"127.0.0.1:{_free_port()}", check=False)
    assert result.returncode == 2, result.stderr
    assert "cannot reach the Ray cluster" in result.stderr and "Traceback" not in result.stderr
    both = _ol(repo, "attribute", "--data", "data", "--metric", "score", "--executor", "ray", "-j", "2", check=False)
    assert both.returncode == 2 and "-j is for --executor local" in both.stderr
    local = _ol(repo, "attribute", "--data", "data", "--metric", "score", "--address", "127.0.0.1:1", check=False)
    assert local.returncode == 2 and "--address is for --executor ray" in local.stderr
