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
from collections.abc import Iterable, Mapping
from typing import Any

from openledger.store.canonical import canonical_bytes

__all__ = ["MLFLOW_DIGEST", "applied_experiment", "assessment_key", "attribution_stage_key", "dataset_key",
           "dvc_run_key", "dvc_stage_key", "input_digest", "is_dataset_digest", "is_digest", "join_key",
           "mlflow_dataset_key", "mlflow_digest", "model_version_key", "run_key", "trace_key"]

_HEX = re.compile(r"[0-9a-f]{16,128}")
# MLflow's dataset digest is its own fingerprint of the data (8 hex characters for pandas, numpy, Spark,
# Hugging Face and meta datasets; any string up to 36 characters when the user passes one). It is not a hash
# of a file, so it is written under its own algorithm name: ``mlflow:<digest as MLflow stores it>``.
MLFLOW_DIGEST = "mlflow"
_MLFLOW_DIGEST = re.compile(r"mlflow:[A-Za-z0-9._-]{1,64}")


def run_key(run_id: str) -> str | None:
    """An MLflow run (``mlflowrun:<id>``), for hex run ids (MLflow's own; the id itself is the digest). Run,
    stage, review and feedback records link it; ``run:<id>`` targets resolve through it."""
    return f"mlflowrun:{run_id}" if _HEX.fullmatch(run_id) else None


def model_version_key(name: str, version: Any, model_id: str | None) -> str:
    """One registered model version (``mlflowmv:<hash of name, version, logged model>``): the
    de-duplication key of model records, like ``mlflowrun:`` for runs."""
    return join_key("mlflowmv", name, str(version), model_id)


def trace_key(trace_id: str) -> str | None:
    """An MLflow trace (``mlflowtrace:<hex>`` for ``tr-<hex>`` ids)."""
    hexdigest = trace_id.removeprefix("tr-")
    return f"mlflowtrace:{hexdigest}" if _HEX.fullmatch(hexdigest) else None


def assessment_key(assessment_id: str) -> str:
    """The de-duplication key of a captured assessment: one record per MLflow assessment id."""
    return "mlflowassessment:" + hashlib.sha256(assessment_id.encode()).hexdigest()[:32]


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


def mlflow_digest(digest: str) -> str:
    """MLflow's digest of a dataset with its algorithm said: ``mlflow:<digest>``, unless it already names one
    (a digest the user passed as ``md5:<hex>``, say)."""
    return digest if is_digest(digest) else f"{MLFLOW_DIGEST}:{digest}"


def mlflow_dataset_key(digest: str) -> str:
    """The join key of the dataset record of one MLflow dataset digest (as :func:`input_digest` spells it):
    one record per digest, whoever logs the same data again."""
    return join_key("mlflowdata", digest)


def input_digest(dataset_input: Mapping[str, Any]) -> Any:
    """The digest an MLflow run input (as a run record lists it) joins on: DVC's full hash for DVC sources
    (``md5:<hex>.dir``; MLflow's own digest column is too short for it), else MLflow's digest with its
    algorithm said (:func:`mlflow_digest`)."""
    digest = dataset_input.get("digest")
    if dataset_input.get("source_type") == "dvc":
        try:
            return json.loads(dataset_input["source"]).get("hash") or digest
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError):  # a hostile source string
            return digest
    return mlflow_digest(digest) if isinstance(digest, str) and digest else digest


def is_digest(value: Any) -> bool:
    """Whether ``value`` is spelled like a content digest (``<algorithm>:<hex>[.dir]``), so it can be a link."""
    if not isinstance(value, str) or ":" not in value:
        return False
    algorithm, _, hexdigest = value.partition(":")
    return algorithm.isalnum() and bool(_HEX.fullmatch(hexdigest.removesuffix(".dir")))


def is_dataset_digest(value: Any) -> bool:
    """Whether a dataset record can carry ``value`` as its digest: a content digest, or MLflow's fingerprint
    (``mlflow:`` and up to 64 of ``A-Z a-z 0-9 . _ -``; ``schemas/dataset.json`` says the same)."""
    return is_digest(value) or (isinstance(value, str) and _MLFLOW_DIGEST.fullmatch(value) is not None)


def applied_experiment(records: Iterable[tuple[str, Mapping[str, Any]]], lock_digest: str) -> str | None:
    """The id of an experiment's stage record (``dvc exp run``, queued ones included) whose ``dvc.lock`` entry is
    ``lock_digest``, among a stage's ``(id, body)`` records (those linking its :func:`dvc_stage_key`): ``dvc exp
    apply`` brought that experiment's result into the workspace, where nothing ran again, so the experiment's
    record speaks for it."""
    return next((record_id for record_id, body in records
                 if body.get("experiment") and body.get("lock_digest") == lock_digest), None)
