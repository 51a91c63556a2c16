"""`openledger attribute` against the same pipeline runs made directly, and `-j 2` against `-j 1`.

    python benchmarks/attribution.py [--rounds 3] [--burn 1.5]

The issue's targets:

* **orchestration overhead**: `openledger attribute` over every coalition of a small pipeline (4 players: the
  15 non-empty coalitions; the empty one is never run) takes at most 1.15x the time of the same 15 pipeline
  runs made directly with `dvc repro`, one after the other, in workspaces prepared beforehand (a clone per
  coalition, its `.dvc` file naming the coalition's manifest, its data checked out; preparing is not timed).
  Both run the record stage (in the attribution's mode, so it signs the same records). Both use `-j 1`.
* **parallel runs**: with a CPU-bound training stage (a loop of ``--burn`` seconds), `-j 2` is at least 1.6x
  faster than `-j 1` on this 2-core machine.

Every attribution starts from a fresh copy of the project (nothing to reuse), every baseline round from fresh
workspaces and a fresh DVC cache (nothing in DVC's run cache); the order alternates between rounds and the
medians are reported. The machine is shared: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dvc_hooks.attribution import manifest_bytes
from dvc_hooks.lockfile import read_dir_entries

BIN = Path(sys.executable).parent
PLAYERS = 4
TRAIN = """\
import json, os, time
started = time.process_time()
while time.process_time() - started < {burn}:
    pass
total = sum(float(open(os.path.join("data", name)).read().split()[1]) for name in sorted(os.listdir("data")))
json.dump({{"score": total}}, open("metrics.json", "w"))
"""
PIPELINE = """\
stages:
  train:
    cmd: python train.py
    deps: [data, train.py]
    metrics:
    - metrics.json:
        cache: false
"""


def sh(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    sh(args, cwd, env)
    return time.perf_counter() - started


def build(root: Path, env: dict[str, str], burn: float, players: int = PLAYERS) -> None:
    root.mkdir()
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh([str(BIN / "dvc"), "init", "-q"], root, env)
    sh([str(BIN / "openledger"), "init"], root, env)
    (root / "train.py").write_text(TRAIN.format(burn=burn))
    (root / "dvc.yaml").write_text(PIPELINE)
    sh([str(BIN / "openledger"), "dvc", "install"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "pipeline"], root, env)
    (root / "data").mkdir()
    for i in range(players):
        (root / "data" / f"p{i}.txt").write_text(f"w {i + 1}\n")
        sh([str(BIN / "dvc"), "add", "-q", "data"], root, env)
        sh(["git", "add", "-A"], root, env)
        sh(["git", "commit", "-qm", f"data of player {i}"], root,
           dict(env, GIT_AUTHOR_NAME=f"Player {i}", GIT_AUTHOR_EMAIL=f"p{i}@example.org"))
    sh([str(BIN / "dvc"), "repro", "-q"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "trained"], root, env)


def attribute(template: Path, copy: Path, env: dict[str, str], jobs: int) -> float:
    shutil.copytree(template, copy, symlinks=True)
    seconds = timed([str(BIN / "openledger"), "attribute", "--data", "data", "--metric", "score", "-j", str(jobs),
                     "--format", "json"], copy, env)
    shutil.rmtree(copy)
    return seconds


def prepared_workspaces(template: Path, base: Path, env: dict[str, str]) -> list[Path]:
    """A fresh copy of the project, and one clone per coalition with its data checked out (not timed)."""
    project = base / "project"
    shutil.copytree(template, project, symlinks=True)
    cache = project / ".dvc" / "cache"
    dvcfile = (project / "data.dvc").read_text()
    full = dvcfile.split("md5: ")[1].split()[0]
    entries = read_dir_entries(cache, f"md5:{full}") or []
    workspaces = []
    for size in range(1, PLAYERS + 1):
        for coalition in itertools.combinations(range(PLAYERS), size):
            names = {f"p{i}.txt" for i in coalition}
            data = manifest_bytes([e for e in entries if e["relpath"] in names])
            digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
            target = cache / "files" / "md5" / digest[:2] / f"{digest[2:]}.dir"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            clone = base / f"ws-{''.join(map(str, coalition))}"
            sh(["git", "clone", "-q", "--shared", str(project), str(clone)], base, env)
            sh([str(BIN / "dvc"), "config", "--local", "cache.dir", str(cache)], clone, env)
            (clone / "data.dvc").write_text(dvcfile.replace(full, f"{digest}.dir"))
            sh([str(BIN / "dvc"), "checkout", "-q", "data.dvc"], clone, env)
            workspaces.append(clone)
    return workspaces


def direct(template: Path, base: Path, env: dict[str, str]) -> float:
    workspaces = prepared_workspaces(template, base, env)
    ledger = base / "project" / ".openledger"
    total = 0.0
    for number, workspace in enumerate(workspaces):
        run_env = dict(env, OPENLEDGER_DIR=str(ledger), OPENLEDGER_ATTRIBUTION_RUN=f"attrrun:{number:032x}")
        total += timed([str(BIN / "dvc"), "repro", "-q"], workspace, run_env)
    shutil.rmtree(base)
    return total


def bench_env(workdir: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the benchmark's commands, with a key of its own generated in ``workdir``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENLEDGER_", "MLFLOW_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(OPENLEDGER_HOME=str(workdir / "keys"), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.org",
               GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.org", **extra)
    sh([str(BIN / "openledger"), "keys", "generate", "--name", "Bench", "--email", "bench@example.org"], workdir, env)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burn", type=float, default=1.5, help="CPU seconds of the CPU-bound training stage")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="openledger-attribution-bench-"))
    env = bench_env(workdir)
    try:
        small, busy = workdir / "small", workdir / "busy"
        build(small, env, 0.0)
        build(busy, env, args.burn)
        ours: list[float] = []
        theirs: list[float] = []
        serial: list[float] = []
        parallel: list[float] = []
        for number in range(args.rounds):
            first, second = (("ours", "theirs"), ("theirs", "ours"))[number % 2]
            for which in (first, second):
                if which == "ours":
                    ours.append(attribute(small, workdir / f"a{number}", env, 1))
                else:
                    theirs.append(direct(small, workdir / f"d{number}", env))
            for jobs in ((1, 2), (2, 1))[number % 2]:
                (serial if jobs == 1 else parallel).append(attribute(busy, workdir / f"j{jobs}-{number}", env, jobs))
            print(f"round {number + 1}: attribute {ours[-1]:.1f}s, direct dvc repro {theirs[-1]:.1f}s; "
                  f"-j 1 {serial[-1]:.1f}s, -j 2 {parallel[-1]:.1f}s", flush=True)
        a, d = statistics.median(ours), statistics.median(theirs)
        s, p = statistics.median(serial), statistics.median(parallel)
        print(f"\n15 coalition runs of a {PLAYERS}-player pipeline (medians of {args.rounds} rounds)")
        print(f"attribute -j 1: {a:.2f}s   direct dvc repro in prepared workspaces: {d:.2f}s   "
              f"ratio {a / d:.3f} (target <= 1.15)")
        print(f"CPU-bound stage ({args.burn:g} s): -j 1 {s:.2f}s   -j 2 {p:.2f}s   speed-up {s / p:.2f}x "
              f"(target >= 1.6 on 2 cores; this machine has {os.cpu_count()}, load {os.getloadavg()[0]:.1f})")
        if args.json:
            args.json.write_text(json.dumps({"attribute": ours, "direct": theirs, "j1": serial, "j2": parallel,
                                             "overhead": a / d, "speedup": s / p}, indent=2))
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
