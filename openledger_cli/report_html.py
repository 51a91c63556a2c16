"""HTML for the reports: one self-contained file that opens offline (inline CSS and SVG, no script, no network).

    page = model_html(model_report(graph, "wine-classifier", "2"))  # a whole <!DOCTYPE html> document

Everything taken from a report is escaped on its way into the page: labels, names and messages come from
records anyone with a key can write, so a run named ``<script>`` shows as text. The page's
Content-Security-Policy forbids every load (scripts, fonts, frames, connections, images other than ``data:``),
so a mistake in a renderer still cannot make the file fetch anything. The sections, phrases and numbers are the
Markdown report's (``report_md``'s phrase functions serve both).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from openledger.credit.measured import MeasuredAttribution
from openledger.reports.contributors import CONTRIBUTORS_SCHEMA, ContributorsReport
from openledger.reports.model import MODEL_SCHEMA, ModelReport, RecordCheck, RunView
from openledger_cli import report_md as md
from openledger_cli.lineage_svg import KIND_STYLES, lineage_svg
from openledger_cli.lineage_svg import STYLE as SVG_STYLE

__all__ = ["CSP", "Html", "contributors_html", "esc", "model_html"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_STYLE = """
:root{color-scheme:light;--ink:#111827;--muted:#4b5563;--line:#d1d5db;--soft:#f3f4f6;--ok:#166534;--bad:#b91c1c}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--ink);font:15px/1.5 system-ui,'Segoe UI','DejaVu Sans',sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:1.6rem;margin:0 0 .3rem}
h2{font-size:1.15rem;margin:2rem 0 .6rem;padding-bottom:.2rem;border-bottom:1px solid var(--line)}
p.facts{margin:.2rem 0 1rem;color:var(--muted)}
code{font:.86em ui-monospace,'DejaVu Sans Mono',monospace;background:var(--soft);padding:.05em .3em;border-radius:3px}
code.id{white-space:nowrap}
.badge{display:inline-block;padding:.05em .55em;border-radius:9px;font-weight:600;font-size:.9em}
.badge.ok,.status-verified{color:var(--ok)}
.badge.ok{background:#dcfce7}
.badge.bad{background:#fee2e2;color:var(--bad)}
.status-untrusted{color:#92400e;font-weight:600}
.status-damaged,.missing{color:var(--bad);font-weight:600}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem;font-size:.93em}
th,td{border:1px solid var(--line);padding:.35em .6em;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}
tbody tr:nth-child(even){background:#fafafa}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
ul.items{padding-left:1.3em}
ul.legend{list-style:none;padding:0;margin:.3rem 0 0;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;
 font-size:.85em;color:var(--muted)}
.swatch{display:inline-block;width:1.1em;height:.8em;margin-right:.35em;border:1.5px solid;vertical-align:-.05em}
.swatch-none{background:#fff;border:1.5px dashed var(--bad)}
figure{margin:0;padding:12px;border:1px solid var(--line);border-radius:6px;overflow-x:auto}
footer{margin-top:2.5rem;color:var(--muted);font-size:.8em}
@page{margin:14mm}
@media print{
 body{font-size:10pt;-webkit-print-color-adjust:exact;print-color-adjust:exact}
 main{max-width:none;padding:0}
 .scroll,figure{overflow:visible}
 figure{border:none;padding:0}
 h2{break-after:avoid}
 tr,figure{break-inside:avoid}
 td{overflow-wrap:break-word}
 table{font-size:9pt}
}
"""


class Html(str):
    """Markup that is safe to put into the page as it is: made by this module from escaped parts."""

    __slots__ = ()


def esc(value: Any) -> Html:
    """``value`` as text in the page (None: nothing); markup already made here passes unchanged."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value)))


def _join(parts: Iterable[Any], separator: str = " ") -> Html:
    return Html(separator.join(esc(p) for p in parts))


def _code(text: Any, full: Any = None) -> Html:
    """Monospace text, with the whole value in its tooltip when ``text`` is a shortened form of it."""
    title = f' title="{esc(full)}"' if full is not None and str(full) != str(text) else ""
    return Html(f"<code{title}>{esc(text)}</code>")


def _id(record_id: str) -> Html:
    return Html(f'<code class="id" title="{esc(record_id)}">{esc(md.short(record_id))}</code>')


def _ids(record_ids: Iterable[str]) -> Html:
    return _join(map(_id, record_ids))


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = ()) -> Html:
    right = set(numeric)

    def cell(tag: str, index: int, value: Any) -> str:
        return f'<{tag} class="num">{esc(value)}</{tag}>' if index in right else f"<{tag}>{esc(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "\n".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}">None recorded.</td></tr>'
    return Html(f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n'
                "</table></div>")


def _items(items: Iterable[Any]) -> Html:
    return Html('<ul class="items">\n' + "\n".join(f"<li>{esc(i)}</li>" for i in items) + "\n</ul>")


def _section(title: str, *content: Any) -> Html:
    return Html(f"<section>\n<h2>{esc(title)}</h2>\n" + "\n".join(esc(c) for c in content) + "\n</section>")


def _page(title: str, body: Iterable[Any], schema: str) -> str:
    swatches = "\n".join(f".swatch-{kind}{{background:{fill};border-color:{stroke}}}"
                         for kind, (fill, stroke) in KIND_STYLES.items())
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">\n'
            '<meta name="referrer" content="no-referrer">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{_STYLE}{SVG_STYLE}\n{swatches}\n</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(esc(part) for part in body)
            + f"\n<footer>OpenLedger report {_code(schema)}: the same data as <code>--format json</code>."
            "</footer>\n</main>\n</body>\n</html>\n")


def _lines(values: Sequence[str]) -> Html:
    return Html("<br>".join(esc(v) for v in values)) if values else Html("-")


# -- the model report ----------------------------------------------------------------------------------------


def _legend() -> Html:
    entries = [f'<li><span class="swatch swatch-{kind}"></span>{esc(kind)}</li>' for kind in KIND_STYLES]
    entries.append('<li><span class="swatch swatch-none"></span>no record</li>')
    return Html('<ul class="legend">' + "".join(entries) + "</ul>")


def _run_rows(runs: Iterable[RunView]) -> list[list[Any]]:
    return [[_code(run.run_id), run.name, run.status, md.trainer_name(run), _lines(md.pairs(run.params)),
             _lines(md.pairs(run.metrics)), _ids(run.records)] for run in runs]


def _status(check: RecordCheck) -> Html:
    return Html(f'<span class="status-{esc(check.status)}">{esc(md.status_text(check))}</span>')


def model_html(report: ModelReport) -> str:
    model = report.model
    title = f"Provenance: {model.ref.name} v{model.ref.version}"
    status = (Html('<span class="badge ok">all records verified</span>') if report.verified
              else Html('<span class="badge bad">some records failed verification</span>'))
    facts = [Html(f"Model record {_id(model.records[-1])}"), Html(f"run {_code(model.run_id)}")]
    if model.aliases:
        facts.append(esc("aliases: " + ", ".join("@" + a for a in model.aliases)))
    facts.append(status)
    if report.attribution:
        text, command = md.attribution_link_text(report.attribution, model.ref.name)
        facts.append(Html(f"{esc(text)} {_code(command)}"))
    code = report.code
    commits = _join((_code(c[:10], c) for c in code.commits), ", ") or "unknown"
    feedback = [Html(f"{esc(md.review_text(r))} ({_id(r.record)})") for r in report.reviews]
    feedback += [Html(f"{esc(md.feedback_text(f))} ({_id(f.record)})") for f in report.feedback]
    promotions = [Html(f"{esc(md.promotion_text(p))} ({_id(p.record)})") for p in report.promotions]
    none = [] if report.reviews or report.feedback else [Html("<p>None recorded.</p>")]
    body = [
        Html(f"<h1>{esc(title)}</h1>"), Html('<p class="facts">' + " · ".join(facts) + "</p>"),
        _section("Lineage", Html("<figure>" + lineage_svg(report.graph, f"Lineage of {model.ref.name} v"
                                                          f"{model.ref.version}") + "</figure>"), _legend()),
        _section("Contributors", _table(["Contributor", "Roles", "Evidence"],
                                        [[c.person.label, ", ".join(sorted(c.roles)), _ids(md.evidence(c))]
                                         for c in report.contributors])),
        _section("Datasets", _table(["Path", "Digest", "Files", "Contributors (files)", "Record"],
                                    [[d.ref.path, _code(d.ref.digest[:24], d.ref.digest), d.files,
                                      md.dataset_credit(d),
                                      md.dataset_record(d, _id) or Html('<span class="missing">no record</span>')]
                                     for d in report.datasets], numeric=[2])),
        _section("Pipeline stages", _table(["Stage", "Command", "Experiment", "Commit", "Record"],
                                           [[s.name, _code(s.cmd), s.experiment or "",
                                             _code((s.commit or "")[:10], s.commit), _id(s.records[-1])]
                                            for s in report.stages])),
        _section("Runs", _table(["Run", "Name", "Status", "Trainer", "Params", "Metrics", "Records"],
                                _run_rows(report.runs))),
        _section("Code", Html(f"<p>Commits: {commits}; files the training stage depends on: "
                              f"{_join(map(_code, code.files), ', ') or 'none tracked by git'}</p>"),
                 _table(["Author", "Commits", "Files"], [[a.person.name, len(a.commits), ", ".join(a.files)]
                                                         for a in code.authors], numeric=[1])),
        _section("Reviews and feedback", *none, _items([*feedback, *promotions]) if feedback or promotions else ""),
        _section("Records", _table(["Record", "Kind", "Signer", "Time", "Status"],
                                   [[_id(rid), r.kind, md.signer_text(r.signer), r.time, _status(r)]
                                    for rid, r in report.records.items()])),
    ]
    return _page(title, body, MODEL_SCHEMA)


# -- the contributors report ---------------------------------------------------------------------------------


def _value_chart(measured: MeasuredAttribution) -> Html:
    """Each player's Shapley value as a bar from zero (green above, red below) with its interval as a whisker:
    inline SVG, every label escaped, a tooltip with the exact numbers."""
    values = measured.values
    row, left, width, right = 26, 230, 380, 120
    ends = [0.0, *(v.shapley.value for v in values)]
    ends += [e for v in values for e in (v.shapley.low, v.shapley.high) if e is not None]
    low, high = min(ends), max(ends)
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return round(left + (value - low) / span * width, 1)

    height = row * len(values) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="values" width="{left + width + right}" '
             f'height="{height}" viewBox="0 0 {left + width + right} {height}" role="img" '
             f'aria-label="{esc("Shapley values of " + measured.label)}">',
             f'<line x1="{x(0)}" y1="4" x2="{x(0)}" y2="{height - 18}" stroke="#6b7280" stroke-width="1"/>',
             f'<text x="{x(0)}" y="{height - 4}" font-size="11" text-anchor="middle" fill="#4b5563">0</text>']
    for i, value in enumerate(values):
        estimate = value.shapley
        top = 4 + i * row
        start, end = sorted((x(0), x(estimate.value)))
        colour = "#16a34a" if estimate.value >= 0 else "#dc2626"
        label = value.person.label if len(value.person.label) <= 34 else value.person.label[:33] + "…"
        parts.append(f"<g><title>{esc(value.person.label)}: {esc(md.interval_text(estimate))}</title>")
        parts.append(f'<text x="{left - 8}" y="{top + 15}" font-size="12" text-anchor="end">{esc(label)}</text>')
        parts.append(f'<rect x="{start}" y="{top + 4}" width="{max(end - start, 1.0):.1f}" height="{row - 10}" '
                     f'fill="{colour}" fill-opacity="0.75"/>')
        if estimate.low is not None and estimate.high is not None and estimate.low != estimate.high:
            middle = top + row / 2 - 1
            parts.append(f'<path d="M{x(estimate.low)} {middle}H{x(estimate.high)}M{x(estimate.low)} {middle - 5}'
                         f'V{middle + 5}M{x(estimate.high)} {middle - 5}V{middle + 5}" stroke="#111827" '
                         'stroke-width="1.5" fill="none"/>')
        parts.append(f'<text x="{left + width + 8}" y="{top + 15}" font-size="12">{esc(f"{estimate.value:+.4g}")}'
                     "</text></g>")
    parts.append("</svg>")
    return Html("\n".join(parts))


def _measured(measured: MeasuredAttribution) -> Html:
    rows = [[v.person.label, v.files, md.interval_text(v.shapley), md.interval_text(v.banzhaf),
             md.interval_text(v.loo)] for v in measured.values]
    return _section(f"Measured impact: {measured.label}", Html(f'<p class="facts">{esc(md.measured_title(measured))}'
                                                             "</p>"),
                    Html(f"<figure>{_value_chart(measured)}</figure>"),
                    _table(["Contributor", "Files", "Shapley [interval]", "Banzhaf", "Leave-one-out"], rows,
                           numeric=range(1, 5)))


def contributors_html(report: ContributorsReport) -> str:
    scope = report.scope
    title = f"Contributors: {scope.model}" if scope.model else "Contributors"
    rows = [[c.person.name, *(md.role_cell(c.roles.get(role)) for role in md.ROLE_HEADERS),
             md.pct(c.overall), md.impact_cell(c.impact), _ids(md.credit_records(c))]
            for c in report.contributors]
    impact = "Impact (heuristic)" if report.measured else "Impact"
    body = [Html(f"<h1>{esc(title)}</h1>"), Html(f'<p class="facts">{esc(md.scope_text(report))}</p>'),
            _table(["Contributor", *md.ROLE_HEADERS.values(), "Overall", impact, "Records"], rows,
                   numeric=range(1, len(md.ROLE_HEADERS) + 3))]
    body += [_measured(m) for m in report.measured]
    if report.impact:
        steps = []
        for step in report.impact:
            credited = md.credited_text(step)
            if step.measured:
                credited = f"measured by attribution {md.short(step.measured)}"
            steps.append(md.impact_text(step) + (f": {credited}" if credited else ""))
        note = [Html(f"<p>{esc(md.HEURISTIC_NOTE)}</p>")] if report.measured else []
        body.append(_section("Impact along the lineage", *note, _items(steps)))
    return _page(title, body, CONTRIBUTORS_SCHEMA)
