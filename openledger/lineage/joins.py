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
import json
import re
from collections.abc import Mapping
from typing import Any

from openledger.store.canonical import canonical_bytes

__all__ = ["attribution_stage_key", "dataset_key", "dvc_run_key", "dvc_stage_key", "input_digest", "is_digest",
           "join_key"]

_HEX = re.compile(r"[0-9a-f]{16,128}")


def join_key(scheme: str, *parts: str | None) -> str:
    return f"{scheme}:" + hashlib.sha256(canonical_bytes(list(parts))).hexdigest()[:32]


def dvc_stage_key(dvcfile: str, name: str) -> str:
    """A pipeline stage: its ``dvc.yaml`` (relative to the repository root, POSIX) and its name in ``dvc.lock``
    (``train@1`` for a ``foreach``/``matrix`` expansion)."""
    return join_key("dvcstage", dvcfile, name)


def attribution_stage_key(run: str, dvcfile: str, name: str, lock_digest: str) -> str:
    """A stage as one coalition run of a measured attribution ran it (``run`` is the run's ``attrrun:`` key):
    the record stage writes one record per key, and the attribution finds a run's records by it. Distinct
    from :func:`dvc_stage_key`, so coalition runs never become the newest record of the workspace's stages."""
    return join_key("attrstage", run, dvcfile, name, lock_digest)


def dataset_key(path: str, digest: str) -> str:
    """One version of a dataset: its path (relative to the repository root) and DVC's hash."""
    return join_key("dvcdata", path, digest)


def dvc_run_key(stage_env: str, experiment: str | None) -> str:
    """The DVC stage an MLflow run ran in, as the stage command saw it (``DVC_STAGE``, ``DVC_EXP_NAME``).

    ``DVC_STAGE`` is relative to where ``dvc`` was started; the record stage of the same ``dvc repro`` sees
    its own name the same way, so it can rebuild the key of each sibling stage.
    """
    return join_key("dvcrun", stage_env, experiment or None)


def input_digest(dataset_input: Mapping[str, Any]) -> Any:
    """The digest an MLflow run input (as a run record lists it) joins on: DVC's full hash for DVC sources
    (``md5:<hex>.dir``; MLflow's own digest column is too short for it), else MLflow's digest."""
    if dataset_input.get("source_type") == "dvc":
        try:
            return json.loads(dataset_input["source"]).get("hash") or dataset_input.get("digest")
        except (TypeError, ValueError, KeyError, AttributeError):
            return dataset_input.get("digest")
    return dataset_input.get("digest")


def is_digest(value: Any) -> bool:
    """Whether ``value`` is spelled like a content digest (``<algorithm>:<hex>[.dir]``), so it can be a link."""
    if not isinstance(value, str) or ":" not in value:
        return False
    algorithm, _, hexdigest = value.partition(":")
    return algorithm.isalnum() and bool(_HEX.fullmatch(hexdigest.removesuffix(".dir")))
