"""MLflow's published example scripts, in their own shape and unchanged, through `ledger+sqlite`.

Each script is what a new user copies from MLflow's examples (`sklearn_elasticnet_wine/train.py`,
`sklearn_autolog/linear_regression.py` and `grid_search_cv.py`, the nested-run hyper-parameter search of MLflow's
tuning guide), with scikit-learn's bundled data in place of downloads: nothing in them knows about OpenLedger.
For each: the expected records, `openledger reconcile --strict` exit 0 on the untouched store, and exit 1
naming the run and the field after an edit in the SQLite file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from typing import Any

from click.testing import CliRunner

from openledger import verify_ledger
from openledger_cli.main import cli
from tests.mlflow_plugin.conftest import MlflowProject

# examples/sklearn_elasticnet_wine/train.py: the wine-quality table read from a CSV file (here written from
# scikit-learn's wine data, its class as the "quality" column), with the dataset logged as MLflow's docs show.
ELASTICNET = textwrap.dedent(
    """
    import logging
    import sys
    import warnings
    from urllib.parse import urlparse

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import ElasticNet
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import train_test_split

    import mlflow
    import mlflow.sklearn

    logging.basicConfig(level=logging.WARN)
    logger = logging.getLogger(__name__)


    def eval_metrics(actual, pred):
        rmse = np.sqrt(mean_squared_error(actual, pred))
        mae = mean_absolute_error(actual, pred)
        r2 = r2_score(actual, pred)
        return rmse, mae, r2


    if __name__ == "__main__":
        warnings.filterwarnings("ignore")
        np.random.seed(40)

        csv_url = "winequality.csv"
        try:
            data = pd.read_csv(csv_url, sep=";")
        except Exception as e:
            logger.exception("Unable to read training & test CSV. Error: %s", e)

        train, test = train_test_split(data)
        train_x = train.drop(["quality"], axis=1)
        test_x = test.drop(["quality"], axis=1)
        train_y = train[["quality"]]
        test_y = test[["quality"]]

        alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
        l1_ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5

        with mlflow.start_run():
            mlflow.log_input(mlflow.data.from_pandas(data, source=csv_url, name="wine-quality", targets="quality"),
                             context="training")
            lr = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42)
            lr.fit(train_x, train_y)

            predicted_qualities = lr.predict(test_x)
            (rmse, mae, r2) = eval_metrics(test_y, predicted_qualities)

            print("Elasticnet model (alpha={:f}, l1_ratio={:f}):".format(alpha, l1_ratio))
            print("  RMSE: %s" % rmse)
            print("  MAE: %s" % mae)
            print("  R2: %s" % r2)

            mlflow.log_param("alpha", alpha)
            mlflow.log_param("l1_ratio", l1_ratio)
            mlflow.log_metric("rmse", rmse)
            mlflow.log_metric("r2", r2)
            mlflow.log_metric("mae", mae)

            tracking_url_type_store = urlparse(mlflow.get_tracking_uri()).scheme

            if tracking_url_type_store != "file":
                mlflow.sklearn.log_model(lr, name="model", registered_model_name="ElasticnetWineModel")
            else:
                mlflow.sklearn.log_model(lr, name="model")
    """
)

# examples/sklearn_autolog/linear_regression.py
AUTOLOG = textwrap.dedent(
    """
    import numpy as np
    from sklearn.linear_model import LinearRegression

    import mlflow


    def main():
        mlflow.sklearn.autolog()

        X = np.array([[1, 1], [1, 2], [2, 2], [2, 3]])
        y = np.dot(X, np.array([1, 2])) + 3

        model = LinearRegression()
        model.fit(X, y)
        run_id = mlflow.last_active_run().info.run_id
        print(f"Logged data and model in run {run_id}")


    if __name__ == "__main__":
        main()
    """
)

# examples/sklearn_autolog/grid_search_cv.py: autolog makes a child run per parameter combination
GRID_SEARCH = textwrap.dedent(
    """
    from sklearn import datasets, svm
    from sklearn.model_selection import GridSearchCV

    import mlflow


    def main():
        mlflow.sklearn.autolog()

        iris = datasets.load_iris()
        parameters = {"kernel": ("linear", "rbf"), "C": [1, 10]}
        svc = svm.SVC()
        clf = GridSearchCV(svc, parameters)

        with mlflow.start_run() as run:
            clf.fit(iris.data, iris.target)
        print(run.info.run_id)


    if __name__ == "__main__":
        main()
    """
)

# The hyper-parameter search of MLflow's tuning guide: a parent run, one nested run per candidate, the best
# candidate's model registered from the parent.
NESTED_SEARCH = textwrap.dedent(
    """
    import mlflow
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.2, random_state=42)
    train = mlflow.data.from_pandas(X_train.assign(target=y_train), name="diabetes-train", targets="target")

    mlflow.set_experiment("ridge-tuning")
    with mlflow.start_run(run_name="hyperparameter-search") as parent:
        best = None
        for alpha in (0.01, 0.1, 1.0):
            with mlflow.start_run(run_name=f"alpha-{alpha}", nested=True):
                mlflow.log_input(train, context="training")
                mlflow.log_param("alpha", alpha)
                model = Ridge(alpha=alpha).fit(X_train, y_train)
                rmse = float(np.sqrt(mean_squared_error(y_val, model.predict(X_val))))
                mlflow.log_metric("rmse", rmse)
                if best is None or rmse < best[0]:
                    best = (rmse, alpha, model)
        mlflow.log_params({"best_alpha": best[1]})
        mlflow.log_metric("best_rmse", best[0])
        mlflow.sklearn.log_model(best[2], name="model", registered_model_name="diabetes-ridge")
    print(parent.info.run_id)
    """
)


def run_example(project: MlflowProject, script: str, *args: str) -> str:
    (project.root / "example.py").write_text(script)
    env = dict(os.environ, MLFLOW_TRACKING_URI=project.uri())
    result = subprocess.run([sys.executable, "example.py", *args], cwd=project.root, env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def reconcile(project: MlflowProject) -> tuple[int, list[dict[str, Any]]]:
    result = CliRunner().invoke(cli, ["reconcile", "--tracking-uri", project.uri(ledger=False), "--strict",
                                      "--format", "json"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)["discrepancies"]


def edit(project: MlflowProject, statement: str, *parameters: Any) -> None:
    """What someone with write access to the tracking database can do."""
    with sqlite3.connect(project.root / "mlflow.db") as db:
        assert db.execute(statement, parameters).rowcount >= 1


def assert_clean_then_edit_named(project: MlflowProject, run_id: str, table: str, key: str, value: Any) -> None:
    code, found = reconcile(project)
    assert code == 0, found
    assert verify_ledger(project.ledger, workers=1).exit_code(strict=True) == 0
    edit(project, f"UPDATE {table} SET value = ? WHERE run_uuid = ? AND key = ?", value, run_id, key)
    code, found = reconcile(project)
    assert code == 1
    what = "metric" if table == "latest_metrics" else "param"
    named = [d for d in found if d["code"] == "run-changed" and d["details"]["field"] == f"{what} {key}"]
    assert [d["subject"] for d in named] == [f"run:{run_id}"], found
    assert run_id in named[0]["message"]


def run_ids(project: MlflowProject) -> dict[str, Any]:
    return {r.body["run_id"]: r for r in project.records("run")}


def test_elasticnet_wine_example(project: MlflowProject) -> None:
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True)
    table = wine.data.assign(quality=wine.target + 3)  # a wine-quality-like table: scores from 3 up
    table.to_csv(project.root / "winequality.csv", sep=";", index=False)
    assert (project.root / "winequality.csv").read_text().splitlines()[0].count(";") == 13

    printed = run_example(project, ELASTICNET)
    assert "Elasticnet model (alpha=0.500000, l1_ratio=0.500000)" in printed
    [run], [model], [dataset] = project.records("run"), project.records("model"), project.records("dataset")
    assert run.body["params"] == {"alpha": "0.5", "l1_ratio": "0.5"}
    assert set(run.body["metrics"]) == {"rmse", "r2", "mae"}
    assert model.body["name"] == "ElasticnetWineModel" and model.body["run_id"] == run.body["run_id"]
    assert dataset.body["name"] == "wine-quality" and dataset.body["source"] == {"type": "local",
                                                                                 "uri": "winequality.csv"}
    assert dataset.id in run.links and dataset.body["digest"] == "mlflow:" + run.body["inputs"][0]["digest"]
    assert reconcile(project)[0] == 0

    # the example's other documented call, `python train.py 0.1 0.9`: a second version, the same data
    run_example(project, ELASTICNET, "0.1", "0.9")
    assert sorted(m.body["version"] for m in project.records("model")) == [1, 2]
    assert len(project.records("run")) == 2 and len(project.records("dataset")) == 1
    assert_clean_then_edit_named(project, run.body["run_id"], "latest_metrics", "rmse", 0.01)


def test_sklearn_autolog_example(project: MlflowProject) -> None:
    printed = run_example(project, AUTOLOG)
    [run] = project.records("run")
    assert f"Logged data and model in run {run.body['run_id']}" in printed
    assert run.body["params"]["fit_intercept"] == "True" and "training_score" in run.body["metrics"]
    # autolog logs the training data as a dataset input: each has its signed record, which the run links
    datasets = project.records("dataset")
    assert datasets and {d.body["digest"] for d in datasets} == {"mlflow:" + i["digest"] for i in run.body["inputs"]}
    assert {d.id for d in datasets} <= set(run.links)
    assert project.records("model") == []  # a logged model, not registered
    assert_clean_then_edit_named(project, run.body["run_id"], "latest_metrics", "training_score", 0.5)


def test_sklearn_autolog_grid_search_example(project: MlflowProject) -> None:
    parent = run_example(project, GRID_SEARCH).strip().splitlines()[-1]
    runs = run_ids(project)
    children = [r for r in runs.values() if r.body["parent_run_id"] == parent]
    assert parent in runs and len(children) == 4  # one child run per (kernel, C)
    assert {(r.body["params"]["kernel"], r.body["params"]["C"]) for r in children} == {
        ("linear", "1"), ("linear", "10"), ("rbf", "1"), ("rbf", "10")}
    child = next(r for r in children if r.body["params"]["kernel"] == "rbf" and r.body["params"]["C"] == "10")
    assert_clean_then_edit_named(project, child.body["run_id"], "params", "C", "100")


def test_nested_hyperparameter_search_example(project: MlflowProject) -> None:
    parent = run_example(project, NESTED_SEARCH).strip().splitlines()[-1]
    runs = run_ids(project)
    children = {r.body["params"]["alpha"]: r for r in runs.values() if r.body["parent_run_id"] == parent}
    assert set(children) == {"0.01", "0.1", "1.0"} and len(runs) == 4
    [dataset] = project.records("dataset")  # every child logged the same training data: one record
    assert all(dataset.id in child.links for child in children.values())
    [model] = project.records("model")
    assert model.body["run_id"] == parent and model.body["name"] == "diabetes-ridge"
    assert_clean_then_edit_named(project, children["0.1"].body["run_id"], "params", "alpha", "0.2")
    # one point of another child's metric history rewritten: its final value is the same, its history is not
    edit(project, "UPDATE metrics SET value = 0 WHERE run_uuid = ? AND key = 'rmse'", children["1.0"].body["run_id"])
    code, found = reconcile(project)
    assert code == 1 and (f"run:{children['1.0'].body['run_id']}", "metric history digest") in [
        (d["subject"], d["details"]["field"]) for d in found]
