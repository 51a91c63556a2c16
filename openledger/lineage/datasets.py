"""Which dataset record speaks for a dataset version when MLflow and DVC both recorded it.

The MLflow plugin writes a ``dataset`` record (with an ``mlflow`` section) for every dataset a run logs, crediting
whoever logged it. When that data is DVC-tracked — a ``from_dvc`` input, or a pandas / numpy dataset read from a
file DVC tracks (the record's ``dvc`` section names the path and DVC's hash) — and the ledger holds a DVC record
of it (a dataset record the DVC hooks wrote, or a stage record that produced it), the DVC record wins: it
credits the people who supplied the files, one by one, from git history. The MLflow record still explains the
run's input (``reconcile``) and is shown with the DVC version in a lineage, but credits nobody.

>>> from openledger.store.ledger import Fact
>>> mlflow = Fact("sha256:" + "a" * 64, "dataset", "k", "2026-01-01T00:00:00Z", (),
...               {"path": "wine", "digest": "mlflow:0a64f9dd", "mlflow": {},
...                "dvc": {"path": "data/wine.csv", "hash": "md5:" + "1" * 32}})
>>> dvc = Fact("sha256:" + "b" * 64, "dataset", "k", "2026-01-01T00:00:00Z", (),
...            {"path": "data", "digest": "md5:" + "2" * 32 + ".dir"})
>>> sorted(superseded_mlflow_datasets([mlflow, dvc], [])) == [mlflow.id]
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from openledger.store.ledger import Fact

__all__ = ["is_mlflow_dataset", "superseded_mlflow_datasets"]


def is_mlflow_dataset(body: Mapping[str, Any]) -> bool:
    """Whether a dataset record was written by the MLflow plugin (it has an ``mlflow`` section)."""
    return isinstance(body.get("mlflow"), Mapping)


def _covered(path: str, tracked: set[str]) -> bool:
    """``path`` or one of its parent directories is a DVC-tracked path."""
    pure = PurePosixPath(path)
    return any(str(candidate) in tracked for candidate in (pure, *pure.parents) if str(candidate) != ".")


def superseded_mlflow_datasets(datasets: Iterable[Fact], stages: Iterable[Fact]) -> frozenset[str]:
    """The ids of MLflow dataset records whose data the ledger also holds a DVC record of: a DVC dataset record
    or a stage output with the same digest (or DVC hash), or at the same path or a directory containing it."""
    datasets = list(datasets)
    digests: set[str] = set()
    paths: set[str] = set()
    for fact in datasets:
        if not is_mlflow_dataset(fact.body):
            digests.add(str(fact.body.get("digest")))
            paths.add(str(fact.body.get("path")))
    for stage in stages:
        for out in stage.body.get("outs") or []:
            if isinstance(out, Mapping):
                digests.add(str(out.get("hash")))
                paths.add(str(out.get("path")))
    superseded = set()
    for fact in datasets:
        if not is_mlflow_dataset(fact.body):
            continue
        dvc = fact.body.get("dvc")
        dvc = dvc if isinstance(dvc, Mapping) else {}
        if (str(fact.body.get("digest")) in digests or str(dvc.get("hash")) in digests
                or (isinstance(dvc.get("path"), str) and _covered(dvc["path"], paths))):
            superseded.add(fact.id)
    return frozenset(superseded)
