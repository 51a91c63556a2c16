"""Markdown for the reports: pastes into a pull request; the lineage is a Mermaid graph (GitHub and GitLab draw it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["contributors_markdown", "mermaid", "model_markdown", "pct", "short", "table"]

_SHAPES = {"model": ("[[", "]]"), "run": ("(", ")"), "stage": ("[/", "/]"), "dataset": ("[(", ")]"),
           "commit": ("{{", "}}")}


def short(record_id: str) -> str:
    return record_id[:19] if record_id.startswith("sha256:") else record_id[:17]


def pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _people(entries: Iterable[Mapping[str, Any]]) -> str:
    return ", ".join(str(e["person"]["name"]) for e in entries)


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
                    [[c["person"]["name"] + (f" <{c['person']['email']}>" if c["person"].get("email") else ""),
                      ", ".join(sorted(c["roles"])),
                      " ".join(short(e) for evidence in c["roles"].values() for e in evidence[:3])]
                     for c in report["contributors"]])
    lines += ["", "## Datasets", ""]
    lines += table(["Path", "Digest", "Files", "Contributors (files)", "Record"],
                    [[d["path"], d["digest"][:24], d["files"],
                      ", ".join(f"{c['person']['name']} ({c['files']})" for c in d["contributors"]),
                      short(d["records"][-1]) if d["records"] else "no record"] for d in report["datasets"]])
    lines += ["", "## Pipeline stages", ""]
    lines += table(["Stage", "Command", "Experiment", "Commit", "Record"],
                    [[s["name"], s["cmd"], s["experiment"] or "", (s["git"] or {}).get("commit", "")[:10],
                      short(s["records"][-1])] for s in report["stages"]])
    lines += ["", "## Runs", ""]
    for run in report["runs"]:
        params = ", ".join(f"{k}={v}" for k, v in sorted(run["params"].items()))
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in sorted(run["metrics"].items()))
        trainer = run["trainer"]["name"] if run["trainer"] else "unknown"
        lines += [f"- `{run['run_id']}` ({run['name']}, {run['status']}) by {trainer}: params {params or '-'}; "
                  f"metrics {metrics or '-'}; records {' '.join(short(r) for r in run['records'])}"]
    code = report["code"]
    lines += ["", "## Code", ""]
    lines += [f"Commits: {', '.join(c[:10] for c in code['commits']) or 'unknown'}; "
              f"files the training stage depends on: {', '.join(code['files']) or 'none tracked by git'}", ""]
    lines += table(["Author", "Commits", "Files"], [[a["person"]["name"], len(a["commits"]), ", ".join(a["files"])]
                                                     for a in code["authors"]])
    lines += ["", "## Reviews and feedback", ""]
    if not report["reviews"] and not report["feedback"]:
        lines.append("None recorded.")
    for review in report["reviews"]:
        trusted = "" if review["trusted"] else " (untrusted key)"
        lines.append(f"- {review['decision']} by {review['reviewer']['name']}{trusted}: "
                     f"{review['message'] or ''} ({short(review['record'])})")
    for item in report["feedback"]:
        what = ", ".join(str(v) for v in (item["label"], item["score"], item["comment"]) if v is not None)
        by = item["by"]["name"] if item["by"] else "automated"
        lines.append(f"- feedback on {item['target']} by {by}: {what} ({short(item['record'])})")
    for promotion in report["promotions"]:
        lines.append(f"- promoted to @{promotion['alias']} by {promotion['by']} ({short(promotion['record'])})")
    lines += ["", "## Records", ""]
    lines += table(["Record", "Kind", "Signer", "Time", "Status"],
                    [[short(rid), r["kind"], r["signer"], r["time"],
                      r["status"] + (f": {r['detail']}" if r.get("detail") else "")] for rid, r in records.items()])
    return "\n".join(lines) + "\n"


def contributors_markdown(report: Mapping[str, Any]) -> str:
    scope = report["scope"]
    title = f"# Contributors: {scope['model']}" if scope["model"] else "# Contributors"
    since = f", since {scope['since']}" if scope["since"] else ""
    weights = ", ".join(f"{role} {weight:g}" for role, weight in report["scoring"]["weights"].items())
    lines = [title, "", f"Model versions: {', '.join(scope['model_versions']) or 'none'}{since}. "
             f"Overall share weights: {weights}. Primary metric: {report['scoring']['primary_metric']} "
             f"({report['scoring']['direction']}).", ""]
    roles = ("data", "code", "training", "review", "feedback")
    rows = []
    for c in report["contributors"]:
        cells = [c["person"]["name"]]
        for role in roles:
            entry = c["roles"].get(role)
            cells.append(f"{pct(entry['share'])} ({entry['amount']:g})" if entry else "")
        cells += [pct(c["overall"]), f"{c['impact']:+.4g}" if c["impact"] else "",
                  " ".join(short(r) for entry in c["roles"].values() for r in entry["records"][:2])]
        rows.append(cells)
    lines += table(["Contributor", "Data (files)", "Code (commits)", "Training (runs)", "Review", "Feedback",
                     "Overall", "Impact", "Records"], rows)
    if report["impact"]:
        lines += ["", "## Impact along the lineage", ""]
        for step in report["impact"]:
            credited = "; ".join(f"{c['person']['name']} {c['role']} {c['amount']:+.4g}" for c in step["credited"])
            lines.append(f"- {step['model']} v{step['from_version']} → v{step['to_version']}: {step['metric']} "
                         f"{step['from_value']:.4g} → {step['to_value']:.4g} ({step['improvement']:+.4g})"
                         + (f": {credited}" if credited else ""))
    return "\n".join(lines) + "\n"
