"""A project laid out like DVC's `example-get-started`, used the way its README does: one data file under data/,
prepare -> featurize -> train -> evaluate with params.yaml, experiments queued with `dvc exp run --queue` and run
by `dvc queue start -j 2` in DVC's temporary workspaces, one applied with `dvc exp apply` and committed.

The training stage logs to MLflow through the plugin (the model version is what the contributor report's
lineage starts from). Every experiment's changed stages are recorded exactly once, in the repository's ledger;
the report credits the authors of the commits that changed the training stage's code, and nobody else for it.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.dvc_hooks.conftest import DvcRepo

PARAMS = """\
prepare:
  split: 0.2
  seed: 20170428
featurize:
  max_features: 50
  ngrams: 1
train:
  seed: 20170428
  n_est: 10
  min_split: 2
"""

PIPELINE = """\
stages:
  prepare:
    cmd: python src/prepare.py data/data.csv
    deps:
    - data/data.csv
    - src/prepare.py
    params:
    - prepare.seed
    - prepare.split
    outs:
    - data/prepared
  featurize:
    cmd: python src/featurization.py data/prepared data/features
    deps:
    - data/prepared
    - src/featurization.py
    params:
    - featurize.max_features
    - featurize.ngrams
    outs:
    - data/features
  train:
    cmd: python src/train.py data/features model.pkl
    deps:
    - data/features
    - src/train.py
    params:
    - train.min_split
    - train.n_est
    - train.seed
    outs:
    - model.pkl
  evaluate:
    cmd: python src/evaluate.py model.pkl data/features
    deps:
    - data/features
    - model.pkl
    - src/evaluate.py
    metrics:
    - eval/metrics.json:
        cache: false
"""

PREPARE = """\
import csv, os, random, sys
import yaml

params = yaml.safe_load(open("params.yaml"))["prepare"]
random.seed(params["seed"])
rows = list(csv.DictReader(open(sys.argv[1])))
os.makedirs("data/prepared", exist_ok=True)
with open("data/prepared/train.csv", "w") as train, open("data/prepared/test.csv", "w") as test:
    for out in (train, test):
        out.write("text,label\\n")
    for row in rows:
        (test if random.random() < params["split"] else train).write(f"{row['text']},{row['label']}\\n")
"""

FEATURIZE = """\
import os, pickle, sys
import pandas as pd
import yaml
from sklearn.feature_extraction.text import CountVectorizer

params = yaml.safe_load(open("params.yaml"))["featurize"]
source, target = sys.argv[1], sys.argv[2]
train, test = pd.read_csv(f"{source}/train.csv"), pd.read_csv(f"{source}/test.csv")
vectorizer = CountVectorizer(max_features=params["max_features"], ngram_range=(1, params["ngrams"]))
os.makedirs(target, exist_ok=True)
pickle.dump((vectorizer.fit_transform(train.text), train.label.values), open(f"{target}/train.pkl", "wb"))
pickle.dump((vectorizer.transform(test.text), test.label.values), open(f"{target}/test.pkl", "wb"))
"""

TRAIN = """\
import pickle, sys
import mlflow
import yaml
from sklearn.ensemble import RandomForestClassifier

params = yaml.safe_load(open("params.yaml"))["train"]
X, y = pickle.load(open(f"{sys.argv[1]}/train.pkl", "rb"))
clf = RandomForestClassifier(n_estimators=params["n_est"], min_samples_split=params["min_split"],
                             random_state=params["seed"])
with mlflow.start_run():
    mlflow.log_input(mlflow.data.from_dvc(sys.argv[1]), context="training")
    mlflow.log_params(params)
    clf.fit(X, y)
    mlflow.log_metric("train_accuracy", clf.score(X, y))
    mlflow.sklearn.log_model(clf, name="model", registered_model_name="text-classifier",
                             skops_trusted_types=["sklearn.tree._tree.Tree"])
pickle.dump(clf, open(sys.argv[2], "wb"))
"""

EVALUATE = """\
import json, os, pickle, sys
from sklearn.metrics import accuracy_score

