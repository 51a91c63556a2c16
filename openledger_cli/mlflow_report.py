"""Logging a model version's provenance report (one HTML page) to its MLflow run, for ``report model
--log-to-mlflow`` and ``ci --log-reports-to-mlflow``. The MLflow side is :mod:`mlflow_plugin.report_artifact`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from openledger.errors import BadInputError, OpenLedgerError
from openledger.reports.model import ModelReport
from openledger_cli._common import mlflow_adapter

__all__ = ["log_model_report", "log_model_reports"]


def log_model_report(report: ModelReport, tracking_uri: str | None) -> str:
    """Log the HTML page of a model report as an artifact of the model version's run; returns the artifact's
    URI."""
    model = report.model
    if not tracking_uri:
        raise BadInputError("logging the report to MLflow needs its tracking server",
                            hint="give --tracking-uri or set MLFLOW_TRACKING_URI")
    if not model.run_id:
        raise BadInputError(f"{model.ref.name}@{model.ref.version} has no recorded MLflow run to log the report to")
    artifact = mlflow_adapter("report_artifact")
    from openledger_cli.report_html import model_html  # noqa: PLC0415 - only when logging

    uri: str = artifact.log_report(model_html(report), model.run_id, tracking_uri=tracking_uri,
                                   artifact_path=artifact.report_artifact_path(model.ref.name, model.ref.version))
    return uri


def log_model_reports(targets: Iterable[str], load: Callable[[str], ModelReport],
                      tracking_uri: str | None) -> list[str]:
    """``ci``: the report of each configured model logged to its run; one line per model, what was logged or
    why not (a model with no record fails its gate already: its report is not a reason to fail again)."""
    lines = []
    for target in targets:
        try:
            lines.append(f"report of {target} logged to MLflow: {log_model_report(load(target), tracking_uri)}")
        except OpenLedgerError as exc:
            lines.append(f"report of {target} not logged to MLflow: {exc.message}")
    return lines
