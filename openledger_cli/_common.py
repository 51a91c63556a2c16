"""What the commands share: opening the ledger and the key, reading output options, writing files, and loading
the MLflow adapter when a command needs it. Private to ``openledger_cli``; commands import it, never ``main``."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import click
import orjson

from openledger.errors import BadInputError, KeyMaterialError, OpenLedgerError
from openledger.store.canonical import has_nonfinite, tag_nonfinite
from openledger.store.files import write_atomic
from openledger.store.keys import ENV_PASSPHRASE, KeyStore, Signer, short_keyid
from openledger.store.ledger import Ledger
from openledger_cli import render

if TYPE_CHECKING:
    from openledger.governance.reviewing import AliasRegistry

__all__ = ["FORMAT_TEXT_JSON", "TRACKING_URI", "emit", "fail", "json_bytes", "ledger_dir", "load_signer",
           "mlflow_adapter", "open_ledger", "passphrase_source", "registry_for", "to_json"]

FORMAT_TEXT_JSON = click.Choice(["text", "json"])
TRACKING_URI = click.option(
    "--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True, metavar="URI",
    help="The MLflow store that model: targets are looked up in (a ledger+ prefix is ignored).",
)


def fail(message: str, code: int = 2) -> NoReturn:
    render.say(message, label="error:")
    sys.exit(code)


def ledger_dir(ctx: click.Context) -> Path | None:
    """The ``--ledger`` directory given to the root command, if any (else the nearest ``.openledger/``)."""
    path = ctx.find_root().obj.get("ledger_path") if ctx.find_root().obj else None
    return Path(path) if path else None


def open_ledger(ctx: click.Context, *, reports_damage: bool = False) -> Ledger:
    """The ledger the command works on. Objects that cannot be read (damaged, oversized, too deeply nested, a
    symlink, FIFO or device) are left out of every listing and report; unless the command names them itself
    (``reports_damage``: verify, fsck, log), it ends with one line on stderr saying so."""
    ledger = Ledger.open(ledger_dir(ctx))
    if not reports_damage:
        ctx.call_on_close(lambda: warn_left_out(ledger))
    return ledger


def warn_left_out(ledger: Ledger) -> None:
    """One line on stderr when the ledger holds objects that could not be read."""
    try:
        left_out = ledger.unreadable()
    except (OpenLedgerError, OSError):
        return  # the command has already said what went wrong
    if left_out:
        path, problem = left_out[0]
        more = f" and {len(left_out) - 1} more" if len(left_out) > 1 else ""
        render.say(f"left out what cannot be read: {path} ({problem}){more}: run `openledger verify`",
                   label="warning:")


def passphrase_source() -> Callable[[str], str]:
    def ask(keyid: str) -> str:
        env = os.environ.get(ENV_PASSPHRASE)
        if env is not None:
            return env
        if not sys.stdin.isatty():
            raise KeyMaterialError(
                f"key {short_keyid(keyid)} needs its passphrase", hint=f"set {ENV_PASSPHRASE}"
            )
        return getpass.getpass(f"Passphrase for {short_keyid(keyid)}: ")

    return ask


def load_signer(key: str | None = None) -> Signer:
    return KeyStore().load_signer(key, passphrase_source())


def mlflow_adapter(module: str) -> ModuleType:
    """A module of the MLflow plugin (``mlflow_plugin.<module>``), or a one-line error when MLflow is not
    installed: MLflow is an optional extra, imported only by the commands that talk to it."""
    try:
        return import_module(f"mlflow_plugin.{module}")
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("mlflow", "sqlalchemy", "mlflow_plugin"):
            raise  # a bug in the plugin, not a missing extra
        raise BadInputError("MLflow is not installed", hint="pip install 'openledger-mlops[mlflow]'") from None


def registry_for(tracking_uri: str | None) -> AliasRegistry:
    """MLflow's model registry at ``tracking_uri``, for ``model:`` targets and promotions."""
    if not tracking_uri:
        raise BadInputError("a model: target needs the MLflow registry",
                            hint="give --tracking-uri or set MLFLOW_TRACKING_URI")
    registry: AliasRegistry = mlflow_adapter("registry").MlflowRegistry(tracking_uri)
    return registry


def to_json(data: Any) -> str:
    return json_bytes(data).decode()


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is left to json")


def json_bytes(data: Any) -> bytes:
    """``data`` as indented JSON with sorted keys, non-finite floats tagged (``{"$float": "NaN"}``), UTF-8. orjson
    writes it (a million-record report's 90 MB in 0.2 s, where ``json`` took 3 s); ``json`` where orjson would
    write something else: a non-finite float (orjson writes null; only output with a null can hide one), an
    integer past 64 bits, a lone surrogate. Floats may be spelled differently (``0.000027`` for ``2.7e-05``)."""
    try:  # what json would refuse or spell otherwise (keys that are not strings, dataclasses, dates) raises here
        encoded = orjson.dumps(data, default=_not_json, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                               | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME)
    except (TypeError, orjson.JSONEncodeError):
        encoded = None
    if encoded is not None and not (b"null" in encoded and has_nonfinite(data)):
        return encoded + b"\n"
    # a lone surrogate (only a tagged-float body read by json can hold one) is written as its JSON escape
    return (json.dumps(tag_nonfinite(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode(
        errors="backslashreplace")


def emit(text: str | bytes, output: Path | None) -> None:
    """Data (text, or UTF-8 bytes written as they are) to stdout, or to OUTPUT written atomically."""
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_atomic(output.absolute(), text if isinstance(text, bytes) else text.encode("utf-8"))
    except OSError as exc:
        raise BadInputError(f"cannot write {output}: {exc.strerror}") from None
    render.say(f"Wrote {output}")
