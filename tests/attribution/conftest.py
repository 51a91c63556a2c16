"""Real DVC projects for measured attribution: an oracle game whose values are known in closed form, and a
scikit-learn classifier with planted contributors. Each is built once per session (real git commits by each
contributor, `dvc add`, `openledger dvc install`, `dvc repro`) and copied for every test that uses it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from openledger import KeyStore, Ledger
from tests.dvc_hooks.conftest import DvcRepo

# The oracle's "training": the value of the files present is the sum of the weights they hold, plus a bonus
# when the three parts of the team are all there. So Shapley_i = w_i + bonus/3 for a team member (w_i
# otherwise), Banzhaf_i = w_i + bonus/4, leave-one-out_i = w_i + bonus.
ORACLE_TRAIN = """\
import json, os, time
if os.environ.get("ORACLE_MARK"):  # a test that interrupts runs waits for one to start (and to be slow)
    open(os.path.join(os.environ["ORACLE_MARK"], str(os.getpid())), "w").close()
    time.sleep(float(os.environ.get("ORACLE_SLEEP", "0")))
total, parts = 0.0, set()
for name in sorted(os.listdir("data")):
    kind, value = open(os.path.join("data", name)).read().split()
    if kind == "w":
        total += float(value)
    else:
        parts.add(value)
if {"a", "b", "c"} <= parts:
    total += 6.0
json.dump({"score": total}, open("metrics.json", "w"))
"""
ORACLE_PIPELINE = """\
stages:
  train:
    cmd: python train.py
    deps:
    - data
    - train.py
    metrics:
    - metrics.json:
        cache: false
"""
BONUS = 6.0
TEAM = (0, 1, 2)


@dataclass
class Oracle:
    repo: DvcRepo
    k: int
    weights: list[float] = field(default_factory=list)

    def email(self, i: int) -> str:
        return f"p{i}@example.org"

    def closed_form(self) -> dict[str, dict[str, float]]:
        """Each player's exact values, by email."""
        result = {}
        for i, w in enumerate(self.weights):
            team = i in TEAM
            result[self.email(i)] = {"shapley": w + (BONUS / 3 if team else 0.0),
                                     "banzhaf": w + (BONUS / 4 if team else 0.0),
                                     "loo": w + (BONUS if team else 0.0)}
        return result


def _init(root: Path, home: Path, runner: tuple[str, str] = ("Runner", "runner@example.org")) -> DvcRepo:
    root.mkdir(parents=True)
    repo = DvcRepo(root, "")
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.name", runner[0])
    repo.git("config", "user.email", runner[1])
    repo.dvc("init", "-q")
    key = KeyStore(home).generate(runner[0], runner[1])
    repo.keyid = key.keyid
    ledger = Ledger.init(root)
    ledger.append(KeyStore(home).load_signer(), "identity", {"key": key.keyid, "name": runner[0], "email": runner[1]})
    ledger.close()
    return repo


def _commit_as(repo: DvcRepo, message: str, name: str, email: str) -> None:
    repo.git("add", "-A")
    repo.git("commit", "-qm", message, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email)


@dataclass
class Template:
    root: Path
    home: Path


def build_oracle(root: Path, home: Path, k: int) -> Oracle:
    repo = _init(root, home)
    repo.write("train.py", ORACLE_TRAIN)
    repo.write("dvc.yaml", ORACLE_PIPELINE)
    repo.commit("pipeline")
    repo.openledger("dvc", "install")
    repo.commit("record every repro")
    weights = [1.5 * (i + 1) for i in range(k)]
    for i, w in enumerate(weights):
        repo.write(f"data/w{i}.txt", f"w {w}\n")
        if i in TEAM:
            repo.write(f"data/part{i}.txt", f"part {'abc'[i]}\n")
        repo.dvc("add", "-q", "data")
        _commit_as(repo, f"data of player {i}", f"Player {i}", f"p{i}@example.org")
    repo.dvc("repro", "-q")
    repo.commit("trained")
    return Oracle(repo, k, weights)


