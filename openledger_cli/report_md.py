"""Markdown for the reports: pastes into a pull request; the lineage is a Mermaid graph (GitHub and GitLab draw it).

The renderers read the report views (:class:`~openledger.reports.model.ModelReport`,
:class:`~openledger.reports.contributors.ContributorsReport`). The phrases (a person with their email, a run's
params, a review line, a role's share) are small public functions here so that the HTML renderer
(``report_html``) says the same things with the same numbers. The phrases are plain text; every string from a
record reaches the Markdown through :mod:`openledger_cli.sinks` (escaped, on one line), and only what this
module writes itself (:class:`~openledger_cli.sinks.Md`) is Markdown.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from openledger.attribution.values import Estimate
from openledger.credit.impact import ImpactStep
from openledger.credit.measured import MeasuredAttribution
from openledger.credit.people import Person
from openledger.reports.contributors import ContributorRow, ContributorsReport, RoleCredit
from openledger.reports.model import (
    AttributionLink,
    DatasetView,
    FeedbackView,
    GraphView,
    LineagePerson,
    ModelReport,
    PromotionView,
    RecordCheck,
    ReviewView,
    RunView,
)
from openledger_cli.sinks import Md, md, md_code
from openledger_cli.sinks import mermaid as mermaid_label

__all__ = [
    "HEURISTIC_NOTE",
    "ROLE_HEADERS",
    "attribution_link_text",
    "contributors_markdown",
    "credit_records",
    "credited_text",
    "dataset_credit",
    "dataset_record",
    "evidence",
    "feedback_text",
    "impact_cell",
    "impact_text",
    "interval_text",
    "measured_title",
    "mermaid",
    "model_markdown",
    "pairs",
    "pct",
    "promotion_text",
    "review_text",
    "role_cell",
    "scope_text",
    "short",
    "status_text",
    "table",
    "trainer_name",
]

_SHAPES = {"model": ("[[", "]]"), "run": ("(", ")"), "stage": ("[/", "/]"), "dataset": ("[(", ")]"),
           "commit": ("{{", "}}")}
ROLE_HEADERS = {"data": "Data (files)", "code": "Code (commits)", "training": "Training (runs)", "review": "Review",
                "feedback": "Feedback"}
_Shown = TypeVar("_Shown")


def dataset_record(dataset: DatasetView, show: Callable[[str], _Shown]) -> _Shown | str | None:
    """A dataset version's record column: its record, or the stage that output it, or None (no record)."""
    if dataset.records:
        return show(dataset.records[-1])
    return f"output of stage {', '.join(dataset.produced_by)}" if dataset.produced_by else None


def short(record_id: str) -> str:
    return record_id[:19] if record_id.startswith("sha256:") else record_id[:17]


def pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def evidence(contributor: LineagePerson) -> list[str]:
    """The record ids (or ``commit:`` keys) shown for a lineage contributor: the first three per role."""
    return [e for ids in contributor.roles.values() for e in ids[:3]]


def credit_records(contributor: ContributorRow) -> list[str]:
    """The record ids shown for a contributor's credit: the first two per role."""
    return [r for credit in contributor.roles.values() for r in credit.records[:2]]


def dataset_credit(dataset: DatasetView) -> str:
    return ", ".join(f"{c.person.name} ({c.files})" for c in dataset.contributors)


def pairs(values: Mapping[str, Any]) -> list[str]:
    """``key=value`` in key order; floats (metrics) to four significant digits."""
    return [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items())]


def trainer_name(run: RunView) -> str:
    return run.trainer.name if run.trainer else "unknown"


def review_text(review: ReviewView) -> str:
    """``approve by Ada <ada@example.org>: reproduced`` (name and email, so a look-alike name shows)."""
    trusted = "" if review.trusted else " (untrusted key)"
    return f"{review.decision} by {review.reviewer.label}{trusted}: {review.message or ''}"


def feedback_text(item: FeedbackView) -> str:
    what = ", ".join(str(v) for v in (item.label, item.score, item.comment) if v is not None)
    by = item.by.label if item.by else "automated"
    return f"feedback on {item.target} by {by}: {what}"


def promotion_text(promotion: PromotionView) -> str:
    return f"promoted to @{promotion.alias} by {promotion.by.label}"


def status_text(check: RecordCheck) -> str:
    text = check.status + (f": {check.detail}" if check.detail else "")
    if check.anchored is not None:
        text += f"; anchored before {check.anchored.time} ({check.anchored.method})"
    return text


