"""Logging a model version's provenance report (one HTML page) to its MLflow run, for ``report model
--log-to-mlflow`` and ``ci --log-reports-to-mlflow``. The MLflow side is :mod:`mlflow_plugin.report_artifact`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from openledger.errors import BadInputError, OpenLedgerError

__all__ = ["log_model_report", "log_model_reports"]


def log_model_report(data: dict[str, Any], tracking_uri: str | None) -> str:
    """Log the HTML page of a model report (``report model --format json``'s data) as an artifact of the
    model version's run; returns the artifact's URI."""
    model = data["model"]
    if not tracking_uri:
        raise BadInputError("logging the report to MLflow needs its tracking server",
                            hint="give --tracking-uri or set MLFLOW_TRACKING_URI")
    if not model.get("run_id"):
        raise BadInputError(f"{model['name']}@{model['version']} has no recorded MLflow run to log the report to")
    try:
        from mlflow_plugin.report_artifact import log_report, report_artifact_path  # noqa: PLC0415 - optional
    except ImportError:
        raise BadInputError("MLflow is not installed", hint="pip install 'openledger-mlops[mlflow]'") from None
    from openledger_cli.report_html import model_html  # noqa: PLC0415 - only when logging

    return log_report(model_html(data), str(model["run_id"]), tracking_uri=tracking_uri,
                      artifact_path=report_artifact_path(str(model["name"]), str(model["version"])))


def log_model_reports(targets: Iterable[str], load: Callable[[str], dict[str, Any]],
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
