"""A run context provider: tags each new fluent run with who ran it, from where, in which DVC stage.

MLflow calls it when ``mlflow.start_run`` creates a run (not for ``MlflowClient.create_run``, not on a
server), so the MLflow UI shows ``openledger.actor`` (key id), ``openledger.actor.name``, ``openledger.feed``,
the git commit / branch / dirty flag, and the DVC stage and experiment (``DVC_STAGE``, ``DVC_EXP_NAME``,
which ``dvc repro`` and ``dvc exp run`` set for stage commands). It never raises: a missing key simply
means no actor tags.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mlflow.tracking.context.abstract_context import RunContextProvider

from openledger.lineage.git import git_state as repository_state
from openledger.lineage.git import toplevel
from openledger.store.keys import ENV_SIGNING_KEY, KeyStore, short_keyid, signer_from_env

__all__ = ["LedgerRunContext", "git_state"]

logger = logging.getLogger("openledger")


def git_state(start: Path) -> dict[str, str]:
    """The run's git tags: HEAD's commit, whether tracked files anywhere in the repository differ from it, and
    the branch (none when detached); no tags outside a repository or before its first commit."""
    top = toplevel(start)
    state = repository_state(top) if top else None
    if state is None or state.commit is None:
        return {}
    tags = {"openledger.git.commit": state.commit, "openledger.git.dirty": "true" if state.dirty else "false"}
    if state.branch:
        tags["openledger.git.branch"] = state.branch
    return tags


def _actor_tags() -> dict[str, str]:
    env_seed = os.environ.get(ENV_SIGNING_KEY)
    if env_seed:
        signer = signer_from_env(env_seed)  # the feed its records go to, named the same way
        return {"openledger.actor": signer.keyid, "openledger.feed": signer.feed}
    store = KeyStore()
    keyid = store.selected_keyid()
    info = store.find(keyid)
    return {"openledger.actor": keyid, "openledger.actor.name": info.name or short_keyid(keyid),
            "openledger.feed": store.feed_for(keyid)}


class LedgerRunContext(RunContextProvider):
    def in_context(self) -> bool:
        return True

    def tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        try:
            tags.update(_actor_tags())
        except Exception as exc:
            logger.debug("OpenLedger: no actor tags (%s)", exc)
        tags.update(git_state(Path.cwd()))
        for variable, tag in (("DVC_STAGE", "openledger.dvc.stage"), ("DVC_EXP_NAME", "openledger.dvc.experiment"),
                              ("DVC_ROOT", "openledger.dvc.root")):
            if os.environ.get(variable):
                tags[tag] = os.environ[variable]
        return tags
