"""Tracking and model-registry store wrappers selected by ``ledger+<scheme>`` URIs.

``MLFLOW_TRACKING_URI=ledger+sqlite:///mlflow.db`` makes MLflow build its own store for
``sqlite:///mlflow.db`` and hand it to :func:`tracking_store`, which returns the same store with capture
added: a dynamic subclass of the inner store's class sharing the inner store's state, so every
``isinstance(store, SqlAlchemyStore)`` check in MLflow stays true and every method behaves as before.
Three moments are observed: a run reaching a terminal status (``update_run_info``), a model version
being created (``create_model_version``) and an assessment stored on a trace (``create_assessment``: human
feedback, see :mod:`mlflow_plugin.feedback`). One builder serves every scheme (sqlite, postgresql, mysql,
mssql, file, …); ``pyproject.toml`` registers it under each ``ledger+<scheme>`` name.
"""

from __future__ import annotations

import inspect
import os
import threading
from pathlib import Path
from typing import Any

from mlflow_plugin.capture import RunCapture, logged_model_id, public_backend
from mlflow_plugin.feedback import record_assessment
from openledger.capture.recorder import Recorder

__all__ = ["PREFIX", "plain_uri", "registry_store", "tracking_store"]

PREFIX = "ledger+"
_classes: dict[tuple[type, type], type] = {}
_captures: dict[str, RunCapture] = {}
_captures_lock = threading.Lock()


def inner_uri(store_uri: str) -> str:
    """The store URI MLflow would use without OpenLedger: what follows ``ledger+`` (required here)."""
    if not store_uri.startswith(PREFIX):
        raise ValueError(f"not an OpenLedger store URI (expected {PREFIX}<scheme>://…): {store_uri}")
    return store_uri[len(PREFIX):]


def plain_uri(tracking_uri: str) -> str:
    """``tracking_uri`` without a ``ledger+`` prefix, for reads that must not capture (reconcile, backfill, the
    registry lookups of the CLI): the same URI the user gave, minus the prefix if there is one."""
    return tracking_uri.removeprefix(PREFIX)


def capture_for(backend_uri: str) -> RunCapture:
    """One capture (ledger, key, de-duplication lock) per backend in this process."""
    with _captures_lock:
        if backend_uri not in _captures:
            directory = os.environ.get("OPENLEDGER_DIR")
            recorder = Recorder(ledger_dir=Path(directory) if directory else None, source="mlflow")
            _captures[backend_uri] = RunCapture(recorder, public_backend(backend_uri))
        return _captures[backend_uri]


def _wrap(inner: Any, mixin: type, backend_uri: str) -> Any:
    base = type(inner)
    cls = _classes.get((mixin, base))
    if cls is None:
        cls = type(f"Ledger{base.__name__}", (mixin, base), {"__module__": __name__})
        _classes[(mixin, base)] = cls
    wrapper: Any = object.__new__(cls)
    # Share, not copy, the inner store's state: whatever either object sets later, both see.
    wrapper.__dict__ = inner.__dict__
    wrapper.__dict__["_openledger_capture"] = capture_for(backend_uri)
    return wrapper


class _TrackingCapture:
    """Mixed in front of MLflow's tracking store class."""

    _openledger_capture: RunCapture

    def update_run_info(self, run_id: str, run_status: Any, end_time: Any, run_name: Any) -> Any:
        from mlflow.entities import RunStatus

        result = super().update_run_info(run_id, run_status, end_time, run_name)  # type: ignore[misc]
        # Renames and resumes arrive here too: only a terminal status with an end time is a run end, and
        # RunCapture records a run at most once (a finished run renamed later is not recorded again).
        if end_time is not None and RunStatus.is_terminated(run_status):
            self._openledger_capture.run_ended(self, run_id)
        return result

    def create_assessment(self, assessment: Any) -> Any:
        created = super().create_assessment(assessment)  # type: ignore[misc]
        record_assessment(self._openledger_capture.recorder, self, created)
        return created


class _RegistryCapture:
    """Mixed in front of MLflow's model-registry store class."""

    _openledger_capture: RunCapture

    def create_model_version(self, *args: Any, **kwargs: Any) -> Any:
        version = super().create_model_version(*args, **kwargs)  # type: ignore[misc]
        logged_model = None
        model_id = logged_model_id(version)
        if model_id:
            try:
                from mlflow.tracking._tracking_service.utils import _get_store

                logged_model = _get_store().get_logged_model(model_id)
            except Exception as exc:
                self._openledger_capture.recorder.fail(exc)
        self._openledger_capture.model_version_created(version, logged_model)
        return version


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    """Builder for the ``mlflow.tracking_store`` entry points."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    uri = inner_uri(store_uri)
    builder = _tracking_store_registry.get_store_builder(uri)
    return _wrap(builder(store_uri=uri, artifact_uri=artifact_uri), _TrackingCapture, uri)


def registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    """Builder for the ``mlflow.model_registry_store`` entry points (the registry URI defaults to the
    tracking URI, so ``ledger+sqlite`` must resolve here too)."""
    from mlflow.tracking._model_registry.utils import _get_store_registry

    uri = inner_uri(store_uri)
    inner_tracking = inner_uri(tracking_uri) if tracking_uri and tracking_uri.startswith(PREFIX) else tracking_uri
    builder = _get_store_registry().get_store_builder(uri)
    parameters = set(inspect.signature(builder).parameters)
    if "tracking_uri" in parameters:
        inner = builder(store_uri=uri, tracking_uri=inner_tracking)
    else:
        inner = builder(store_uri=uri)
    return _wrap(inner, _RegistryCapture, uri)
