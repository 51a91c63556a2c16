"""Rendering for the CLI: rich tables on stdout, messages on stderr, JSON that parses.

Nothing a record says can become terminal markup or a control sequence: the consoles parse no rich markup,
every message and cell passes through :func:`~openledger_cli.sinks.visible` (control and format characters
shown as escapes, one line), and colour is given by the code as a style (:func:`say`'s ``label``,
:func:`line`'s styled parts), never spelled inside the text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from openledger.store.canonical import tag_nonfinite
from openledger.store.keys import short_keyid
from openledger_cli.sinks import visible

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from openledger.identity.trust import TrustState
    from openledger.store.records import Record

    stdout: Console
    stderr: Console

Part = str | tuple[str, str]  # plain text, or (text, rich style) chosen by the code


@cache
def console(stream: str) -> Console:
    """The rich console for ``"stdout"`` or ``"stderr"``, made on first use (also as ``render.stdout`` and
    ``render.stderr``): the commands DVC and git run on every repro and commit print one plain line (see
    :func:`say`), and importing rich costs more than their work. Markup is off: square brackets in a name are
    text. No ``:name:`` emoji codes either: a record's text is printed as written."""
    from rich.console import Console  # noqa: PLC0415

    # Piped output (into a file, a pull request) gets room for full ids instead of wrapping at 80 columns.
    if stream == "stdout":
        return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200, emoji=False, markup=False,
                       highlight=False)
    return Console(stderr=True, soft_wrap=True, emoji=False, markup=False, highlight=False)


def __getattr__(name: str) -> Any:
    if name in ("stdout", "stderr"):
        return console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def text(*parts: Part) -> Text:
    """One line from parts: plain strings shown as text (escaped by :func:`visible`), ``(text, style)`` pairs
    coloured."""
    from rich.text import Text  # noqa: PLC0415 - see console()

    line = Text()
    for part in parts:
        if isinstance(part, tuple):
            line.append(visible(part[0]), style=part[1])
        else:
            line.append(visible(part))
    return line


def line(*parts: Part, stream: str = "stdout") -> None:
    """Print one line made of parts (see :func:`text`)."""
    console(stream).print(text(*parts))


_LABELS = {"error:": "red", "warning:": "yellow", "damaged:": "red", "valid:": "green", "invalid:": "red"}


def say(message: str, *, label: str | None = None) -> None:
    """A message for the person at the terminal (stderr, so stdout stays data), on one line: control
    characters in it are shown escaped. ``label`` (``error:``, ``warning:``, …) is printed before it, in its
    colour on a terminal."""
    shown = visible(message)
    if label is None or not console_is_terminal():
        # no colour to show: exactly what rich would print, without loading it
        sys.stderr.write((f"{label} " if label else "") + shown + "\n")
        return
    line((label, _LABELS.get(label, "bold")), " ", shown, stream="stderr")


def console_is_terminal() -> bool:
    return sys.stderr.isatty()


def cell(value: Any) -> str:
    """A table cell: one line, control characters escaped."""
    return visible("" if value is None else value)


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
            cell(record.time[:19].replace("T", " ")),
            cell(record.kind),
            cell(trust.describe(record.actor)),
            cell(short_id(record.id)),
            cell(summarize_body(record)),
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
