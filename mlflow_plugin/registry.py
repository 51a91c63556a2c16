"""The model registry questions the core's target resolver cannot answer itself, and the alias a gate sets.

:class:`MlflowRegistry` implements :class:`openledger.lineage.targets.ModelRegistry` on an ``MlflowClient``: which
logged model and run a registered version holds now, and where an alias points. It reads the store through
the URI without the ``ledger+`` prefix (nothing here is captured), and turns MLflow's errors into
OpenLedger's, so the CLI reports them as one line with exit 2.
"""

from __future__ import annotations

from typing import Any

from mlflow_plugin.capture import logged_model_id, version_run_id
from mlflow_plugin.store import plain_uri
from openledger.errors import NotFoundError, OpenLedgerError
from openledger.lineage.targets import ModelVersionRef

__all__ = ["AliasError", "MlflowRegistry"]


class AliasError(OpenLedgerError):
    """The registry refused to set (or restore) an alias."""


def first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


class MlflowRegistry:
    """A registry lookup against one tracking URI (``ledger+`` prefixes are dropped)."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = plain_uri(tracking_uri)
        self.client: Any = MlflowClient(self.uri, registry_uri=self.uri)

    def model_version(self, name: str, ref: str) -> ModelVersionRef:
        from mlflow.exceptions import MlflowException

        try:
            if ref.isdigit():
                version = self.client.get_model_version(name, ref)
            else:
                version = self.client.get_model_version_by_alias(name, ref)
        except MlflowException as exc:
            raise NotFoundError(f"MLflow: {first_line(exc)}", hint=f"no model version {name}@{ref}") from None
        return ModelVersionRef(version.name, int(version.version), version_run_id(version, self.client),
                               logged_model_id(version))

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points to now, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def set_alias(self, name: str, alias: str, version: int) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_registered_model_alias(name, alias, str(version))
        except MlflowException as exc:
            raise AliasError(f"MLflow refused to set alias {alias!r} on {name} version {version}: "
                             f"{first_line(exc)}") from None

    def restore_alias(self, name: str, alias: str, previous: int | None) -> None:
        """Put an alias back where it was (or remove it) after a promotion could not be recorded."""
        from mlflow.exceptions import MlflowException

        try:
            if previous is None:
                self.client.delete_registered_model_alias(name, alias)
            else:
                self.client.set_registered_model_alias(name, alias, str(previous))
        except MlflowException as exc:
            raise AliasError(f"could not restore alias {alias!r} of {name}: {first_line(exc)}") from None
