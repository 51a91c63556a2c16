"""Ledger core benchmarks: every number is printed next to a baseline measured in the same run.

    make bench                       # 10k and 100k records
    python benchmarks/run.py --sizes 10000 --rounds 3

Measured, for each ledger size:

* append throughput (``append_many`` in batches of 1000, each stored as one pack and signed by the ledger's
  helper process while the batch is built) against raw PyNaCl ``SigningKey.sign`` of the same PAE messages
  in one thread, batch by batch in turn -- target ratio >= 0.8;
* single-append latency p50 / p99 into a ledger of that size (loose objects) -- target: p99 at the largest
  size within 1.2x of p99 at the smallest;
* verify throughput (``verify_ledger``, all cores, in a fresh process as `openledger verify` runs) against raw
  PyNaCl ``VerifyKey.verify`` of the same messages on one core -- target ratio >= 1.8, and 1M records in
  under 60 s. The ledger's signer has published its identity, as in a team's ledger (with an unknown key,
  every record would carry a warning);
* bytes on disk per record (packed and loose).

The machine is shared and noisy: ours and the baseline alternate, and medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import VerifyKey

from openledger import Draft, Ledger, generate_signer
from openledger.store import ed25519
from openledger.store.dsse import PAYLOAD_TYPE, pae

BATCH = 1000
LATENCY_SAMPLES = 400


def run_body(i: int) -> dict[str, object]:
    """A realistic record: an MLflow run with ten params and five metrics."""
    return {
        "run_id": f"{i:032x}",
        "experiment_id": "7",
        "status": "FINISHED",
        "params": {f"param_{k}": str(k * i % 97) for k in range(10)},
        "metrics": {f"metric_{k}": (i * 7919 + k) % 1000 / 997 for k in range(5)},
    }


@dataclass
class SizeResult:
    size: int
    append_rate: float
    raw_sign_rate: float
    verify_rate: float
    raw_verify_rate: float
    verify_seconds: float
    p50_ms: float
    p99_ms: float
    packed_bytes: float
    loose_bytes: float
    loose_disk_bytes: float

    def to_json(self) -> dict[str, float]:
        data = dict(self.__dict__)
        data["append_ratio"] = self.append_rate / self.raw_sign_rate
        data["verify_ratio"] = self.verify_rate / self.raw_verify_rate
        return data


_VERIFY = """
import json, sys, time
from pathlib import Path
from openledger import Ledger, verify_ledger
ledger = Ledger.open(Path(sys.argv[1]))
started = time.perf_counter()
report = verify_ledger(ledger)
print(json.dumps({"seconds": time.perf_counter() - started, "records": report.records,
                  "errors": [p.message for p in report.errors[:3]], "warnings": len(report.warnings)}))
