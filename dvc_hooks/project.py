"""A DVC project: a git repository with DVC initialised in it, and the files OpenLedger reads from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dvc_hooks.lockfile import cache_dir
from openledger.errors import BadInputError, NotFoundError
from openledger.lineage.git import git_run
from openledger.store.ledger import experiment_workspace_owner

__all__ = ["DvcProject"]


@dataclass
class DvcProject:
    """A git repository with DVC initialised in it (``.dvc/`` at the top)."""

    root: Path
    git_dir: Path

    @classmethod
    def find(cls, start: Path | None = None) -> DvcProject:
        here = (start or Path.cwd()).absolute()
        env_root = os.environ.get("DVC_ROOT")
        # A queued experiment's DVC_ROOT names the repository it runs for, not the temporary workspace whose
        # dvc.lock it writes: there, the workspace is the project (its records still go to the repository's ledger)
        candidates = [Path(env_root)] if env_root and experiment_workspace_owner(here) is None else []
        candidates += [here, *here.parents]
        for candidate in candidates:
            if (candidate / ".dvc").is_dir():
                found = git_run(candidate, "rev-parse", "--absolute-git-dir")
                if found.returncode != 0:
                    raise BadInputError(f"{candidate} uses DVC but is not in a git repository",
                                        hint="OpenLedger needs git history: `git init` (not `dvc init --no-scm`)")
                return cls(candidate, Path(found.stdout.strip()))
        raise NotFoundError(f"no DVC project in {here} or any parent directory",
                            hint="run `dvc init` in your git repository first")

    def relpath(self, path: Path) -> str:
        return path.absolute().relative_to(self.root).as_posix()

    def git_files(self, *patterns: str) -> list[str]:
        """Tracked and untracked-but-not-ignored files matching ``patterns`` (relative to the root)."""
        listed = git_run(self.root, "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *patterns)
        if listed.returncode != 0:
            raise BadInputError(f"git ls-files failed in {self.root}: {listed.stderr.strip()}")
        output = listed.stdout
        return sorted({name for name in output.split("\0") if name and (self.root / name).exists()})

    def pipeline_files(self) -> list[str]:
        return self.git_files("dvc.yaml", "*/dvc.yaml")

    def data_files(self) -> list[str]:
        return [f for f in self.git_files("*.dvc") if not f.startswith(".dvc/")]

    @property
    def cache(self) -> Path:
        return cache_dir(self.root)
