"""Stage `train`: an ordinary MLflow training script; nothing in it knows about OpenLedger.

With ``MLFLOW_TRACKING_URI=ledger+sqlite:///mlflow.db`` the run and the registered model version are signed
into the ledger, and the run record names the DVC stage it ran in, so the stage record links to it.
"""

import pickle
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

params = yaml.safe_load(Path("params.yaml").read_text())["train"]
train = pd.read_csv("data/prepared/train.csv")
test = pd.read_csv("data/prepared/test.csv")
features, labels = train.drop(columns="target").astype(float), train["target"]

mlflow.set_experiment("wine-quality")
with mlflow.start_run(run_name=f"logreg-C{params['C']}") as run:
    mlflow.log_params(params)
    mlflow.log_input(mlflow.data.from_dvc("data/prepared"), context="training")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=params["C"], max_iter=params["max_iter"]))
    model.fit(features, labels)
    mlflow.log_metric("train_accuracy", model.score(features, labels))
    mlflow.log_metric("accuracy", model.score(test.drop(columns="target").astype(float), test["target"]))
    mlflow.sklearn.log_model(model, name="model", registered_model_name="wine-classifier",
                             input_example=features[:3])
Path("model.pkl").write_bytes(pickle.dumps(model))
print(f"run {run.info.run_id}: trained on {len(train)} rows")
