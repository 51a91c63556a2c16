"""``openledger review``, ``gate`` and ``feedback``: signed reviews, the CI promotion gate, feedback by hand.

Listed in ``LAZY_COMMANDS`` (:mod:`openledger_cli.main`): imported when one of them runs. Targets are
resolved by :mod:`openledger.lineage.targets`; only ``model:`` targets ask MLflow (through ``--tracking-uri``).
"""

from __future__ import annotations

from typing import Any

import click

from openledger import BadInputError, Ledger
from openledger.governance.policy import GateResult, ReviewPolicy, gate_subject
from openledger.lineage.targets import ModelRegistry, Subject, parse_target, resolve_target
from openledger.store.records import Record
from openledger_cli import render
from openledger_cli.main import FORMAT_TEXT_JSON, _ledger, _signer

__all__ = ["feedback", "gate", "review"]

TRACKING_URI = click.option(
    "--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True, metavar="URI",
    help="The MLflow store that model: targets are looked up in (a ledger+ prefix is ignored).",
)


def registry_for(tracking_uri: str | None) -> Any:
    if not tracking_uri:
        raise BadInputError("a model: target needs the MLflow registry",
                            hint="give --tracking-uri or set MLFLOW_TRACKING_URI")
    try:
        from mlflow_plugin.registry import MlflowRegistry  # noqa: PLC0415 - MLflow is an optional extra
    except ImportError:
        raise BadInputError("MLflow is not installed", hint="pip install 'openledger-mlops[mlflow]'") from None
    return MlflowRegistry(tracking_uri)


def _resolve(ledger: Ledger, target: str, tracking_uri: str | None) -> tuple[Subject, Any]:
    spec = parse_target(target)
    registry: ModelRegistry | None = registry_for(tracking_uri) if spec.kind == "model" else None
    return resolve_target(ledger, spec, registry), registry


def _described_body(subject: Subject) -> dict[str, Any]:
    """What a review or feedback body says about its subject besides the links: the records it is about
    (the links also hold context, such as a model's run) and the version a model target named (an alias
    moves; the body keeps where it pointed)."""
    described: dict[str, Any] = {"records": list(subject.record_ids)}
    if subject.version is not None:
        v = subject.version
        described["model"] = {"name": v.name, "version": v.version, "run_id": v.run_id, "model_id": v.model_id}
    return described


# -- review ------------------------------------------------------------------------------------------------
@click.group()
def review() -> None:
    """Sign a review of a model version, run, dataset or record.

    \b
    TARGET is a record id, run:<MLflow run id>, model:NAME@VERSION, model:NAME@ALIAS or
    dataset:PATH[@DIGEST]. A review pins the exact records TARGET names now: if the version is
    registered again from another run, or the alias moves, the review does not carry over.
    """


def _review_command(decision: str, summary: str) -> click.Command:
    @click.argument("target")
    @click.option("-m", "--message", help="Why: shown with the review and in gate output.")
    @TRACKING_URI
    @click.pass_context
    def command(ctx: click.Context, target: str, message: str | None, tracking_uri: str | None) -> None:
        ledger = _ledger(ctx)
        subject, _ = _resolve(ledger, target, tracking_uri)
        signer = _signer()
        body: dict[str, Any] = {"decision": decision, "target": target, **_described_body(subject)}
        if message:
            body["message"] = message
        rule = ReviewPolicy.from_config(ledger.config.policies).rule(subject.kind)
        if decision == "approve" and "trainer" in rule.distinct_from and signer.keyid in subject.trainers():
            render.say("[yellow]warning:[/yellow] you trained or registered this; under the policy your "
                       "approval will not count.")
        record = ledger.append(signer, "review", body, subject.links())
        render.say(f"{decision} {subject.describe()}")
        click.echo(record.id)

    command.__doc__ = f"{summary}\n\nPrints the review record's id."
    return review.command(decision)(command)


_review_command("approve", "Approve TARGET.")
_review_command("request-changes", "Ask for changes to TARGET.")
_review_command("reject", "Reject TARGET.")


