"""``openledger report model|contributors``: what people read, in text, Markdown, JSON or one HTML file."""

from __future__ import annotations

import csv
import gc
import io
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
from rich.markdown import Markdown
from rich.table import Table

from openledger.attribution.values import METHODS
from openledger.credit.measured import MeasuredAttribution, PoolSplit
from openledger.credit.scoring import ROLES
from openledger.errors import BadInputError
from openledger.lineage.graph import REPORT_FIELDS, LedgerGraph
from openledger.lineage.targets import ModelRegistry, resolve_model_target
from openledger.reports.contributors import ContributorsReport, contributors_report
from openledger.reports.model import ModelReport, model_report
from openledger_cli import render, report_md
from openledger_cli._common import emit, json_bytes, open_ledger, registry_for
from openledger_cli.sinks import csv_text

FORMATS = click.Choice(["text", "md", "json", "html"])
CONTRIBUTOR_FORMATS = click.Choice(["text", "md", "json", "html", "csv"])
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


def load_model_report(ctx: click.Context, target: str, tracking_uri: str | None) -> ModelReport:
    """The model report of NAME[@VERSION|@ALIAS] in this ledger (an alias no promotion record explains is
    looked up in MLflow's registry at ``tracking_uri``)."""
    graph = LedgerGraph.load(open_ledger(ctx), fields=REPORT_FIELDS, cache=True)

    def registry() -> ModelRegistry:
        return registry_for(tracking_uri)

    name, version = resolve_model_target(graph.by_kind.get("model", []), target,
                                         registry if tracking_uri else None)
    return model_report(graph, name, version)


def model_html(report: ModelReport) -> str:
    from openledger_cli.report_html import model_html as render_html  # noqa: PLC0415 - only for html

    return render_html(report)


@click.group()
@click.pass_context
def report(ctx: click.Context) -> None:
    """Provenance of a model version, and credit per contributor.

    \b
    openledger report model wine-classifier@2 --format md -o provenance.md
    openledger report contributors --model wine-classifier --format html -o credit.html
    """
    # A report keeps the whole ledger's graph alive and makes no garbage cycles worth collecting; each of the
    # cyclic collector's full passes walks all of it, so they cost a fifth of `report contributors` at 100k
    # records, and more as the ledger grows (docs/benchmarks.md). Reference counting still frees what is dropped.
    if gc.isenabled():
        gc.disable()
        ctx.call_on_close(gc.enable)


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

        render.say(f"Logged the report to MLflow: {log_model_report(data, tracking_uri)}")
    if fmt == "json":
        emit(json_bytes(data.to_json()), output)
    elif fmt == "html":
        emit(model_html(data), output)
    elif fmt == "md" or output is not None:
        emit(report_md.model_markdown(data), output)
    else:
        render.stdout.print(Markdown(report_md.model_markdown(data)))
    if not data.verified:
        render.say("Some records in this report failed verification: run `openledger verify`.", label="error:")
        ctx.exit(1)


@report.command("contributors")
@click.option("--model", "model", metavar="NAME",
              help="Only the lineages of this model's versions (default: the whole ledger, work outside any "
              "model included).")
@click.option("--since", metavar="DATE", help="Only contributions recorded on or after DATE (YYYY-MM-DD).")
@click.option("--pool", metavar="AMOUNT",
              help="Split AMOUNT in proportion to positive measured (Shapley) value: text, json or csv "
                   "(docs/scoring.md has the rule).")
@click.option("--format", "fmt", type=CONTRIBUTOR_FORMATS, default="text", show_default=True,
              help="text, md, json, html; csv with --pool.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically).")
