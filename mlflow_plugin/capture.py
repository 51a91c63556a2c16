"""What a ``run`` and a ``model`` record hold, read from MLflow's own store at the moment they are final.

One record per run, written at run end (never one per metric): params, final metrics and a digest of the
full metric history, user tags, dataset inputs, logged models, git and DVC context, and the backend
without credentials. ``user_id`` is kept as MLflow's claim of who ran it; the record's signer is who attests.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from mlflow_plugin.datasets import record_inputs
from openledger.capture.recorder import Recorder
from openledger.lineage.joins import dvc_run_key, input_digest, is_digest, model_version_key, run_key
from openledger.store.canonical import canonical_bytes
from openledger.store.digests import directory_digest
from openledger.store.records import Record, format_time

__all__ = ["RunCapture", "logged_model_id", "model_body", "public_backend", "run_body", "version_run_id"]


def logged_model_id(version: Any) -> str | None:
    """The MLflow 3 logged model behind a model version (``model_id``, or the ``models:/m-…`` source)."""
    model_id = getattr(version, "model_id", None)
    if model_id:
        return str(model_id)
    source = str(getattr(version, "source", "") or "")
    if source.startswith("models:/m-"):
        return source[len("models:/"):].split("/", maxsplit=1)[0]
    return None

def version_run_id(version: Any, store: Any) -> str | None:
    """The run a model version came from: its ``run_id``, or (MLflow 3 leaves that empty) the source run of
    its logged model, asked of ``store`` (a tracking store or an ``MlflowClient``)."""
    from mlflow.exceptions import MlflowException

    model_id = logged_model_id(version)
    if version.run_id or not model_id:
        return version.run_id or None
    try:
        return store.get_logged_model(model_id).source_run_id or None
    except MlflowException:
        return None


# Tags MLflow or OpenLedger set themselves; the record keeps them in their own sections.
_SYSTEM_TAG_PREFIXES = ("mlflow.", "openledger.")


def public_backend(store_uri: str) -> str:
    """The store URI without credentials (user, password, query parameters)."""
    parts = urlsplit(store_uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if not parts.scheme:
        return store_uri
    return f"{parts.scheme}://{host}{parts.path}"


def _iso(millis: int | None) -> str | None:
    if millis is None:
        return None
    return format_time(datetime.fromtimestamp(millis / 1000, tz=timezone.utc))


def _metric_points(store: Any, run_id: str, keys: list[str]) -> dict[str, list[tuple[int, int, float]]]:
    """Every logged point of every metric of a run, as (step, timestamp, value), per key.

    On SQL stores one query returns them all: the per-key API costs a query per metric, which was most of
    the plugin's overhead per run. Elsewhere, the public API.
    """
    points: dict[str, list[tuple[int, int, float]]] = {key: [] for key in keys}
    session_maker = getattr(store, "ManagedSessionMaker", None)
    if session_maker is not None:
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        with session_maker() as session:
            rows = session.query(SqlMetric.key, SqlMetric.step, SqlMetric.timestamp, SqlMetric.value,
                                 SqlMetric.is_nan).filter(SqlMetric.run_uuid == run_id).all()
        for key, step, timestamp, value, is_nan in rows:
            points.setdefault(key, []).append((step, timestamp, float("nan") if is_nan else value))
        return points
    for key in keys:
        points[key] = [(m.step, m.timestamp, m.value) for m in store.get_metric_history(run_id, key)]
    return points


def _history_digest(store: Any, run_id: str, keys: list[str]) -> str:
    """SHA-256 over every metric's full history (key, step, timestamp, value), in a fixed order."""
    histories = {key: sorted(values) for key, values in sorted(_metric_points(store, run_id, keys).items())}
    return "sha256:" + hashlib.sha256(canonical_bytes(histories)).hexdigest()


