"""Hostile strings in every field a user controls, pushed into every output people read (issue: "Markup and escape
injection into what people read").

Anyone with a key writes the names, messages, params and paths a report shows. For each generated set of
hostile strings this builds a real signed ledger (a model version's whole lineage: identities, a dataset with
contributors, a run, a stage, the model, a review, feedback) and checks, by structure rather than by text:

* Markdown (model report, contributors report, reconcile, the CI job summary), parsed by a CommonMark
  renderer with GitHub's table extension: the same headings the code writes and no others (one verdict line
  in a CI summary), no raw HTML, no links or images, the same number of table rows as the report has
  entries, one Mermaid block whose node and edge lines keep their shape, and no line breaking character
  (``\\r``, ``\\u2028``, ``\\x85``, …) anywhere;
* the terminal (``report model``, ``report contributors``, ``log``, the gate's lines, error messages), written
  by the real rich consoles to a terminal emulator (pyte): no escape sequence but the colours rich writes
  itself, the first line of the gate's output is its verdict and no other line claims one;
* JSON: strict JSON (no NaN or Infinity tokens), the hostile strings back byte for byte.

HTML is covered by tests/reports/test_html.py (every report string escaped, a CSP that forbids every load).
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyte
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from rich.console import Console
from rich.markdown import Markdown

from openledger import Ledger
from openledger.governance.ci import CiContext, CiRun
from openledger.governance.policy import gate_subject
from openledger.lineage.graph import LedgerGraph
from openledger.lineage.reconcile import reconcile
from openledger.lineage.targets import LedgerRegistry, resolve_target
from openledger.reports.contributors import contributors_report
from openledger.reports.model import ModelReport, model_report
from openledger.store.verify import verify_ledger
from openledger_cli import render, report_md
from openledger_cli.ci import ci_markdown
from openledger_cli.reconcile import reconcile_markdown
from openledger_cli.report import contributors_table
from openledger_cli.review import gate_lines
from tests.conftest import make_signer

ADA, BOB, CAT = make_signer(71, feed="ada"), make_signer(72, feed="bob"), make_signer(73, feed="cat")

ATTACKS = [
    "[/]", "[red]x[/red]", "[link=https://evil.example]click[/link]", "[bold", ":smile:",
    "\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "\x1b[1A\x1b[2KPASSED", "\x1b[31mred", "\r✅ PASSED", "\x9b2J",
    "\u2028# OpenLedger: ✅ passed", "x\u2029## Verification", "a\x85b", "a\x0bb\x0cc", "line\nbreak",
    "# heading", "<img src=https://evil.example/t.png>", "<script>alert(1)</script>", "</td></tr>",
    "[click](https://evil.example)", "![t](https://evil.example/t.png)", "https://evil.example/x", "www.evil.example",
    "| fake | row |", "```", "~~~", "`code`", "**bold**", "_em_", "$x^2$", "&lt;b&gt;", "\\", "\\|",
    '"] --> n0["', "end", "%%{init: {}}%%", "click n0 call alert()", "#quot;", "<b>#35;",
    "\u202egnp.exe", "\u200bzero\u200bwidth", "\ufeffbom", "\U0001F600\u200d", "é" * 3,
    "x" * 500,
]
FIELD = st.one_of(st.sampled_from(ATTACKS),
                  st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30),
                  st.lists(st.sampled_from(ATTACKS), min_size=2, max_size=4).map("".join))
LOCAL_PART = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Zs", "Zl", "Zp", "Cc"],
                                   exclude_characters="@"), min_size=1, max_size=12)
EMAIL = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL_PART.filter(lambda s: not re.search(r"\s", s)),
                  st.sampled_from(["example.org", "ex<b>ample.org", "[red]x", "e\x1b[2Jx"]))
RUN_ID = "f" * 32


def _at(minute: int) -> datetime:
    return datetime(2026, 5, 1, 9, minute, tzinfo=timezone.utc)


def build(root: Path, s: dict[str, str]) -> Ledger:
    """A whole lineage whose every user-controlled string is hostile."""
    ledger = Ledger.init(root)
    for signer, name, email in ((ADA, s["ada"], s["ada_email"]), (BOB, s["bob"], s["bob_email"]),
                                (CAT, "Cat", "cat@example.org")):
        ledger.append(signer, "identity", {"key": signer.keyid, "name": name[:200], "email": email}, time=_at(0))
    digest = "md5:" + "d" * 32 + ".dir"
    dataset = ledger.append(CAT, "dataset", {
        "path": s["path"], "digest": digest, "files": 2,
        "contributors": [{"name": s["contributor"], "email": s["ada_email"], "files": 2, "paths": [s["file"], "b"]}],
    }, [digest], time=_at(1))
    run = ledger.append(ADA, "run", {
        "run_id": RUN_ID, "run_name": s["run_name"], "status": "FINISHED",
        "params": {s["param_key"]: s["param_value"]}, "metrics": {s["metric_key"]: 0.5, "accuracy": 0.9},
        "inputs": [{"name": s["input_name"], "digest": digest, "source_type": "dvc"}],
    }, [dataset.id, f"mlflowrun:{RUN_ID}"], time=_at(2))
    ledger.append(ADA, "stage", {"name": s["stage"], "cmd": s["cmd"], "dvcfile": "dvc.yaml",
                                 "deps": [{"path": s["path"], "hash": digest}], "outs": [], "experiment": s["exp"]},
                  [dataset.id, run.id], time=_at(3))
    model = ledger.append(ADA, "model", {"name": "m", "version": 1, "run_id": RUN_ID}, [f"mlflowrun:{RUN_ID}"],
                          time=_at(4))
    ledger.append(BOB, "review", {"decision": "reject", "target": s["target"], "message": s["message"],
                                  "records": [model.id]}, [model.id], time=_at(5))
    ledger.append(BOB, "feedback", {"target": s["target"], "label": s["label"], "comment": s["comment"],
                                    "records": [model.id]}, [model.id], time=_at(6))
    return ledger


STRINGS = st.fixed_dictionaries({
    **dict.fromkeys(("ada", "bob", "path", "contributor", "file", "run_name", "param_key", "param_value",
                     "metric_key", "input_name", "stage", "cmd", "exp", "target", "message", "label", "comment"),
                    FIELD),
    "ada_email": EMAIL, "bob_email": EMAIL,
})

GFM = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
LINE_BREAKS = re.compile("[\r\x0b\x0c\x1b\x85\u2028\u2029]")


def _headings(tokens: list[Any]) -> list[tuple[str, str]]:
    return [(token.tag, tokens[i + 1].content) for i, token in enumerate(tokens) if token.type == "heading_open"]


def _rows(tokens: list[Any]) -> list[int]:
    """Body rows per table."""
    counts: list[int] = []
    inside = False
    for token in tokens:
        if token.type in ("tbody_open", "tbody_close"):
            inside = token.type == "tbody_open"
            counts += [0] if inside else []
        elif token.type == "tr_open" and inside:
            counts[-1] += 1
    return counts


def check_markdown(text: str, *, h1: int, h2: list[str], rows: list[int]) -> list[Any]:
    assert not LINE_BREAKS.search(text), repr(LINE_BREAKS.search(text))
    tokens = GFM.parse(text)
    flat = [*tokens, *(child for t in tokens for child in (t.children or []))]
    kinds = Counter(t.type for t in flat)
    assert kinds["html_block"] == kinds["html_inline"] == 0, [t.content for t in flat if t.type.startswith("html")]
    assert kinds["link_open"] == kinds["image"] == 0
    headings = _headings(tokens)
    assert [tag for tag, _ in headings].count("h1") == h1, headings
    assert [content for tag, content in headings if tag == "h2"] == h2, headings
    assert [tag for tag, _ in headings if tag not in ("h1", "h2")] == [], headings
    assert _rows(tokens) == rows
    return tokens


def check_mermaid(tokens: list[Any], report: ModelReport) -> None:
    [fence] = [t for t in tokens if t.type == "fence"]
    assert fence.info == "mermaid"
    lines = fence.content.splitlines()
    assert lines[0] == "flowchart RL" and len(lines) == 1 + len(report.graph.nodes) + len(report.graph.edges)
    node = re.compile(r'  n\d+(\[\[|\(|\[/|\[\(|\{\{|\[)"[^"\[\]<>`|{}()]*"(\]\]|\)|/\]|\)\]|\}\}|\])')
    edge = re.compile(r'  n\d+ -->\|"[^"|<>]*"\| n\d+')
    assert all(node.fullmatch(line) for line in lines[1:1 + len(report.graph.nodes)]), lines
    assert all(edge.fullmatch(line) for line in lines[1 + len(report.graph.nodes):]), lines


def terminal_screen(write: Any) -> tuple[str, list[str]]:
    """What a terminal shows after ``write(console)`` prints to a real rich console: (raw output, screen lines)."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="truecolor", width=160, markup=False,
                      highlight=False, emoji=False, soft_wrap=True)
    write(console)
    raw = buffer.getvalue()
    screen = pyte.Screen(160, 400)
    pyte.Stream(screen).feed(raw.replace("\n", "\r\n"))
    return raw, [line.rstrip() for line in screen.display]


