"""Git at scale: `git status`, `git clone` and `git merge` of a repository holding a ledger, against the same
repository without it, measured in the same run.

    python -m benchmarks.git_scale                              # 10k and 100k records
    python -m benchmarks.git_scale --sizes 1000000 --rounds 2   # the issue's case (make bench-scale)

**The repository** is a small ML project (60 source files, 30 commits) — the baseline, measured as it is.
The same project with a ledger of ``--sizes`` records (feedback records of eight people, fixed seeds and a
fixed clock, so the bytes are the same every run) committed in ``.openledger/``, laid out as automatic packing
leaves a team's ledger: a pack per 10,000 records (``auto_pack``'s default), written directly as such (appending
them one by one gives the same layout, at a millisecond per record). ``--loose`` also measures the ledger as
it would be without packing (loose objects only, up to 100k records: a million loose files is what packing
exists to avoid).

**Measured**, alternating the baseline and the ledger repository, medians of ``--rounds``:

* ``git status`` in a clean working tree (the index and the files' stat data warm, as a developer's);
* ``git clone --no-local`` into a new directory: git's transport and object packing, as from a server;
* ``git merge`` of two branches that each changed a source file and (ledger repository) each appended 1,000
  records, from the merge base; reset before each round.

Prints a table of seconds and the ratio to the baseline, and writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.incremental import Clock
from openledger import Draft, Ledger, signer_from_seed
from openledger.config import LedgerConfig

GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.org", "GIT_COMMITTER_NAME": "Bench",
           "GIT_COMMITTER_EMAIL": "bench@example.org", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
LOOSE_BATCH = 127  # below the batch size that goes straight into a pack: each record is a loose object
PACK_BATCH = 10_000  # a batch this large is one pack, as auto_pack leaves every 10,000 appended records


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def timed_git(cwd: Path, *args: str) -> float:
    started = time.perf_counter()
    git(cwd, *args)
    return time.perf_counter() - started


def project(root: Path) -> None:
    """The baseline: a small ML project with some history."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for commit in range(30):
        for n in range(60 if commit == 0 else 3):
            path = root / "src" / f"module_{(n + commit * 7) % 60:02d}.py"
            path.parent.mkdir(exist_ok=True)
            path.write_text("".join(f"def f_{commit}_{i}(x):\n    return x * {i} + {commit}\n\n" for i in range(40)))
        (root / "params.yaml").write_text(f"lr: 0.0{commit + 1}\nepochs: {10 + commit}\n")
        git(root, "add", "-A")
        git(root, "commit", "-qm", f"work {commit}")


def _people() -> list[object]:
    return [signer_from_seed(bytes([10 + n]) * 32, feed=f"person-{n}") for n in range(8)]