@click.pass_context
def report_contributors(ctx: click.Context, model: str | None, since: str | None, *, pool: str | None, fmt: str,
                        output: Path | None) -> None:
    """Credit per contributor: roles (data, code, training, review, feedback), a share per role and overall
    (weights in config.yaml `scoring:`, see docs/scoring.md), and impact along each model's lineage: measured
    (Shapley values with intervals, from `openledger attribute`) for a version with an attribution record,
    the heuristic otherwise. Every number lists the record ids behind it.

    With --pool AMOUNT: the amount split by the measured values of the model in scope (exit 2 without an
    attribution, or with several models attributed: choose one with --model)."""
    if since and not _is_date(since):
        raise BadInputError(f"--since {since!r} is not a date", hint="use YYYY-MM-DD")
    amount = _amount(pool) if pool is not None else None
    if fmt == "csv" and amount is None:
        raise BadInputError("--format csv is the pool split's format", hint="add --pool AMOUNT")
    if amount is not None and fmt in ("md", "html"):
        raise BadInputError(f"--pool writes text, json or csv, not {fmt}")
    # the graph (a million facts) is let go of once the report is built: before the JSON is, not after
    data = contributors_report(LedgerGraph.load(open_ledger(ctx), fields=REPORT_FIELDS, cache=True), model=model,
                               since=since)
    if amount is not None:
        split = data.pool(amount)
        if fmt == "json":
            emit(json_bytes(split.to_json()), output)
        elif fmt == "csv" or output is not None:
            emit(pool_csv(split), output)
        else:
            render.stdout.print(pool_table(split))
        return
    if fmt == "json":
        emit(json_bytes(data.to_json()), output)
    elif fmt == "md" or (fmt == "text" and output is not None):
        emit(report_md.contributors_markdown(data), output)
    elif fmt == "html":
        from openledger_cli.report_html import contributors_html  # noqa: PLC0415 - only for html

        emit(contributors_html(data), output)
    else:
        render.stdout.print(contributors_table(data))
        for measured in data.measured:
            render.stdout.print(measured_table(measured))
        if data.measured and data.impact:
            render.line(report_md.HEURISTIC_NOTE)
        for step in data.impact:
            measured_by = f"; measured by attribution {report_md.short(step.measured)}" if step.measured else ""
            render.line(f"{step.model} v{step.from_version} -> v{step.to_version}: "
                        f"{step.metric} {step.from_value:.4g} -> {step.to_value:.4g} ({step.improvement:+.4g})"
                        f"{measured_by}")


def _amount(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadInputError(f"--pool {text!r} is not an amount", hint="a number such as 1000 or 250.50") from None
    if not amount.is_finite() or amount < 0:
        raise BadInputError(f"--pool {text!r} is not an amount (a number at or above zero)")
    return amount


def measured_table(measured: MeasuredAttribution) -> Table:
    from rich.text import Text  # noqa: PLC0415 - rich is loaded with Table already

    table = Table(title=render.text(f"Measured impact: {report_md.measured_title(measured)}"), show_edge=False,
                  header_style="bold", title_justify="left")
    table.add_column("contributor", overflow="fold")
    for column in ("files", "Shapley [interval]", "Banzhaf", "leave-one-out"):
        table.add_column(column, justify="right")
    for value in measured.values:
        table.add_row(Text(render.cell(value.person.label)), str(value.files),
                      *(report_md.interval_text(value.get(m)) for m in METHODS))
    return table


def pool_table(split: PoolSplit) -> Table:
    attribution = split.attribution
    table = Table(title=render.text(f"Pool of {split.amount} split by the Shapley values of {attribution.label} "
                                    f"({attribution.metric}, attribution {report_md.short(attribution.record)})"),
                  show_edge=False, header_style="bold", title_justify="left")
    for column in ("contributor", "Shapley", "amount"):
        table.add_column(column, justify="left" if column == "contributor" else "right")
    for share in split.shares:
        table.add_row(render.cell(share.person.label), f"{share.shapley:+.4g}" if share.shapley is not None else "",
                      str(share.amount))
    for person in split.unmeasured:
        table.add_row(render.cell(person.label), "not measured", "0")
    return table


def pool_csv(split: PoolSplit) -> str:
    """One row per contributor: id, name, email, Shapley value, amount (names escaped for spreadsheets)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["person", "name", "email", "shapley", "amount"])
    for share in split.shares:
        person = share.person
        writer.writerow([csv_text(person.id), csv_text(person.name), csv_text(person.email or ""),
                         "" if share.shapley is None else repr(share.shapley), str(share.amount)])
    for person in split.unmeasured:
        writer.writerow([csv_text(person.id), csv_text(person.name), csv_text(person.email or ""), "", "0"])
    return out.getvalue()


def contributors_table(data: ContributorsReport) -> Table:
    table = Table(title="Contributors", show_edge=False, header_style="bold")
    for column in ("contributor", *ROLES, "overall", "impact (heuristic)" if data.measured else "impact"):
        table.add_column(column, justify="left" if column == "contributor" else "right")
    for row in data.contributors:
        cells = [render.cell(row.person.name), *(report_md.role_cell(row.roles.get(role)) for role in ROLES)]
        table.add_row(*cells, report_md.pct(row.overall), report_md.impact_cell(row.impact))
    return table