"""


def verify_in_fresh_process(root: Path, size: int) -> float:
    """Seconds of ``verify_ledger`` in a new interpreter, as `openledger verify` runs: verifying in this process,
    which holds every record it wrote (GBs at 1M), makes each forked worker's start and memory costlier (56.7 s
    against 51.6 s for the same 1M records, docs/benchmarks.md)."""
    done = subprocess.run([sys.executable, "-c", _VERIFY, str(root)], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["records"] == size + 1 and not result["errors"] and not result["warnings"], result  # + identity
    return float(result["seconds"])


def measure(size: int, rounds: int, workdir: Path) -> SizeResult:
    append_rates, sign_rates = [], []
    ledger = None
    for round_number in range(rounds):
        root = workdir / f"ledger-{size}-{round_number}"
        ledger = Ledger.init(root)
        signer = generate_signer(feed="bench")
        # As in a team's ledger, the signer has published its identity: records by an unknown key would each
        # carry a warning, and a million warnings (built, sorted, reported) would be what verify measured.
        ledger.append(signer, "identity", {"key": signer.keyid, "name": "Bench", "email": "bench@example.org"})
        # Each batch is appended, then its messages are signed raw: the machine's speed drifts by a third from
        # minute to minute, and interleaving gives both sides the same minutes.
        # Drafts are made a batch at a time, as an importer reading a file would, and the benchmark keeps what
        # its verify baseline needs as bytes, not a million drafts and Records: their bodies would be tens of
        # millions of objects that every full garbage collection walks, a cost of holding them, not of
        # appending them.
        pairs: list[tuple[bytes, bytes]] = []
        appending = signing = 0.0
        for start in range(0, size, BATCH):
            drafts = [Draft("run", run_body(i)) for i in range(start, min(size, start + BATCH))]
            started = time.perf_counter()
            batch = ledger.append_many(signer, drafts)
            appended = time.perf_counter()
            messages = [pae(PAYLOAD_TYPE, record.payload_bytes) for record in batch]
            signed = time.perf_counter()
            for message in messages:
                signer.sign(message)
            appending += appended - started
            signing += time.perf_counter() - signed
            pairs += zip(messages, [record.signature for record in batch], strict=True)
            actor = batch[0].actor
        append_rates.append(size / appending)
        sign_rates.append(size / signing)
        if round_number < rounds - 1:
            ledger.close()
            shutil.rmtree(root)
    assert ledger is not None
    packed = sum(p.stat().st_size for p in ledger.pack_paths()) / size

    verify_rates, raw_verify_rates, verify_times = [], [], []
    verify_key = VerifyKey(bytes.fromhex(actor.partition(":")[2]))
    for _ in range(rounds):
        elapsed = verify_in_fresh_process(ledger.root, size)
        verify_times.append(elapsed)
        verify_rates.append(size / elapsed)
        started = time.perf_counter()
        for message, signature in pairs:
            verify_key.verify(message, signature)
        raw_verify_rates.append(size / (time.perf_counter() - started))

    # Latency: single appends (loose objects) into the ledger of this size.
    signer = generate_signer(feed="latency")
    latencies = []
    loose_before = len(ledger.loose_paths())
    for i in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        ledger.append(signer, "run", run_body(size + i))
        latencies.append((time.perf_counter() - started) * 1000)
    loose = ledger.loose_paths()[loose_before:]
    loose_bytes = sum(p.stat().st_size for p in loose) / len(loose)
    loose_disk = sum(p.stat().st_blocks * 512 for p in loose) / len(loose)
    latencies.sort()
    ledger.close()
    return SizeResult(
        size=size,
        append_rate=statistics.median(append_rates),
        raw_sign_rate=statistics.median(sign_rates),
        verify_rate=statistics.median(verify_rates),
        raw_verify_rate=statistics.median(raw_verify_rates),
        verify_seconds=statistics.median(verify_times),
        p50_ms=latencies[len(latencies) // 2],
        p99_ms=latencies[int(len(latencies) * 0.99) - 1],
        packed_bytes=packed,
        loose_bytes=loose_bytes,
        loose_disk_bytes=loose_disk,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="openledger-bench-"))
    results = []
    try:
        for size in args.sizes:
            print(f"measuring {size} records ({args.rounds} rounds)…", file=sys.stderr, flush=True)
            results.append(measure(size, args.rounds, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    cores = os.cpu_count()
    path = "ed25519-zebra where it gives libsodium's answers" if ed25519.fast_available() else "libsodium only"
    print(f"\nOpenLedger core benchmarks ({cores} cores; medians of {args.rounds} alternating rounds; "
          f"Ed25519 verification: {path}; baselines: PyNaCl/libsodium)\n")
    print("| records | append/s | raw sign/s | ratio (>=0.8) | verify/s | raw verify/s (1 core) | ratio (>=1.8) "
          "| verify time | append p50 | append p99 | bytes/record packed | loose (on disk) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.size:,} | {r.append_rate:,.0f} | {r.raw_sign_rate:,.0f} | {r.append_rate / r.raw_sign_rate:.2f} "
              f"| {r.verify_rate:,.0f} | {r.raw_verify_rate:,.0f} | {r.verify_rate / r.raw_verify_rate:.2f} "
              f"| {r.verify_seconds:.2f} s | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.packed_bytes:.0f} "
              f"| {r.loose_bytes:.0f} ({r.loose_disk_bytes:.0f}) |")
    if len(results) >= 2:
        small, large = results[0], results[-1]
        print(f"\np99 append latency at {large.size:,} vs {small.size:,}: {large.p99_ms / small.p99_ms:.2f}x "
              "(target <= 1.2x)")
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
