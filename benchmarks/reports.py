"""Report performance: ``openledger report contributors`` and ``report model`` on generated ledgers.

    make bench                                    # 10k, 30k and 100k records
    python benchmarks/reports.py --sizes 10000 --rounds 3 [--keep DIR] [--json FILE]

The issue's target: on a ledger of 100k records (1k runs, 200 contributors, 50 model versions) both commands
finish in under 5 s, and their time grows no faster than linearly from 10k to 100k records.

**The ledger** is written with the real :meth:`Ledger.append_many` and real keys
(:func:`openledger.store.keys.signer_from_seed`) inside a real temporary git repository, in ten "weeks" of team
work, each record in the shape the real capture writes it (every body is checked against its schema by the
append):

* 200 contributors, each with a self-signed ``identity`` record (60% supply data, 15% write the code, 15%
  train, 10% review; everyone labels), and the MLflow server's key, which signs captured trace feedback;
* git commits by the code authors to ``src/*.py`` and ``params.yaml`` (real commits the runs and stages name,
  so the report's ``git log`` for the training code's authors runs on a real history);
* ``dataset`` versions of DVC-tracked shards (``dvc_hooks/record.py``: contributors with per-file ``paths``),
  one new version of every shard per week;
* per MLflow run (``mlflow_plugin/capture.py`` ``run_body``: params, metrics, dataset inputs whose digests are
  the shards' dataset records, git commit): a ``run`` record, then the ``prepare`` -> ``featurize`` ->
  ``train`` ``stage`` records of its ``dvc exp run``, linking the dataset records, the upstream stage records
  and (train) claiming the run;
* ``model`` versions (``model_body``) of three model names, each linked to its run, some promoted;
* ``review`` and CLI ``feedback`` records on models, runs and dataset versions (``openledger_cli/review.py``),
  human assessments captured on the runs' traces (``mlflow_plugin/feedback.py``), which make up most of the
  ledger, and one ``commit`` record per git commit binding the records written before it (post-commit hook).

Counts scale with the size (at 100k: 1,000 runs, 50 model versions, 1,000 dataset versions, 3,000 stage
records, ~4,100 reviews, ~90,000 feedback records, 200 commits); the 200 contributors stay. Each lineage has
the same shape at every size, so linear growth is what a correct implementation should show.

**Measured**, for each size, as a user runs them (a subprocess, in the repository): the two commands with
``--format json`` (``report model`` on the newest version of the biggest model), first once right after
generation ("cold": index built, OS caches warm from the writes), then the median of ``--rounds`` runs;
the baseline, measured in the same rounds, is a subprocess that opens the ledger and runs
:meth:`Ledger.scan` over the report kinds (what every report must read). Printed: a table of wall seconds
with CPU seconds beside them (user + system of the process and its git children: steadier than wall time on
a shared machine), each command's time over the scan's, each command's growth over the record growth from
the smallest to the largest size (1.0 = linear), and the CPU cost of each added record between successive
sizes (flat = linear; the ratio alone is flattered by fixed costs such as interpreter start-up).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

from dvc_hooks.history import MAX_LISTED_PATHS
from openledger import Draft, Ledger
from openledger.lineage.joins import (
    assessment_key,
    dataset_key,
    dvc_run_key,
    dvc_stage_key,
    model_version_key,
    run_key,
    trace_key,
)
from openledger.store.keys import Signer, signer_from_seed

WEEKS = 10
MODEL_NAMES = ("fraud-detector", "churn-model", "ranker")
NAME_CYCLE = (0, 1, 0, 2, 0, 1, 0, 2, 0, 1)  # 5 : 3 : 2 versions (25, 15 and 10 of 50)
CODE_FILES = ("src/prepare.py", "src/features.py", "src/train.py", "src/model.py", "params.yaml")
TRAIN_DEPS = ("src/train.py", "src/model.py", "params.yaml")
SHARDS_PER_RUN = 3
FILES_PER_VERSION = 20  # files a week adds to a shard
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
SNIPPET_SCAN = ("from openledger.lineage.graph import LINEAGE_KINDS; from openledger.store.ledger import Ledger; "
                "print(len(Ledger.open().scan(LINEAGE_KINDS)))")


def hexdigest(*parts: object, length: int = 32) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Mix:
    """How many of each thing a ledger of ``records`` holds; 100k is the issue's 1k runs and 50 versions."""

    records: int
    contributors: int = 200
    model_versions: int | None = None  # default: 50 per 100k records

    @property
    def scale(self) -> float:
        return self.records / 100_000

    @property
    def runs(self) -> int:
        return max(WEEKS, round(1000 * self.scale))

    @property
    def models(self) -> int:
        return self.model_versions or max(3, round(50 * self.scale))

    @property
    def shards(self) -> int:
        return max(SHARDS_PER_RUN, round(100 * self.scale))

    @property
    def git_commits(self) -> int:
        return max(2 * WEEKS, round(200 * self.scale))

    def fixed(self) -> dict[str, int]:
        """Every count but the captured trace feedback, which fills the ledger up to ``records``."""
        datasets = self.shards * WEEKS
        return {"identity": self.contributors + 1, "dataset": datasets, "run": self.runs, "stage": 3 * self.runs,
                "model": self.models + self.promotions(), "review": 2 * (self.runs + datasets + self.models),
                "feedback": 5 * datasets + 10 * self.models, "commit": self.git_commits}

    def promotions(self) -> int:
        counts = [0] * len(MODEL_NAMES)
        for i in range(self.models):
            counts[NAME_CYCLE[i % len(NAME_CYCLE)]] += 1
        return sum(count // 5 for count in counts)

    @property
    def trace_feedback(self) -> int:
        return max(0, self.records - sum(self.fixed().values()))


@dataclass
class Person:
    index: int
    signer: Signer
    name: str
    email: str


@dataclass
class Built:
    """A generated ledger: where it is, and what to ask the reports about."""

    repo: Path
    records: int
    counts: dict[str, int]
    model_target: str  # NAME@VERSION: the newest version of the biggest model
    model_versions: int
    seconds: float


@dataclass
class _Shard:
    path: str
    owners: list[int]
    files: dict[str, int] = field(default_factory=dict)  # relative file path -> contributor index
    commits: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    digest: str = ""
    record: str = ""


class LedgerBuilder:
    """Writes the ledger of one :class:`Mix` week by week (see the module docstring)."""

    def __init__(self, repo: Path, mix: Mix, seed: int = 7) -> None:
        self.repo = repo
        self.mix = mix
        self.random = random.Random(seed)
        self.ledger = Ledger.init(repo)
        n = mix.contributors
        self.people = [self._person(i) for i in range(n)]
        self.data_people = list(range(int(n * 0.6)))
        self.coders = list(range(int(n * 0.6), int(n * 0.75)))
        self.trainers = list(range(int(n * 0.75), int(n * 0.9)))
        self.reviewers = list(range(int(n * 0.9), n))
        self.server = signer_from_seed(hashlib.sha256(b"mlflow-server").digest(), feed="mlflow-server")
        self.clock = START
        self.commits: list[list[tuple[str, int]]] = [[] for _ in range(WEEKS)]  # week -> (sha, author)
        self.latest: dict[str, str] = {}  # link key -> newest record id linking it (stage keys, digests)
        self.unbound: list[str] = []
        self.counts: dict[str, int] = defaultdict(int)

    def _person(self, i: int) -> Person:
        signer = signer_from_seed(hashlib.sha256(f"contributor-{i}".encode()).digest(), feed=f"c{i:03d}-laptop")
        return Person(i, signer, f"Contributor {i:03d}", f"c{i:03d}@example.org")

    def tick(self, seconds: float = 37.0) -> datetime:
        self.clock += timedelta(seconds=seconds)
        return self.clock

    def append(self, signer: Signer, drafts: Sequence[Draft]) -> list[str]:
        ids = [record.id for record in self.ledger.append_many(signer, drafts)]
        for draft in drafts:
            self.counts[draft.kind] += 1
        # what the next commit record binds (like `Ledger.unreferenced("commit")`: never commit records)
        self.unbound += [rid for rid, draft in zip(ids, drafts, strict=True) if draft.kind != "commit"]
        return ids

    def append_grouped(self, batches: dict[int, list[Draft]]) -> dict[int, list[str]]:
        """One ``append_many`` per signer (a person's work of one sitting is one batch)."""
        return {who: self.append(self.people[who].signer, drafts) for who, drafts in batches.items()}

    # -- git ---------------------------------------------------------------------------------------------
    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(["git", *args], cwd=self.repo, env=env, check=True, capture_output=True, text=True)
        return result.stdout.strip()

    def make_history(self) -> None:
        """Real commits by the code authors, spread over the weeks (fixed dates: the shas are reproducible)."""
        self.git("init", "-q", "-b", "main")
        (self.repo / "src").mkdir()
        (self.repo / "dvc.yaml").write_text("stages: {}\n")
        (self.repo / ".gitignore").write_text("/data\n/models\n")
        total = self.mix.git_commits
        for k in range(total):
            week = k * WEEKS // total
            author = self.people[self.coders[(k * 7) % len(self.coders)]]
            changed = CODE_FILES if k == 0 else (CODE_FILES[k % len(CODE_FILES)], CODE_FILES[(k * 3) % 5])
            for name in changed:
                with (self.repo / name).open("a") as handle:
                    handle.write(f"# change {k} by {author.name}\n")
            when = (START + timedelta(days=7 * week, hours=k % 7 + 1)).isoformat()
            env = dict(os.environ, GIT_AUTHOR_NAME=author.name, GIT_AUTHOR_EMAIL=author.email,
                       GIT_COMMITTER_NAME=author.name, GIT_COMMITTER_EMAIL=author.email,
                       GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
            self.git("add", "-A", env=env)
            self.git("commit", "-q", "-m", f"change {k}", env=env)
            self.commits[week].append((self.git("rev-parse", "HEAD"), author.index))

    # -- the ledger --------------------------------------------------------------------------------------
    def build(self) -> None:
        self.make_history()
        for person in self.people:
            self.append(person.signer, [Draft("identity", {"key": person.signer.keyid, "name": person.name,
                                                           "email": person.email,
                                                           "git": [f"{person.name} <{person.email}>"]},
                                              time=self.tick())])
        self.append(self.server, [Draft("identity", {"key": self.server.keyid, "name": "MLflow server",
                                                     "email": "mlflow@example.org"}, time=self.tick())])
        shards = [_Shard(f"data/shard-{p:03d}", self.random.sample(self.data_people, min(8, len(self.data_people))))
                  for p in range(self.mix.shards)]
        runs_done, models_done, trace_done = 0, 0, 0
        versions = dict.fromkeys(MODEL_NAMES, 0)
        for week in range(WEEKS):
            self.clock = START + timedelta(days=7 * week, hours=12)
            self.week_datasets(week, shards)
            runs_end = (week + 1) * self.mix.runs // WEEKS
            week_runs = [self.one_run(r, week, shards) for r in range(runs_done, runs_end)]
            runs_done = runs_end
            models_end = (week + 1) * self.mix.models // WEEKS
            week_models = []
            for q, i in enumerate(range(models_done, models_end)):
                name = MODEL_NAMES[NAME_CYCLE[i % len(NAME_CYCLE)]]
                versions[name] += 1
                pool = week_runs[q * len(week_runs) // (models_end - models_done):
                                 (q + 1) * len(week_runs) // (models_end - models_done)]
                best = max(pool, key=lambda run: run["body"]["metrics"]["accuracy"])
                week_models.append(self.register(name, versions[name], best))
            models_done = models_end
            self.week_reviews_and_feedback(shards, week_runs, week_models)
            trace_end = (week + 1) * self.mix.trace_feedback // WEEKS
            self.trace_feedback(week_runs, trace_end - trace_done)
            trace_done = trace_end
            self.bind_commits(week)

    def week_datasets(self, week: int, shards: list[_Shard]) -> None:
        """A new version of every shard: FILES_PER_VERSION new files by its owners, credited per file."""
        sha = self.commits[week][0][0]
        batches: dict[int, list[Draft]] = defaultdict(list)
        for shard in shards:
            for f in range(FILES_PER_VERSION):
                owner = shard.owners[self.random.randrange(len(shard.owners))]
                shard.files[f"img/{week:02d}-{f:03d}.jpg"] = owner
                shard.commits[owner].append(sha)
            shard.digest = f"md5:{hexdigest(shard.path, week)}.dir"
            by_author: dict[int, list[str]] = defaultdict(list)
            for relpath, owner in shard.files.items():
                by_author[owner].append(relpath)
            contributors = []
            for owner, paths in by_author.items():
                person = self.people[owner]
                entry: dict[str, Any] = {"name": person.name, "email": person.email, "role": "data",
                                         "commits": sorted(set(shard.commits[owner])), "files": len(paths),
                                         "key": person.signer.keyid, "bytes": 48_000 * len(paths),
                                         "paths": sorted(paths)[:MAX_LISTED_PATHS]}
                contributors.append(entry)
            contributors.sort(key=lambda c: (-c["files"], c["email"]))
            body = {"path": shard.path, "digest": shard.digest, "dvcfile": f"{shard.path}.dvc",
                    "source": {"type": "dvc-add"}, "commit": sha, "committed": self.tick().isoformat(),
                    "contributors": contributors, "complete": True, "size": 48_000 * len(shard.files),
                    "files": len(shard.files)}
            links = [shard.digest, dataset_key(shard.path, shard.digest), *([shard.record] if shard.record else [])]
            batches[shard.owners[0]].append(Draft("dataset", body, links, time=self.tick()))
        ids = self.append_grouped(batches)
        by_digest = {draft.body["digest"]: rid for who, drafts in batches.items()
                     for draft, rid in zip(drafts, ids[who], strict=True)}
        for shard in shards:
            shard.record = by_digest[shard.digest]

    def one_run(self, r: int, week: int, shards: list[_Shard]) -> dict[str, Any]:
        """An MLflow run inside ``dvc exp run``: its run record, then the stage records of the repro."""
        trainer = self.people[self.trainers[r % len(self.trainers)]]
        commits = self.commits[week]
        runs_this_week = max(1, self.mix.runs // WEEKS)
        sha, _ = commits[min(len(commits) - 1, (r % runs_this_week) * len(commits) // runs_this_week)]
        used = [shards[(r * SHARDS_PER_RUN + k) % len(shards)] for k in range(SHARDS_PER_RUN)]
        run_id, experiment = hexdigest("run", r), f"exp-{r:05d}"
        git = {"commit": sha, "branch": "main", "dirty": False}
        start = self.tick(600)
        accuracy = round(0.70 + 0.02 * week + self.random.uniform(-0.03, 0.03), 4)
        inputs = [{"name": shard.path, "digest": shard.digest.removesuffix(".dir")[:36], "source_type": "dvc",
                   "source": json.dumps({"path": shard.path, "rev": None, "repo": None, "hash": shard.digest}),
                   "context": "training"} for shard in used]
        body: dict[str, Any] = {
                "run_id": run_id, "run_name": f"{experiment}-train", "experiment_id": "3", "status": "FINISHED",
                "start_time": start.isoformat(), "end_time": self.tick(900).isoformat(),
                "user_id": trainer.email.partition("@")[0], "backend": "sqlite",
                "params": {"C": str(round(0.1 * (r % 10 + 1), 1)), "max_depth": str(r % 8 + 2),
                           "n_estimators": str(100 + r % 5 * 50), "seed": str(r), "lr": "0.05",
                           "shards": ",".join(s.path for s in used)},
                "metrics": {"accuracy": accuracy, "f1": round(accuracy - 0.02, 4), "precision": 0.8,
                            "recall": round(accuracy - 0.05, 4), "loss": round(1 - accuracy, 4)},
                "metric_history_digest": f"sha256:{hexdigest('history', r, length=64)}",
                "tags": {"team": "risk"}, "inputs": inputs,
                "models": [{"model_id": f"m-{hexdigest('model', r)}", "step": 0}], "git": git,
                "dvc": {"stage": "train", "experiment": experiment}, "parent_run_id": None,
                "source": {"name": "src/train.py", "type": "LOCAL"}, "captured": "live"}
        key = run_key(run_id)
        assert key is not None
        links = [shard.digest for shard in used] + [dvc_run_key("train", experiment), key]
        run_record = self.append(trainer.signer, [Draft("run", body, links, time=self.tick())])[0]
        state = {"commit": sha, "branch": "main", "dirty": False}
        prepared = f"md5:{hexdigest('prepared', r)}.dir"
        features = f"md5:{hexdigest('features', r)}.dir"
        prepare = self.stage(trainer, "prepare", experiment, state,
                             deps=[{"path": "src/prepare.py", "hash": f"md5:{hexdigest('prep.py', sha)}", "size": 900},
                                   *({"path": s.path, "hash": s.digest, "size": 48_000 * len(s.files),
                                      "nfiles": len(s.files)} for s in used)],
                             outs=[{"path": "data/prepared", "hash": prepared, "nfiles": 3}],
                             params={"params.yaml": {"prepare.split": 0.2, "prepare.seed": r}},
                             extra_links=[s.record for s in used])
        featurize = self.stage(trainer, "featurize", experiment, state,
                               deps=[{"path": "src/features.py", "hash": f"md5:{hexdigest('feat.py', sha)}"},
                                     {"path": "data/prepared", "hash": prepared, "nfiles": 3}],
                               outs=[{"path": "data/features", "hash": features, "nfiles": 2}],
                               params={"params.yaml": {"featurize.ngrams": r % 3 + 1}}, extra_links=[prepare])
        self.stage(trainer, "train", experiment, state,
                   deps=[*({"path": p, "hash": f"md5:{hexdigest(p, sha)}"} for p in TRAIN_DEPS),
                         {"path": "data/features", "hash": features, "nfiles": 2}],
                   outs=[{"path": "models/model.pkl", "hash": f"md5:{hexdigest('pkl', r)}", "size": 120_000}],
                   params={"params.yaml": {k: body["params"][k] for k in ("C", "max_depth", "n_estimators")}},
                   extra_links=[featurize, run_record], runs=[run_id])
        return {"id": run_record, "body": body, "trainer": trainer.index}

    def stage(self, who: Person, name: str, experiment: str, state: dict[str, Any], *, deps: list[dict[str, Any]],
              outs: list[dict[str, Any]], params: dict[str, Any], extra_links: list[str],
              runs: Sequence[str] = ()) -> str:
        """A ``stage`` record as ``record_stages`` writes it, linking its previous record of the same stage."""
        key = dvc_stage_key("dvc.yaml", name)
        body = {"name": name, "dvcfile": "dvc.yaml", "cmd": f"python src/{name}.py", "deps": deps, "outs": outs,
                "params": params, "experiment": experiment,
                "lock_digest": f"sha256:{hexdigest(name, experiment, length=64)}", "git": state, "runs": list(runs)}
        links = [key, *extra_links, *(d["hash"] for d in deps if d.get("hash")),
                 *([self.latest[key]] if key in self.latest else [])]
        record = self.append(who.signer, [Draft("stage", body, sorted(set(links)), time=self.tick())])[0]
        self.latest[key] = record
        return record

    def register(self, name: str, version: int, run: dict[str, Any]) -> dict[str, Any]:
        """A registered model version, recorded by the trainer's client (``model_body``)."""
        run_id = run["body"]["run_id"]
        model_id = run["body"]["models"][0]["model_id"]
        digest = f"sha256:{hexdigest('artifact', name, version, length=64)}"
        body = {"name": name, "version": version, "run_id": run_id, "model_id": model_id,
                "source": f"models:/{model_id}",
                "artifact_location": f"mlflow-artifacts:/3/models/{model_id}/artifacts", "artifact_digest": digest,
                "user_id": run["body"]["user_id"], "tags": {}, "captured": "live"}
        links = [run_key(run_id) or "", run["id"], digest, model_version_key(name, version, model_id)]
        trainer = self.people[run["trainer"]]
        record = self.append(trainer.signer, [Draft("model", body, links, time=self.tick())])[0]
        return {"id": record, "name": name, "version": version, "run": run}

    def week_reviews_and_feedback(self, shards: list[_Shard], runs: list[dict[str, Any]],
                                  models: list[dict[str, Any]]) -> None:
        reviews: dict[int, list[Draft]] = defaultdict(list)
        feedback: dict[int, list[Draft]] = defaultdict(list)
        people = len(self.people)

        def run_links(run: dict[str, Any]) -> list[str]:
            return sorted({run["id"], run_key(run["body"]["run_id"]) or ""})

        for run in runs:
            for k in range(2):
                reviewer = self.reviewers[self.random.randrange(len(self.reviewers))]
                decision = "approve" if self.random.random() < 0.85 else "request-changes"
                body: dict[str, Any] = {
                        "decision": decision, "target": f"run:{run['body']['run_id']}", "records": [run["id"]],
                        "message": f"checked the run ({k})"}
                reviews[reviewer].append(Draft("review", body, run_links(run), time=self.tick(5)))
        for shard in shards:
            target = f"dataset:{shard.path}@{shard.digest}"
            for _ in range(2):
                reviewer = self.reviewers[self.random.randrange(len(self.reviewers))]
                body = {"decision": "approve", "target": target, "records": [shard.record], "message": "spot-checked"}
                reviews[reviewer].append(Draft("review", body, [shard.record], time=self.tick(5)))
            for _ in range(5):
                who = self.random.randrange(people)
                body = {"target": target, "records": [shard.record], "label": "mislabelled",
                        "comment": f"image {self.random.randrange(1000)} is the wrong class"}
                feedback[who].append(Draft("feedback", body, [shard.record], time=self.tick(5)))
        for model in models:
            run = model["run"]
            described = {"records": [model["id"]], "model": {"name": model["name"], "version": model["version"],
                                                             "run_id": run["body"]["run_id"],
                                                             "model_id": run["body"]["models"][0]["model_id"]}}
            links = sorted({model["id"], *run_links(run)})
            target = f"model:{model['name']}@{model['version']}"
            approvals = []
            for reviewer in self.random.sample(self.reviewers, 2):
                body = {"decision": "approve", "target": target, **described, "message": "held-out metrics fine"}
                reviews[reviewer].append(Draft("review", body, links, time=self.tick(5)))
                approvals.append((reviewer, len(reviews[reviewer]) - 1))
            model["approvals"] = approvals
            for _ in range(10):
                who = self.random.randrange(people)
                body = {"target": target, **described, "score": round(self.random.uniform(1, 5), 1)}
                feedback[who].append(Draft("feedback", body, links, time=self.tick(5)))
        review_ids = self.append_grouped(reviews)
        self.append_grouped(feedback)
        for model in models:
            if model["version"] % 5:
                continue
            approval_ids = [review_ids[who][i] for who, i in model["approvals"]]
            promoter = self.people[self.reviewers[0]]
            body = {"name": model["name"], "version": model["version"], "action": "promote", "alias": "champion",
                    "previous_version": model["version"] - 5 or None, "run_id": model["run"]["body"]["run_id"],
                    "model_id": model["run"]["body"]["models"][0]["model_id"],
                    "target": f"model:{model['name']}@{model['version']}", "approvals": approval_ids,
                    "policy": {"approvals": 2, "reviewers": ["role:reviewer"], "distinct_from": ["trainer"],
                               "block_on": ["reject"]}}
            self.append(promoter.signer, [Draft("model", body, [model["id"], *approval_ids], time=self.tick())])

    def trace_feedback(self, runs: list[dict[str, Any]], count: int) -> None:
        """Human assessments on the runs' traces, captured by the MLflow server (``assessment_body``)."""
        drafts = []
        for k in range(count):
            run = runs[k % len(runs)]
            run_id = run["body"]["run_id"]
            trace_id = f"tr-{hexdigest('trace', run_id, k // len(runs) // 4)}"
            person = self.people[self.random.randrange(len(self.people))]
            assessment_id = f"a-{hexdigest('assessment', run_id, k)}"
            value: Any = self.random.choice(("yes", "no", "partially")) if k % 3 else round(self.random.random(), 3)
            body: dict[str, Any] = {
                "target": f"trace:{trace_id}", "trace_id": trace_id, "run_id": run_id, "span_id": None,
                "assessment_id": assessment_id, "assessment_type": "feedback", "name": "correctness",
                "value": value, "source": {"type": "HUMAN", "id": person.email}, "overrides": None,
                "captured": "live", **({"label": value} if isinstance(value, str) else {"score": value})}
            if k % 7 == 0:
                body["comment"] = "the answer cites the wrong policy"
            links = [run_key(run_id) or "", run["id"], trace_key(trace_id) or "", assessment_key(assessment_id)]
            drafts.append(Draft("feedback", body, links, time=self.tick(2)))
        for start in range(0, len(drafts), 1000):
            self.append(self.server, drafts[start:start + 1000])

    def bind_commits(self, week: int) -> None:
        """The post-commit hook's ``commit`` records (``bind_commit``): each binds the records written before it."""
        commits = self.commits[week]
        parent = {sha: self.commits[w][i - 1][0] if i else None
                  for w in range(week + 1) for i, (sha, _) in enumerate(self.commits[w])}
        chunk = max(1, -(-len(self.unbound) // len(commits)))
        for sha, author_index in commits:
            bound, self.unbound = self.unbound[:chunk], self.unbound[chunk:]
            if not bound:
                continue
            author = self.people[author_index]
            previous = parent[sha] or (self.commits[week - 1][-1][0] if week else None)
            body = {"commit": sha, "parents": [previous] if previous else [], "branch": "main",
                    "author": {"name": author.name, "email": author.email}, "records": len(bound)}
            self.append(author.signer, [Draft("commit", body, bound, time=self.tick())])


def build(root: Path, records: int, contributors: int = 200, seed: int = 7, models: int | None = None) -> Built:
    """A git repository at ``root`` with a generated ledger of ``records`` records."""
    root.mkdir(parents=True, exist_ok=True)
    mix = Mix(records, contributors, models)
    started = time.perf_counter()
    builder = LedgerBuilder(root, mix, seed)
    builder.build()
    builder.ledger.close()
    biggest = MODEL_NAMES[0]
    versions = sum(1 for i in range(mix.models) if NAME_CYCLE[i % len(NAME_CYCLE)] == 0)
    return Built(root, sum(builder.counts.values()), dict(builder.counts), f"{biggest}@{versions}", mix.models,
                 time.perf_counter() - started)


# -- measuring -----------------------------------------------------------------------------------------------


def user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLEDGER_", "MLFLOW_"))}
    env["OPENLEDGER_HOME"] = str(home)
    return env


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # user + system of the subprocess: steadier than wall time on a shared machine
    peak_mib: float  # the largest resident set of the subprocess or any child it waited for


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[Timing, str]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own usage (with its children), not the total
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode("utf-8", "replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {stderr[-2000:]}")
    return Timing(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024), stdout


def commands(built: Built) -> dict[str, list[str]]:
    openledger = str(Path(sys.executable).with_name("openledger"))
    return {"scan": [sys.executable, "-c", SNIPPET_SCAN],
            "contributors": [openledger, "report", "contributors", "--format", "json"],
            "model": [openledger, "report", "model", built.model_target, "--format", "json"]}


def check_outputs(built: Built, outputs: dict[str, str]) -> None:
    """The reports ran on the whole lineage: every path the benchmark means to exercise was taken."""
    assert int(outputs["scan"]) == built.records, (outputs["scan"], built.records)
    model = json.loads(outputs["model"])
    assert model["verified"] and model["runs"] and len(model["stages"]) == 3, model["stages"]
    assert model["code"]["authors"] and model["datasets"] and model["feedback"] and model["reviews"]
    people = json.loads(outputs["contributors"])
    assert len(people["scope"]["model_versions"]) == built.model_versions
    assert people["impact"] and len(people["contributors"]) > 100


@dataclass
class SizeResult:
    records: int
    generate_seconds: float
    cold: dict[str, float]  # wall seconds of the first run after generation
    warm: dict[str, float]  # median wall seconds
    cpu: dict[str, float]  # median CPU seconds
    peak_mib: dict[str, float]  # the largest peak resident set over all runs

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def measure(built: Built, rounds: int, home: Path) -> SizeResult:
    env = user_env(home)
    argvs = commands(built)
    cold: dict[str, float] = {}
    outputs: dict[str, str] = {}
    samples: dict[str, list[Timing]] = defaultdict(list)
    for name in ("contributors", "model", "scan"):
        first, outputs[name] = timed(argvs[name], built.repo, env)
        cold[name] = first.wall
        samples[f"cold {name}"].append(first)
    check_outputs(built, outputs)
    for round_number in range(rounds):
        order = list(argvs)
        if round_number % 2:
            order.reverse()
        for name in order:
            samples[name].append(timed(argvs[name], built.repo, env)[0])
        print(f"  round {round_number + 1}: " + ", ".join(
            f"{n} {samples[n][-1].wall:.2f} s (cpu {samples[n][-1].cpu:.2f} s)" for n in argvs),
            file=sys.stderr, flush=True)
    peak = {n: max(t.peak_mib for t in [*samples[n], *samples[f"cold {n}"]]) for n in argvs}
    return SizeResult(built.records, built.seconds, cold,
                      {n: statistics.median(t.wall for t in samples[n]) for n in argvs},
                      {n: statistics.median(t.cpu for t in samples[n]) for n in argvs}, peak)


def print_table(results: list[SizeResult], rounds: int) -> None:
    print(f"\nReport benchmarks ({os.cpu_count()} cores; warm = median of {rounds} alternating rounds; "
          "each a subprocess as a user runs it)\n")
    print("| records | generate | scan (baseline) | contributors cold | contributors warm (cpu) | x scan "
          "| model cold | model warm (cpu) | x scan | peak memory (scan / contributors / model) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        scan, w, c, m = r.warm["scan"], r.warm, r.cpu, r.peak_mib
        print(f"| {r.records:,} | {r.generate_seconds:.0f} s | {scan:.2f} s ({c['scan']:.2f}) "
              f"| {r.cold['contributors']:.2f} s | {w['contributors']:.2f} s ({c['contributors']:.2f}) "
              f"| {w['contributors'] / scan:.2f} | {r.cold['model']:.2f} s | {w['model']:.2f} s ({c['model']:.2f}) "
              f"| {w['model'] / scan:.2f} | {m['scan']:.0f} / {m['contributors']:.0f} / {m['model']:.0f} MiB |")
    if len(results) >= 2:
        small, large = results[0], results[-1]
        ratio = large.records / small.records
        print(f"\nGrowth from {small.records:,} to {large.records:,} records ({ratio:.1f}x the records; "
              "1.00 = linear), warm wall time and CPU time:")
        for name in ("scan", "contributors", "model"):
            grown, grown_cpu = large.warm[name] / small.warm[name], large.cpu[name] / small.cpu[name]
            print(f"  {name:12s} {grown:5.2f}x the time = {grown / ratio:.2f} of linear; "
                  f"cpu {grown_cpu:5.2f}x = {grown_cpu / ratio:.2f} of linear")
    if len(results) >= 3:
        # Fixed costs (interpreter start, imports) flatter the ratio above; the cost of each further record,
        # between successive sizes, is the sharper test: linear growth keeps it flat.
        print("\nCPU per added record, between successive sizes (flat = linear):")
        for name in ("scan", "contributors", "model"):
            slopes = [(b.cpu[name] - a.cpu[name]) / (b.records - a.records) * 1e6 for a, b in pairwise(results)]
            steps = ", ".join(f"{a.records // 1000}k-{b.records // 1000}k {slope:.1f} µs"
                              for (a, b), slope in zip(pairwise(results), slopes, strict=True))
            print(f"  {name:12s} {steps}")
    for r in results:
        # the targets: 100k records under 5 s; 1M records under 15 s with a peak under 2 GiB
        limit = 15.0 if r.records >= 1_000_000 else 5.0 if r.records >= 100_000 else None
        if limit is None:
            continue
        for name in ("contributors", "model"):
            verdict = "met" if r.warm[name] < limit else "NOT met"
            print(f"target: {name} at {r.records:,} records under {limit:g} s: {verdict} ({r.warm[name]:.2f} s)")
            if r.records >= 1_000_000:
                verdict = "met" if r.peak_mib[name] < 2048 else "NOT met"
                print(f"target: {name} at {r.records:,} records under 2 GiB: {verdict} ({r.peak_mib[name]:.0f} MiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="Generate the ledgers here and keep them (default: a temp dir).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="openledger-report-bench-"))
    home = Path(tempfile.mkdtemp(prefix="openledger-bench-home-"))
    results = []
    try:
        for size in args.sizes:
            repo = workdir / f"repo-{size}"
            if repo.exists():
                shutil.rmtree(repo)
            print(f"generating {size:,} records…", file=sys.stderr, flush=True)
            built = build(repo, size)
            print(f"  {built.records:,} records in {built.seconds:.0f} s: {dict(sorted(built.counts.items()))}; "
                  f"report model {built.model_target}", file=sys.stderr, flush=True)
            results.append(measure(built, args.rounds, home))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    print_table(results, args.rounds)
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