def run_body(store: Any, run: Any, backend: str, *, captured: str = "live") -> dict[str, Any]:
    info, data = run.info, run.data
    tags = dict(data.tags)
    inputs = []
    for dataset_input in getattr(run.inputs, "dataset_inputs", None) or []:
        dataset = dataset_input.dataset
        context = next((t.value for t in dataset_input.tags if t.key == "mlflow.data.context"), None)
        inputs.append({
            "name": dataset.name,
            "digest": dataset.digest,
            "source_type": dataset.source_type,
            "source": dataset.source,
            "context": context,
        })
    models = [
        {"model_id": output.model_id, "step": output.step}
        for output in (getattr(getattr(run, "outputs", None), "model_outputs", None) or [])
    ]
    body: dict[str, Any] = {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "status": info.status,
        "start_time": _iso(info.start_time),
        "end_time": _iso(info.end_time),
        "user_id": info.user_id,
        "backend": backend,
        "params": dict(data.params),
        "metrics": dict(data.metrics),
        "metric_history_digest": _history_digest(store, info.run_id, list(data.metrics)),
        "tags": {k: v for k, v in tags.items() if not k.startswith(_SYSTEM_TAG_PREFIXES)},
        "inputs": inputs,
        "models": models,
        "git": {
            "commit": tags.get("openledger.git.commit") or tags.get("mlflow.source.git.commit"),
            "branch": tags.get("openledger.git.branch") or tags.get("mlflow.source.git.branch"),
            "dirty": tags.get("openledger.git.dirty") == "true" if "openledger.git.dirty" in tags else None,
        },
        "dvc": {"stage": tags.get("openledger.dvc.stage"), "experiment": tags.get("openledger.dvc.experiment")},
        "parent_run_id": tags.get("mlflow.parentRunId"),
        "source": {"name": tags.get("mlflow.source.name"), "type": tags.get("mlflow.source.type")},
        "captured": captured,
    }
    return body


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        path = Path(url2pathname(parts.path)) if parts.scheme else Path(uri)
        return path if path.exists() else None
    return None


def model_body(version: Any, logged_model: Any | None, *, captured: str = "live") -> dict[str, Any]:
    artifact_location = getattr(logged_model, "artifact_location", None)
    local = _local_path(artifact_location) or _local_path(getattr(version, "source", None))
    run_id = getattr(version, "run_id", None) or getattr(logged_model, "source_run_id", None)
    return {
        "name": version.name,
        "version": int(version.version),
        "run_id": run_id,
        "model_id": logged_model_id(version) or getattr(logged_model, "model_id", None),
        "source": version.source,
        "artifact_location": artifact_location,
        "artifact_digest": directory_digest(local) if local is not None else None,
        "user_id": getattr(version, "user_id", None),
        "tags": dict(getattr(version, "tags", None) or {}),
        "captured": captured,
    }


class RunCapture:
    """Writes run and model records through a :class:`Recorder`, at most once per run / model version."""

    def __init__(self, recorder: Recorder, backend: str) -> None:
        self.recorder = recorder
        self.backend = backend
        self._lock = threading.Lock()

    def run_ended(self, store: Any, run_id: str, *, captured: str = "live") -> Record | None:
        try:
            with self._lock:
                link = run_key(run_id)
                if self._already_recorded(run_id, link):
                    return None
                # set_terminated only *submits* queued async logging; the final metrics must be stored first.
                store.flush_async_logging()
                run = store.get_run(run_id)
                body = run_body(store, run, self.backend, captured=captured)
                links = [digest for i in body["inputs"] if is_digest(digest := input_digest(i))]
                links += record_inputs(self.recorder, run, captured=captured)  # a dataset record per input
                if body["dvc"]["stage"]:  # the DVC record stage of the same repro finds the run by this key
                    links.append(dvc_run_key(body["dvc"]["stage"], body["dvc"]["experiment"]))
                # Checked again under the ledger's feed lock: two processes ending or renaming the same run
                # at the same instant (an MLflow server's workers) record it once.
                return self.recorder.record("run", body, links, once=link)
        except Exception as exc:
            self.recorder.fail(exc)
            return None

    def _already_recorded(self, run_id: str, link: str | None) -> bool:
        if link is not None:
            return bool(self.recorder.find_linked(link, kind="run"))
        return any(r.body.get("run_id") == run_id for r in self.recorder.ledger.select(kind="run"))

    def model_version_created(self, version: Any, logged_model: Any | None,
                              *, captured: str = "live") -> Record | None:
        try:
            with self._lock:
                key = model_version_key(version.name, version.version, logged_model_id(version))
                if self.recorder.find_linked(key, kind="model"):
                    return None
                body = model_body(version, logged_model, captured=captured)
                links = []
                if body["run_id"] and (link := run_key(body["run_id"])):
                    links.append(link)
                    links += [r.id for r in self.recorder.find_linked(link, kind="run")]
                if body["artifact_digest"]:
                    links.append(body["artifact_digest"])
                # Re-checked under the ledger's feed lock: a server's workers register nothing twice.
                return self.recorder.record("model", body, links, once=key)
        except Exception as exc:
            self.recorder.fail(exc)
            return None
