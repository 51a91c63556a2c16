"""OpenLedger core: signed, content-addressed, append-only records of who contributed what to ML work.

This package imports neither mlflow, nor dvc, nor click; the adapters (``mlflow_plugin``, ``dvc_hooks``)
and the CLI (``openledger_cli``) build on it.

>>> import tempfile
>>> from pathlib import Path
>>> from openledger import Ledger, generate_signer, verify_ledger
>>> ledger = Ledger.init(Path(tempfile.mkdtemp()))
>>> signer = generate_signer(feed="example")
>>> record = ledger.append(signer, "feedback", {"target": "model:iris@1", "label": "looks right"})
>>> verify_ledger(ledger, workers=1).errors
[]
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# The errors are small and every caller needs them; everything else is imported on first use (PEP 562), so
# `import openledger.store.ledger` from the record stage `dvc repro` runs does not pay for verification
# (multiprocessing), checkpoints and trust it never uses. The block below is the same imports for type
# checkers and readers; `_LAZY` must name the same module for each name (tests/test_layering.py checks).
from openledger.errors import (
    BadInputError,
    ConfigError,
    HashMismatchError,
    IntegrityError,
    KeyMaterialError,
    LedgerNotFoundError,
    NotFoundError,
    OpenLedgerError,
    PolicyError,
    SignatureError,
    UnsupportedVersionError,
)

if TYPE_CHECKING:
    from openledger.config import LedgerConfig
    from openledger.identity.trust import Identity, TrustState
    from openledger.store.checkpoint import append_checkpoint, check_proof, prove_consistency, prove_inclusion
    from openledger.store.keys import KeyInfo, KeyStore, Signer, generate_signer, signer_from_seed
    from openledger.store.ledger import LEDGER_DIR, Draft, FsckReport, Ledger
    from openledger.store.records import KINDS, SCHEMA_VERSION, Payload, Record, open_record, sign_record
    from openledger.store.verify import Problem, VerificationReport, verify_ledger

_LAZY = {
    **dict.fromkeys(("append_checkpoint", "check_proof", "prove_consistency", "prove_inclusion"),
                    "openledger.store.checkpoint"),
    "LedgerConfig": "openledger.config",
    **dict.fromkeys(("KeyInfo", "KeyStore", "Signer", "generate_signer", "signer_from_seed"), "openledger.store.keys"),
    **dict.fromkeys(("LEDGER_DIR", "Draft", "FsckReport", "Ledger"), "openledger.store.ledger"),
    **dict.fromkeys(("KINDS", "SCHEMA_VERSION", "Payload", "Record", "open_record", "sign_record"),
                    "openledger.store.records"),
    **dict.fromkeys(("Identity", "TrustState"), "openledger.identity.trust"),
    **dict.fromkeys(("Problem", "VerificationReport", "verify_ledger"), "openledger.store.verify"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'openledger' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "LEDGER_DIR",
    "SCHEMA_VERSION",
    "BadInputError",
    "ConfigError",
    "Draft",
    "FsckReport",
    "HashMismatchError",
    "Identity",
    "IntegrityError",
    "KeyInfo",
    "KeyMaterialError",
    "KeyStore",
    "Ledger",
    "LedgerConfig",
    "LedgerNotFoundError",
    "NotFoundError",
    "OpenLedgerError",
    "Payload",
    "PolicyError",
    "Problem",
    "Record",
    "SignatureError",
    "Signer",
    "TrustState",
    "UnsupportedVersionError",
    "VerificationReport",
    "__version__",
    "append_checkpoint",
    "check_proof",
    "generate_signer",
    "open_record",
    "prove_consistency",
    "prove_inclusion",
    "sign_record",
    "signer_from_seed",
    "verify_ledger",
]
