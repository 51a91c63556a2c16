"""The story end to end, as a user would type it.

A temporary git repository; two contributors, each with a key of their own; Bob records the data he
supplied; Ada trains a real scikit-learn model with an unchanged MLflow script through
``MLFLOW_TRACKING_URI=ledger+sqlite:///mlflow.db``, which signs the run and the registered model version
into the ledger; a review and a piece of feedback; `verify`; then one object tampered with and the
failing `verify` that names it, and a truncated history caught against a checkpoint. Every step runs the
real commands in subprocesses and prints what they printed.

Run it with `make demo` (or `python examples/demo.py` inside the project's virtualenv).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
OPENLEDGER = shutil.which("openledger", path=str(BIN)) or "openledger"


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def sh(*args: str, cwd: Path, env: dict[str, str], check: bool = True,
       show: bool = True) -> subprocess.CompletedProcess[str]:
    if show:
        words = ["openledger" if a == OPENLEDGER else a for a in args]
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


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="openledger-demo-"))
    repo = workdir / "wine-project"
    repo.mkdir()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLEDGER_")}
    base_env.update(COLUMNS="150", GIT_AUTHOR_NAME="Demo", GIT_AUTHOR_EMAIL="demo@example.org",
                    GIT_COMMITTER_NAME="Demo", GIT_COMMITTER_EMAIL="demo@example.org")
    ada = dict(base_env, OPENLEDGER_HOME=str(workdir / "ada-keys"))
    bob = dict(base_env, OPENLEDGER_HOME=str(workdir / "bob-keys"))
    try:
        banner("A repository and two contributors, each with their own key (kept outside the repository)")
        sh("git", "init", "-q", "-b", "main", cwd=repo, env=ada)
        (repo / ".gitignore").write_text("mlflow.db\nmlruns/\n")
        sh(OPENLEDGER, "keys", "generate", "--name", "Ada Lovelace", "--email", "ada@example.org", cwd=repo, env=ada)
        sh(OPENLEDGER, "init", cwd=repo, env=ada)
        sh(OPENLEDGER, "keys", "generate", "--name", "Bob Dylan", "--email", "bob@example.org", cwd=repo, env=bob)

        banner("Bob supplies a dataset; Ada trains a model with plain MLflow, through the ledger+ tracking URI")
        dataset = sh(OPENLEDGER, "record", "dataset", "--body",
                     json.dumps({"path": "data/wine.csv", "digest": "md5:" + "5d41402abc4b2a76b9719d911017c592",
                                 "description": "178 wines, 13 chemical measurements"}),
                     cwd=repo, env=bob).stdout.strip()
        shutil.copy(Path(__file__).with_name("train.py"), repo / "train.py")
        sh("git", "add", "train.py", cwd=repo, env=ada, show=False)
        sh("git", "commit", "-qm", "training script", cwd=repo, env=ada, show=False)
        tracking = dict(ada, MLFLOW_TRACKING_URI="ledger+sqlite:///mlflow.db", GIT_PYTHON_REFRESH="quiet")
        print("\033[36mada$ MLFLOW_TRACKING_URI=ledger+sqlite:///mlflow.db python train.py\033[0m", flush=True)
        trained = sh(sys.executable, "train.py", cwd=repo, env=tracking, show=False)
        print(trained.stdout, end="")
        run = next(r for r in json.loads(sh(OPENLEDGER, "log", "--kind", "run", "--format", "json", cwd=repo,
                                             env=ada, show=False).stdout))
        model = next(r for r in json.loads(sh(OPENLEDGER, "log", "--kind", "model", "--format", "json", cwd=repo,
                                               env=ada, show=False).stdout))
        sh(OPENLEDGER, "show", run["id"][:19], cwd=repo, env=ada)
        sh(OPENLEDGER, "show", model["id"][:19], cwd=repo, env=ada)
        run = run["id"]

        banner("Bob reviews the run; Bob reports a mislabelled row in his data")
        sh(OPENLEDGER, "record", "review", "--link", run, "--body",
           json.dumps({"decision": "approve", "target": "model:wine-classifier@1", "message": "metrics look right"}),
           cwd=repo, env=bob)
        sh(OPENLEDGER, "record", "feedback", "--link", dataset, "--body",
           json.dumps({"target": "dataset:data/wine.csv", "label": "mislabelled", "comment": "row 17 is class 2"}),
           cwd=repo, env=bob)
        sh("git", "add", "-A", cwd=repo, env=ada, show=False)
        sh("git", "commit", "-qm", "record contributions", cwd=repo, env=ada, show=False)

        banner("Who did what")
        sh(OPENLEDGER, "log", cwd=repo, env=ada)

        banner("Verify: every hash, signature, feed and signer")
        sh(OPENLEDGER, "verify", cwd=repo, env=ada)
        checkpoint = sh(OPENLEDGER, "checkpoint", cwd=repo, env=ada).stdout.strip()

        banner("Someone edits Ada's run record on disk: the accuracy becomes 0.99")
        obj = repo / ".openledger" / "objects" / run[7:9] / run[9:]
        envelope = json.loads(obj.read_text())
        payload = json.loads(base64.b64decode(envelope["payload"]))
        payload["body"]["metrics"]["accuracy"] = 0.99
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
        banner(f"Done. {where}")
        return 0
    finally:
        if os.environ.get("OPENLEDGER_DEMO_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
