"""The exception hierarchy of OpenLedger.

Every error the library raises on purpose derives from :class:`OpenLedgerError` and carries a
``diagnostics()`` hint telling the user how to fix the problem. Front ends (the CLI, the MLflow plugin,
the DVC hooks) catch only this root; anything else is a bug and keeps its traceback.

The subclasses map onto the CLI's exit codes::

    IntegrityError, SignatureError, PolicyError   -> 1  (verification or policy failure)
    BadInputError, ConfigError, KeyMaterialError,
    UnsupportedVersionError, NotFoundError,
    ServiceError, StorageError                    -> 2  (usage or bad input; a remote service or the disk failed)

Tampering must never look like bad input: a corrupt object is an ``IntegrityError``.
"""

from __future__ import annotations

__all__ = [
    "BadInputError",
    "ConfigError",
    "HashMismatchError",
    "IntegrityError",
    "KeyMaterialError",
    "LedgerNotFoundError",
    "NotFoundError",
    "OpenLedgerError",
    "PolicyError",
    "ServiceError",
    "SignatureError",
    "StorageError",
    "UnsupportedVersionError",
]


class OpenLedgerError(Exception):
    """Root of every error OpenLedger raises on purpose.

    ``exit_code`` is the CLI contract: 1 for verification or policy failures, 2 for bad input. ``code`` is the
    machine-readable name of the problem (``verify --format json`` reports it): each subclass names its own, so
    nobody has to read it back out of the message.
    """

    exit_code: int = 2
    code: str = "error"

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def diagnostics(self) -> str:
        """A one-line message for the user, with what to do about it when we know."""
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class IntegrityError(OpenLedgerError):
    """Stored data does not match what was signed: a corrupt or altered object, a broken feed."""

    exit_code = 1
    code = "malformed"


class HashMismatchError(IntegrityError):
    """An object's content does not hash to the id it is stored under."""

    code = "hash-mismatch"


class SignatureError(IntegrityError):
    """A signature does not verify against the key that claims it."""

    code = "bad-signature"


class PolicyError(OpenLedgerError):
    """The ledger is intact but a policy does not hold (untrusted signer under --strict, missing review)."""

    exit_code = 1
    code = "policy"


class BadInputError(OpenLedgerError):
    """The user's input is malformed: a body that fails its schema, an unknown kind, a bad record id."""

    code = "bad-input"


class NotFoundError(BadInputError):
    """Something the user named does not exist (a record id, a key id)."""

    code = "not-found"


class LedgerNotFoundError(NotFoundError):
    """No ``.openledger/`` directory was found."""


class ConfigError(BadInputError):
    """``config.yaml`` (or another configuration source) is missing or malformed."""


class KeyMaterialError(BadInputError):
    """A signing key is missing, unreadable, or its passphrase is wrong."""


class UnsupportedVersionError(BadInputError):
    """Data written by a newer version of OpenLedger (a record schema, a config version)."""

    code = "unsupported-version"


class ServiceError(OpenLedgerError):
    """A service beyond this machine (a timestamp authority, a chain node) failed or answered nonsense."""

    code = "service"


class StorageError(OpenLedgerError):
    """The machine failed the ledger: a full disk, a read-only directory, an index cache that cannot be written.
    Never tampering (exit 1): a record is written whole or not at all."""

    code = "io"
