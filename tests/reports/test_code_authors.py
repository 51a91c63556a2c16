"""Code authors of many lineages at once (LedgerGraph.lineages) are git's answers for each lineage alone.

The contributors report asks git about the training code of every model version together; these tests build
real git histories (branches without merges, an annotated tag, a merge) and compare every lineage's code
authors with what a lone ``git log COMMIT -- FILES`` gives for it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from openledger import Ledger
from openledger.lineage.authorship import CodeAuthor, CodeAuthorship
from openledger.lineage.graph import LedgerGraph
from tests.conftest import git, make_signer

TRAINER = make_signer(41)
PEOPLE = {"ann": "Ann", "ben": "Ben", "cat": "Cat"}


def commit(repo: Path, who: str, *files: str) -> str:
    for name in files:
        with (repo / name).open("a") as handle:
            handle.write(f"{who} was here\n")
    env = dict(os.environ, GIT_AUTHOR_NAME=PEOPLE[who], GIT_AUTHOR_EMAIL=f"{who}@example.org",
               GIT_COMMITTER_NAME=PEOPLE[who], GIT_COMMITTER_EMAIL=f"{who}@example.org")
    for args in (["add", "-A"], ["commit", "-qm", f"{who}: {' '.join(files)}"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return git(repo, "rev-parse", "HEAD").strip()


def trained_at(ledger: Ledger, version: int, sha: str) -> None:
    """A run trained at ``sha`` by a train stage whose deps are two code files and the data."""
    run_id = f"{version:032x}"
    run = ledger.append(TRAINER, "run", {"run_id": run_id, "status": "FINISHED", "git": {"commit": sha}})
    ledger.append(TRAINER, "stage", {"name": "train", "cmd": "python a.py", "git": {"commit": sha},
                                     "deps": [{"path": "a.py"}, {"path": "b.py"}, {"path": "data/x"}]}, [run.id])
    ledger.append(TRAINER, "model", {"name": "m", "version": version, "run_id": run_id})


Authors = dict[str, list[CodeAuthor]]


def authors_together_and_alone(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> tuple[Authors, Authors, int]:
    """Code authors of every version from one lineages() call and from one lineage() call each, and how many
    git logs the lineages() call ran."""
    graph = LedgerGraph.load(ledger)
    versions = graph.model_versions("m")
    logs: list[tuple[str, ...]] = []
    real_git = CodeAuthorship.git

    def counting_git(self: CodeAuthorship, *args: str, stdin: str | None = None) -> str | None:
        logs.extend([args] if args[0] == "log" else [])
        return real_git(self, *args, stdin=stdin)

    with monkeypatch.context() as patch:
        patch.setattr(CodeAuthorship, "git", counting_git)
        together = {v: lineage.code_authors for (_, v), lineage in graph.lineages(versions).items()}
    alone = {v: LedgerGraph.load(ledger).lineage("m", v).code_authors for _, v in versions}
    return together, alone, len(logs)


def test_branches_without_merges(repo: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    first = commit(repo, "ann", "a.py", "b.py", "README")
    commit(repo, "ben", "a.py")
    git(repo, "checkout", "-qb", "side")
    side = commit(repo, "cat", "b.py")
    side2 = commit(repo, "cat", "README")  # touches no code file: not an author commit
    git(repo, "checkout", "-q", "main")
    main = commit(repo, "ann", "a.py", "b.py")
    git(repo, "tag", "-a", "v1", "-m", "release", first)
    tag = git(repo, "rev-parse", "v1").strip()  # the tag object's id, which git log takes for the commit's
    for version, sha in enumerate((first, side, side2, main, tag), start=1):
        trained_at(ledger, version, sha)
    together, alone, logs = authors_together_and_alone(ledger, monkeypatch)
    assert together == alone
    assert logs == 2  # one for the four commits together, one for the tag (rev-list names its commit)
    assert [(a.name, len(a.commits), a.files) for a in together["4"]] == [
        ("Ann", 2, ("a.py", "b.py")), ("Ben", 1, ("a.py",))]
    assert [a.name for a in together["3"]] == ["Ann", "Ben", "Cat"]
    assert together["5"] == together["1"] and [a.name for a in together["1"]] == ["Ann"]


def test_a_history_with_a_merge(repo: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    base = commit(repo, "ann", "a.py", "b.py")
    git(repo, "checkout", "-qb", "side")
    commit(repo, "cat", "b.py")
    git(repo, "checkout", "-q", "main")
    commit(repo, "ben", "a.py")
    git(repo, "merge", "-q", "--no-edit", "side")
    merged = git(repo, "rev-parse", "HEAD").strip()
    after = commit(repo, "ben", "b.py")
    for version, sha in enumerate((base, merged, after), start=1):
        trained_at(ledger, version, sha)
    together, alone, logs = authors_together_and_alone(ledger, monkeypatch)
    assert together == alone
    assert logs == 3  # git's history simplification prunes at merges: one git log per commit
    assert {"Ann", "Ben", "Cat"} <= {a.name for a in together["3"]}
