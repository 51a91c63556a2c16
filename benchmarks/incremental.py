"""Incremental verification at scale: `verify --since CHECKPOINT` against a full `verify`, same run.

    python benchmarks/incremental.py                         # 100k records + 1,000 new
    python benchmarks/incremental.py --records 1000000       # the issue's target: under 5 s

The ledger is generated deterministically (fixed seeds, a fixed clock): ``--records`` records in packs (as
`openledger pack` or large batches leave them), one checkpoint by the CI key over all of them, then ``--new``
records appended one by one (loose objects, as a day of work leaves them). Then, alternating, a full
verification (the baseline) and an incremental one from the checkpoint; medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from openledger import Draft, Ledger, signer_from_seed, verify_ledger
from openledger.store.checkpoint import append_checkpoint
from openledger.store.incremental import verify_since
from openledger.store.leaves import write_leaves
from openledger.store.seals import write_seals

BATCH = 10_000


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def build(directory: Path, records: int, new: int) -> tuple[Ledger, str]:
    ledger = Ledger.init(directory)
    ledger.clock = Clock()
    ci = signer_from_seed(bytes([1]) * 32, feed="ci")
    people = [signer_from_seed(bytes([10 + n]) * 32, feed=f"person-{n}") for n in range(8)]
    for signer, name in [(ci, "CI"), *((p, f"Person {n}") for n, p in enumerate(people))]:
        ledger.append(signer, "identity", {"key": signer.keyid, "name": name, "email": f"{signer.feed}@example.org"})
    for start in range(0, records, BATCH):
        signer = people[(start // BATCH) % len(people)]
        ledger.append_many(signer, [Draft("feedback", {"target": f"model:m@{i % 97}", "score": i % 1000 / 1000,
                                                       "comment": f"record {i}"})
                                    for i in range(start, min(start + BATCH, records))])
    started = time.perf_counter()
    report = verify_ledger(ledger)
    print(f"  full verification to sign the checkpoint: {time.perf_counter() - started:.1f} s", flush=True)
    assert not report.errors, report.errors[:3]
    checkpoint = append_checkpoint(ledger, ci, report)
    pinned = checkpoint.id
    write_seals(ledger, ci, report.summaries)  # as `openledger ci` does after its checkpoint
    assert report.log is not None
    write_leaves(ledger, report.log, checkpoint)
    for i in range(new):
        ledger.append(people[i % len(people)], "feedback", {"target": f"model:m@{i % 7}", "label": f"new {i}"})
    return ledger, pinned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2, help="0: only build the ledger (with --keep)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--keep", help="build the ledger here and keep it (reused when it exists)")
    args = parser.parse_args()
    scratch = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="openledger-incremental-"))
    try:
        marker = scratch / "pinned.txt"
        if marker.exists():
            ledger, pinned = Ledger.open(scratch / ".openledger"), marker.read_text().strip()
        else:
            started = time.perf_counter()
            ledger, pinned = build(scratch, args.records, args.new)
            marker.write_text(pinned)
            print(f"  built {args.records:,} + {args.new:,} records in {time.perf_counter() - started:.0f} s",
                  flush=True)
        if args.rounds == 0:
            return  # built only (with --keep: measure later)
        if not (scratch / ".openledger" / "seals").is_dir():  # kept from before seals: seal it as CI would
            ci = signer_from_seed(bytes([1]) * 32, feed="ci")
            write_seals(ledger, ci, verify_ledger(ledger, since=pinned).summaries)
        if not (scratch / ".openledger" / "seals" / f"{pinned[7:]}.leaves").exists():  # kept from before leaves
            report = verify_since(ledger, pinned, leaves=False)
            assert report.log is not None
            write_leaves(ledger, report.log, ledger.get(pinned))
        # alternating: the baseline (full), ours, ours without the leaves files, without the seals either
        runs: dict[str, list[float]] = {"full": [], "incremental": [], "unlisted": [], "unsealed": []}
        for _ in range(args.rounds):
            started = time.perf_counter()
            baseline = verify_ledger(ledger, against=pinned)
            runs["full"].append(time.perf_counter() - started)
            started = time.perf_counter()
            report = verify_ledger(ledger, since=pinned)
            runs["incremental"].append(time.perf_counter() - started)
            started = time.perf_counter()
            unlisted = verify_since(ledger, pinned, leaves=False)
            runs["unlisted"].append(time.perf_counter() - started)
            started = time.perf_counter()
            without = verify_since(ledger, pinned, seals=False, leaves=False)
            runs["unsealed"].append(time.perf_counter() - started)
            assert report.since == pinned and report.listed and report.sealed
            assert not (report.errors or baseline.errors or without.errors or unlisted.errors)
            assert report.records == baseline.records == without.records == unlisted.records
            assert report.problems == baseline.problems == without.problems == unlisted.problems
        result: dict[str, object] = {"records": report.records, "new": args.new}
        result.update({f"{name}_s": statistics.median(times) for name, times in runs.items()})
        result.update({f"{name}_runs": times for name, times in runs.items()})
        medians = {name: statistics.median(times) for name, times in runs.items()}
        print(f"{report.records:,} records ({args.new:,} new since the checkpoint): incremental "
              f"{medians['incremental']:.2f} s; without the leaves files {medians['unlisted']:.2f} s "
              f"({medians['unlisted'] / medians['incremental']:.2f}x); without seals either "
              f"{medians['unsealed']:.2f} s ({medians['unsealed'] / medians['incremental']:.2f}x); full "
              f"{medians['full']:.2f} s ({medians['full'] / medians['incremental']:.1f}x); runs "
              + " / ".join(f"{name} {[round(t, 2) for t in times]}" for name, times in runs.items()))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
