"""An ordinary MLflow training script: nothing in it knows about OpenLedger.

Run it with ``MLFLOW_TRACKING_URI=ledger+sqlite:///mlflow.db`` and the run and the registered model version
are signed into the ledger of the repository it runs in. The data ships with scikit-learn.
"""

import mlflow
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

features, labels = load_wine(return_X_y=True, as_frame=True)
train_x, test_x, train_y, test_y = train_test_split(features, labels, test_size=0.25, random_state=7)

mlflow.set_experiment("wine-quality")
with mlflow.start_run(run_name="logreg-baseline") as run:
    params = {"C": 0.8, "max_iter": 500}
    mlflow.log_params(params)
    mlflow.log_input(mlflow.data.from_pandas(train_x.assign(target=train_y), name="wine-train", targets="target"),
                     context="training")
    model = make_pipeline(StandardScaler(), LogisticRegression(**params))
    for epoch, fraction in enumerate((0.25, 0.5, 0.75, 1.0)):
        rows = int(len(train_x) * fraction)
        model.fit(train_x[:rows], train_y[:rows])
        mlflow.log_metric("val_accuracy", model.score(test_x, test_y), step=epoch)
    mlflow.log_metric("accuracy", model.score(test_x, test_y))
    mlflow.sklearn.log_model(model, name="model", registered_model_name="wine-classifier",
                             input_example=train_x[:3])
print(f"run {run.info.run_id}: accuracy {model.score(test_x, test_y):.3f}")