def append_records(ledger: Ledger, count: int, start: int = 0, people: list[object] | None = None, *,
                   batch: int = LOOSE_BATCH) -> None:
    people = people or _people()
    for first in range(start, start + count, batch):
        signer = people[(first // batch) % len(people)]
        ledger.append_many(signer, [Draft("feedback", {"target": f"model:m@{i % 97}", "score": i % 1000 / 1000,
                                                       "comment": f"record {i}"})
                                    for i in range(first, min(first + batch, start + count))])


def with_ledger(base: Path, root: Path, records: int, *, auto_pack: int) -> None:
    shutil.copytree(base, root, symlinks=True)
    ledger = Ledger.init(root, LedgerConfig(auto_pack=auto_pack))
    ledger.clock = Clock()
    append_records(ledger, records, batch=PACK_BATCH if auto_pack else LOOSE_BATCH)
    ledger.close()
    git(root, "add", "-A")
    git(root, "commit", "-qm", f"ledger of {records} records")


def branches(root: Path, records: int) -> None:
    """Two branches from HEAD that each change a source file and (with a ledger) append 1,000 records."""
    git(root, "branch", "-f", "base")
    ledger_dir = root / ".openledger"
    for n, branch in enumerate(("left", "right")):
        git(root, "checkout", "-q", "-B", branch, "base")
        path = root / "src" / f"module_{n:02d}.py"
        path.write_text(path.read_text() + f"\n# {branch}\n")
        if ledger_dir.is_dir():
            ledger = Ledger.open(ledger_dir)
            ledger.clock = Clock()
            append_records(ledger, 1_000, start=records + n * 1_000,
                           people=[signer_from_seed(bytes([40 + n]) * 32, feed=branch)])
            ledger.close()
        git(root, "add", "-A")
        git(root, "commit", "-qm", f"{branch} work")
    git(root, "checkout", "-q", "left")


def measure(root: Path, scratch: Path) -> dict[str, float]:
    git(root, "status", "--porcelain")  # warm: the first status refreshes the index's stat data
    status = timed_git(root, "status", "--porcelain")
    target = scratch / "clone"
    shutil.rmtree(target, ignore_errors=True)
    clone = timed_git(scratch, "clone", "-q", "--no-local", str(root), str(target))
    shutil.rmtree(target, ignore_errors=True)
    left = git(root, "rev-parse", "left").strip()  # the merge moves the branch: every round merges from here
    git(root, "checkout", "-q", "--detach", left)
    merge = timed_git(root, "merge", "-q", "--no-edit", "right")
    assert git(root, "rev-parse", "HEAD^2").strip() == git(root, "rev-parse", "right").strip()  # a real merge
    git(root, "checkout", "-q", "--detach", left)
    return {"status": status, "clone": clone, "merge": merge}


def files_in(root: Path) -> int:
    return int(git(root, "ls-files").count("\n"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loose", action="store_true", help="also measure an unpacked ledger (sizes <= 100k)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="openledger-git-"))
    results = []
    try:
        base = scratch / "base"
        project(base)
        branches(base, 0)
        for size in args.sizes:
            variants = [("packed", 10_000)] + ([("loose", 0)] if args.loose and size <= 100_000 else [])
            for name, auto_pack in variants:
                root = scratch / f"{name}-{size}"
                started = time.perf_counter()
                git(base, "checkout", "-q", "main")
                with_ledger(base, root, size, auto_pack=auto_pack)
                branches(root, size)
                built = time.perf_counter() - started
                print(f"built {size:,} records ({name}) in {built:.0f} s: {files_in(root):,} files in git, "
                      f"{len(list((root / '.openledger' / 'packs').glob('*.jsonl')))} packs", flush=True)
                ours: dict[str, list[float]] = {"status": [], "clone": [], "merge": []}
                baseline: dict[str, list[float]] = {"status": [], "clone": [], "merge": []}
                git(base, "checkout", "-q", "left")
                for _ in range(args.rounds):
                    for where, into in ((base, baseline), (root, ours)):
                        for key, value in measure(where, scratch).items():
                            into[key].append(value)
                row = {"records": size, "ledger": name, "files": files_in(root), "build_s": built}
                for key in ("status", "clone", "merge"):
                    row[key] = statistics.median(ours[key])
                    row[f"{key}_baseline"] = statistics.median(baseline[key])
                    row[f"{key}_runs"] = ours[key]
                    row[f"{key}_baseline_runs"] = baseline[key]
                results.append(row)
                shutil.rmtree(root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\ngit with a ledger against the same repository without it ({os.cpu_count()} cores, medians of "
          f"{args.rounds} alternating rounds)\n")
    print("| records | ledger | files in git | git status | git clone --no-local | git merge |")
    print("|---:|---|---:|---|---|---|")
    for r in results:
        cells = [f"{r[k]:.3f} s vs {r[k + '_baseline']:.3f} s ({r[k] / r[k + '_baseline']:.1f}x)"
                 for k in ("status", "clone", "merge")]
        print(f"| {r['records']:,} | {r['ledger']} | {r['files']:,} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
