"""``openledger ci``: verify, reconcile, gate, report and checkpoint in one step, with a job summary."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from openledger.errors import BadInputError
from openledger.governance.ci import CiContext, CiRun, ci_settings, run_ci
from openledger.lineage.targets import LedgerRegistry, ModelRegistry
from openledger.store.files import write_atomic
from openledger.store.keys import ENV_SIGNING_KEY, KeyStore
from openledger.store.records import RecordSigner
from openledger_cli import render, report_md
from openledger_cli._common import load_signer, open_ledger, registry_for, to_json
from openledger_cli.reconcile import observe_sources, reconcile_markdown
from openledger_cli.report import contributors_table, load_model_report
from openledger_cli.sinks import Md, md, md_code

__all__ = ["ci", "ci_markdown"]


def _optional_signer() -> RecordSigner | None:
    """The CI key when there is one (the secret, or a key on this machine); None makes the run read-only.
    A secret that is set but broken is an error: it must not silently turn into a read-only run."""
    if os.environ.get(ENV_SIGNING_KEY) or KeyStore().list():
        return load_signer()
    return None


def _registry(ledger: Any, tracking_uri: str | None) -> tuple[ModelRegistry, str]:
    if not tracking_uri:
        return LedgerRegistry(ledger), "ledger"
    return registry_for(tracking_uri), "mlflow"


def _verification_lines(run: CiRun) -> list[str]:
    verify = run.verification
    problems = verify.problems
    ok = verify.exit_code(strict=run.strict) == 0
    lines = [f"{'✅' if ok else '❌'} {verify.records} records in {verify.feeds} feeds, "
             f"{verify.checkpoints} checkpoints; {len(verify.errors)} errors, {len(verify.warnings)} warnings", ""]
    if problems:
        lines += report_md.table(["Severity", "Problem", "Record", "What"],
                                 [[p.severity, p.code, md_code(p.record or p.location or ""), p.message]
                                  for p in problems[:50]])
        if len(problems) > 50:
            lines.append(f"\n… and {len(problems) - 50} more (`openledger verify`)")
        lines.append("")
    return lines


def _gate_lines(run: CiRun) -> list[str]:
    if not run.gates:
        return ["No models to gate (list them under `ci: models:` in `.openledger/config.yaml`).", ""]
    rows = []
    for outcome in run.gates:
        gate = outcome.result
        approvers = [v.reviewer.label for v in gate.approvals] if gate else []
        why = "; ".join(gate.unmet if gate else ()) or outcome.problem or ""
        rows.append([md_code(outcome.model), Md("✅ passed" if outcome.passed else "❌ failed"),
                     ", ".join(approvers) or "none", why])
    source = "MLflow's registry" if run.registry == "mlflow" else "the ledger's own records (no tracking URI)"
    return [*report_md.table(["Model", "Gate", "Approved by", "Unmet"], rows), "",
            f"Versions and aliases resolved from {source}.", ""]


def ci_markdown(run: CiRun) -> str:
    """The job summary: verdict, verification, gates, reconcile, contributors (pastes into a pull request)."""
    context = run.context
    verdict = "✅ passed" if run.ok else "❌ failed"
    where = context.branch or ("pull request" if context.pull_request else "detached HEAD")
    # The verdict line is the only heading the code writes at level 1, and nothing from a record reaches the
    # start of a line: every string from data goes through sinks.md / md_code (one line, escaped).
    lines = [f"# OpenLedger: {verdict}", "",
             f"Branch {md_code(where)} (default {md_code(context.default_branch)}, {md(context.provider)})"
             + (f" · checkpoint {md_code(run.checkpoint)}" if run.checkpoint else "")
             + (" · read-only" if run.read_only else "") + (" · strict" if run.strict else ""), ""]
    lines += [f"- {md(note)}" for note in run.notes]
    lines += ["", "## Verification", "", *_verification_lines(run), "## Models", "", *_gate_lines(run)]
    lines += [*reconcile_markdown(run.reconciliation, run.strict).splitlines(), ""]
    contributors = report_md.contributors_markdown(run.contributors).splitlines()
    lines += ["## Contributors", "", *contributors[2:]]  # without its own title
    return "\n".join(lines).rstrip() + "\n"


def _write(path: Path, text: str, *, append: bool = False) -> None:
    """GitHub's step summary and output files are appended to (other steps write there too); files of our
    own are replaced atomically."""
    try:
        if append:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(text)
        else:
            write_atomic(path.absolute(), text.encode("utf-8"))
    except OSError as exc:
        raise BadInputError(f"cannot write {path}: {exc.strerror}") from None


def _print(run: CiRun) -> None:
    verify = run.verification
    render.line(f"verify: {'OK' if verify.exit_code(strict=run.strict) == 0 else 'FAILED'} "
                f"({verify.records} records, {len(verify.problems)} problems)")
    for problem in verify.problems[:20]:
        render.line(f"  {problem.severity} {problem.code} {problem.record or ''} {problem.message}")
    rec = run.reconciliation
    render.line(f"reconcile: {'OK' if rec.exit_code(strict=run.strict) == 0 else 'FAILED'} "
                f"({len(rec.discrepancies)} listed)")
    for item in rec.discrepancies[:20]:
        render.line(f"  {item.severity} {item.code} {item.message}")
    for outcome in run.gates:
        state = "passed" if outcome.passed else "FAILED"
        why = "; ".join(outcome.result.unmet if outcome.result else ()) or outcome.problem or ""
        render.line(f"gate {outcome.model}: {state}" + (f" ({why})" if why else ""))
    render.stdout.print(contributors_table(run.contributors))
    if run.checkpoint:
        render.line(f"checkpoint: {run.checkpoint}")
    render.line("OK" if run.ok else "FAILED")


@click.command("ci")
@click.option("--against", metavar="CHECKPOINT", envvar="OPENLEDGER_CHECKPOINT", show_envvar=True,
              help="A checkpoint id kept outside the repository: fail if history was rewritten or truncated.")
@click.option("--full-verify", is_flag=True,
              help="Check every signature, even of the records the pinned checkpoint covers (default: incremental).")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True, metavar="URI",
              help="The MLflow store to reconcile with and resolve models in (without it: the ledger's records).")
@click.option("--strict/--no-strict", default=None, help="Fail on warnings too (default: ci.strict in config.yaml).")
@click.option("--checkpoint/--no-checkpoint", "checkpoint", default=None,
              help="Append a checkpoint on the default branch when a key is available (default: yes).")
@click.option("--witness/--no-witness", "witness", default=None,
              help="Cosign the newest checkpoint as a witness with this job's key (default: ci.witness, else no).")
@click.option("--witness-from", metavar="CHECKPOINT", envvar="OPENLEDGER_WITNESS_FROM", show_envvar=True,
              help="As a witness: the checkpoint it last cosigned, kept outside the repository (default: --against).")
@click.option("--default-branch", metavar="BRANCH", help="Default: ci.default_branch, $CI_DEFAULT_BRANCH, main.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="GITHUB_STEP_SUMMARY", show_envvar=True, help="Write the Markdown summary here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the whole result as JSON here (for later steps).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "md"]), default="text", show_default=True,
              help="What goes to stdout.")
@click.option("--log-reports-to-mlflow", is_flag=True,
              help="Log each gated model's HTML provenance report as an artifact of its MLflow run.")
@click.pass_context
def ci(ctx: click.Context, *, against: str | None, full_verify: bool, tracking_uri: str | None, strict: bool | None,
       checkpoint: bool | None, witness: bool | None, witness_from: str | None, default_branch: str | None,
       summary_path: Path | None, json_path: Path | None, fmt: str, log_reports_to_mlflow: bool) -> None:
    """Everything a pipeline checks, in one step: verify (against a pinned checkpoint if given), reconcile
    with MLflow, DVC and git, gate the models under `ci: models:` in config.yaml, report credit, and on the
    default branch append a checkpoint. Writes a Markdown summary to $GITHUB_STEP_SUMMARY (or --summary)
    and JSON for machines (--json).

    \b
    Exit 0 all good; 1 tampering, a failed gate, a reconcile error (or, strict, any warning); 2 bad input.
    Without a signing key (OPENLEDGER_SIGNING_KEY) the run is read-only: it verifies and reports, writes
    nothing to the ledger, and says so.
    """
    against = against or None  # an unset CI variable arrives as an empty string
    ledger = open_ledger(ctx, reports_damage=True)
    settings = ci_settings(ledger.config.ci)
    settings = replace(settings, default_branch=default_branch or settings.default_branch,
                       strict=settings.strict if strict is None else strict,
                       checkpoint=settings.checkpoint if checkpoint is None else checkpoint,
                       witness=settings.witness if witness is None else witness)
    root = ledger.root.parent
    signer = _optional_signer()
    tracking, dvc, git_root, skipped = observe_sources(ledger, tracking_uri)
    registry, registry_name = _registry(ledger, tracking_uri)
    context = CiContext.detect(os.environ, default_branch=settings.default_branch, git_root=root)
    with render.progress_bar("Verifying") as progress:
        run = run_ci(ledger, context=context, settings=settings, registry=registry, registry_name=registry_name,
                     signer=signer, against=against, tracking=tracking, dvc=dvc, git_root=git_root,
                     skipped=skipped, progress=progress, witness_home=KeyStore().home,
                     witness_from=witness_from or None, incremental=not full_verify)
    data = run.to_json()
    markdown = ci_markdown(run)
    if summary_path is not None:
        _write(summary_path, markdown, append=str(summary_path) == os.environ.get("GITHUB_STEP_SUMMARY"))
    if json_path is not None:
        _write(json_path, to_json(data))
    if os.environ.get("GITHUB_OUTPUT"):  # for later steps: ${{ steps.<id>.outputs.checkpoint }}
        _write(Path(os.environ["GITHUB_OUTPUT"]), f"checkpoint={run.checkpoint or ''}\nok={str(data['ok']).lower()}\n",
               append=True)
    if fmt == "json":
        click.echo(to_json(data), nl=False)
    elif fmt == "md":
        click.echo(markdown, nl=False)
    else:
        _print(run)
    for note in run.notes:
        render.say(note)
    if log_reports_to_mlflow:
        from openledger_cli.mlflow_report import log_model_reports  # noqa: PLC0415 - MLflow is an optional extra

        for line in log_model_reports(settings.models, lambda m: load_model_report(ctx, m, tracking_uri),
                                      tracking_uri):
            render.say(line)
    ctx.exit(run.exit_code())
