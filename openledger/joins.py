"""Join keys: link targets that name a thing outside the ledger (a DVC stage, a dataset version, the DVC stage an
MLflow run ran in), so records about the same thing find each other through the index.

Links must look like digests (``<scheme>:<hex>``), so a key is a scheme and a truncated SHA-256 of the name
it stands for. Both adapters compute them here: the MLflow plugin tags a run with the DVC stage it ran in,
and the DVC record stage looks the run up by the same key.

>>> dvc_stage_key("dvc.yaml", "train") == dvc_stage_key("dvc.yaml", "train")
True
>>> dvc_stage_key("dvc.yaml", "train").startswith("dvcstage:")
True
"""

from __future__ import annotations

import hashlib

from openledger.canonical import canonical_bytes

__all__ = ["dataset_key", "dvc_run_key", "dvc_stage_key", "join_key"]


def join_key(scheme: str, *parts: str | None) -> str:
    return f"{scheme}:" + hashlib.sha256(canonical_bytes(list(parts))).hexdigest()[:32]


def dvc_stage_key(dvcfile: str, name: str) -> str:
    """A pipeline stage: its ``dvc.yaml`` (relative to the repository root, POSIX) and its name in ``dvc.lock``
    (``train@1`` for a ``foreach``/``matrix`` expansion)."""
    return join_key("dvcstage", dvcfile, name)


def dataset_key(path: str, digest: str) -> str:
    """One version of a dataset: its path (relative to the repository root) and DVC's hash."""
    return join_key("dvcdata", path, digest)


def dvc_run_key(stage_env: str, experiment: str | None) -> str:
    """The DVC stage an MLflow run ran in, as the stage command saw it (``DVC_STAGE``, ``DVC_EXP_NAME``).

    ``DVC_STAGE`` is relative to where ``dvc`` was started; the record stage of the same ``dvc repro`` sees
    its own name the same way, so it can rebuild the key of each sibling stage.
    """
    return join_key("dvcrun", stage_env, experiment or None)
