"""Rendering for the CLI: rich tables on stdout, messages on stderr, JSON that parses."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from openledger.store.canonical import tag_nonfinite
from openledger.store.keys import short_keyid

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from openledger.identity.trust import TrustState
    from openledger.store.records import Record

    stdout: Console
    stderr: Console


@cache
def console(stream: str) -> Console:
    """The rich console for ``"stdout"`` or ``"stderr"``, made on first use (also as ``render.stdout`` and
    ``render.stderr``): the commands DVC and git run on every repro and commit print one plain line (see
    :func:`say`), and importing rich costs more than their work."""
    from rich.console import Console  # noqa: PLC0415

    # Piped output (into a file, a pull request) gets room for full ids instead of wrapping at 80 columns.
    # No `:name:` emoji codes: a record's text is printed as written (and rich's emoji table is not loaded).
    if stream == "stdout":
        return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200, emoji=False)
    return Console(stderr=True, soft_wrap=True, emoji=False)


def __getattr__(name: str) -> Any:
    if name in ("stdout", "stderr"):
        return console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def say(message: str) -> None:
    """A message for the person at the terminal (stderr, so stdout stays data)."""
    if message.isprintable() and "[" not in message:
        # no markup, tabs or control characters: exactly what rich would print, without loading it
        sys.stderr.write(message + "\n")
        return
    console("stderr").print(message, highlight=False)


def escape(text: str) -> str:
    """``text`` with rich markup escaped (brackets such as ``openledger-mlops[export]`` are not markup)."""
    from rich.markup import escape as rich_escape  # noqa: PLC0415 - see console()

    return rich_escape(text)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(tag_nonfinite(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def short_id(record_id: str) -> str:
    return record_id[:19]


def summarize_body(record: Record) -> str:
    body = record.body
    kind = record.kind
    if kind == "identity":
        verb = "declares" if body["key"] == record.actor else "endorses"
        return f"{verb} {body['name']} <{body['email']}> ({short_keyid(body['key'])})"
    if kind == "revocation":
        return f"revokes {short_keyid(body['key'])}: {body['reason']}"
    if kind == "checkpoint":
        return f"{body['count']} records, root {body['root'][:19]}"
    if kind == "review":
        return f"{body['decision']} {body['target']}" + (f": {body['message']}" if body.get("message") else "")
    if kind == "feedback":
        parts = [body.get("label"), str(body["score"]) if "score" in body else None, body.get("comment")]
        source = body.get("source")
        given_by = f" (from {source.get('id')})" if isinstance(source, dict) and source.get("id") else ""
        return f"{body['target']}: " + ", ".join(p for p in parts if p) + given_by
    if kind == "dataset":
        credit = ", ".join(str(c.get("name")) for c in body.get("contributors") or [] if isinstance(c, dict))
        return f"{body['path']} {body['digest'][:20]}" + (f" by {credit}" if credit else "")
    if kind == "stage":
        where = f" ({body['dvcfile']})" if body.get("dvcfile") not in (None, "dvc.yaml") else ""
        experiment = f", experiment {body['experiment']}" if body.get("experiment") else ""
        runs = body.get("runs") or []
        return f"{body['name']}{where}{experiment}" + (f", {len(runs)} MLflow run(s)" if runs else "")
    if kind == "commit":
        return f"binds {body['records']} record(s) to commit {str(body['commit'])[:10]}"
    if kind == "run":
        return f"run {body['run_id']} {body['status']}"
    if kind == "model" and body.get("action") == "promote":
        return f"promotes {body['name']} v{body.get('version', '?')} to @{body.get('alias')}"
    if kind == "model":
        return f"{body['name']} v{body.get('version', '?')}"
    return ""


def records_table(records: Iterable[Record], trust: TrustState) -> Table:
    # rich's tables and progress bars are imported where used: the record stage and the git hook only say
    from rich.table import Table  # noqa: PLC0415

    table = Table(show_edge=False, header_style="bold")
    for column in ("time", "kind", "who", "id", "what"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(
            record.time[:19].replace("T", " "),
            record.kind,
            trust.describe(record.actor, with_email=False),
            short_id(record.id),
            summarize_body(record),
        )
    return table


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback drawing on stderr when it is a terminal.

    Refreshed by the callback itself rather than a background thread, so work that forks worker
    processes never forks while another thread holds a lock.
    """
    stderr = console("stderr")
    if not stderr.is_terminal:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    progress = Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        auto_refresh=False,
    )
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)
        progress.refresh()

    with progress:
        yield update
