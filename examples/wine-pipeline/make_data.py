"""Write one contributor's share of the wine data (scikit-learn ships it; nothing is downloaded).

    python make_data.py 1 data/raw     # the first half of the wines, one CSV per cultivar
    python make_data.py 2 data/raw     # the second half
"""

import sys
from pathlib import Path

from sklearn.datasets import load_wine

part, target = int(sys.argv[1]), Path(sys.argv[2])
frame = load_wine(as_frame=True).frame
half = frame.iloc[(part - 1)::2]  # contributor 1 collected the even rows, contributor 2 the odd ones
target.mkdir(parents=True, exist_ok=True)
for cultivar, rows in half.groupby("target"):
    rows.to_csv(target / f"part{part}-cultivar{cultivar}.csv", index=False)
print(f"wrote {len(half)} wines to {target}")
