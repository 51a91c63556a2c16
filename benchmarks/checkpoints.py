"""Checkpoint benchmarks: what `verify` spends on checkpoints, and what proofs cost, at ledger scale.

    python benchmarks/checkpoints.py                      # 10k and 100k records, 100 checkpoints
    python benchmarks/checkpoints.py --sizes 1000000 --checkpoints 1000

Measured on an in-memory ledger graph (ten feeds, records interleaved; the per-record signature checks are
benchmarks/run.py's business), for each size:

* checking every checkpoint (``LogTree``: recompute each one's covered records, count and Merkle root) with
  append-ordered (version 2) checkpoints, against the same number of version 1 checkpoints (sorted leaves:
  every checkpoint walks and hashes everything it covers) as the baseline measured in the same run;
* one consistency proof between the first and the last checkpoint (recompute the leaves, build the proof)
  and checking it;
* the leaves of the newest checkpoint alone (what incremental verification needs), per record.

Medians of alternating rounds; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from openledger.store.logtree import CheckpointHead, LogTree
from openledger.store.merkle import consistency_proof, merkle_root, verify_consistency

FEEDS = 10


def graph(size: int) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Record ids in append order and their prev links: ten feeds, round robin."""
    ids = ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(size)]
    prev: dict[str, tuple[str, ...]] = {}
    for i, record_id in enumerate(ids):
        prev[record_id] = (ids[i - FEEDS],) if i >= FEEDS else ()
    return ids, prev


def heads(ids: list[str], count: int, version: int) -> list[CheckpointHead]:
    """``count`` checkpoints spread over the ledger, their roots right for ``version``."""
    made: list[CheckpointHead] = []
    step = max(1, len(ids) // count)
    leaves: list[str] = []
    for n, end in enumerate(range(step, len(ids) + 1, step)):
        tips = tuple(ids[max(0, end - FEEDS):end])
        if version == 2:
            leaves += sorted(ids[len(leaves):end])
            root = merkle_root(leaves)
        else:
            root = merkle_root(sorted(ids[:end]))
        previous = made[-1].id if made else None
        made.append(CheckpointHead(f"sha256:{n:064x}", version, end, "sha256:" + root.hex(), tips, previous, "k",
                                   "2026-01-01T00:00:00Z"))
    return made


def prove(tree: LogTree, first: CheckpointHead, last: CheckpointHead) -> bool:
    """A consistency proof from ``first`` to ``last``, built from the recomputed leaves, then checked."""
    leaves = tree.leaves_of(last.id)
    proof = consistency_proof(leaves, first.count)
    return verify_consistency(first.count, last.count, bytes.fromhex(first.root[7:]), bytes.fromhex(last.root[7:]),
                              proof)


def timed(function: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--checkpoints", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = []
    for size in args.sizes:
        ids, prev = graph(size)
        v2, v1 = heads(ids, args.checkpoints, 2), heads(ids, args.checkpoints, 1)
        checked: dict[str, float] = {"v1": 0.0, "v2": 0.0}
        for _ in range(args.rounds):  # alternate: ours, then the baseline
            for name, chain in (("v2", v2), ("v1", v1)):
                start = time.perf_counter()
                tree = LogTree(chain, prev.get)
                elapsed = time.perf_counter() - start
                assert not [f for f in tree.findings if f.code != "checkpoint-note-signature"], tree.findings[:3]
                checked[name] += elapsed / args.rounds
        tree = LogTree(v2, prev.get)
        assert prove(tree, v2[0], v2[-1])
        proof_seconds = timed(lambda: prove(tree, v2[0], v2[-1]), args.rounds)  # noqa: B023 - called right here
        leaves_seconds = timed(lambda: tree.leaves_of(v2[-1].id), args.rounds)  # noqa: B023
        row = {"records": size, "checkpoints": len(v2), "check_v2_s": checked["v2"], "check_v1_s": checked["v1"],
               "speedup": checked["v1"] / checked["v2"], "consistency_proof_s": proof_seconds,
               "leaves_us_per_record": leaves_seconds / size * 1e6}
        results.append(row)
        print(f"{size:>9,} records, {len(v2)} checkpoints: check all {checked['v2']:.2f} s (version 1 baseline "
              f"{checked['v1']:.2f} s, {row['speedup']:.1f}x); consistency proof first->last {proof_seconds:.2f} s; "
              f"newest checkpoint's leaves {row['leaves_us_per_record']:.2f} us/record", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    sys.exit(0)


if __name__ == "__main__":
    main()
