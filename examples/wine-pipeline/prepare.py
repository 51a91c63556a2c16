"""Stage `prepare`: merge the raw CSVs and split them into train and test sets."""

from pathlib import Path

import pandas as pd
import yaml
from sklearn.model_selection import train_test_split

params = yaml.safe_load(Path("params.yaml").read_text())["prepare"]
frame = pd.concat([pd.read_csv(p) for p in sorted(Path("data/raw").glob("*.csv"))], ignore_index=True)
train, test = train_test_split(frame, test_size=params["test_size"], random_state=params["seed"],
                               stratify=frame["target"])
out = Path("data/prepared")
out.mkdir(parents=True, exist_ok=True)
train.to_csv(out / "train.csv", index=False)
test.to_csv(out / "test.csv", index=False)
print(f"prepared {len(train)} training and {len(test)} test rows")
