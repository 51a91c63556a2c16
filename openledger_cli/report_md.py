"""Markdown for the reports: pastes into a pull request; the lineage is a Mermaid graph (GitHub and GitLab draw it).

The phrases (a person with their email, a run's params, a review line, a role's share) are small public functions
here so that the HTML renderer (``report_html``) says the same things with the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ROLE_HEADERS",
    "contributors_markdown",
    "credit_records",
    "credited_text",
    "dataset_credit",
    "dataset_record",
    "evidence",
    "feedback_text",
    "impact_cell",
    "impact_text",
    "mermaid",
    "model_markdown",
    "pairs",
    "pct",
    "person_label",
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


def dataset_record(dataset: Mapping[str, Any], show: Any) -> Any:
    """A dataset version's record column: its record, or the stage that output it, or "no record"."""
    if dataset["records"]:
        return show(dataset["records"][-1])
    producers = dataset.get("produced_by") or []
    return f"output of stage {', '.join(producers)}" if producers else None


def short(record_id: str) -> str:
    return record_id[:19] if record_id.startswith("sha256:") else record_id[:17]


def pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def person_label(person: Mapping[str, Any]) -> str:
    return str(person["name"]) + (f" <{person['email']}>" if person.get("email") else "")


def evidence(contributor: Mapping[str, Any]) -> list[str]:
    """The record ids (or ``commit:`` keys) shown for a lineage contributor: the first three per role."""
    return [e for ids in contributor["roles"].values() for e in ids[:3]]


def credit_records(contributor: Mapping[str, Any]) -> list[str]:
    """The record ids shown for a contributor's credit: the first two per role."""
    return [r for entry in contributor["roles"].values() for r in entry["records"][:2]]


def dataset_credit(dataset: Mapping[str, Any]) -> str:
    return ", ".join(f"{c['person']['name']} ({c['files']})" for c in dataset["contributors"])


def pairs(values: Mapping[str, Any]) -> list[str]:
    """``key=value`` in key order; floats (metrics) to four significant digits."""
    return [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items())]


def trainer_name(run: Mapping[str, Any]) -> str:
    return str(run["trainer"]["name"]) if run["trainer"] else "unknown"


def review_text(review: Mapping[str, Any]) -> str:
    trusted = "" if review["trusted"] else " (untrusted key)"
    return f"{review['decision']} by {review['reviewer']['name']}{trusted}: {review['message'] or ''}"


def feedback_text(item: Mapping[str, Any]) -> str:
    what = ", ".join(str(v) for v in (item["label"], item["score"], item["comment"]) if v is not None)
    by = item["by"]["name"] if item["by"] else "automated"
    return f"feedback on {item['target']} by {by}: {what}"


def promotion_text(promotion: Mapping[str, Any]) -> str:
    return f"promoted to @{promotion['alias']} by {promotion['by']}"


def status_text(record: Mapping[str, Any]) -> str:
    return str(record["status"]) + (f": {record['detail']}" if record.get("detail") else "")


def role_cell(entry: Mapping[str, Any] | None) -> str:
    """A role's share and amount (``50.0% (3)``), empty when the person has no credit in it."""
    return f"{pct(entry['share'])} ({entry['amount']:g})" if entry else ""


def impact_cell(impact: float) -> str:
    return f"{impact:+.4g}" if impact else ""


def scope_text(report: Mapping[str, Any]) -> str:
    scope = report["scope"]
    since = f", since {scope['since']}" if scope["since"] else ""
    weights = ", ".join(f"{role} {weight:g}" for role, weight in report["scoring"]["weights"].items())
    return (f"Model versions: {', '.join(scope['model_versions']) or 'none'}{since}. "
            f"Overall share weights: {weights}. Primary metric: {report['scoring']['primary_metric']} "
            f"({report['scoring']['direction']}).")


def impact_text(step: Mapping[str, Any]) -> str:
    return (f"{step['model']} v{step['from_version']} → v{step['to_version']}: {step['metric']} "
            f"{step['from_value']:.4g} → {step['to_value']:.4g} ({step['improvement']:+.4g})")