def signer_text(signer: Person | None) -> str:
    return signer.label if signer else ""


def role_cell(credit: RoleCredit | None) -> str:
    """A role's share and amount (``50.0% (3)``), empty when the person has no credit in it."""
    return f"{pct(credit.share)} ({credit.amount:g})" if credit else ""


def impact_cell(impact: float) -> str:
    return f"{impact:+.4g}" if impact else ""


HEURISTIC_NOTE = ("Impact (heuristic) splits the metric's gain between successive versions by counts of what changed; "
                  "it is not measured. A version with an attribution record is credited by its measured values "
                  "only (docs/scoring.md).")


def interval_text(estimate: Estimate) -> str:
    """``+0.12 [+0.08, +0.16]``; ``[?]`` when the samples bound nothing; no interval when nothing varied."""
    if estimate.low is None or estimate.high is None:
        return f"{estimate.value:+.4g} [?]"
    if estimate.low == estimate.high:
        return f"{estimate.value:+.4g}"
    return f"{estimate.value:+.4g} [{estimate.low:+.3g}, {estimate.high:+.3g}]"


def measured_title(measured: MeasuredAttribution) -> str:
    """What the values measure and how: plain text (model names come from records)."""
    return (f"{measured.label}: {measured.mode} Shapley values of {measured.metric} ({measured.direction}; "
            f"higher is better), Banzhaf and leave-one-out alongside, from {measured.runs} pipeline runs; "
            f"intervals at {measured.confidence:.0%} for all players at once. Attribution "
            f"{short(measured.record)} by {measured.signer.label}, {measured.time}.")


def attribution_link_text(link: AttributionLink, model: str) -> tuple[str, str]:
    """The sentence that links a model report to its attribution, and the command that shows the values."""
    return (f"Measured impact: attribution {short(link.record)} ({link.mode}, {link.players} contributors, "
            f"{link.runs} runs on {link.metric}); the values:",
            f"openledger report contributors --model {shlex.quote(model)}")


def _bar(value: float, largest: float, width: int = 12) -> str:
    cells = round(abs(value) / largest * width) if largest > 0 else 0
    return ("-" + "▒" * cells) if value < 0 else "█" * cells


def scope_text(report: ContributorsReport) -> str:
    scope = report.scope
    since = f", since {scope.since}" if scope.since else ""
    weights = ", ".join(f"{role} {weight:g}" for role, weight in report.scoring.weights.items())
    return (f"Model versions: {', '.join(scope.model_versions) or 'none'}{since}. "
            f"Overall share weights: {weights}. Primary metric: {report.scoring.primary_metric} "
            f"({report.scoring.direction}).")


def impact_text(step: ImpactStep) -> str:
    return (f"{step.model} v{step.from_version} → v{step.to_version}: {step.metric} "
            f"{step.from_value:.4g} → {step.to_value:.4g} ({step.improvement:+.4g})")


def credited_text(step: ImpactStep) -> str:
    return "; ".join(f"{c.person.name} {c.role} {c.amount:+.4g}" for c in step.credited)


def _cell(value: Any) -> str:
    """A table cell: text escaped; Markdown made here (a code span) keeps its form, with its pipes escaped as
    GitHub tables require even inside code spans."""
    if isinstance(value, Md):
        return re.sub(r"(?<!\\)\|", r"\\|", value)
    return md("" if value is None else value)