def check_terminal_raw(raw: str) -> None:
    # the only escape sequences are the colours rich writes (SGR: ESC [ digits ; ... m)
    assert re.sub(r"\x1b\[[0-9;]*m", "", raw).find("\x1b") == -1, repr(raw[:300])
    assert "\x9b" not in raw and "\x07" not in raw and "\r" not in raw


@pytest.fixture(autouse=True)
def _plain_consoles(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    render.console.cache_clear()
    yield
    render.console.cache_clear()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(strings=STRINGS)
def test_hostile_strings_cannot_restructure_any_report(tmp_path_factory: pytest.TempPathFactory,
                                                       strings: dict[str, str]) -> None:
    ledger = build(tmp_path_factory.mktemp("hostile"), strings)
    graph = LedgerGraph.load(ledger)
    report = model_report(graph, "m", "1")
    credit = contributors_report(graph)

    # Markdown
    md = report_md.model_markdown(report)
    tokens = check_markdown(md, h1=1, h2=["Lineage", "Contributors", "Datasets", "Pipeline stages", "Runs", "Code",
                                         "Reviews and feedback", "Records"],
                            rows=[n for n in (len(report.contributors), len(report.datasets), len(report.stages),
                                              len(report.code.authors), len(report.records)) if n])
    check_mermaid(tokens, report)
    items = [t for t in tokens if t.type == "list_item_open"]
    assert len(items) == len(report.runs) + len(report.reviews) + len(report.feedback) + len(report.promotions)
    check_markdown(report_md.contributors_markdown(credit), h1=1, h2=["Impact along the lineage"] if credit.impact
                   else [], rows=[len(credit.contributors)])

    # the CI job summary: exactly one verdict, written by the code
    verification = verify_ledger(ledger, workers=1)
    gate = gate_subject(ledger, resolve_target(ledger, "model:m@1", LedgerRegistry(ledger)))
    from openledger.governance.ci import GateOutcome

    run = CiRun(CiContext("local", "main", "main", False), False, verification, reconcile(graph),
                (GateOutcome("m@1", gate),), credit, "ledger")
    summary = ci_markdown(run)
    headings = _headings(check_markdown(summary, h1=1, h2=["Verification", "Models", "Reconcile", "Contributors"],
                                        rows=_rows(GFM.parse(summary))))
    assert headings[0] == ("h1", "OpenLedger: ❌ failed")  # the review rejects the model: the gate fails
    assert summary.splitlines()[0] == "# OpenLedger: ❌ failed"
    check_markdown(reconcile_markdown(run.reconciliation, False), h1=0, h2=["Reconcile"],
                   rows=_rows(GFM.parse(reconcile_markdown(run.reconciliation, False))))

    # the terminal
    for write in (lambda c: c.print(Markdown(report_md.model_markdown(report))),
                  lambda c: c.print(contributors_table(credit)),
                  lambda c: c.print(render.records_table(ledger.select(), ledger.trust()))):
        raw, _ = terminal_screen(write)
        check_terminal_raw(raw)
    raw, screen = terminal_screen(lambda c: [c.print(line) for line in gate_lines(gate)])
    check_terminal_raw(raw)
    shown = [line for line in screen if line]
    assert shown[0].startswith("FAILED ") and not any("PASSED" in line[:8] for line in shown[1:]), shown

    # JSON: strict, and every string back as written
    def strict(name: str) -> None:
        raise AssertionError(f"{name} in JSON")

    text = json.dumps(report.to_json(), ensure_ascii=False, sort_keys=True)
    data = json.loads(text, parse_constant=strict)
    assert ModelReport.from_json(data).to_json() == data
    assert data["runs"][0]["name"] == strings["run_name"] and data["reviews"][0]["message"] == strings["message"]


def test_the_issue_s_attacks_through_the_real_cli(tmp_path: Path) -> None:
    """The cases the review found, end to end: `[/]` in a name, terminal escapes and a fake PASSED in a review
    message, a verdict line smuggled through a Unicode line separator; every command exits normally (0/1),
    with no traceback, and shows the strings as text."""
    from click.testing import CliRunner

    from openledger_cli.main import cli

    strings = dict.fromkeys(("ada", "bob", "path", "contributor", "file", "run_name", "param_key", "param_value",
                             "metric_key", "input_name", "stage", "cmd", "exp", "target", "label", "comment"), "[/]")
    strings |= {"ada_email": "a[/]@example.org", "bob_email": "bob@example.org",
                "message": "\x1b[2J\x1b[H\x1b[32mPASSED model m@1\x1b[0m\u2028# OpenLedger: ✅ passed",
                "path": "src/\x00train.py"}  # no file has a NUL: it reached git's argv and crashed `report model`
    ledger = build(tmp_path / "repo", strings)
    runner = CliRunner()
    base = ["--ledger", str(ledger.root)]
    for args in (["log"], ["keys", "list"], ["report", "model", "m@1"], ["report", "contributors"],
                 ["verify", "--strict"], ["show", ledger.ids(kind="review")[0]],
                 ["gate", "model", "m@1"], ["ci", "--no-checkpoint", "--format", "md"]):
        result = runner.invoke(cli, [*base, *args], env={"OPENLEDGER_SIGNING_KEY": "", "MLFLOW_TRACKING_URI": "",
                                                         "GITHUB_ACTIONS": "", "GITLAB_CI": ""})
        assert result.exit_code in (0, 1), (args, result.output, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert "\x1b" not in result.stdout and "\u2028" not in result.stdout, (args, result.stdout)
        if args[0] == "gate":
            assert result.exit_code == 1 and result.stdout.startswith("FAILED model:m@1")
            assert "\\x1b[2J" in result.stdout  # shown, not obeyed
        if args[0] == "ci":  # one verdict line, the one the exit code says (no models are gated here)
            verdict = "✅ passed" if result.exit_code == 0 else "❌ failed"
            assert [line for line in result.stdout.splitlines() if line.startswith("# ")] == [
                f"# OpenLedger: {verdict}"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(strings=STRINGS)
def test_hostile_strings_cannot_restructure_measured_impact(tmp_path_factory: pytest.TempPathFactory,
                                                            strings: dict[str, str]) -> None:
    """An attribution record whose players, metric and signer carry hostile strings: the measured section of the
    contributors report (Markdown, terminal, HTML chart), the model report's link to it and the pool split's
    CSV keep their structure, and no cell can start a spreadsheet formula."""
    import csv
    from decimal import Decimal
    from html.parser import HTMLParser

    from openledger.reports.contributors import ContributorsReport
    from openledger_cli.report import measured_table, pool_csv, pool_table
    from openledger_cli.report_html import contributors_html
    from tests.reports.conftest import add_attribution, attribution_body

    ledger = build(tmp_path_factory.mktemp("hostile-measured"), strings)
    model = ledger.ids(kind="model")[0]
    dataset = ledger.ids(kind="dataset")[0]
    players = [(strings["contributor"], strings["ada_email"], ADA.keyid, 0.2),
               (strings["label"], "=HYPERLINK(1)@example.org", None, -0.1),
               (strings["comment"], strings["bob_email"], None, 0.05)]
    add_attribution(ledger, CAT, attribution_body("m", "1", [model], dataset, players,
                                                  metric=strings["metric_key"]), 30)
    graph = LedgerGraph.load(ledger)
    credit = contributors_report(graph, model="m")
    [measured] = credit.measured
    assert len(measured.values) == 3

    text = report_md.contributors_markdown(credit)
    check_markdown(text, h1=1, h2=["Measured impact: m@1"], rows=[len(credit.contributors), 3])
    report = model_report(graph, "m", "1")
    assert report.attribution is not None
    check_markdown(report_md.model_markdown(report), h1=1,
                   h2=["Lineage", "Contributors", "Datasets", "Pipeline stages", "Runs", "Code",
                       "Reviews and feedback", "Records"],
                   rows=[n for n in (len(report.contributors), len(report.datasets), len(report.stages),
                                     len(report.code.authors), len(report.records)) if n])

    split = credit.pool(Decimal("100"))
    for write in (lambda c: c.print(contributors_table(credit)), lambda c: c.print(measured_table(measured)),
                  lambda c: c.print(pool_table(split))):
        raw, _ = terminal_screen(write)
        check_terminal_raw(raw)

    rows = list(csv.reader(io.StringIO(pool_csv(split))))
    assert len(rows) == 1 + len(split.shares) + len(split.unmeasured)
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows[1:] for cell in row[:3]), rows
    assert sum(Decimal(row[4]) for row in rows[1:]) == Decimal("100")

    # HTML: only the elements the renderer writes; every hostile string stays text
    allowed = {"html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "p", "section", "table",
               "thead", "tbody", "tr", "th", "td", "div", "code", "ul", "li", "footer", "figure", "svg", "g",
               "text", "rect", "path", "line", "br", "span"}
    seen: set[str] = set()

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            seen.add(tag)
            assert not any(name.startswith("on") or name in ("href", "src") for name, _ in attrs), (tag, attrs)

    Tags().feed(contributors_html(credit))
    assert seen <= allowed, seen - allowed

    data = json.loads(json.dumps(credit.to_json(), ensure_ascii=False))
    assert ContributorsReport.from_json(data).to_json() == data
    assert data["measured"][0]["metric"] == strings["metric_key"]
