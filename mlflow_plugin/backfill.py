"""Attest MLflow history logged before the plugin was installed (``openledger capture mlflow``).

Reads runs and model versions straight from MLflow's store and records each one not yet in the ledger,
marked ``"captured": "after-the-fact"``: the signer attests what the store holds *now*, not what happened
at run time. Runs still in progress are skipped (they will be recorded when they end, if the plugin is on).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow_plugin.capture import RunCapture, logged_model_id, public_backend
from mlflow_plugin.registry import first_line
from mlflow_plugin.store import plain_uri
from openledger.capture.recorder import Recorder
from openledger.errors import BadInputError

__all__ = ["BackfillResult", "capture_history", "list_experiments", "list_runs", "open_stores"]

AFTER_THE_FACT = "after-the-fact"
_PAGE = 1000


@dataclass
class BackfillResult:
    runs_recorded: list[str] = field(default_factory=list)
    runs_already: int = 0
    runs_in_progress: int = 0
    versions_recorded: list[str] = field(default_factory=list)
    versions_already: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "runs_recorded": len(self.runs_recorded),
            "runs_already_recorded": self.runs_already,
            "runs_in_progress": self.runs_in_progress,
            "model_versions_recorded": len(self.versions_recorded),
            "model_versions_already_recorded": self.versions_already,
            "records": self.runs_recorded + self.versions_recorded,
        }


def open_stores(tracking_uri: str) -> tuple[Any, Any]:
    """MLflow's tracking and registry stores for ``tracking_uri`` (without ``ledger+``: nothing is captured).
    A store MLflow cannot open (unknown scheme, database unreachable) is bad input, in one line."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking._model_registry.utils import _get_store as registry_store
    from mlflow.tracking._tracking_service.utils import _get_store as tracking_store
    from sqlalchemy.exc import SQLAlchemyError

    plain = plain_uri(tracking_uri)
    # Only the CLI's one-shot reads (reconcile, capture, ci) come here: with MLflow's default of 7 retries
    # an unreachable tracking server takes minutes to be reported. A value the user set is kept.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    try:
        return tracking_store(plain), registry_store(plain, plain)
    except MlflowException as exc:
        raise BadInputError(f"MLflow at {public_backend(plain)}: {first_line(exc)}",
                            hint="check --tracking-uri / MLFLOW_TRACKING_URI") from None
    except SQLAlchemyError as exc:  # MLflow gives up connecting after its retries and lets this through
        raise BadInputError(f"MLflow at {public_backend(plain)}: cannot open the database: "
                            f"{first_line(getattr(exc, 'orig', None) or exc)}",
                            hint="check --tracking-uri / MLFLOW_TRACKING_URI") from None


def list_experiments(store: Any) -> list[Any]:
    """Every experiment, deleted ones included."""
    from mlflow.entities import ViewType

    experiments, token = [], None
    while True:  # explicit paging: REST stores reject max_results=None, SQL stores stop at 1000
        page = store.search_experiments(view_type=ViewType.ALL, max_results=_PAGE, page_token=token)
        experiments += list(page)
        token = page.token
        if not token:
            return experiments


def list_runs(store: Any, experiment_ids: list[str], *, deleted: bool = False) -> list[Any]:
    """Every run of the experiments (``deleted``: deleted runs too), page by page."""
    from mlflow.entities import ViewType

    runs: list[Any] = []
    token = None
    view = ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
    while True:
        page = store.search_runs(experiment_ids, "", view, _PAGE, None, token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _runs(store: Any, tracking_uri: str, experiment: str | None, run_id: str | None) -> list[Any]:
    if run_id is not None:
        return [store.get_run(run_id)]
    if experiment is not None:
        found = store.get_experiment_by_name(experiment)
        if found is None:
            raise BadInputError(f"no MLflow experiment named {experiment!r} at {public_backend(tracking_uri)}")
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in list_experiments(store)]
    return list_runs(store, experiment_ids)


def capture_history(
    tracking_uri: str,
    recorder: Recorder,
    *,
    experiment: str | None = None,
    run_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillResult:
    from mlflow.entities import RunStatus
    from mlflow.exceptions import MlflowException

    store, registry = open_stores(tracking_uri)
    capture = RunCapture(recorder, public_backend(plain_uri(tracking_uri)))
    result = BackfillResult()
    try:
        runs = _runs(store, tracking_uri, experiment, run_id)
    except MlflowException as exc:
        raise BadInputError(f"MLflow: {exc.message}") from None
    run_ids = {r.info.run_id for r in runs}
    for done, run in enumerate(runs, 1):
        if not RunStatus.is_terminated(RunStatus.from_string(run.info.status)):
            result.runs_in_progress += 1
        else:
            record = capture.run_ended(store, run.info.run_id, captured=AFTER_THE_FACT)
            if record is None:
                result.runs_already += 1
            else:
                result.runs_recorded.append(record.id)
        if progress:
            progress(done, len(runs))
    for version in registry.search_model_versions(max_results=100_000):
        logged = None
        model_id = logged_model_id(version)
        if model_id:
            try:
                logged = store.get_logged_model(model_id)
            except MlflowException:
                logged = None
        source_run = version.run_id or getattr(logged, "source_run_id", None)
        if (run_id is not None or experiment is not None) and source_run not in run_ids:
            continue
        record = capture.model_version_created(version, logged, captured=AFTER_THE_FACT)
        if record is None:
            result.versions_already += 1
        else:
            result.versions_recorded.append(record.id)
    return result
