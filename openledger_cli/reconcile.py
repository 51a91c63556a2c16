"""``openledger reconcile``: the ledger against the MLflow store, ``dvc.lock`` and git history."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from openledger.errors import NotFoundError
from openledger.lineage.graph import LedgerGraph
from openledger.lineage.reconcile import DvcState, ReconcileReport, TrackingState, reconcile
from openledger.store.ledger import Ledger
from openledger_cli import render
from openledger_cli._common import emit, mlflow_adapter, open_ledger, to_json
from openledger_cli.report_md import table as md_table
from openledger_cli.sinks import md, md_code

__all__ = ["observe_sources", "reconcile_command", "reconcile_markdown"]


def _tracking(tracking_uri: str | None, report_skipped: list[str]) -> TrackingState | None:
    if not tracking_uri:
        report_skipped.append("MLflow: no tracking URI (give --tracking-uri or set MLFLOW_TRACKING_URI)")
        return None
    state: TrackingState = mlflow_adapter("reconcile").MlflowState(tracking_uri)
    return state


def _dvc(root: Path, skipped: list[str]) -> DvcState | None:
    if not (root / ".dvc").is_dir():
        skipped.append(f"DVC: no DVC project in {root}")
        return None
    from dvc_hooks.project import DvcProject  # noqa: PLC0415
    from dvc_hooks.reconcile import observe  # noqa: PLC0415 - only for DVC projects

    try:
        return observe(DvcProject.find(root))
    except NotFoundError:
        skipped.append(f"DVC: no DVC project in {root}")
        return None


def observe_sources(ledger: Ledger, tracking_uri: str | None, *, use_dvc: bool = True, use_git: bool = True
                    ) -> tuple[TrackingState | None, DvcState | None, Path | None, list[str]]:
    """What to reconcile the ledger with: MLflow (with a tracking URI), DVC (in a DVC project), git (at the
    top of a repository); and a note for each source left out. Shared with `openledger ci`."""
    root = ledger.root.parent
    skipped: list[str] = []
    tracking = _tracking(tracking_uri, skipped)
    dvc = _dvc(root, skipped) if use_dvc else None
    git_root = root if use_git and (root / ".git").exists() else None
    if use_git and git_root is None:
        skipped.append(f"git: {root} is not the top of a git repository")
    return tracking, dvc, git_root, skipped


def _text(report: ReconcileReport, strict: bool) -> None:
    if report.discrepancies:
        table = Table(show_edge=False, header_style="bold")
        for column in ("severity", "code", "subject", "what"):
            table.add_column(column, overflow="fold")
        for item in report.discrepancies:
            colour = "red" if item.severity == "error" else "yellow"
            table.add_row(render.text((item.severity, colour)), item.code, render.cell(item.subject),
                          render.cell(item.message))
        render.stdout.print(table)
    checked = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in report.checked.items())
    code = report.exit_code(strict=strict)
    verdict = ("OK", "green") if code == 0 else ("FAILED", "red")
    counts = ", ".join(f"{n} {c}" for c, n in report.counts().items()) or "nothing out of place"
    render.line(verdict, f": {counts} (checked {checked})" + (" (strict)" if strict else ""))
    for note in report.skipped:
        render.say(f"skipped: {note}")
    if code == 0 and report.discrepancies:
        render.say("Warnings do not fail without --strict.")


def reconcile_markdown(report: ReconcileReport, strict: bool) -> str:
    """The reconcile report as Markdown (a pull request comment, a CI job summary)."""
    verdict = "✅ nothing out of place" if not report.discrepancies else (
        "❌ failed" if report.exit_code(strict=strict) else "⚠️ warnings")
    lines = ["## Reconcile", "", f"{verdict} · checked " + md(", ".join(
        f"{n} {what.replace('_', ' ')}" for what, n in report.checked.items())), ""]
    if report.discrepancies:
        lines += md_table(["Severity", "Code", "Subject", "What"],
                          [[d.severity, d.code, md_code(d.subject), d.message] for d in report.discrepancies])
        lines.append("")
    lines += [f"- skipped: {md(note)}" for note in report.skipped]
    return "\n".join(lines).rstrip() + "\n"


@click.command("reconcile")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True, metavar="URI",
              help="The MLflow store to compare with (a ledger+ prefix is ignored). Without it, MLflow is skipped.")
@click.option("--strict", is_flag=True, help="Exit 1 on anything listed, warnings (unattested runs, …) included.")
@click.option("--no-dvc", is_flag=True, help="Do not compare with dvc.lock and the .dvc files.")
@click.option("--no-git", is_flag=True, help="Do not check that the commits records name are in the repository.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "md"]), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically).")
@click.pass_context
def reconcile_command(ctx: click.Context, *, tracking_uri: str | None, strict: bool, no_dvc: bool, no_git: bool,
                      fmt: str, output: Path | None) -> None:
    """List what does not fit between the ledger and MLflow, DVC and git.

    \b
    errors (exit 1):   a signed param, metric, metric history or status that MLflow no longer holds
                       (edited in the tracking database); a model version now pointing at another run;
                       a record that cannot be read
    warnings (exit 1 with --strict):
                       MLflow runs and model versions with no record (unattested); recorded runs or
                       versions deleted from MLflow; run inputs matching no dataset record; dvc.lock
                       entries with no stage record or changed since; DVC-tracked data with no dataset
                       record; records by untrusted or revoked keys; commits the repository lacks
    Example:  openledger reconcile --tracking-uri sqlite:///mlflow.db --strict
    """
    ledger = open_ledger(ctx)
    tracking, dvc, git_root, skipped = observe_sources(ledger, tracking_uri, use_dvc=not no_dvc, use_git=not no_git)
    with render.progress_bar("Reading MLflow runs") as progress:
        report = reconcile(LedgerGraph.load(ledger), tracking=tracking, dvc=dvc, git_root=git_root, progress=progress,
                           skipped=skipped)
    if fmt == "json":
        emit(to_json(report.to_json(strict=strict)), output)
    elif fmt == "md" or output is not None:
        emit(reconcile_markdown(report, strict), output)
    else:
        _text(report, strict)
    ctx.exit(report.exit_code(strict=strict))
