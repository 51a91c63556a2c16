"""What an MLflow tracking store holds now, for ``openledger reconcile`` to compare with the ledger.

:class:`MlflowState` implements :class:`openledger.lineage.reconcile.TrackingState`: every run of every experiment
(deleted ones too), each read into the same body a run record has (:func:`mlflow_plugin.capture.run_body`, so
the comparison is field for field, metric history digest included), and every registered model version. It
reads the store through the URI without the ``ledger+`` prefix: nothing is captured while reconciling.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlflow_plugin.backfill import list_experiments, list_runs, open_stores
from mlflow_plugin.capture import logged_model_id, public_backend, run_body, version_run_id
from mlflow_plugin.registry import first_line
from mlflow_plugin.store import plain_uri
from openledger.errors import BadInputError
from openledger.lineage.reconcile import ObservedModelVersion, ObservedRun, Progress

__all__ = ["MlflowState"]


class MlflowState:
    def __init__(self, tracking_uri: str) -> None:
        self.backend = public_backend(plain_uri(tracking_uri))
        self.store, self.registry = open_stores(tracking_uri)

    def runs(self, progress: Progress | None = None) -> Iterator[ObservedRun]:
        from mlflow.entities import LifecycleStage, RunStatus
        from mlflow.exceptions import MlflowException

        try:
            experiments = list_experiments(self.store)
            deleted = {e.experiment_id for e in experiments if e.lifecycle_stage == LifecycleStage.DELETED}
            runs = list_runs(self.store, [e.experiment_id for e in experiments], deleted=True) if experiments else []
        except MlflowException as exc:
            raise BadInputError(f"MLflow at {self.backend}: {first_line(exc)}") from None
        for done, run in enumerate(runs, 1):
            info = run.info
            yield ObservedRun(
                run_id=info.run_id,
                body=run_body(self.store, run, self.backend),
                finished=RunStatus.is_terminated(RunStatus.from_string(info.status)) and info.end_time is not None,
                deleted=info.lifecycle_stage == LifecycleStage.DELETED or info.experiment_id in deleted,
            )
            if progress is not None:
                progress(done, len(runs))

    def model_versions(self) -> Iterator[ObservedModelVersion]:
        from mlflow.exceptions import MlflowException

        try:
            versions: list[Any] = list(self.registry.search_model_versions(max_results=100_000))
        except MlflowException as exc:
            raise BadInputError(f"MLflow registry at {self.backend}: {first_line(exc)}") from None
        for version in versions:
            yield ObservedModelVersion(version.name, str(version.version), version_run_id(version, self.store),
                                       logged_model_id(version))
