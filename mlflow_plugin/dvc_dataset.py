"""``mlflow.data.from_dvc(path, rev=None)``: an MLflow dataset whose digest is DVC's own hash of the path.

MLflow has no DVC dataset source. This one reads the hash DVC already computed (from ``.dvc`` files,
``dvc.lock`` and ``.dir`` manifests, through ``dvc.api.DVCFileSystem``), never re-hashing the data, so an
MLflow run input and a DVC dataset version join on the digest::

    with mlflow.start_run():
        mlflow.log_input(mlflow.data.from_dvc("data/train"), context="training")

MLflow stores dataset digests in a 36-character column, so the dataset's digest is ``md5:<hex>``; the source
keeps DVC's full hash (``md5:<hex>.dir`` for a directory), which the run record links to.

(No ``from __future__ import annotations`` here: MLflow checks the constructor's return annotation as a class.)
"""

import json
from pathlib import Path
from typing import Any

from mlflow.data.dataset import Dataset
from mlflow.data.dataset_source import DatasetSource

__all__ = ["DvcDataset", "DvcDatasetSource", "dvc_tracked", "from_dvc"]

_DIGEST_WIDTH = 36  # MLflow's datasets.digest column


class DvcDatasetSource(DatasetSource):
    """A DVC-tracked path in a repository, optionally at a git revision."""

    def __init__(self, path: str, rev: str | None = None, repo: str | None = None,
                 hash: str | None = None) -> None:
        self.path = path
        self.rev = rev
        self.repo = repo
        self.hash = hash

    @staticmethod
    def _get_source_type() -> str:
        return "dvc"

    def load(self, dst_path: str | None = None) -> str:
        """The data's local path: the working copy when it is there, else fetched by DVC into ``dst_path``."""
        from dvc.api import DVCFileSystem

        if self.rev is None and self.repo is None and Path(self.path).exists():
            return str(Path(self.path).absolute())
        target = Path(dst_path or ".") / Path(self.path).name
        DVCFileSystem(self.repo, rev=self.rev).get(self.path, str(target), recursive=True)
        return str(target)

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return isinstance(raw_source, str) and raw_source.startswith("dvc:")

    @classmethod
    def _resolve(cls, raw_source: Any) -> "DvcDatasetSource":
        path, _, rev = str(raw_source)[len("dvc:"):].partition("@")
        return cls(path, rev or None)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rev": self.rev, "repo": self.repo, "hash": self.hash}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> "DvcDatasetSource":
        return cls(source_dict["path"], source_dict.get("rev"), source_dict.get("repo"), source_dict.get("hash"))


class DvcDataset(Dataset):
    """A dataset named by DVC's hash of its path."""

    def __init__(self, source: DvcDatasetSource, name: str | None = None, digest: str | None = None,
                 size: int | None = None, nfiles: int | None = None) -> None:
        self._dvc_source = source
        self._size = size
        self._nfiles = nfiles
        super().__init__(source=source, name=name or source.path, digest=digest)

    def _compute_digest(self) -> str:
        return (self._dvc_source.hash or "").removesuffix(".dir")[:_DIGEST_WIDTH]

    def to_dict(self) -> dict[str, str]:
        data = super().to_dict()
        data["profile"] = json.dumps(self.profile)
        return data

    @property
    def source(self) -> DvcDatasetSource:
        return self._dvc_source

    @property
    def profile(self) -> Any | None:
        return {"size": self._size, "nfiles": self._nfiles}

    @property
    def schema(self) -> Any | None:
        return None


def from_dvc(path: str, rev: str | None = None, repo: str | None = None, name: str | None = None,
             digest: str | None = None) -> DvcDataset:
    """A dataset for a DVC-tracked file or directory (at ``rev``, default the working tree)."""
    from dvc.api import DVCFileSystem
    from mlflow.exceptions import MlflowException

    try:
        info = DVCFileSystem(repo, rev=rev).info(path)
    except Exception as exc:
        raise MlflowException(f"{path} is not tracked by DVC here ({type(exc).__name__}: {exc})") from None
    dvc_info = info.get("dvc_info") or {}
    md5 = dvc_info.get("md5")
    if not md5:
        raise MlflowException(f"{path} is not tracked by DVC (run `dvc add {path}` or make it a stage output)")
    entry = dvc_info.get("entry")
    nfiles = getattr(getattr(entry, "meta", None), "nfiles", None)
    source = DvcDatasetSource(path, rev, repo, hash=f"md5:{md5}")
    return DvcDataset(source, name=name, digest=digest, size=dvc_info.get("size"), nfiles=nfiles)


def dvc_tracked(path: Path) -> tuple[str, str] | None:
    """``(path relative to the DVC repository, DVC's hash)`` when DVC tracks ``path`` (a ``.dvc`` file's out,
    a stage output, or a file inside a tracked directory), as ``.dvc`` files and ``dvc.lock`` state it; else
    None. DVC is only imported when a ``.dvc`` directory is above the path."""
    root = next((parent for parent in path.parents if (parent / ".dvc").is_dir()), None)
    if root is None:
        return None
    from dvc.api import DVCFileSystem

    relpath = path.relative_to(root).as_posix()
    try:
        info = DVCFileSystem(str(root)).info(relpath)
    except Exception:  # not tracked, or a DVC repository DVC cannot read: no join, the record stays MLflow's
        return None
    md5 = (info.get("dvc_info") or {}).get("md5")
    return (relpath, f"md5:{md5}") if md5 else None