# -- gate ----------------------------------------------------------------------------------------------------
def _print_gate(result: GateResult) -> None:
    verdict = "PASSED" if result.passed else "FAILED"
    records = ", ".join(result.records)
    render.stdout.print(f"{verdict} {result.target} (records {records}; policy: {result.rule.describe()})",
                        highlight=False, markup=False)
    for line in result.unmet:
        render.stdout.print(f"- unmet: {line}", highlight=False, markup=False)
    for review_verdict in result.verdicts:
        render.stdout.print(f"- {review_verdict.describe()}", highlight=False, markup=False)


@click.command()
@click.argument("kind", type=click.Choice(["model", "run", "dataset"]))
@click.argument("spec", metavar="NAME@VERSION|RUN_ID|PATH[@DIGEST]")
@click.option("--promote", metavar="ALIAS", help="model only: set this MLflow alias on the version if the policy "
              "holds, and record who promoted it.")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@TRACKING_URI
@click.pass_context
def gate(ctx: click.Context, *, kind: str, spec: str, promote: str | None, fmt: str, tracking_uri: str | None) -> None:
    """Check the review policy in config.yaml for a model version (or run, or dataset).

    \b
    Exit 0 when the policy holds, 1 with every unmet requirement listed, 2 for bad input.
    Example:  openledger gate model iris@3 --promote champion
    """
    if promote and kind != "model":
        raise click.UsageError("--promote applies to model versions only")
    ledger = _ledger(ctx)
    subject, registry = _resolve(ledger, f"{kind}:{spec}", tracking_uri)
    result = gate_subject(ledger, subject)
    promotion = _promote(ledger, subject, result, registry, promote) if promote and result.passed else None
    if fmt == "json":
        render.emit_json({**result.to_json(), "promotion": promotion.id if promotion else None})
    else:
        _print_gate(result)
    if promotion is not None:
        render.say(f"Promoted {spec} to @{promote}: {promotion.id}")
    elif promote:
        render.say(f"Alias @{promote} was not set: the policy does not hold.")
    ctx.exit(0 if result.passed else 1)


def _promote(ledger: Ledger, subject: Subject, result: GateResult, registry: Any, alias: str) -> Record:
    """Set the alias, then record the promotion; fail closed (no alias left set without its record)."""
    version = subject.version
    assert version is not None  # a model: subject always carries its registry version
    signer = _signer()  # a missing key must fail before anything changes in MLflow
    previous = registry.alias_version(version.name, alias)
    body = {"name": version.name, "version": version.version, "action": "promote", "alias": alias,
            "previous_version": previous, "run_id": version.run_id, "model_id": version.model_id,
            "target": subject.target, "approvals": [v.review_id for v in result.approvals],
            "policy": result.rule.to_json()}
    registry.set_alias(version.name, alias, version.version)
    try:
        return ledger.append(signer, "model", body, [*subject.record_ids, *body["approvals"]])
    except BaseException:
        registry.restore_alias(version.name, alias, previous)
        raise


# -- feedback --------------------------------------------------------------------------------------------
def _score(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)  # also NaN, Infinity, -Infinity: stored as the {"$float": …} tag
    except ValueError:
        raise BadInputError(f"--score {text!r} is not a number") from None


@click.command()
@click.argument("target")
@click.option("--label", help="A label: a category, a verdict, the correct value.")
@click.option("--score", "score_text", metavar="X", help="A number (NaN and Infinity are allowed).")
@click.option("-m", "--message", "comment", help="A comment or correction.")
@TRACKING_URI
@click.pass_context
def feedback(ctx: click.Context, *, target: str, label: str | None, score_text: str | None, comment: str | None,
             tracking_uri: str | None) -> None:
    """Record feedback on TARGET (same TARGET forms as `review`); prints the record id.

    \b
    Example:  openledger feedback model:iris@3 --label mislabelled -m "row 17 is a versicolor"
    """
    score = _score(score_text)
    if label is None and score is None and comment is None:
        raise BadInputError("feedback needs at least one of --label, --score or -m/--message")
    ledger = _ledger(ctx)
    subject, _ = _resolve(ledger, target, tracking_uri)
    body: dict[str, Any] = {"target": target, **_described_body(subject)}
    for name, value in (("label", label), ("score", score), ("comment", comment)):
        if value is not None:
            body[name] = value
    record = ledger.append(_signer(), "feedback", body, subject.links())
    render.say(f"feedback on {subject.describe()}")
    click.echo(record.id)
