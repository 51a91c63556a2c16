"""Anchors are optional: without their extras nothing imports them, and verify works with no anchor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_witness_and_anchor_modules_import_no_backend() -> None:
    code = (
        "import sys, openledger.store.witness, openledger.anchors.anchoring, openledger_cli.anchors\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'web3', 'eth_account', 'rfc3161_client'})\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == ""


def test_verify_with_anchors_needs_no_backend_when_there_is_no_anchor(tmp_path: Path) -> None:
    """`verify --anchors` on a ledger without anchors, with the backends made unimportable."""
    code = (
        "import sys\n"
        "sys.modules['web3'] = None; sys.modules['rfc3161_client'] = None\n"
        "from pathlib import Path\n"
        "from openledger import Ledger, generate_signer, verify_ledger\n"
        "from openledger.anchors.anchoring import check_anchors, AnchorIndex\n"
        "from openledger.store.checkpoint import append_checkpoint\n"
        f"ledger = Ledger.init(Path({str(tmp_path)!r})); signer = generate_signer(feed='x')\n"
        "ledger.append(signer, 'feedback', {'target': 't', 'score': 1})\n"
        "append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1))\n"
        "print(check_anchors(ledger, verify_ledger(ledger, workers=1)), len(AnchorIndex.load(ledger)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.stdout.strip() == "[] 0", result.stderr
