"""Recording from adapters (the MLflow plugin, the DVC hooks): find the ledger and the key once, fail open.

Capture must never break the user's work. A :class:`Recorder` opens the ledger (``OPENLEDGER_DIR`` or the
nearest ``.openledger/``) and loads the signing key lazily, once; when either is missing, or anything goes
wrong while recording, it logs one warning naming the problem and returns ``None`` — unless
``OPENLEDGER_STRICT=1``, which turns every such problem into an exception.

>>> import tempfile, os
>>> from pathlib import Path
>>> recorder = Recorder(ledger_dir=Path(tempfile.mkdtemp()) / "nowhere", source="doc")
>>> recorder.record("feedback", {"target": "x", "label": "y"}) is None  # no ledger: a warning, no error
True
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from openledger.errors import OpenLedgerError, StorageError
from openledger.store.keys import ENV_PASSPHRASE, KeyStore, Signer
from openledger.store.ledger import Ledger
from openledger.store.records import Record

__all__ = ["ENV_STRICT", "Recorder", "strict_mode"]

ENV_STRICT = "OPENLEDGER_STRICT"
logger = logging.getLogger("openledger")


def strict_mode() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


class Recorder:
    """Appends records on behalf of an adapter, failing open (one warning per distinct problem)."""

    def __init__(self, *, ledger_dir: Path | None = None, source: str = "openledger", ledger: Ledger | None = None,
                 signer: Signer | None = None, strict: bool | None = None) -> None:
        """``strict``: raise instead of failing open (an explicit command such as ``openledger dvc record``);
        ``None`` follows ``OPENLEDGER_STRICT`` as it is when a problem happens."""
        self.ledger_dir = ledger_dir
        self.source = source
        self._strict = strict
        self._lock = threading.Lock()
        self._ledger = ledger
        self._signer = signer
        self._warned: set[str] = set()

    def _open_ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger.open(self.ledger_dir)
        return self._ledger

    def _open(self) -> tuple[Ledger, Signer]:
        ledger = self._open_ledger()
        if self._signer is None:
            passphrase = os.environ.get(ENV_PASSPHRASE)
            self._signer = KeyStore().load_signer(passphrase=(lambda _: passphrase) if passphrase else None)
        return ledger, self._signer

    @property
    def ledger(self) -> Ledger:
        """The ledger, without the key: reading needs none (a repro that changed nothing signs nothing)."""
        return self._open_ledger()

    @property
    def signer(self) -> Signer:
        return self._open()[1]

    @property
    def strict(self) -> bool:
        return strict_mode() if self._strict is None else self._strict

    def warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)

    def fail(self, exc: BaseException, what: str | None = None) -> None:
        """Handle a failure while recording: raise when strict, otherwise warn once (naming ``what`` was not
        recorded, when given). A failure that is not one of OpenLedger's own is a bug: its traceback goes to the
        debug log, so failing open does not hide it."""
        if self.strict:
            if isinstance(exc, (OSError, sqlite3.Error)) and not isinstance(exc, OpenLedgerError):
                # what the training script shows: one sentence naming the cause, not a database driver's error
                where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
                cause = getattr(exc, "strerror", None) or exc
                raise StorageError(f"OpenLedger ({self.source}): could not record: {cause}{where}",
                                   hint="free disk space, or make .openledger/ writable") from exc
            raise exc
        if isinstance(exc, OpenLedgerError):
            problem = exc.diagnostics()
        else:
            problem = f"{type(exc).__name__}: {exc}"
            logger.debug("OpenLedger (%s): recording failed with a bug", self.source, exc_info=exc)
        if what is None:
            self.warn_once(f"OpenLedger ({self.source}): {problem}; the work goes on unrecorded")
        else:
            self.warn_once(f"openledger: {what} not recorded: {problem}")

    @contextlib.contextmanager
    def failing_open(self, what: str) -> Iterator[None]:
        """Run a whole capture step (a hook DVC or git runs) so that any failure in it, including finding the
        ledger, is :meth:`fail`'s: one warning saying ``what`` was not recorded and why, or an error when
        strict (``OPENLEDGER_STRICT=1``)."""
        try:
            yield
        except Exception as exc:  # fail open is the contract for capture; strict mode re-raises
            self.fail(exc, what)

    def record(self, kind: str, body: Mapping[str, Any], links: Sequence[str] = (), *,
               once: str | None = None) -> Record | None:
        """Append one record; ``None`` (after a warning) when recording is not possible. With ``once``, also
        ``None`` when a ``kind`` record linking to that key exists (checked under the ledger's feed lock)."""
        try:
            with self._lock:
                ledger, signer = self._open()
                if once is None:
                    return ledger.append(signer, kind, body, links)
                return ledger.append_once(signer, kind, body, links, key=once)
        except Exception as exc:  # fail open is the contract; strict mode re-raises
            self.fail(exc)
            return None

    def find_linked(self, target: str, kind: str | None = None) -> list[Record]:
        """Records linking to ``target`` (for de-duplication and joins); empty when the ledger is absent."""
        try:
            return list(self.ledger.select(links_to=target, kind=kind))
        except Exception as exc:
            self.fail(exc)
            return []
