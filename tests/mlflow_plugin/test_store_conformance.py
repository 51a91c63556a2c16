"""Store conformance: the same calls to MLflow's tracking and registry store APIs against a plain store and a
`ledger+` store, side by side, must give the same answers (ids, times and paths aside).

The wrapper subclasses MLflow's own store and overrides three methods; an MLflow upgrade that changes one of
them, or anything the wrapper's state sharing relies on, shows up here as a difference. One scenario drives
experiments, runs, metrics, params, tags, dataset inputs and model outputs, logged models, registered models and
versions, aliases, traces and assessments, searches with filters and pagination, deletes and restores, and a few
calls that must fail the same way. It runs against SQLite, and against PostgreSQL where one is available
(`.ci/postgres`, or OPENLEDGER_TEST_POSTGRES).
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mlflow_plugin.conftest import MlflowProject

T0 = 1_767_000_000_000  # every time the scenario gives is fixed; the stores' own times are normalised away


def plain(value: Any) -> Any:
    """An API result as JSON-like data: entities by their properties, paged lists with whether a token came."""
    from mlflow.entities._mlflow_object import _MlflowObject
    from mlflow.store.entities.paged_list import PagedList

    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, PagedList):
        return {"items": [plain(v) for v in value], "next_page": bool(value.token)}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "to_dictionary"):
        return plain(value.to_dictionary())
    if isinstance(value, _MlflowObject):
        return {k: plain(v) for k, v in value}
    if hasattr(value, "to_dict"):
        return plain(value.to_dict())
    return f"<{type(value).__name__}>"


class Transcript:
    """What each call returned (or the error it raised), in order."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []

    def call(self, label: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            result = function(*args, **kwargs)
        except MlflowException as exc:
            self.entries.append((label, {"error": exc.error_code}))
            return None
        self.entries.append((label, plain(result)))
        return result


_IDS = [(re.compile(r"\btr-[0-9a-f]{32}\b"), "trace"), (re.compile(r"\bm-[0-9a-f]{32}\b"), "model"),
        (re.compile(r"\ba-[0-9a-f]{32}\b"), "assessment"), (re.compile(r"\b[0-9a-f]{32}\b"), "run")]
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")  # the scenario gives none: the stores' own


def normalised(entries: list[tuple[str, Any]], roots: list[str]) -> list[tuple[str, Any]]:
    """Ids by order of first appearance, the stores' own times and their directories replaced by placeholders."""
    seen: dict[str, str] = {}

    def text(value: str) -> str:
        for root in roots:
            value = value.replace(root, "<root>")
        value = _ISO_TIME.sub("<time>", value)
        for pattern, kind in _IDS:
            value = pattern.sub(functools.partial(placeholder, kind), value)
        return value

    def placeholder(kind: str, match: re.Match[str]) -> str:
        return seen.setdefault(match.group(0), f"<{kind} {len(seen)}>")

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return text(value)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value > 1_600_000_000_000 and value != T0 and not T0 < value < T0 + 10_000:
            return "<time>"
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {text(k): walk(v) for k, v in value.items()}
        return value

    return [(label, walk(result)) for label, result in entries]


def scenario(tracking: Any, registry: Any) -> list[tuple[str, Any]]:
    from mlflow.entities import (
        AssessmentSource,
        Dataset,
        DatasetInput,
        Expectation,
        ExperimentTag,
        Feedback,
        InputTag,
        LoggedModelInput,
        LoggedModelOutput,
        LoggedModelParameter,
        LoggedModelStatus,
        LoggedModelTag,
        Metric,
        Param,
        RunStatus,
        RunTag,
        TraceInfo,
        TraceLocation,
        TraceState,
        ViewType,
    )
    from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag

    t = Transcript()
    # experiments: create, tag, rename, search with filters and pages, delete and restore
    experiment = t.call("create_experiment", tracking.create_experiment, "wine", None,
                        [ExperimentTag("team", "vision")])
    other = t.call("create_experiment", tracking.create_experiment, "scratch")
    t.call("create_experiment duplicate", tracking.create_experiment, "wine")
    t.call("set_experiment_tag", tracking.set_experiment_tag, experiment, ExperimentTag("stage", "dev"))
    t.call("rename_experiment", tracking.rename_experiment, other, "scratch-2")
    t.call("get_experiment", tracking.get_experiment, experiment)
    t.call("get_experiment_by_name", tracking.get_experiment_by_name, "scratch-2")
    page = t.call("search_experiments page 1", tracking.search_experiments, ViewType.ALL, 1, None, ["name ASC"])
    t.call("search_experiments page 2", tracking.search_experiments, ViewType.ALL, 1, None, ["name ASC"],
           page.token)
    t.call("search_experiments filter", tracking.search_experiments, ViewType.ACTIVE_ONLY, 10,
           "tags.team = 'vision'")
    t.call("delete_experiment", tracking.delete_experiment, other)
    t.call("search_experiments deleted", tracking.search_experiments, ViewType.DELETED_ONLY)
    t.call("restore_experiment", tracking.restore_experiment, other)

    # runs: params, metrics (history), tags, batches, renames and ends, dataset inputs, search
    runs = []
    for number in range(3):
        run = t.call(f"create_run {number}", tracking.create_run, experiment, "ada", T0 + number,
                     [RunTag("fold", str(number))], f"run-{number}")
        run_id = run.info.run_id
        runs.append(run_id)
        t.call("log_param", tracking.log_param, run_id, Param("alpha", str(0.1 * (number + 1))))
        for step in range(3):
            t.call("log_metric", tracking.log_metric, run_id, Metric("loss", 1.0 / (step + 1 + number), T0 + step,
                                                                      step))
        t.call("log_batch", tracking.log_batch, run_id, [Metric("rmse", 0.5 + number, T0, 0)],
               [Param("l1_ratio", "0.5")], [RunTag("note", "batch")])
        t.call("set_tag", tracking.set_tag, run_id, RunTag("doomed", "yes"))
        t.call("delete_tag", tracking.delete_tag, run_id, "doomed")
    first = runs[0]
    dataset = Dataset("wine", "0a64f9dd", "code", "{}", '{"mlflow_colspec": []}', '{"num_rows": 3}')
    t.call("log_inputs", tracking.log_inputs, first, [DatasetInput(dataset, [InputTag("mlflow.data.context",
                                                                                       "training")])])
    t.call("log_param conflicting", tracking.log_param, first, Param("alpha", "9"))
    t.call("update_run_info rename", tracking.update_run_info, first, RunStatus.RUNNING, None, "renamed")
    for number, run_id in enumerate(runs):
        status = RunStatus.FAILED if number == 2 else RunStatus.FINISHED
        t.call("update_run_info end", tracking.update_run_info, run_id, status, T0 + 100 + number, None)
    t.call("get_run", tracking.get_run, first)
    t.call("get_metric_history", tracking.get_metric_history, first, "loss")
    t.call("get_metric_history page", tracking.get_metric_history, first, "loss", 2)
    t.call("search_runs filter", tracking.search_runs, [experiment], "metrics.rmse > 0.7", ViewType.ALL)
    page = t.call("search_runs page 1", tracking.search_runs, [experiment], "", ViewType.ALL, 2,
                  ["params.alpha DESC"])
    t.call("search_runs page 2", tracking.search_runs, [experiment], "", ViewType.ALL, 2, ["params.alpha DESC"],
           page.token)
    t.call("search_runs by tag", tracking.search_runs, [experiment], "tags.fold = '1'", ViewType.ACTIVE_ONLY)
    t.call("delete_run", tracking.delete_run, runs[2])
    t.call("search_runs active", tracking.search_runs, [experiment], "", ViewType.ACTIVE_ONLY)
    t.call("search_runs deleted", tracking.search_runs, [experiment], "", ViewType.DELETED_ONLY)
    t.call("restore_run", tracking.restore_run, runs[2])
    t.call("get_run missing", tracking.get_run, "f" * 32)

    # logged models: create with params and tags, outputs and inputs of runs, search, finalize, delete
    model = t.call("create_logged_model", tracking.create_logged_model, experiment, "model", first,
                   [LoggedModelTag("flavor", "sklearn")], [LoggedModelParameter("alpha", "0.1")], "sklearn")
    spare = t.call("create_logged_model spare", tracking.create_logged_model, experiment, "spare")
    model_id = model.model_id
    t.call("log_outputs", tracking.log_outputs, first, [LoggedModelOutput(model_id, 2)])
    t.call("log_inputs model", tracking.log_inputs, runs[1], None, [LoggedModelInput(model_id)])
    t.call("set_logged_model_tags", tracking.set_logged_model_tags, model_id, [LoggedModelTag("owner", "ada")])
    t.call("delete_logged_model_tag", tracking.delete_logged_model_tag, model_id, "owner")
    t.call("log_logged_model_params", tracking.log_logged_model_params, model_id,
           [LoggedModelParameter("l1_ratio", "0.5")])
    t.call("finalize_logged_model", tracking.finalize_logged_model, model_id, LoggedModelStatus.READY)
    t.call("get_logged_model", tracking.get_logged_model, model_id)
    t.call("search_logged_models", tracking.search_logged_models, [experiment], "name = 'model'")
    page = t.call("search_logged_models page 1", tracking.search_logged_models, [experiment], None, None, 1)
    t.call("search_logged_models page 2", tracking.search_logged_models, [experiment], None, None, 1, None,
           page.token)
    t.call("delete_logged_model", tracking.delete_logged_model, spare.model_id)
    t.call("get_logged_model deleted", tracking.get_logged_model, spare.model_id)
    t.call("get_run with outputs", tracking.get_run, first)

    # registry: registered models, versions from the logged model, tags, aliases, stages, search, deletes
    t.call("create_registered_model", registry.create_registered_model, "wine-model",
           [RegisteredModelTag("team", "vision")], "first")
    t.call("create_registered_model duplicate", registry.create_registered_model, "wine-model")
    t.call("create_registered_model other", registry.create_registered_model, "other-model")
    for _ in range(2):
        t.call("create_model_version", registry.create_model_version, "wine-model", f"models:/{model_id}",
               first, [ModelVersionTag("validated", "no")], None, "a version", None, model_id)
    t.call("update_registered_model", registry.update_registered_model, "wine-model", "described")
    t.call("set_registered_model_tag", registry.set_registered_model_tag, "wine-model",
           RegisteredModelTag("tier", "gold"))
    t.call("delete_registered_model_tag", registry.delete_registered_model_tag, "wine-model", "team")
    t.call("update_model_version", registry.update_model_version, "wine-model", "1", "checked")
    t.call("set_model_version_tag", registry.set_model_version_tag, "wine-model", "1",
           ModelVersionTag("validated", "yes"))
    t.call("delete_model_version_tag", registry.delete_model_version_tag, "wine-model", "2", "validated")
    t.call("set_registered_model_alias", registry.set_registered_model_alias, "wine-model", "champion", "1")
    t.call("set_registered_model_alias move", registry.set_registered_model_alias, "wine-model", "champion", "2")
    t.call("get_model_version_by_alias", registry.get_model_version_by_alias, "wine-model", "champion")
    t.call("delete_registered_model_alias", registry.delete_registered_model_alias, "wine-model", "champion")
    t.call("get_model_version_by_alias gone", registry.get_model_version_by_alias, "wine-model", "champion")
    t.call("transition_model_version_stage", registry.transition_model_version_stage, "wine-model", "1",
           "Staging", False)
    t.call("get_latest_versions", registry.get_latest_versions, "wine-model", ["Staging"])
    t.call("get_model_version", registry.get_model_version, "wine-model", "2")
    t.call("get_model_version_download_uri", registry.get_model_version_download_uri, "wine-model", "1")
    t.call("search_model_versions", registry.search_model_versions, "name = 'wine-model'")
    page = t.call("search_registered_models page 1", registry.search_registered_models, None, 1, ["name ASC"])
    t.call("search_registered_models page 2", registry.search_registered_models, None, 1, ["name ASC"],
           page.token)
    t.call("rename_registered_model", registry.rename_registered_model, "other-model", "renamed-model")
    t.call("delete_model_version", registry.delete_model_version, "wine-model", "2")
    t.call("get_model_version deleted", registry.get_model_version, "wine-model", "2")
    t.call("delete_registered_model", registry.delete_registered_model, "renamed-model")
    t.call("get_registered_model", registry.get_registered_model, "wine-model")
    t.call("search_registered_models", registry.search_registered_models)

    # traces and assessments (human feedback is what the wrapper captures), tags, search, links, deletes
    trace_ids = [f"tr-{number:032x}" for number in (1, 2)]
    for number, trace_id in enumerate(trace_ids):
        info = TraceInfo(trace_id, TraceLocation.from_experiment_id(experiment), T0 + number, TraceState.OK,
                         request_preview='{"q": "hi"}', response_preview='"hello"', execution_duration=5,
                         trace_metadata={"mlflow.sourceRun": first}, tags={"env": "test"})
        t.call("start_trace", tracking.start_trace, info)
    human = AssessmentSource(source_type="HUMAN", source_id="ann@example.org")
    feedback = t.call("create_assessment feedback", tracking.create_assessment,
                      Feedback(name="correct", value=True, source=human, trace_id=trace_ids[0], rationale="fine"))
    expectation = t.call("create_assessment expectation", tracking.create_assessment,
                         Expectation(name="answer", value="hello", source=human, trace_id=trace_ids[0]))
    t.call("create_assessment judge", tracking.create_assessment,
           Feedback(name="relevance", value=0.5, trace_id=trace_ids[1],
                    source=AssessmentSource(source_type="LLM_JUDGE", source_id="gpt")))
    t.call("update_assessment", tracking.update_assessment, trace_ids[0], feedback.assessment_id, None, None,
           None, "still fine")
    t.call("get_assessment", tracking.get_assessment, trace_ids[0], feedback.assessment_id)
    t.call("delete_assessment", tracking.delete_assessment, trace_ids[0], expectation.assessment_id)
    t.call("set_trace_tag", tracking.set_trace_tag, trace_ids[0], "reviewed", "yes")
    t.call("delete_trace_tag", tracking.delete_trace_tag, trace_ids[0], "env")
    t.call("link_traces_to_run", tracking.link_traces_to_run, trace_ids, runs[1])
    t.call("get_trace_info", tracking.get_trace_info, trace_ids[0])
    t.call("search_traces filter", tracking.search_traces, [experiment], "tags.reviewed = 'yes'")
    t.call("search_traces page 1", tracking.search_traces, [experiment], None, 1)
    t.call("delete_traces", tracking.delete_traces, experiment, None, None, [trace_ids[1]])
    t.call("search_traces after delete", tracking.search_traces, [experiment])
    return t.entries


def _stores(uri: str, artifacts: Path) -> tuple[Any, Any]:
    from mlflow.tracking._model_registry.utils import _get_store as registry_store
    from mlflow.tracking._tracking_service.utils import _get_store as tracking_store

    return tracking_store(uri, artifacts.as_uri()), registry_store(uri)


@pytest.fixture(params=["sqlite", "postgresql"])
def backends(request: pytest.FixtureRequest, project: MlflowProject) -> Iterator[tuple[str, str]]:
    """Two empty databases of one kind: the plain store's and the `ledger+` store's."""
    if request.param == "sqlite":
        yield project.uri("plain.db", ledger=False), project.uri("wrapped.db")
        return
    plain_db = request.getfixturevalue("postgres_uri")
    # a second database beside the first, dropped with it by the fixture's own connection
    import psycopg

    base = plain_db.rsplit("/", 1)[0]
    wrapped_name = plain_db.rsplit("/", 1)[1] + "_w"
    with psycopg.connect(plain_db, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {wrapped_name}")
    try:
        yield plain_db, "ledger+" + base + "/" + wrapped_name
    finally:
        with psycopg.connect(plain_db, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {wrapped_name} WITH (FORCE)")


def test_plain_and_ledger_stores_answer_every_call_alike(project: MlflowProject, backends: tuple[str, str],
                                                         tmp_path: Path) -> None:
    import mlflow

    plain_uri, wrapped_uri = backends
    results = {}
    for name, uri in (("plain", plain_uri), ("wrapped", wrapped_uri)):
        mlflow.set_tracking_uri(uri)  # the wrapper looks logged models up through the current tracking URI
        tracking, registry = _stores(uri, tmp_path / f"{name}-artifacts")
        assert type(tracking).__name__.startswith("Ledger") is (name == "wrapped")
        results[name] = normalised(scenario(tracking, registry), [str(tmp_path / f"{name}-artifacts"),
                                                                  uri.removeprefix("ledger+")])
    assert len(results["plain"]) == len(results["wrapped"]) > 100
    for (label, plain_result), (_, wrapped_result) in zip(results["plain"], results["wrapped"], strict=True):
        assert wrapped_result == plain_result, label
    # and the wrapper did capture, meanwhile: the three ended runs, the two versions, the human assessments
    runs = project.records("run")
    assert sorted(r.body["status"] for r in runs) == ["FAILED", "FINISHED", "FINISHED"]
    assert sorted(m.body["version"] for m in project.records("model")) == [1, 2]
    assert sorted(f.body["name"] for f in project.records("feedback")) == ["answer", "correct"]
    assert len(project.records("dataset")) == 1
