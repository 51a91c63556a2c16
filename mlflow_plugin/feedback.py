"""Human feedback logged on MLflow 3 traces, recorded as ``feedback`` records credited to that person.

``mlflow.log_feedback``, ``mlflow.log_expectation`` and ``mlflow.override_feedback`` reach the tracking store
as ``create_assessment``; the ``ledger+`` store wrapper hands the stored assessment to
:func:`record_assessment`. Only assessments whose source is ``HUMAN`` are recorded: they are someone's work
to credit. LLM judges and code scorers are evaluations a run produces in bulk (one per trace and scorer);
their results belong with the run, not one signed record each.

The record is signed by the key of the process that stored it (the user's, or the tracking server's); the
person who gave the feedback is the body's ``source.id``, which contribution listings credit
(:mod:`openledger.credit.contributions`).
"""

from __future__ import annotations

from typing import Any

from openledger.capture.recorder import Recorder
from openledger.lineage.joins import assessment_key, run_key, trace_key
from openledger.store.records import Record

__all__ = ["assessment_body", "record_assessment"]

_SOURCE_RUN = "mlflow.sourceRun"


def _value_fields(value: Any) -> dict[str, Any]:
    """``label`` for text and booleans, ``score`` for numbers; structured values stay only in ``value``."""
    if isinstance(value, bool):
        return {"label": "true" if value else "false"}
    if isinstance(value, (int, float)):
        return {"score": value}  # NaN and infinities are stored as the {"$float": …} tag
    if isinstance(value, str):
        return {"label": value}
    return {}


def assessment_body(assessment: Any, run_id: str | None, *, captured: str = "live") -> dict[str, Any]:
    """A ``feedback`` body for an MLflow assessment (feedback, expectation or issue reference)."""
    kind, value, error = "feedback", None, None
    if getattr(assessment, "expectation", None) is not None:
        kind, value = "expectation", assessment.expectation.value
    elif getattr(assessment, "feedback", None) is not None:
        value = assessment.feedback.value
        error = getattr(assessment.feedback.error, "error_message", None) if assessment.feedback.error else None
    elif getattr(assessment, "issue", None) is not None:
        kind, value = "issue", getattr(assessment.issue, "issue_name", None) or assessment.name
    source = assessment.source
    body: dict[str, Any] = {
        "target": f"trace:{assessment.trace_id}",
        "trace_id": assessment.trace_id,
        "run_id": run_id,
        "span_id": assessment.span_id,
        "assessment_id": assessment.assessment_id,
        "assessment_type": kind,
        "name": assessment.name,
        "value": value,
        "source": {"type": str(source.source_type), "id": source.source_id},
        "overrides": assessment.overrides,
        "captured": captured,
        **_value_fields(value),
    }
    if assessment.rationale:
        body["comment"] = assessment.rationale
    if error:
        body["error"] = error
    if not any(field in body for field in ("label", "score", "comment")):
        body["label"] = assessment.name  # a structured value: the assessment's name says what it is
    return body


def _run_of(store: Any, assessment: Any) -> str | None:
    if getattr(assessment, "run_id", None):
        return str(assessment.run_id)
    info = store.get_trace_info(assessment.trace_id)
    metadata = getattr(info, "trace_metadata", None) or getattr(info, "request_metadata", None) or {}
    run_id = metadata.get(_SOURCE_RUN)
    return str(run_id) if run_id else None


def record_assessment(recorder: Recorder, store: Any, assessment: Any) -> Record | None:
    """Record a stored assessment if a human gave it; fails open like every capture."""
    try:
        if str(assessment.source.source_type).upper() != "HUMAN" or not assessment.assessment_id:
            return None
        run_id = _run_of(store, assessment)
        links: list[str] = []
        if run_id and (join := run_key(run_id)):
            links.append(join)
            links += [r.id for r in recorder.find_linked(join, kind="run")]
        if link := trace_key(str(assessment.trace_id)):
            links.append(link)
        body = assessment_body(assessment, run_id)
        return recorder.record("feedback", body, links, once=assessment_key(str(assessment.assessment_id)))
    except Exception as exc:
        recorder.fail(exc)
        return None
