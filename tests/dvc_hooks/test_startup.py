"""What the processes `dvc repro` and `git commit` start import: only what they use.

The record stage runs on every repro and the post-commit hook on every commit, so report rendering, MLflow,
DVC's own Python API and gitpython stay out of them (docs/design.md, "The CLI"). This is a test on imports,
not on time: the real command runs in a real DVC repository, in a fresh interpreter that then lists
``sys.modules`` (`python -X importtime` does not show modules loaded through ``importlib.import_module``, as
the CLI loads its commands).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.dvc_hooks.conftest import DvcRepo

# Modules (and their submodules) the two hot commands must not import.
NOT_ON_THE_HOT_PATH = ("rich.markdown", "markdown_it", "openledger_cli.report", "openledger_cli.review",
                       "openledger_cli.ci", "openledger_cli.export", "openledger_cli.reconcile", "mlflow",
                       "mlflow_plugin", "dvc", "git", "openledger.store.verify", "openledger.lineage.reconcile")


# Runs the CLI as the `openledger` entry point does, then prints every module the process imported.
RUN_AND_LIST = """
import json, sys
from openledger_cli.main import cli
try:
    cli(sys.argv[1:], prog_name="openledger")
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)))
"""


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in NOT_ON_THE_HOT_PATH))


def run_and_list_modules(repo: DvcRepo, *args: str, **env: Any) -> tuple[set[str], str]:
    """The modules the command imported, and what it said on stderr."""
    result = repo.run(sys.executable, "-c", RUN_AND_LIST, *args, **env)
    return set(json.loads(result.stdout.splitlines()[-1])), result.stderr


def test_the_record_stage_imports_only_what_it_uses(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.dvc("repro")
    pipeline.write("data/c.txt", "row c\n")  # a new dataset version: its history is walked and credited
    pipeline.dvc("add", "-q", "data")
    pipeline.write("params.yaml", "lr: 0.2\n")
    pipeline.dvc("repro", "train")  # dvc.lock changes; the record stage (downstream) does not run
    # as DVC runs it: from the pipeline's directory, with DVC's variables
    modules, stderr = run_and_list_modules(pipeline, "dvc", "record-stage", DVC_STAGE="openledger-record",
                                           DVC_ROOT=str(pipeline.root))
    assert "openledger: recorded 1 dataset record, 2 stage records (prepare, train)" in stderr  # the work ...
    assert {"openledger_cli.dvc", "dvc_hooks.record", "openledger.store.ledger"} <= modules  # ... was done here
    assert heavy(modules) == []


def test_the_post_commit_hook_imports_only_what_it_uses(pipeline: DvcRepo) -> None:
    pipeline.openledger("dvc", "install")
    pipeline.dvc("repro")
    pipeline.git("add", "-A")
    pipeline.git("-c", "core.hooksPath=/dev/null", "commit", "-qm", "reproduce")  # the hook runs below instead
    modules, stderr = run_and_list_modules(pipeline, "dvc", "post-commit")
    assert "bound" in stderr
    assert "dvc_hooks.record" in modules
    assert heavy(modules) == []
    # read from git without gitpython, the binding still names the commit as git does
    [binding] = pipeline.records("commit")
    head = pipeline.git("log", "-1", "--format=%H %P|%an|%ae").strip()
    sha_and_parents, name, email = head.split("|")
    assert [binding.body["commit"], *binding.body["parents"]] == sha_and_parents.split()
    assert binding.body["author"] == {"name": name, "email": email}
    assert binding.body["branch"] == "main"
