"""The story end to end, as a user would type it.

A temporary git repository with DVC; two contributors, each with a key of their own. Bob and Ada each add
part of the data with `dvc add` and commit it (the post-commit hook signs a dataset record crediting each of
them for their own files); Ada adds a DVC pipeline (prepare -> train -> evaluate) whose training stage is an
unchanged MLflow script logging through ``MLFLOW_TRACKING_URI=ledger+sqlite:///mlflow.db``; one
`openledger dvc install`, then `dvc repro` signs a stage record per stage, joined to the MLflow run and the
registered model version; a param change re-records only the stages it affected; a promotion gate that
fails until someone other than the trainer approves, then sets the MLflow alias; feedback on the data;
the contributor table; `openledger attribute`, which re-runs the pipeline on every coalition of the two
contributors as DVC experiments and prints what each one's wines are worth to the model, the contributor
report crediting by that measurement and a reward pool split by it; the provenance reports (Markdown and
HTML, kept in ``demo-output/``);
`reconcile` and what `openledger ci` runs, then a metric edited in the tracking database that `reconcile`
names; `verify`; then one object tampered with and the failing `verify` that names it, and a truncated
history caught against a checkpoint. Every step runs the real commands in subprocesses and prints their output.

Run it with `make demo` (or `python examples/demo.py` inside the project's virtualenv).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
OPENLEDGER = shutil.which("openledger", path=str(BIN)) or "openledger"
DVC = shutil.which("dvc", path=str(BIN)) or "dvc"
PIPELINE = Path(__file__).with_name("wine-pipeline")
OUTPUT = Path.cwd() / "demo-output"  # the reports, kept after the demo (make demo runs in the project root)


def banner(text: str) -> None:
    if not QUIET["on"]:
        print(f"\n\033[1m== {text}\033[0m", flush=True)


QUIET = {"on": False}  # build(show=False): the test suite builds the same project without printing


def sh(*args: str, cwd: Path, env: dict[str, str], check: bool = True,
       show: bool = True) -> subprocess.CompletedProcess[str]:
    show = show and not QUIET["on"]
    if show:
        words = [{OPENLEDGER: "openledger", DVC: "dvc"}.get(a, a) for a in args]
        shown = " ".join(a if " " not in a and "{" not in a else f"'{a}'" for a in words)
        person = Path(env.get("OPENLEDGER_HOME", "")).name.removesuffix("-keys")
        print(f"\033[36m{person}$ {shown}\033[0m", flush=True)
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if show:
        sys.stdout.write(result.stdout)
        sys.stdout.write(result.stderr)
        if result.returncode:
            print(f"(exit code {result.returncode})")
    if check and result.returncode:
        raise SystemExit(f"demo step failed: {' '.join(args)}")
    return result


@dataclass
class Project:
    repo: Path
    ada: dict[str, str]  # the environment each person works in (their own key home, git identity)
    bob: dict[str, str]
    run: str  # the first run's record id


def build(workdir: Path, *, show: bool = True) -> Project:
    """The project up to a reviewed, promoted model: everything the reports are about."""
    QUIET["on"] = not show
    repo = workdir / "wine-project"
    repo.mkdir()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLEDGER_")}
    base_env.update(COLUMNS="150", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    DVC_NO_ANALYTICS="1")
    ada = dict(base_env, OPENLEDGER_HOME=str(workdir / "ada-keys"), GIT_AUTHOR_NAME="Ada Lovelace",
               GIT_AUTHOR_EMAIL="ada@example.org", GIT_COMMITTER_NAME="Ada Lovelace",
               GIT_COMMITTER_EMAIL="ada@example.org")
    bob = dict(base_env, OPENLEDGER_HOME=str(workdir / "bob-keys"), GIT_AUTHOR_NAME="Bob Dylan",
               GIT_AUTHOR_EMAIL="bob@example.org", GIT_COMMITTER_NAME="Bob Dylan",
               GIT_COMMITTER_EMAIL="bob@example.org")
    banner("A repository with DVC, and two contributors with their own keys (kept outside the repository)")
    sh("git", "init", "-q", "-b", "main", cwd=repo, env=ada)
    sh(DVC, "init", "-q", cwd=repo, env=ada)
    (repo / ".gitignore").write_text("mlflow.db\nmlruns/\n")
    sh(OPENLEDGER, "keys", "generate", "--name", "Ada Lovelace", "--email", "ada@example.org", cwd=repo, env=ada)
    sh(OPENLEDGER, "init", cwd=repo, env=ada)
    sh(OPENLEDGER, "keys", "generate", "--name", "Bob Dylan", "--email", "bob@example.org", cwd=repo, env=bob)
    sh(OPENLEDGER, "keys", "publish", cwd=repo, env=bob)
    sh(OPENLEDGER, "dvc", "install", cwd=repo, env=ada)
    sh("git", "add", "-A", cwd=repo, env=ada, show=False)
    sh("git", "commit", "-qm", "DVC and OpenLedger", cwd=repo, env=ada, show=False)

    banner("Bob and Ada each add wines with `dvc add`; the post-commit hook credits each for their files")
    sh(sys.executable, str(PIPELINE / "make_data.py"), "1", "data/raw", cwd=repo, env=bob, show=False)
    sh(DVC, "add", "-q", "data/raw", cwd=repo, env=bob)
    sh("git", "add", "data/raw.dvc", "data/.gitignore", cwd=repo, env=bob, show=False)
    sh("git", "commit", "-qm", "wines from the first survey", cwd=repo, env=bob)
    sh(sys.executable, str(PIPELINE / "make_data.py"), "2", "data/raw", cwd=repo, env=ada, show=False)
    sh(DVC, "add", "-q", "data/raw", cwd=repo, env=ada)
    sh("git", "commit", "-qam", "wines from the second survey", cwd=repo, env=ada)

    banner("Ada adds a pipeline (prepare -> train -> evaluate); `openledger dvc install` adds the record stage")
    for item in PIPELINE.iterdir():
        if item.name != "make_data.py" and item.is_file():
            shutil.copy(item, repo / item.name)
    sh(OPENLEDGER, "dvc", "install", cwd=repo, env=ada)
    sh("git", "add", "-A", cwd=repo, env=ada, show=False)
    sh("git", "commit", "-qm", "wine pipeline", cwd=repo, env=ada, show=False)

    banner("`dvc repro`: the training stage logs to MLflow through ledger+sqlite; every stage is signed")
    tracking = dict(ada, MLFLOW_TRACKING_URI="ledger+sqlite:///mlflow.db", GIT_PYTHON_REFRESH="quiet")
    sh(DVC, "repro", cwd=repo, env=tracking)
    sh("git", "add", "-A", cwd=repo, env=ada, show=False)
    sh("git", "commit", "-qm", "reproduce", cwd=repo, env=ada)

    banner("Lineage: model version -> MLflow run -> DVC stage -> dataset version -> who supplied it")
    records = json.loads(sh(OPENLEDGER, "log", "--format", "json", cwd=repo, env=ada, show=False).stdout)
    run = next(r for r in records if r["kind"] == "run")["id"]
    train = next(r for r in records if r["kind"] == "stage" and r["body"]["name"] == "train")
    dataset = [r for r in records if r["kind"] == "dataset"][-1]["id"]
    sh(OPENLEDGER, "show", next(r for r in records if r["kind"] == "model")["id"][:19], cwd=repo, env=ada)
    sh(OPENLEDGER, "show", train["id"][:19], cwd=repo, env=ada)
    sh(OPENLEDGER, "show", dataset[:19], cwd=repo, env=ada)

    banner("A param change: `dvc repro` records only the stages it affected")
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("C: 0.8", "C: 0.3"))
    sh(DVC, "repro", "-q", cwd=repo, env=tracking)
    sh(OPENLEDGER, "dvc", "status", cwd=repo, env=ada)

    sh("git", "add", "-A", cwd=repo, env=ada, show=False)
    sh("git", "commit", "-qm", "retrain with C=0.3", cwd=repo, env=ada, show=False)

    banner("A promotion gate: one approval from someone other than the trainer (the default policy)")
    registry = dict(ada, MLFLOW_TRACKING_URI="sqlite:///mlflow.db")
    sh(OPENLEDGER, "gate", "model", "wine-classifier@2", "--promote", "champion", cwd=repo, env=registry,
       check=False)
    sh(OPENLEDGER, "review", "approve", "model:wine-classifier@2", "-m", "held-out accuracy is fine",
       cwd=repo, env=dict(registry, OPENLEDGER_HOME=bob["OPENLEDGER_HOME"]))
    sh(OPENLEDGER, "gate", "model", "wine-classifier@2", "--promote", "champion", cwd=repo, env=registry)
    sh(OPENLEDGER, "feedback", "dataset:data/raw", "--label", "mislabelled", "-m", "row 17 is class 2",
       cwd=repo, env=dict(registry, OPENLEDGER_HOME=bob["OPENLEDGER_HOME"]))
    sh("git", "add", "-A", cwd=repo, env=ada, show=False)
    sh("git", "commit", "-qm", "review and promotion", cwd=repo, env=ada, show=False)

    return Project(repo, ada, bob, run)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="openledger-demo-"))
    try:
        project = build(workdir)
        repo, ada, run = project.repo, project.ada, project.run
        banner("Who did what")
        sh(OPENLEDGER, "log", cwd=repo, env=ada)

        banner("Who helped make it good: credit per contributor, every number backed by record ids")
        sh(OPENLEDGER, "report", "contributors", "--model", "wine-classifier", cwd=repo, env=ada)

        banner("Counting is not impact: re-run the pipeline without each contributor's wines and measure")
        config = repo / ".openledger" / "config.yaml"
        config.write_text(config.read_text() + "attribution:\n  baseline: 0.4  # what a model that learned "
                          "nothing scores: the share of the most common class\n")
        print("config.yaml: attribution.baseline = 0.4")
        sh(OPENLEDGER, "attribute", "wine-classifier@2", "-j", "2", cwd=repo, env=ada)
        sh(DVC, "exp", "show", "--no-pager", "--only-changed", cwd=repo, env=ada)
        sh("git", "add", "-A", cwd=repo, env=ada, show=False)
        sh("git", "commit", "-qm", "measured attribution", cwd=repo, env=ada, show=False)
        banner("The contributor report now credits version 2 by measurement (the heuristic is labelled as such)")
        sh(OPENLEDGER, "report", "contributors", "--model", "wine-classifier", cwd=repo, env=ada)
        banner("A reward pool of 1000, split in proportion to positive measured value")
        sh(OPENLEDGER, "report", "contributors", "--model", "wine-classifier", "--pool", "1000", "--format", "csv",
           cwd=repo, env=ada)

        banner("The provenance of the promoted model, for a pull request (Markdown) and a browser (HTML)")
        OUTPUT.mkdir(exist_ok=True)
        for fmt in ("md", "html"):
            sh(OPENLEDGER, "report", "model", "wine-classifier@champion", "--format", fmt, "-o",
               str(OUTPUT / f"provenance.{fmt}"), cwd=repo, env=ada)
        sh(OPENLEDGER, "report", "contributors", "--format", "html", "-o", str(OUTPUT / "contributors.html"),
           cwd=repo, env=ada)
        markdown = (OUTPUT / "provenance.md").read_text()
        print(markdown[:markdown.index("## Datasets")].rstrip() + "\n…")

        banner("Reconcile: the ledger against MLflow, dvc.lock and git")
        plain = dict(ada, MLFLOW_TRACKING_URI="sqlite:///mlflow.db")
        sh(OPENLEDGER, "reconcile", "--strict", cwd=repo, env=plain)
        banner("What CI runs: verify, reconcile, gate @champion, credit (read-only here: no checkpoint)")
        config.write_text(config.read_text() + "ci:\n  models: [wine-classifier@champion]\n")
        sh(OPENLEDGER, "ci", "--no-checkpoint", "--summary", str(OUTPUT / "ci-summary.md"), cwd=repo, env=plain)
        sh("git", "checkout", "-q", "--", ".openledger/config.yaml", cwd=repo, env=ada, show=False)

        banner("Someone with access to the tracking database raises the accuracy of version 1's run")
        first_run = json.loads(sh(OPENLEDGER, "show", run, "--format", "json", cwd=repo, env=ada,
                                  show=False).stdout)["body"]["run_id"]
        with sqlite3.connect(repo / "mlflow.db") as db:
            db.execute("UPDATE latest_metrics SET value = 0.999 WHERE run_uuid = ? AND key = 'accuracy'",
                       (first_run,))
        print(f"sqlite3 mlflow.db: accuracy of run {first_run} set to 0.999")
        result = sh(OPENLEDGER, "reconcile", "--strict", cwd=repo, env=plain, check=False)
        if result.returncode != 1 or "metric accuracy was signed as" not in result.stdout:
            raise SystemExit("demo expected reconcile to name the edited metric")

        banner("Verify: every hash, signature, feed and signer")
        sh(OPENLEDGER, "verify", cwd=repo, env=ada)
        checkpoint = sh(OPENLEDGER, "checkpoint", cwd=repo, env=ada).stdout.strip()

        banner("Someone edits Ada's run record on disk: its training accuracy becomes 0.99")
        obj = repo / ".openledger" / "objects" / run[7:9] / run[9:]
        envelope = json.loads(obj.read_text())
        payload = json.loads(base64.b64decode(envelope["payload"]))
        payload["body"]["metrics"]["train_accuracy"] = 0.99
        payload = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        envelope["payload"] = base64.b64encode(payload).decode()
        obj.chmod(0o644)
        obj.write_text(json.dumps(envelope, separators=(",", ":"), sort_keys=True))
        print(f"edited {obj.relative_to(repo)}")
        result = sh(OPENLEDGER, "verify", cwd=repo, env=ada, check=False)
        if result.returncode != 1 or run not in result.stdout:
            raise SystemExit("demo expected verify to fail and name the tampered record")

        banner("And a truncated history is caught against a checkpoint kept outside the repository")
        sh("git", "checkout", "-q", "--", ".openledger", cwd=repo, env=ada, show=False)
        cp_path = repo / ".openledger" / "objects" / checkpoint[7:9] / checkpoint[9:]
        cp_path.unlink()
        print(f"deleted the newest record ({checkpoint[:19]}…)")
        sh(OPENLEDGER, "verify", cwd=repo, env=ada, check=False)
        result = sh(OPENLEDGER, "verify", "--against", checkpoint, cwd=repo, env=ada, check=False)
        if result.returncode != 1:
            raise SystemExit("demo expected verify --against to fail")
        keep = os.environ.get("OPENLEDGER_DEMO_KEEP") == "1"
        where = f"The demo repository is in {repo}" if keep else "Set OPENLEDGER_DEMO_KEEP=1 to keep it."
        banner(f"Done. Reports: {OUTPUT}/provenance.md, provenance.html, contributors.html, ci-summary.md. {where}")
        return 0
    finally:
        if os.environ.get("OPENLEDGER_DEMO_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
