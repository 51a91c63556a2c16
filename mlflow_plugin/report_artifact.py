"""The provenance report inside MLflow's UI: the self-contained HTML page as an artifact of the model's run.

``openledger report model NAME@V --log-to-mlflow`` (and ``openledger ci --log-reports-to-mlflow``) render the
page and call :func:`log_report`; MLflow's artifact viewer shows it next to the run's model. The artifact path
is fixed per model version (``openledger/<name>-v<version>-provenance.html``), so logging again replaces the
page rather than piling up copies. Nothing is captured: the store is reached without the ``ledger+`` prefix.
"""

from __future__ import annotations

import re

from mlflow_plugin.registry import first_line
from mlflow_plugin.store import plain_uri
from openledger.errors import BadInputError

__all__ = ["ARTIFACT_DIRECTORY", "log_report", "report_artifact_path"]

ARTIFACT_DIRECTORY = "openledger"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def report_artifact_path(name: str, version: str) -> str:
    """Where a model version's report lives among its run's artifacts (model names may hold any character)."""
    safe = _UNSAFE.sub("_", name).strip("._")[:100] or "model"
    return f"{ARTIFACT_DIRECTORY}/{safe}-v{_UNSAFE.sub('_', version)[:20]}-provenance.html"


def log_report(html: str, run_id: str, *, tracking_uri: str, artifact_path: str) -> str:
    """Log ``html`` (UTF-8) as ``artifact_path`` of MLflow run ``run_id``, replacing an earlier copy; returns
    the artifact's URI. MLflow's errors (no such run, server unreachable) are bad input, in one line."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(plain_uri(tracking_uri))
    try:
        run = client.get_run(run_id)
        client.log_text(run_id, html, artifact_path)
    except MlflowException as exc:
        raise BadInputError(f"MLflow: {first_line(exc)}", hint=f"could not log the report to run {run_id}") from None
    except OSError as exc:
        raise BadInputError(f"MLflow: cannot write the report artifact of run {run_id}: {exc}") from None
    return f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