def credited_text(step: Mapping[str, Any]) -> str:
    return "; ".join(f"{c['person']['name']} {c['role']} {c['amount']:+.4g}" for c in step["credited"])


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def mermaid(graph: Mapping[str, Any]) -> list[str]:
    """The lineage as a Mermaid flowchart (node ids are positions, labels are quoted)."""
    ids = {node["id"]: f"n{i}" for i, node in enumerate(graph["nodes"])}
    lines = ["```mermaid", "flowchart RL"]
    for node in graph["nodes"]:
        left, right = _SHAPES.get(node["kind"], ("[", "]"))
        label = str(node["label"]).replace('"', "'")
        suffix = "" if node.get("recorded", True) else " (no record)"
        lines.append(f'  {ids[node["id"]]}{left}"{node["kind"]}: {label}{suffix}"{right}')
    for edge in graph["edges"]:
        if edge["from"] in ids and edge["to"] in ids:
            lines.append(f'  {ids[edge["from"]]} -->|{edge["relation"]}| {ids[edge["to"]]}')
    lines.append("```")
    return lines


def model_markdown(report: Mapping[str, Any]) -> str:
    model = report["model"]
    records = report["records"]
    status = "all records verified" if report["verified"] else "**some records failed verification**"
    lines = [f"# Provenance: {model['name']} v{model['version']}", ""]
    aliases = f" · aliases: {', '.join('@' + a for a in model['aliases'])}" if model["aliases"] else ""
    lines += [f"Model record {short(model['records'][-1])} · run `{model['run_id']}`{aliases} · {status}", ""]
    lines += ["## Lineage", "", *mermaid(report["graph"]), ""]
    lines += ["## Contributors", ""]
    lines += table(["Contributor", "Roles", "Evidence"],
                    [[person_label(c["person"]), ", ".join(sorted(c["roles"])), " ".join(map(short, evidence(c)))]
                     for c in report["contributors"]])
    lines += ["", "## Datasets", ""]
    lines += table(["Path", "Digest", "Files", "Contributors (files)", "Record"],
                    [[d["path"], d["digest"][:24], d["files"], dataset_credit(d),
                      dataset_record(d, short) or "no record"] for d in report["datasets"]])
    lines += ["", "## Pipeline stages", ""]
    lines += table(["Stage", "Command", "Experiment", "Commit", "Record"],
                    [[s["name"], s["cmd"], s["experiment"] or "", (s["git"] or {}).get("commit", "")[:10],
                      short(s["records"][-1])] for s in report["stages"]])
    lines += ["", "## Runs", ""]
    for run in report["runs"]:
        params = ", ".join(pairs(run["params"]))
        metrics = ", ".join(pairs(run["metrics"]))
        lines += [f"- `{run['run_id']}` ({run['name']}, {run['status']}) by {trainer_name(run)}: "
                  f"params {params or '-'}; metrics {metrics or '-'}; "
                  f"records {' '.join(short(r) for r in run['records'])}"]
    code = report["code"]
    lines += ["", "## Code", ""]
    lines += [f"Commits: {', '.join(c[:10] for c in code['commits']) or 'unknown'}; "
              f"files the training stage depends on: {', '.join(code['files']) or 'none tracked by git'}", ""]
    lines += table(["Author", "Commits", "Files"], [[a["person"]["name"], len(a["commits"]), ", ".join(a["files"])]
                                                     for a in code["authors"]])
    lines += ["", "## Reviews and feedback", ""]
    if not report["reviews"] and not report["feedback"]:
        lines.append("None recorded.")
    lines += [f"- {review_text(review)} ({short(review['record'])})" for review in report["reviews"]]
    lines += [f"- {feedback_text(item)} ({short(item['record'])})" for item in report["feedback"]]
    lines += [f"- {promotion_text(p)} ({short(p['record'])})" for p in report["promotions"]]
    lines += ["", "## Records", ""]
    lines += table(["Record", "Kind", "Signer", "Time", "Status"],
                    [[short(rid), r["kind"], r["signer"], r["time"], status_text(r)] for rid, r in records.items()])
    return "\n".join(lines) + "\n"


def contributors_markdown(report: Mapping[str, Any]) -> str:
    scope = report["scope"]
    title = f"# Contributors: {scope['model']}" if scope["model"] else "# Contributors"
    lines = [title, "", scope_text(report), ""]
    rows = []
    for c in report["contributors"]:
        cells = [c["person"]["name"], *(role_cell(c["roles"].get(role)) for role in ROLE_HEADERS)]
        cells += [pct(c["overall"]), impact_cell(c["impact"]), " ".join(map(short, credit_records(c)))]
        rows.append(cells)
    lines += table(["Contributor", *ROLE_HEADERS.values(), "Overall", "Impact", "Records"], rows)
    if report["impact"]:
        lines += ["", "## Impact along the lineage", ""]
        for step in report["impact"]:
            credited = credited_text(step)
            lines.append(f"- {impact_text(step)}" + (f": {credited}" if credited else ""))
    return "\n".join(lines) + "\n"
