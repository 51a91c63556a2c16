"""``openledger report model|contributors``: what people read, in text, Markdown, JSON or one HTML file."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.markdown import Markdown
from rich.table import Table

from openledger._internal.files import write_atomic
from openledger.errors import BadInputError, NotFoundError
from openledger.lineage.graph import LedgerGraph
from openledger.lineage.targets import promoted_version
from openledger.report import ROLES, contributors_report, model_report
from openledger.store.canonical import tag_nonfinite
from openledger_cli import render, report_md
from openledger_cli.main import _ledger

FORMATS = click.Choice(["text", "md", "json", "html"])
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z)?")


def _is_date(text: str) -> bool:
    """YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.ffffff]Z, and a real day and time (the shape alone lets 2026-13-01
    through, which compares after every record and silently empties the report)."""
    if not _DATE.fullmatch(text):
        return False
    try:
        datetime.strptime(text.partition(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S" if "T" in text else "%Y-%m-%d")
    except ValueError:
        return False
    return True


def emit(text: str, output: Path | None) -> None:
    """Data to stdout, or to OUTPUT written atomically."""
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_atomic(output.absolute(), text.encode("utf-8"))
    except OSError as exc:
        raise BadInputError(f"cannot write {output}: {exc.strerror}") from None
    render.say(f"Wrote {output}")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(tag_nonfinite(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _html(kind: str, report: dict[str, Any]) -> str:
    from openledger_cli.report_html import contributors_html, model_html  # noqa: PLC0415 - only for html

    return model_html(report) if kind == "model" else contributors_html(report)


def _alias_version(graph: LedgerGraph, name: str, alias: str, tracking_uri: str | None) -> str:
    """The version an alias points at: the newest promotion record for it, else MLflow's registry."""
    promoted = promoted_version(graph.by_kind.get("model", []), name, alias)
    if promoted is not None:
        return promoted
    if tracking_uri:
        from mlflow_plugin.registry import MlflowRegistry  # noqa: PLC0415 - MLflow is an optional extra

        resolved = MlflowRegistry(tracking_uri).alias_version(name, alias)
        if resolved is not None:
            return str(resolved)
    raise NotFoundError(f"no promotion to @{alias} of {name} is recorded",
                        hint="give NAME@VERSION, or --tracking-uri so MLflow's registry can resolve the alias")


def load_model_report(ctx: click.Context, target: str, tracking_uri: str | None) -> dict[str, Any]:
    """The model report of NAME[@VERSION|@ALIAS] in this ledger."""
    name, _, version = target.partition("@")
    graph = LedgerGraph.load(_ledger(ctx))
    if version and not version.isdigit():
        version = _alias_version(graph, name, version, tracking_uri)
    return model_report(graph, name, version or None)


@click.group()
def report() -> None:
    """Provenance of a model version, and credit per contributor.

    \b
    openledger report model wine-classifier@2 --format md -o provenance.md
    openledger report contributors --model wine-classifier --format html -o credit.html
    """


@report.command("model")
@click.argument("target", metavar="NAME[@VERSION|@ALIAS]")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="text (terminal), md (Markdown with a Mermaid graph), json (stable keys), html (one offline file).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically).")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", metavar="URI",
              help="MLflow store to resolve an @ALIAS in when no promotion of it is recorded (and to log to).")
@click.option("--log-to-mlflow", is_flag=True,
              help="Also log the HTML report as an artifact of the version's MLflow run (replacing an earlier one).")
@click.pass_context
def report_model(ctx: click.Context, target: str, *, fmt: str, output: Path | None, tracking_uri: str | None,
                 log_to_mlflow: bool) -> None:
    """Where a model version came from: runs, pipeline stages, dataset versions and who supplied them, the
    code and its authors, reviews and feedback, and the verification status of every record shown.

    Without @VERSION: the newest recorded version. Exit 0; 1 if a record shown fails verification.
    """
    data = load_model_report(ctx, target, tracking_uri)
    if log_to_mlflow:
        from openledger_cli.mlflow_report import log_model_report  # noqa: PLC0415 - MLflow is an optional extra

        render.say(f"Logged the report to MLflow: {render.escape(log_model_report(data, tracking_uri))}")
    if fmt == "json":
        emit(to_json(data), output)
    elif fmt == "md":
        emit(report_md.model_markdown(data), output)
    elif fmt == "html":
        emit(_html("model", data), output)
    elif output is not None:
        emit(report_md.model_markdown(data), output)
    else:
        render.stdout.print(Markdown(report_md.model_markdown(data)))
    if not data["verified"]:
        render.say("[red]Some records in this report failed verification[/red]: run `openledger verify`.")
        ctx.exit(1)


@report.command("contributors")
@click.option("--model", "model", metavar="NAME",
              help="Only the lineages of this model's versions (default: the whole ledger, work outside any "
              "model included).")
@click.option("--since", metavar="DATE", help="Only contributions recorded on or after DATE (YYYY-MM-DD).")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically).")
@click.pass_context
def report_contributors(ctx: click.Context, model: str | None, since: str | None, fmt: str,
                        output: Path | None) -> None:
    """Credit per contributor: roles (data, code, training, review, feedback), a share per role and overall
    (weights in config.yaml `scoring:`, see docs/scoring.md), and the impact attributed along each model's
    lineage. Every number lists the record ids behind it."""
    if since and not _is_date(since):
        raise BadInputError(f"--since {since!r} is not a date", hint="use YYYY-MM-DD")
    graph = LedgerGraph.load(_ledger(ctx))
    data = contributors_report(graph, model=model, since=since)
    if fmt == "json":
        emit(to_json(data), output)
    elif fmt == "md" or (fmt == "text" and output is not None):
        emit(report_md.contributors_markdown(data), output)
    elif fmt == "html":
        emit(_html("contributors", data), output)
    else:
        render.stdout.print(contributors_table(data))
        for step in data["impact"]:
            render.stdout.print(f"{step['model']} v{step['from_version']} -> v{step['to_version']}: "
                                f"{step['metric']} {step['from_value']:.4g} -> {step['to_value']:.4g} "
                                f"({step['improvement']:+.4g})")


def contributors_table(data: dict[str, Any]) -> Table:
    table = Table(title="Contributors", show_edge=False, header_style="bold")
    for column in ("contributor", *ROLES, "overall", "impact"):
        table.add_column(column, justify="left" if column == "contributor" else "right")
    for row in data["contributors"]:
        cells = [row["person"]["name"], *(report_md.role_cell(row["roles"].get(role)) for role in ROLES)]
        table.add_row(*cells, report_md.pct(row["overall"]), report_md.impact_cell(row["impact"]))
    return table
