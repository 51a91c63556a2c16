"""`openledger attribute --executor ray` on a local Ray cluster against `-j 1` on this machine.

    python -m benchmarks.attribution_ray [--rounds 2] [--burn 1.5] [--players 6] [--budget 32] [--json FILE]

The issue's target: with two Ray worker processes on this 2-core machine, 32 coalition runs of a CPU-bound
pipeline (sampled values of 6 players with a budget of 32 runs; ``--budget 0``: every non-empty coalition)
take at most 0.6x the time of `-j 1` local execution. The cluster is one head node on 127.0.0.1 with two
worker CPUs (``ray start --head --num-cpus 2``), started once and not timed; the workers sign with a key of
their own, published in each copy of the project. Every attribution starts from a fresh copy (nothing to
reuse); the order alternates between rounds and medians are reported.

Scheduling overhead per run: the worker-seconds the Ray run spent beyond the serial run's, per run,
``(ray wall x 2 - local -j 1 wall) / runs`` (it includes each worker's first clone and DVC import, which the
local executor also pays once).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.attribution import BIN, bench_env, build, sh
from openledger.store.keys import signer_from_seed

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def stop_cluster(temp: Path) -> None:
    """Stop the Ray cluster started with ``--temp-dir`` under ``temp``, and only it: ``ray stop`` stops every Ray
    process on the machine, another test run's or a developer's own included. Its daemons name the directory on
    their command lines; Ray's workers and agents are their children."""
    import psutil  # type: ignore[import-untyped]  # noqa: PLC0415 - installed with the ray extra

    marker = str(temp)
    own = []
    for process in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or ()):
            own.append(process)
    family = set(own)
    for process in own:
        with contextlib.suppress(psutil.Error):
            family.update(process.children(recursive=True))
    for process in family:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(list(family), timeout=15)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(template: Path, copy: Path, env: dict[str, str], args: list[str], seed: str | None = None
        ) -> tuple[float, int]:
    shutil.copytree(template, copy, symlinks=True)
    if seed is not None:
        sh([str(BIN / "openledger"), "keys", "publish", "--name", "Ray worker", "--email", "ray@example.org"], copy,
           dict(env, OPENLEDGER_SIGNING_KEY=seed))
    started = time.perf_counter()
    output = sh([str(BIN / "openledger"), "attribute", "--data", "data", "--metric", "score", *args,
                 "--format", "json"], copy, env)
    seconds = time.perf_counter() - started
    body = json.loads(output)
    assert body["cost"]["new_runs"] == body["cost"]["runs"], body["cost"]
    shutil.rmtree(copy)
    return seconds, int(body["cost"]["runs"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--burn", type=float, default=1.5, help="CPU seconds of each run's training stage")
    parser.add_argument("--players", type=int, default=6)
    parser.add_argument("--budget", type=int, default=32, help="runs (sampled values); 0: exact, every coalition")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="olrb"))
    env = bench_env(workdir, **LOOPBACK)
    seed = base64.b64encode(os.urandom(32)).decode()
    worker_env = dict(env, OPENLEDGER_SIGNING_KEY=seed, OPENLEDGER_HOME=str(workdir / "worker"))
    port = _free_port()
    values = ["--exact-max", str(options.players - 1), "--budget", str(options.budget)] if options.budget else []
    runs = options.budget or (1 << options.players) - 1
    try:
        template = workdir / "busy"
        build(template, env, options.burn, options.players)
        sh([str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
            "--disable-usage-stats", "--temp-dir", str(workdir / "t")], workdir, worker_env)
        print(f"worker key {signer_from_seed(base64.b64decode(seed), device='ci').keyid[:20]}…, cluster 127.0.0.1:"
              f"{port}, {options.players} players, {runs} runs of {options.burn:g} CPU-s each", flush=True)
        local: list[float] = []
        ray: list[float] = []
        for number in range(options.rounds):
            for which in (("local", "ray"), ("ray", "local"))[number % 2]:
                if which == "local":
                    seconds, runs = run(template, workdir / f"l{number}", env, [*values, "-j", "1"])
                    local.append(seconds)
                else:
                    seconds, runs = run(template, workdir / f"r{number}", env,
                                        [*values, "--executor", "ray", "--address", f"127.0.0.1:{port}"], seed)
                    ray.append(seconds)
            print(f"round {number + 1}: -j 1 {local[-1]:.1f}s, --executor ray {ray[-1]:.1f}s", flush=True)
        loc, clu = statistics.median(local), statistics.median(ray)
        overhead = (clu * 2 - loc) / runs
        print(f"\n{runs} CPU-bound coalition runs (medians of {options.rounds} rounds; this machine has "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
        print(f"local -j 1: {loc:.2f}s   --executor ray (2 worker processes): {clu:.2f}s   "
              f"ratio {clu / loc:.3f} (target <= 0.6)")
        print(f"scheduling overhead per run: {overhead:.3f} worker-seconds ({overhead / (loc / runs):.1%} of a "
              f"serial run's {loc / runs:.2f}s)")
        if options.json:
            options.json.write_text(json.dumps({"runs": runs, "local_j1": local, "ray": ray, "ratio": clu / loc,
                                                "overhead_per_run": overhead}, indent=2))
        return 0
    finally:
        stop_cluster(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
