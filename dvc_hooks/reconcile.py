"""What ``dvc.lock`` and the ``.dvc`` files say now, for ``openledger reconcile`` and ``openledger dvc status``.

:func:`observe` reads every pipeline's ``dvc.lock`` (the record stage left out) and every ``.dvc`` file into an
:class:`openledger.lineage.reconcile.DvcState`, with paths relative to the repository root and hashes spelled as stage
and dataset records spell them, so the core compares equal strings. DVC itself is not imported.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from dvc_hooks.lockfile import RECORD_STAGE, read_dvcfile, read_lock
from dvc_hooks.project import DvcProject
from dvc_hooks.record import rooted
from openledger.lineage.reconcile import DvcState, ObservedDataset, ObservedStage

__all__ = ["observe"]


def observe(project: DvcProject) -> DvcState:
    """Every pipeline stage and DVC-tracked dataset version of the working tree. A corrupt ``dvc.lock`` or
    ``.dvc`` file raises (bad input); a pipeline never reproduced is listed in ``unreproduced``."""
    stages: list[ObservedStage] = []
    unreproduced: list[str] = []
    for pipeline in project.pipeline_files():
        base = PurePosixPath(pipeline).parent
        lock = project.root / base / "dvc.lock"
        if not lock.exists():
            unreproduced.append(pipeline)
            continue
        for stage in read_lock(lock, dvcfile=pipeline):
            if stage.name == RECORD_STAGE:
                continue
            stages.append(ObservedStage(
                pipeline, stage.name, stage.lock_digest,
                deps=tuple((rooted(a, base)["path"], a.digest) for a in stage.deps),
                outs=tuple((rooted(a, base)["path"], a.digest) for a in stage.outs)))
    datasets = [ObservedDataset(str(PurePosixPath(dvcfile).parent / out.path), out.digest, dvcfile)
                for dvcfile in project.data_files() for out in read_dvcfile(project.root, dvcfile).outs
                if out.digest]
    return DvcState(tuple(stages), tuple(datasets), tuple(unreproduced))
