"""Stage `evaluate`: score the trained model on the held-out wines."""

import json
import pickle
from pathlib import Path

import pandas as pd

model = pickle.loads(Path("model.pkl").read_bytes())  # noqa: S301 - our own pipeline's output
test = pd.read_csv("data/prepared/test.csv")
accuracy = model.score(test.drop(columns="target").astype(float), test["target"])
Path("metrics.json").write_text(json.dumps({"accuracy": round(float(accuracy), 4)}) + "\n")
print(f"test accuracy {accuracy:.3f}")
