"""Human feedback on MLflow 3 traces becomes signed feedback records credited to that person."""

from __future__ import annotations

import json
import math

from click.testing import CliRunner

from openledger import verify_ledger
from openledger.credit.contributions import activity_by_target, contributions_by_contributor
from openledger_cli.main import cli
from tests.mlflow_plugin.conftest import MlflowProject


def traced_run() -> tuple[str, str]:
    """A run containing one real trace; returns (run id, trace id)."""
    import mlflow

    @mlflow.trace
    def answer(question: str) -> str:
        return question.upper()

    with mlflow.start_run() as run:
        answer("which iris is this?")
    mlflow.flush_trace_async_logging()  # traces are exported in the background; feedback needs it stored
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id is not None
    return run.info.run_id, trace_id


def test_human_feedback_is_recorded_and_credited(project: MlflowProject) -> None:
    import mlflow
    from mlflow.entities import AssessmentSource

    signer_key = project.keyid
    # Alice has an identity in the ledger (her own key), though the feedback is recorded by Ada's process.
    from tests.conftest import make_signer

    alice = make_signer(31, "alice-laptop")
    project.ledger.append(alice, "identity", {"key": alice.keyid, "name": "Alice", "email": "alice@example.com"})
    run_id, trace_id = traced_run()
    human = AssessmentSource(source_type="HUMAN", source_id="alice@example.com")
    logged = mlflow.log_feedback(trace_id=trace_id, name="correct", value=False, source=human,
                                 rationale="it is a virginica")
    mlflow.log_expectation(trace_id=trace_id, name="expected_answer", value="VIRGINICA",
                           source=AssessmentSource(source_type="HUMAN", source_id="Dmitri"))
    mlflow.log_feedback(trace_id=trace_id, name="relevance", value=0.2,
                        source=AssessmentSource(source_type="LLM_JUDGE", source_id="gpt-judge"))
    mlflow.log_feedback(trace_id=trace_id, name="confidence", value=float("nan"), source=human)

    records = {r.body["name"]: r for r in project.records("feedback")}
    assert set(records) == {"correct", "expected_answer", "confidence"}  # the LLM judge is not a contributor
    correct = records["correct"]
    assert correct.actor == signer_key
    assert correct.body["source"] == {"type": "HUMAN", "id": "alice@example.com"}
    assert (correct.body["target"], correct.body["trace_id"], correct.body["run_id"]) == (
        f"trace:{trace_id}", trace_id, run_id)
    assert (correct.body["label"], correct.body["value"], correct.body["comment"]) == ("false", False,
                                                                                       "it is a virginica")
    assert correct.body["assessment_id"] == logged.assessment_id
    run_record = next(r for r in project.records("run") if r.body["run_id"] == run_id)
    assert {f"mlflowrun:{run_id}", f"mlflowtrace:{trace_id.removeprefix('tr-')}", run_record.id} <= set(correct.links)
    assert records["expected_answer"].body["assessment_type"] == "expectation"
    assert records["expected_answer"].body["label"] == "VIRGINICA"
    assert math.isnan(records["confidence"].body["score"])

    credited = contributions_by_contributor(project.ledger)
    assert [c.body["name"] for c in credited[alice.keyid]] == ["correct", "confidence"]
    assert credited[alice.keyid][0].contributor == "Alice <alice@example.com>"
    assert [c.body["name"] for c in credited["Dmitri"]] == ["expected_answer"]  # no identity: the source id
    assert signer_key not in credited  # recording someone's feedback is not a contribution of one's own
    on_trace = activity_by_target(project.ledger)[f"trace:{trace_id}"]
    assert len(on_trace) == 3 and run_record.id in activity_by_target(project.ledger)
    assert verify_ledger(project.ledger, workers=1).exit_code(strict=True) == 0

    # and in the contribution report: under feedback, credited to the people, not to the process that signed
    report = CliRunner().invoke(cli, ["report", "contributors", "--format", "json"], catch_exceptions=False)
    assert report.exit_code == 0, report.output
    rows = {row["person"]["name"]: row["roles"] for row in json.loads(report.stdout)["contributors"]}
    assert rows["Alice"]["feedback"]["items"] == 2 and rows["Dmitri"]["feedback"]["items"] == 1
    assert rows["Alice"]["feedback"]["records"] == [records["correct"].id, records["confidence"].id]
    assert "feedback" not in rows["Ada Lovelace"] and rows["Ada Lovelace"]["training"]["runs"] == 1


def test_feedback_is_recorded_once_per_assessment(project: MlflowProject) -> None:
    import mlflow
    from mlflow.entities import AssessmentSource
    from mlflow.tracking._tracking_service.utils import _get_store

    from mlflow_plugin.feedback import record_assessment
    from mlflow_plugin.store import capture_for

    _, trace_id = traced_run()
    logged = mlflow.log_feedback(trace_id=trace_id, name="ok", value="yes",
                                 source=AssessmentSource(source_type="HUMAN", source_id="ann"))
    capture = capture_for(project.uri().removeprefix("ledger+"))
    assert record_assessment(capture.recorder, _get_store(), logged) is None  # a retried request: nothing new
    assert len(project.records("feedback")) == 1
