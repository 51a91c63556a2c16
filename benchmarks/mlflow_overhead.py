"""MLflow logging overhead of the ledger+sqlite plugin against plain sqlite, measured alternately.

    python benchmarks/mlflow_overhead.py [--runs 50] [--rounds 3]

The workload (the issue's target): 50 runs, each with 20 params, 10 metrics x 100 steps and one dataset
input; target ratio <= 1.05. Each round runs the same script once through plain ``sqlite`` and once through
``ledger+sqlite`` (fresh databases, same process start-up cost), alternating which goes first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WORKLOAD = textwrap.dedent(
    """
    import sys, time, numpy as np, mlflow
    runs = int(sys.argv[1])
    data = mlflow.data.from_numpy(np.arange(200, dtype=float).reshape(20, 10), name="bench")
    mlflow.set_experiment("bench")
    mlflow.start_run().__exit__(None, None, None)  # warm-up: schema creation and imports are not timed
    started = time.perf_counter()
    for r in range(runs):
        with mlflow.start_run():
            mlflow.log_params({f"param_{i}": i * r for i in range(20)})
            mlflow.log_input(data, context="training")
            for step in range(100):
                mlflow.log_metrics({f"metric_{i}": (i + step) / (r + 1) for i in range(10)}, step=step)
    print(time.perf_counter() - started)
    """
)


def timed(workdir: Path, uri: str, runs: int, env: dict[str, str]) -> float:
    result = subprocess.run([sys.executable, "-c", WORKLOAD, str(runs)], cwd=workdir, check=True,
                            env=dict(env, MLFLOW_TRACKING_URI=uri), capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="openledger-mlflow-bench-"))
    home = Path(tempfile.mkdtemp(prefix="openledger-bench-home-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLEDGER_", "MLFLOW_"))}
    env.update(OPENLEDGER_HOME=str(home), OPENLEDGER_DIR=str(workdir / ".openledger"),
               GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.org", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@example.org")
    openledger = str(Path(sys.executable).with_name("openledger"))
    try:
        subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
        subprocess.run([openledger, "keys", "generate", "--name", "Bench", "--email", "b@example.org"],
                       cwd=workdir, env=env, check=True, capture_output=True)
        subprocess.run([openledger, "init"], cwd=workdir, env=env, check=True, capture_output=True)
        plain, ledger = [], []
        for round_number in range(args.rounds):
            order = [("plain", plain), ("ledger", ledger)]
            if round_number % 2:
                order.reverse()
            for name, sink in order:
                db = workdir / f"{name}-{round_number}.db"
                uri = f"{'ledger+' if name == 'ledger' else ''}sqlite:///{db}"
                sink.append(timed(workdir, uri, args.runs, env))
                print(f"round {round_number + 1} {name:6s} {sink[-1]:.2f} s", file=sys.stderr, flush=True)
        records = subprocess.run([openledger, "log", "--kind", "run", "--format", "json"], cwd=workdir, env=env,
                                 check=True, capture_output=True, text=True).stdout.count('"kind": "run"')
        plain_s, ledger_s = statistics.median(plain), statistics.median(ledger)
        print(f"\n{args.runs} runs x (20 params, 10 metrics x 100 steps, 1 dataset input), median of {args.rounds}:")
        print("| store | seconds | per run |\n|---|---:|---:|")
        print(f"| sqlite | {plain_s:.2f} | {plain_s / args.runs * 1000:.0f} ms |")
        print(f"| ledger+sqlite | {ledger_s:.2f} | {ledger_s / args.runs * 1000:.0f} ms |")
        print(f"\nratio ledger+sqlite / sqlite: {ledger_s / plain_s:.3f} (target <= 1.05); "
              f"{records} run records written")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
