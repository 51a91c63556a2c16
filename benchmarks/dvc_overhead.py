"""`dvc repro` with the OpenLedger record stage and hook installed, against the same repro without them.

    python benchmarks/dvc_overhead.py [--files 10000] [--megabytes 1024] [--rounds 3]

The issue's target: a pipeline over a 1 GB dataset directory of 10,000 files reproduces in at most 1.05x the
time with the hooks installed. Three repositories get the same data (`dvc add`-ed) and the same two-stage
pipeline (the first stage reads every byte of the data, as a real pipeline over it would):

* **plain**: nothing else;
* **+stage**: one more trivial stage, `always_changed` and depending on the last output like the record
  stage, whose command is `true`: what DVC itself charges for running one more stage (a shell, hashing its
  deps, rewriting dvc.lock), so ``hooked / +stage`` is the part of the overhead that is OpenLedger's own;
* **hooked**: `openledger dvc install` (the record stage and the post-commit hook).

Then, rotating which goes first:

* **first repro**: each repository's first `dvc repro` (the hooked one writes the dataset record, crediting
  the 10,000 files from the .dir manifest, and the stage records); one sample each;
* **new data version**: a file is added to the data and `dvc add`-ed (not timed), then `dvc repro` (timed):
  every stage runs, and the hooked one records the new dataset version (file-level credit over two
  10,000-entry manifests) and both stages;
* **forced repros**: `dvc repro -f` (every stage runs again; with hooks, the record stage finds nothing new).

DVC hashes the data in all three; OpenLedger reads DVC's hashes and never hashes the data itself.

Python may write bytecode caches (``PYTHONDONTWRITEBYTECODE`` is dropped from the environment): a package
installed with pip has its modules compiled at install time, and without caches every repro would measure
Python compiling OpenLedger's sources (about 50 ms per process on the development machine), not the hooks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PIPELINE = """\
stages:
  checksum:
    cmd: find data -type f -exec cat {} + | md5sum > checksum.txt
    deps: [data]
    outs: [checksum.txt]
  report:
    cmd: cat checksum.txt > report.txt
    deps: [checksum.txt]
    outs: [report.txt]
"""
# What DVC charges for one more stage placed like the record stage, with a command that does nothing.
EXTRA_STAGE = """\
  noop:
    cmd: "true"
    deps: [report.txt]
    always_changed: true
"""
REPOS = ("plain", "+stage", "hooked")


def run(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def make_data(target: Path, files: int, megabytes: int) -> None:
    size = megabytes * 1024 * 1024 // files
    target.mkdir(parents=True)
    for i in range(files):
        shard = target / f"shard{i % 100:02d}"
        shard.mkdir(exist_ok=True)
        (shard / f"part{i:05d}.bin").write_bytes(os.urandom(size))


def setup(root: Path, data: Path, env: dict[str, str], kind: str) -> None:
    root.mkdir()
    run(["git", "init", "-q", "-b", "main"], root, env)
    run([str(BIN / "dvc"), "init", "-q"], root, env)
    shutil.copytree(data, root / "data")
    run([str(BIN / "dvc"), "add", "-q", "data"], root, env)
    (root / "dvc.yaml").write_text(PIPELINE + (EXTRA_STAGE if kind == "+stage" else ""))
    if kind == "hooked":
        run([str(BIN / "openledger"), "init"], root, env)
        run([str(BIN / "openledger"), "dvc", "install"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "data and pipeline"], root, env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="openledger-dvc-bench-"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPENLEDGER_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(OPENLEDGER_HOME=str(workdir / "keys"), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.org",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.org")
    try:
        run([str(BIN / "openledger"), "keys", "generate", "--name", "Bench", "--email", "b@example.org"],
            workdir, env)
        print(f"making {args.files} files, {args.megabytes} MB ...", flush=True)
        make_data(workdir / "source", args.files, args.megabytes)
        roots = {name: workdir / name.replace("+", "extra-") for name in REPOS}
        for name, root in roots.items():
            setup(root, workdir / "source", env, name)
        shutil.rmtree(workdir / "source")
        repro = [str(BIN / "dvc"), "repro"]
        first = {name: [run(repro, root, env)] for name, root in roots.items()}
        grown: dict[str, list[float]] = {name: [] for name in REPOS}
        forced: dict[str, list[float]] = {name: [] for name in REPOS}
        for round_number in range(args.rounds):
            shift = round_number % len(REPOS)
            order = list(roots.items())[shift:] + list(roots.items())[:shift]
            for name, root in order:
                (root / "data" / f"extra{round_number}.bin").write_bytes(os.urandom(4096))
                run([str(BIN / "dvc"), "add", "-q", "data"], root, env)
                grown[name].append(run(repro, root, env))
            for name, root in order:
                forced[name].append(run([*repro, "-f"], root, env))
        records = subprocess.run([str(BIN / "openledger"), "log", "--format", "json"], cwd=roots["hooked"],
                                 env=env, check=True, capture_output=True, text=True).stdout.count('"kind"')
        print(f"\ndvc repro over {args.files} files / {args.megabytes} MB ({records} records in the ledger)")
        print(f"{'':24}{'plain':>9}{'+stage':>9}{'hooked':>9}{'hooked/plain':>14}{'+stage/plain':>14}"
              f"{'hooked/+stage':>15}")
        for label, times in (("first repro", first), (f"new data (median of {args.rounds})", grown),
                             (f"repro -f (median of {args.rounds})", forced)):
            p, s, h = (statistics.median(times[name]) for name in REPOS)
            print(f"{label:24}{p:>8.2f}s{s:>8.2f}s{h:>8.2f}s{h / p:>14.3f}{s / p:>14.3f}{h / s:>15.3f}")
        print("target: hooked/plain <= 1.05; +stage/plain is DVC's own cost of one more stage")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