# The planted classifier: breast-cancer data (bundled with scikit-learn), a random forest whose seed is a DVC
# param, accuracy on a held-out test set in the repository. Five contributors: two with clean rows, one whose
# labels are 90% flipped, one who commits byte-identical copies of the first one's files, one with rows of
# noise (random features around the data's mean, random labels).
PLANTED_TRAIN = """\
import json, os, sys
import numpy as np
import yaml
from sklearn.ensemble import RandomForestClassifier
seed = yaml.safe_load(open("params.yaml"))["seed"]
rows = [np.loadtxt(os.path.join("data", f), delimiter=",", ndmin=2) for f in sorted(os.listdir("data"))]
train = np.vstack(rows)
test = np.loadtxt("test.csv", delimiter=",", ndmin=2)
if len(set(train[:, -1])) < 2:
    sys.exit("one class only: nothing to learn")
model = RandomForestClassifier(n_estimators=30, max_depth=5, random_state=seed).fit(train[:, :-1], train[:, -1])
json.dump({"accuracy": float((model.predict(test[:, :-1]) == test[:, -1]).mean())}, open("metrics.json", "w"))
"""
PLANTED_PIPELINE = """\
stages:
  train:
    cmd: python train.py
    deps:
    - data
    - test.csv
    - train.py
    params:
    - seed
    metrics:
    - metrics.json:
        cache: false
"""
PLANTED = {"clean-a": ("Ada Clean", "ada@example.org"), "clean-b": ("Bob Clean", "bob@example.org"),
           "flipper": ("Fay Flipper", "fay@example.org"), "copier": ("Cody Copier", "cody@example.org"),
           "noise": ("Nina Noise", "nina@example.org")}


def _csv(rows: object) -> str:
    import numpy as np

    return "\n".join(",".join(f"{v:.6g}" for v in row) for row in np.asarray(rows)) + "\n"


def build_planted(root: Path, home: Path) -> tuple[DvcRepo, float]:
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(labels))
    test, rest = order[:200], order[200:]
    rows = np.column_stack([features, labels])
    flipped = rows[rest[120:200]].copy()
    flip = rng.rand(len(flipped)) < 0.9
    flipped[flip, -1] = 1 - flipped[flip, -1]
    centre, spread = features[rest].mean(0), features[rest].std(0)
    noise = np.column_stack([centre + spread * rng.randn(60, features.shape[1]), rng.randint(0, 2, 60)])
    chance = float(max(labels[test].mean(), 1 - labels[test].mean()))  # a model that learned nothing
    repo = _init(root, home)
    repo.write("train.py", PLANTED_TRAIN)
    repo.write("dvc.yaml", PLANTED_PIPELINE)
    repo.write("params.yaml", "seed: 0\n")
    repo.write("test.csv", _csv(rows[test]))
    repo.commit("pipeline")
    repo.openledger("dvc", "install")
    config = root / ".openledger" / "config.yaml"
    config.write_text(config.read_text() + f"attribution:\n  baseline: {chance}\n")
    repo.commit("record every repro; the empty coalition scores chance")
    files = {"clean-a": [rows[rest[:30]], rows[rest[30:60]]], "clean-b": [rows[rest[60:90]], rows[rest[90:120]]],
             "flipper": [flipped[:40], flipped[40:]], "noise": [noise]}
    for who in ("clean-a", "clean-b", "flipper", "copier", "noise"):
        if who == "copier":  # byte-identical copies of Ada's files, under other names
            for i in range(2):
                shutil.copyfile(root / "data" / f"clean-a-{i}.csv", root / "data" / f"copy-{i}.csv")
        else:
            for i, chunk in enumerate(files[who]):
                repo.write(f"data/{who}-{i}.csv", _csv(chunk))
        repo.dvc("add", "-q", "data")
        _commit_as(repo, f"data from {who}", *PLANTED[who])
    repo.dvc("repro", "-q")
    repo.commit("trained")
    return repo, chance


def _template(factory: pytest.TempPathFactory, name: str) -> tuple[Path, Path]:
    base = factory.mktemp(name)
    return base / "repo", base / "home"


@pytest.fixture(scope="session")
def oracle_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Template]]:
    """Oracle projects by number of players, built on first use."""
    built: dict[int, Template] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, k: int) -> Template:
            root, home = _template(tmp_path_factory, f"oracle{k}")
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("OPENLEDGER_HOME", str(home))
                build_oracle(root, home, k)
            built[k] = Template(root, home)
            self[k] = built[k]
            return built[k]

    yield Lazy()


def copy_project(template: Template, dest: Path, home: Path) -> DvcRepo:
    """A copy of a template project, its runner's key in this test's key home."""
    shutil.copytree(template.root, dest, symlinks=True)
    shutil.copytree(template.home, home, dirs_exist_ok=True)
    return DvcRepo(dest, KeyStore(home).list()[0].keyid)


@pytest.fixture
def oracle(oracle_templates: dict[int, Template], tmp_path: Path, isolated_environment: Path) -> Oracle:
    """The four-player oracle, a fresh copy."""
    repo = copy_project(oracle_templates[4], tmp_path / "oracle", isolated_environment)
    return Oracle(repo, 4, [1.5 * (i + 1) for i in range(4)])


@pytest.fixture(scope="session")
def planted_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, float]:
    root, home = _template(tmp_path_factory, "planted")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLEDGER_HOME", str(home))
        _, chance = build_planted(root, home)
    return Template(root, home), chance


def attribution_json(result: str) -> dict:  # type: ignore[type-arg]
    data = json.loads(result)
    assert isinstance(data, dict)
    return data