def table(headers: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def mermaid(graph: GraphView) -> list[str]:
    """The lineage as a Mermaid flowchart (node ids are positions, labels are quoted and escaped)."""
    ids = {node.ref.key: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = ["```mermaid", "flowchart RL"]
    for node in graph.nodes:
        left, right = _SHAPES.get(node.ref.kind, ("[", "]"))
        suffix = "" if node.recorded else " (no record)"
        lines.append(f'  {ids[node.ref.key]}{left}"{mermaid_label(node.ref.kind)}: {mermaid_label(node.label)}'
                     f'{suffix}"{right}')
    for edge in graph.edges:
        if edge.source.key in ids and edge.target.key in ids:
            lines.append(f'  {ids[edge.source.key]} -->|"{mermaid_label(edge.relation)}"| {ids[edge.target.key]}')
    lines.append("```")
    return lines


def model_markdown(report: ModelReport) -> str:
    model = report.model
    status = "all records verified" if report.verified else "**some records failed verification**"
    lines = [f"# Provenance: {md(model.ref.name)} v{md(model.ref.version)}", ""]
    aliases = f" · aliases: {md(', '.join('@' + a for a in model.aliases))}" if model.aliases else ""
    lines += [f"Model record {short(model.records[-1])} · run {md_code(model.run_id)}{aliases} · {status}", ""]
    if report.attribution:
        text, command = attribution_link_text(report.attribution, model.ref.name)
        lines += [f"{md(text)} {md_code(command)}", ""]
    lines += ["## Lineage", "", *mermaid(report.graph), ""]
    lines += ["## Contributors", ""]
    lines += table(["Contributor", "Roles", "Evidence"],
                    [[c.person.label, ", ".join(sorted(c.roles)), " ".join(map(short, evidence(c)))]
                     for c in report.contributors])
    lines += ["", "## Datasets", ""]
    lines += table(["Path", "Digest", "Files", "Contributors (files)", "Record"],
                    [[d.ref.path, d.ref.digest[:24], d.files, dataset_credit(d),
                      dataset_record(d, short) or "no record"] for d in report.datasets])
    lines += ["", "## Pipeline stages", ""]
    lines += table(["Stage", "Command", "Experiment", "Commit", "Record"],
                    [[s.name, s.cmd, s.experiment or "", (s.commit or "")[:10], short(s.records[-1])]
                     for s in report.stages])
    lines += ["", "## Runs", ""]
    for run in report.runs:
        params = ", ".join(pairs(run.params))
        metrics = ", ".join(pairs(run.metrics))
        lines += [f"- {md_code(run.run_id)} ({md(run.name)}, {md(run.status)}) by {md(trainer_name(run))}: "
                  f"params {md(params or '-')}; metrics {md(metrics or '-')}; "
                  f"records {md(' '.join(short(r) for r in run.records))}"]
    code = report.code
    lines += ["", "## Code", ""]
    lines += [f"Commits: {md(', '.join(c[:10] for c in code.commits) or 'unknown')}; "
              f"files the training stage depends on: {md(', '.join(code.files) or 'none tracked by git')}", ""]
    lines += table(["Author", "Commits", "Files"], [[a.person.name, len(a.commits), ", ".join(a.files)]
                                                     for a in code.authors])
    lines += ["", "## Reviews and feedback", ""]
    if not report.reviews and not report.feedback:
        lines.append("None recorded.")
    lines += [f"- {md(review_text(review))} ({short(review.record)})" for review in report.reviews]
    lines += [f"- {md(feedback_text(item))} ({short(item.record)})" for item in report.feedback]
    lines += [f"- {md(promotion_text(p))} ({short(p.record)})" for p in report.promotions]
    lines += ["", "## Records", ""]
    lines += table(["Record", "Kind", "Signer", "Time", "Status"],
                    [[short(rid), r.kind, signer_text(r.signer), r.time, status_text(r)]
                     for rid, r in report.records.items()])
    return "\n".join(lines) + "\n"


def contributors_markdown(report: ContributorsReport) -> str:
    scope = report.scope
    title = f"# Contributors: {md(scope.model)}" if scope.model else "# Contributors"
    lines = [title, "", md(scope_text(report)), ""]
    rows = []
    for c in report.contributors:
        cells = [c.person.name, *(role_cell(c.roles.get(role)) for role in ROLE_HEADERS)]
        cells += [pct(c.overall), impact_cell(c.impact), " ".join(map(short, credit_records(c)))]
        rows.append(cells)
    impact = "Impact (heuristic)" if report.measured else "Impact"
    lines += table(["Contributor", *ROLE_HEADERS.values(), "Overall", impact, "Records"], rows)
    for measured in report.measured:
        lines += ["", f"## Measured impact: {md(measured.label)}", "", md(measured_title(measured)), ""]
        largest = max((abs(v.shapley.value) for v in measured.values), default=0.0)
        lines += table(["Contributor", "Files", "Shapley [interval]", "", "Banzhaf", "Leave-one-out"],
                       [[v.person.label, v.files, interval_text(v.shapley), Md(_bar(v.shapley.value, largest)),
                         interval_text(v.banzhaf), interval_text(v.loo)] for v in measured.values])
    if report.impact:
        lines += ["", "## Impact along the lineage", ""]
        if report.measured:
            lines += [md(HEURISTIC_NOTE), ""]
        for step in report.impact:
            credited = credited_text(step)
            if step.measured:
                credited = f"measured by attribution {short(step.measured)}"
            lines.append(f"- {md(impact_text(step))}" + (f": {md(credited)}" if credited else ""))
    return "\n".join(lines) + "\n"
