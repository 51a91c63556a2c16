"""A signed ``dataset`` record for every dataset an MLflow run logs (``mlflow.log_input``), at the run's end.

MLflow stores a dataset input as name, digest, source type, source, schema and profile. Its digest is MLflow's
own fingerprint of the data (``mlflow.data`` computes it from the rows, or from a Hugging Face / Spark dataset's
own fingerprint), not a hash of a file, so the record names it ``mlflow:<digest>``; a ``from_dvc`` input keeps
DVC's hash. One record per digest: whoever logs the same data later links the first record. The record credits
whoever logged it (the signer) in the data role, unless DVC tracks the same data and the ledger has DVC's
record of it (see :mod:`openledger.lineage.datasets`)::

    with mlflow.start_run():
        mlflow.log_input(mlflow.data.from_pandas(df, source="data/wine.csv", name="wine"), context="training")
    # -> dataset record {"path": "wine", "digest": "mlflow:0a64f9dd", "mlflow": {...}, "schema": {...}, ...}
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from openledger.capture.recorder import Recorder
from openledger.lineage.joins import input_digest, is_dataset_digest, is_digest, mlflow_dataset_key
from openledger.store.canonical import canonical_bytes
from openledger.store.keys import short_keyid

__all__ = ["dataset_body", "local_source_path", "record_inputs"]

logger = logging.getLogger("openledger")

# A schema or profile larger than this is recorded by its digest and size: a record is read by every report.
MAX_JSON_BYTES = 64 * 1024
FINGERPRINT = "MLflow's own fingerprint of the data (computed by mlflow.data), not a hash of a file"
DVC_HASH = "DVC's own hash of the path (mlflow.data.from_dvc)"


def _json_field(raw: str | None) -> Any:
    """MLflow's schema or profile (JSON text) as JSON, or its digest and size when too large or not JSON."""
    if raw is None or raw == "":
        return None
    data = raw.encode("utf-8", "surrogatepass")
    summary = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if len(data) > MAX_JSON_BYTES:
        return {**summary, "omitted": "too large"}
    try:
        value = json.loads(raw)
        canonical_bytes(value)  # deep nesting or lone surrogates fail here, not when the record is signed
    except (ValueError, RecursionError, TypeError):
        return {**summary, "omitted": "not JSON"}
    return value


def _source(source_type: str, raw: str) -> dict[str, Any]:
    """MLflow's source (JSON text) as an object with its ``type``; text that is not a JSON object is kept."""
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError, TypeError):
        parsed = None
    if not isinstance(parsed, dict):
        return {"type": source_type, "text": raw[:MAX_JSON_BYTES]}
    value = _json_field(raw)
    return {"type": source_type, **(value if isinstance(value, dict) else {})}


def local_source_path(source_type: str, source: Mapping[str, Any]) -> Path | None:
    """The local file or directory a ``local`` (``LocalArtifactDatasetSource``) source names, if it exists here."""
    uri = source.get("uri") if source_type == "local" else None
    if not isinstance(uri, str) or not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme not in ("", "file") or (parts.scheme == "file" and parts.netloc not in ("", "localhost")):
        return None
    path = Path(url2pathname(parts.path)) if parts.scheme else Path(uri)
    try:
        return path.absolute() if path.exists() else None
    except OSError:  # a name too long for the file system, say
        return None


def _logger_entry(recorder: Recorder) -> dict[str, Any]:
    """The data credit of whoever logged the data: the signer's key, with the name and email of its identity
    record when the ledger has one (identity records are self-signed: found by their actor)."""
    keyid = recorder.signer.keyid
    entry: dict[str, Any] = {"key": keyid, "role": "data", "files": 1, "name": short_keyid(keyid)}
    identities = list(recorder.ledger.select(kind="identity", actor=keyid))
    if identities and isinstance(identities[-1].body.get("name"), str):
        entry.update(name=identities[-1].body["name"], email=identities[-1].body.get("email"))
    return entry


def dataset_body(dataset: Any, *, context: str | None, run_id: str, credit: dict[str, Any], captured: str,
                 dvc: tuple[str, str] | None = None) -> dict[str, Any] | None:
    """The body of the dataset record of one MLflow dataset (``mlflow.entities.Dataset``), or None when its
    digest cannot name a record (a user-chosen digest with characters outside ``A-Z a-z 0-9 . _ -``)."""
    entry = {"name": dataset.name, "digest": dataset.digest, "source_type": dataset.source_type,
             "source": dataset.source}
    digest = input_digest(entry)
    if not is_dataset_digest(digest):
        return None
    source = _source(str(dataset.source_type), str(dataset.source or ""))
    body: dict[str, Any] = {
        "path": (str(source.get("path") or "") if dataset.source_type == "dvc" else "") or dataset.name or digest,
        "name": dataset.name,
        "digest": digest,
        "digest_algorithm": DVC_HASH if dataset.source_type == "dvc" else FINGERPRINT,
        "mlflow": {"digest": dataset.digest, "source_type": dataset.source_type, "run_id": run_id,
                   "context": context},
        "source": source,
        "schema": _json_field(dataset.schema),
        "profile": _json_field(dataset.profile),
        "contributors": [credit],
        "captured": captured,
    }
    if dvc is not None:
        body["dvc"] = {"path": dvc[0], "hash": dvc[1]}
    return body


def record_inputs(recorder: Recorder, run: Any, *, captured: str) -> list[str]:
    """The ids of the dataset records of a run's dataset inputs: each one already in the ledger (MLflow's, or
    DVC's of the same digest), or written now, signed by the recorder's key. Fails open per dataset."""
    from mlflow_plugin.dvc_dataset import dvc_tracked

    ids: list[str] = []
    credit: dict[str, Any] | None = None
    for dataset_input in getattr(run.inputs, "dataset_inputs", None) or []:
        dataset = dataset_input.dataset
        digest = input_digest({"digest": dataset.digest, "source_type": dataset.source_type,
                               "source": dataset.source})
        if not is_dataset_digest(digest):
            logger.debug("OpenLedger: no dataset record for %r: its digest cannot name one", dataset.name)
            continue
        key = mlflow_dataset_key(digest)
        existing = recorder.find_linked(key, kind="dataset")
        if not existing and is_digest(digest):  # DVC's own record of the same version wins
            existing = [r for r in recorder.find_linked(digest, kind="dataset") if r.body.get("digest") == digest]
        if existing:
            ids.append(existing[-1].id)
            continue
        context = next((t.value for t in dataset_input.tags if t.key == "mlflow.data.context"), None)
        source = _source(str(dataset.source_type), str(dataset.source or ""))
        local = local_source_path(str(dataset.source_type), source)
        try:
            dvc = dvc_tracked(local) if local is not None else None
            if dvc is None and dataset.source_type == "dvc" and is_digest(digest):
                dvc = (str(source.get("path")), digest)
            credit = credit or _logger_entry(recorder)
            body = dataset_body(dataset, context=context, run_id=run.info.run_id, credit=credit, captured=captured,
                                dvc=dvc)
        except Exception as exc:
            recorder.fail(exc)
            continue
        if body is None:
            continue
        links = [digest] if is_digest(digest) else []
        if dvc is not None and is_digest(dvc[1]):
            links.append(dvc[1])
        record = recorder.record("dataset", body, sorted(set(links)), once=key)
        if record is None:
            record = next(iter(recorder.find_linked(key, kind="dataset")[-1:]), None)
        if record is not None:
            ids.append(record.id)
    return ids
