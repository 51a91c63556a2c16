"""``openledger review``, ``gate`` and ``feedback``: signed reviews, the CI promotion gate, feedback by hand.

Listed in ``LAZY_COMMANDS`` (:mod:`openledger_cli.main`): imported when one of them runs. Targets are
resolved by :mod:`openledger.lineage.targets`; only ``model:`` targets ask MLflow (through ``--tracking-uri``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from openledger.errors import BadInputError
from openledger.governance.policy import GateResult, gate_subject
from openledger.governance.reviewing import give_feedback, promote, sign_review
from openledger.lineage.targets import LedgerRegistry, ModelRegistry, Subject, parse_target, resolve_target
from openledger.store.ledger import Ledger
from openledger_cli import render
from openledger_cli._common import FORMAT_TEXT_JSON, TRACKING_URI, load_signer, open_ledger, registry_for

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["feedback", "gate", "gate_lines", "review"]


def _resolve(ledger: Ledger, target: str, tracking_uri: str | None) -> Subject:
    """The subject TARGET names: a model version as MLflow's registry has it with a tracking URI, else as the
    ledger's own model and promotion records have it (as `openledger ci` does without MLflow)."""
    spec = parse_target(target)
    registry: ModelRegistry | None = None
    if spec.kind == "model":
        registry = registry_for(tracking_uri) if tracking_uri else LedgerRegistry(ledger)
    return resolve_target(ledger, spec, registry)


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
        ledger = open_ledger(ctx)
        subject = _resolve(ledger, target, tracking_uri)
        signed = sign_review(ledger, load_signer(), subject, decision, message)
        if signed.own_work:
            render.say("you trained or registered this; under the policy your approval will not count.",
                       label="warning:")
        render.say(f"{decision} {subject.describe()}")
        click.echo(signed.record.id)

    command.__doc__ = f"{summary}\n\nPrints the review record's id."
    return review.command(decision)(command)


_review_command("approve", "Approve TARGET.")
_review_command("request-changes", "Ask for changes to TARGET.")
_review_command("reject", "Reject TARGET.")


# -- gate ----------------------------------------------------------------------------------------------------
def gate_lines(result: GateResult) -> list[Text]:
    """The gate's verdict first, then what is unmet and what each review counted for (one line each)."""
    verdict = "PASSED" if result.passed else "FAILED"
    records = ", ".join(result.records)
    lines = [render.text(f"{verdict} {result.target} (records {records}; policy: {result.rule.describe()})")]
    lines += [render.text(f"- unmet: {unmet}") for unmet in result.unmet]
    return lines + [render.text(f"- {review_verdict.describe()}") for review_verdict in result.verdicts]


@click.command()
@click.argument("kind", type=click.Choice(["model", "run", "dataset"]))
@click.argument("spec", metavar="NAME@VERSION|RUN_ID|PATH[@DIGEST]")
@click.option("--promote", "promote_to", metavar="ALIAS",
              help="model only: set this MLflow alias on the version if the policy holds, and record who promoted it.")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@TRACKING_URI
@click.pass_context
def gate(ctx: click.Context, *, kind: str, spec: str, promote_to: str | None, fmt: str,
         tracking_uri: str | None) -> None:
    """Check the review policy in config.yaml for a model version (or run, or dataset).

    \b
    Exit 0 when the policy holds, 1 with every unmet requirement listed, 2 for bad input.
    Example:  openledger gate model iris@3 --promote champion
    """
    if promote_to and kind != "model":
        raise click.UsageError("--promote applies to model versions only")
    ledger = open_ledger(ctx)
    subject = _resolve(ledger, f"{kind}:{spec}", tracking_uri)
    result = gate_subject(ledger, subject)
    promotion = None
    if promote_to and result.passed:
        signer = load_signer()  # a missing key must fail before anything changes in MLflow
        promotion = promote(ledger, signer, registry_for(tracking_uri), subject, result=result, alias=promote_to)
    if fmt == "json":
        render.emit_json({**result.to_json(), "promotion": promotion.id if promotion else None})
    else:
        for line in gate_lines(result):
            render.stdout.print(line)
    if promotion is not None:
        render.say(f"Promoted {spec} to @{promote_to}: {promotion.id}")
    elif promote_to:
        render.say(f"Alias @{promote_to} was not set: the policy does not hold.")
    ctx.exit(0 if result.passed else 1)


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
    ledger = open_ledger(ctx)
    subject = _resolve(ledger, target, tracking_uri)
    record = give_feedback(ledger, load_signer(), subject, label=label, score=score, comment=comment)
    render.say(f"feedback on {subject.describe()}")
    click.echo(record.id)
