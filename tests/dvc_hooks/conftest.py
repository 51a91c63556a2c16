"""A real DVC project in a temporary git repository, with a ledger, a real key and the real CLI on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openledger import KeyStore, Ledger
from openledger.store.records import Record

BIN = Path(sys.executable).parent

THREE_STAGES = """\
stages:
  prepare:
    cmd: mkdir -p prepared && cat data/* > prepared/all.txt
    deps:
    - data
    outs:
    - prepared
  train:
    cmd: grep lr params.yaml > model.txt && cat prepared/all.txt >> model.txt
    deps:
    - prepared
    params:
    - lr
    outs:
    - model.txt
  evaluate:
    cmd: wc -c model.txt > metrics.txt
    deps:
    - model.txt
    outs:
    - metrics.txt
"""


@dataclass
class DvcRepo:
    root: Path
    keyid: str

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.pop("OPENLEDGER_DIR", None)
        env["DVC_NO_ANALYTICS"] = "1"  # DVC would otherwise report usage over the network
        env.update(extra)
        return env

    def run(self, *args: str | Path, check: bool = True, cwd: Path | None = None,
            **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(a) for a in args], cwd=cwd or self.root, env=self.env(**env),
                                capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def dvc(self, *args: str, check: bool = True, **env: Any) -> subprocess.CompletedProcess[str]:
        return self.run(BIN / "dvc", *args, check=check, **env)

    def openledger(self, *args: str, check: bool = True, cwd: Path | None = None,
                   **env: Any) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "openledger_cli", *args, check=check, cwd=cwd, **env)

    def git(self, *args: str, **env: Any) -> str:
        return self.run("git", *args, **env).stdout

    def commit(self, message: str, *paths: str, author: tuple[str, str] | None = None) -> str:
        extra = {}
        if author:
            extra = {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1]}
        self.git("add", *(paths or ("-A",)))
        self.git("commit", "-qm", message, **extra)
        return self.git("rev-parse", "HEAD").strip()

    def records(self, kind: str | None = None) -> list[Record]:
        ledger = Ledger.open(self.root / ".openledger")
        try:
            return list(ledger.select(kind=kind))
        finally:
            ledger.close()

    def write(self, relpath: str, text: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def dvc_repo(repo: Path) -> Iterator[DvcRepo]:
    keyid = KeyStore().generate("Ada Lovelace", "ada@example.org").keyid
    project = DvcRepo(repo, keyid)
    project.dvc("init", "-q")
    ledger = Ledger.init(repo)
    ledger.append(KeyStore().load_signer(), "identity",
                  {"key": keyid, "name": "Ada Lovelace", "email": "ada@example.org"})
    ledger.close()
    project.commit("dvc and ledger")
    yield project


@pytest.fixture
def pipeline(dvc_repo: DvcRepo) -> DvcRepo:
    """Three stages (prepare -> train -> evaluate) over a `dvc add`-ed directory, committed."""
    for name in ("a", "b"):
        dvc_repo.write(f"data/{name}.txt", f"row {name}\n")
    dvc_repo.dvc("add", "-q", "data")
    dvc_repo.write("params.yaml", "lr: 0.1\n")
    dvc_repo.write("dvc.yaml", THREE_STAGES)
    dvc_repo.commit("pipeline")
    return dvc_repo