model = pickle.load(open(sys.argv[1], "rb"))
X, y = pickle.load(open(f"{sys.argv[2]}/test.pkl", "rb"))
os.makedirs("eval", exist_ok=True)
json.dump({"accuracy": accuracy_score(y, model.predict(X))}, open("eval/metrics.json", "w"))
"""

BOB = ("Bob Dylan", "bob@example.org")
CAROL = ("Carol Code", "carol@example.org")
DANA = ("Dana Data", "dana@example.org")


def _data() -> str:
    rows = [f"{'good nice' if i % 2 else 'bad awful'} word{i % 7} {i},{i % 2}" for i in range(120)]
    return "text,label\n" + "\n".join(rows) + "\n"


def _wait_for_queue(repo: DvcRepo, experiments: int) -> list[str]:
    """Poll `dvc queue status` until every queued experiment has finished; their statuses."""
    deadline = time.monotonic() + 900
    while True:
        lines = repo.dvc("queue", "status").stdout.splitlines()
        tasks = [line.split() for line in lines[1:] if line.strip() and not line.startswith("Worker")]
        statuses = [task[-1] for task in tasks if len(task) >= 4]
        if len(statuses) == experiments and all(s in ("Success", "Failed") for s in statuses):
            return statuses
        if time.monotonic() > deadline:
            pytest.fail("the queue did not finish:\n" + "\n".join(lines))
        time.sleep(2)


@pytest.mark.slow
def test_queued_experiments_are_recorded_once_and_code_credit_goes_to_the_training_code_authors(
        dvc_repo: DvcRepo) -> None:
    repo = dvc_repo
    uri = f"ledger+sqlite:///{repo.root / 'mlflow.db'}"  # absolute: the queue's workspaces log to the same store
    repo.write(".gitignore", "mlflow.db\nmlruns/\n")
    repo.write("data/data.csv", _data())
    repo.dvc("add", "-q", "data/data.csv")
    repo.commit("data", author=DANA)
    repo.write("params.yaml", PARAMS)
    repo.write("dvc.yaml", PIPELINE)
    for name, text in (("prepare", PREPARE), ("featurization", FEATURIZE), ("evaluate", EVALUATE)):
        repo.write(f"src/{name}.py", text)
    repo.commit("pipeline", author=CAROL)
    repo.write("src/train.py", TRAIN.replace("min_samples_split=params[\"min_split\"]", "min_samples_split=2"))
    repo.commit("training code", author=CAROL)
    repo.write("src/train.py", TRAIN)  # Bob makes min_split a parameter
    repo.commit("min_split from params", author=BOB)
    repo.write("src/prepare.py", PREPARE + "# the split is random, seeded\n")  # not training code
    repo.commit("prepare: comment", author=DANA)
    repo.openledger("dvc", "install")
    repo.commit("openledger")
    repo.dvc("repro", MLFLOW_TRACKING_URI=uri)
    repo.commit("baseline")
    baseline = {r.body["name"]: r for r in repo.records("stage")}
    assert set(baseline) == {"prepare", "featurize", "train", "evaluate"}

    for n_est in (20, 30, 40):
        repo.dvc("exp", "run", "--queue", "-S", f"train.n_est={n_est}", MLFLOW_TRACKING_URI=uri)
    repo.dvc("queue", "start", "-j", "2", MLFLOW_TRACKING_URI=uri)
    try:
        assert _wait_for_queue(repo, 3) == ["Success"] * 3
    finally:
        repo.dvc("queue", "stop", check=False)
    names = repo.dvc("exp", "list", "--name-only").stdout.split()
    assert len(names) == 3

    stages = repo.records("stage")
    experiments = {name: sorted(r.body["name"] for r in stages if r.body["experiment"] == name) for name in names}
    # each experiment: the two stages its param changed, once; prepare and featurize did not change
    assert experiments == {name: ["evaluate", "train"] for name in names}
    assert len(stages) == 4 + 6
    trains = [r for r in stages if r.body["name"] == "train" and r.body["experiment"]]
    assert sorted(r.body["params"]["params.yaml"]["train.n_est"] for r in trains) == [20, 30, 40]
    assert all(r.body["dvcfile"] == "dvc.yaml" for r in stages)  # the temporary workspace's own pipeline
    # each queued training run was recorded (in the repository's ledger) and claimed by its experiment's stage
    runs = {r.body["run_id"]: r for r in repo.records("run")}
    assert len(runs) == 4 and all(len(r.body["runs"]) == 1 and r.body["runs"][0] in runs for r in trains)
    assert all(runs[r.body["runs"][0]].body["dvc"]["experiment"] == r.body["experiment"] for r in trains)
    assert len(repo.records("model")) == 4

    chosen = next(r.body["experiment"] for r in trains if r.body["params"]["params.yaml"]["train.n_est"] == 30)
    repo.dvc("exp", "apply", chosen)
    status = json.loads(repo.openledger("dvc", "status", "--format", "json").stdout)
    assert status["unrecorded_stages"] == [], status  # the applied experiment's records speak for it
    repo.commit("n_est 30")
    assert len(repo.records("stage")) == 10  # applying ran nothing: nothing is recorded again
    reconciled = repo.openledger("reconcile", "--strict", "--tracking-uri", uri, check=False)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert repo.openledger("verify", "--strict").returncode == 0

    report = json.loads(repo.openledger("report", "contributors", "--model", "text-classifier",
                                        "--format", "json").stdout)
    code = {c["person"]["email"]: c["roles"]["code"]["commits"] for c in report["contributors"]
            if "code" in c["roles"]}
    assert code == {"carol@example.org": 1.0, "bob@example.org": 1.0}  # src/train.py's authors; not Dana's comment
    data = {c["person"]["email"]: c["roles"]["data"]["files"] for c in report["contributors"] if "data" in c["roles"]}
    assert data == {"dana@example.org": 1.0}
