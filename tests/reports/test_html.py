"""The HTML reports: one self-contained page, checked as markup and as Chromium renders it (the demo's project)."""

from __future__ import annotations

import copy
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from openledger.reports.contributors import ContributorsReport
from openledger.reports.model import ModelReport, RunView
from openledger_cli.layout import LayoutEdge, LayoutNode, layout
from openledger_cli.report_html import CSP
from openledger_cli.report_html import contributors_html as contributors_view_html
from openledger_cli.report_html import model_html as model_view_html
from openledger_cli.report_md import contributors_markdown as contributors_view_markdown
from openledger_cli.report_md import model_markdown as model_view_markdown
from openledger_cli.report_md import pairs, trainer_name
from tests.reports.conftest import openledger, report_json

HOSTILE = '<script>alert("x")</script>'
VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "source", "wbr"}  # SVG self-closes
LOADING = {"src", "href", "xlink:href", "action", "poster", "srcset", "data", "formaction", "background"}


def model_html(report: dict[str, Any]) -> str:
    """The page for a report as `--format json` gives it (read back through the view, as a renderer sees it)."""
    return model_view_html(ModelReport.from_json(report))


def model_markdown(report: dict[str, Any]) -> str:
    return model_view_markdown(ModelReport.from_json(report))


def contributors_html(report: dict[str, Any]) -> str:
    return contributors_view_html(ContributorsReport.from_json(report))


def contributors_markdown(report: dict[str, Any]) -> str:
    return contributors_view_markdown(ContributorsReport.from_json(report))


class Page(HTMLParser):
    """What a page is made of: its elements (tag, attributes), its text, and whether every element closed."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.errors: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1] if self.open else 'nothing'}")
            return
        self.open.pop()

    def handle_data(self, data: str) -> None:
        if not self.open or self.open[-1] not in ("style", "title"):  # what the page shows, not its CSS
            self.text.append(data)

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and (cls is None or cls in a.get("class", "").split())]

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def assert_self_contained(text: str) -> Page:
    page = Page(text)
    assert not page.errors and not page.open, (page.errors, page.open)
    assert text.startswith("<!DOCTYPE html>")
    [policy] = [a for t, a in page.elements if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert policy["content"] == CSP and "default-src 'none'" in CSP
    assert not page.find("script") and not page.find("link") and not page.find("iframe")
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in LOADING:  # nothing to load: only links within the page and data: images
                assert value.startswith(("#", "data:")), (tag, name, value)
    assert not re.search(r"url\((?!#)", text), "a CSS url() that loads something"
    assert "@import" not in text
    return page


@pytest.fixture(scope="module")
def model(demo: Any) -> dict[str, Any]:
    return report_json(demo, "model", "wine-classifier@2")


@pytest.fixture(scope="module")
def contributors(demo: Any) -> dict[str, Any]:
    return report_json(demo, "contributors", "--model", "wine-classifier")


def test_model_page_is_self_contained_and_draws_every_node_and_edge(demo: Any, model: dict[str, Any]) -> None:
    text = openledger(demo, "report", "model", "wine-classifier@2", "--format", "html").stdout  # stdout, no -o
    page = assert_self_contained(text)
    assert "http://" not in text and "https://" not in text
    nodes = page.find("g", "node")
    assert sorted(n["data-id"] for n in nodes) == sorted(n["id"] for n in model["graph"]["nodes"])
    assert {n["data-id"]: n["data-kind"] for n in nodes} == {n["id"]: n["kind"] for n in model["graph"]["nodes"]}
    edges = page.find("path", "edge")
    assert sorted((e["data-from"], e["data-to"]) for e in edges) == sorted(
        (e["from"], e["to"]) for e in model["graph"]["edges"])
    # record ids are shortened for display, with the whole id in the tooltip
    ids = page.find("code", "id")
    assert {a["title"] for a in ids} >= set(model["records"])
    assert all(len(a["title"]) == 71 for a in ids if a["title"].startswith("sha256:"))
    assert "all records verified" in page.all_text


def test_html_says_what_the_markdown_says(model: dict[str, Any], contributors: dict[str, Any]) -> None:
    """Same sections and the same numbers as the Markdown report (the phrases are shared, the layout is not)."""
    unchanged = copy.deepcopy(model)
    for html_text, markdown in ((model_html(model), model_markdown(model)),
                                (contributors_html(contributors), contributors_markdown(contributors))):
        page = Page(html_text)
        headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
        h2 = re.findall(r"<h2>(.*?)</h2>", html_text)
        assert h2 == headings
        assert re.findall(r"<h1>(.*?)</h1>", html_text) == [markdown.splitlines()[0][2:]]
        shown = page.all_text
        # what the Markdown shows, as a CommonMark renderer reads it (escapes resolved), cell by cell and item
        # by item, is on the page
        tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
        for index, token in enumerate(tokens):
            if token.type != "inline":
                continue
            text = " ".join("".join(child.content for child in token.children or []
                                    if child.type in ("text", "code_inline")).split())
            in_cell = tokens[index - 1].type in ("td_open", "th_open")
            in_item = index > 1 and tokens[index - 2].type == "list_item_open"
            if in_cell and text and not text.startswith(("sha256:", "commit:", "md5:")):  # ids: shortened alike
                assert text in shown, text
            elif in_item and not (token.children and token.children[0].type == "code_inline"):  # runs: a table
                assert re.sub(r" \((sha256|commit):\w+\)$", "", text) in shown, text
    for run in model["runs"]:
        view = RunView.from_json(run)
        for piece in (run["run_id"], run["name"], run["status"], trainer_name(view), *pairs(run["params"]),
                      *pairs(run["metrics"])):
            assert piece in Page(model_html(model)).all_text, piece
    credit = Page(contributors_html(contributors)).all_text
    ada = next(c for c in contributors["contributors"] if c["person"]["name"] == "Ada Lovelace")
    assert f"{ada['overall'] * 100:.1f}%" in credit and f"{ada['impact']:+.4g}" in credit
    assert "Primary metric: accuracy (maximize)" in credit
    assert model == unchanged  # rendering never changes the report it is given


def test_labels_from_the_ledger_are_text_not_markup(model: dict[str, Any]) -> None:
    report = copy.deepcopy(model)
    report["graph"]["nodes"][1]["label"] = HOSTILE
    hostile_id = f"dataset:{HOSTILE}@md5:{'0' * 32}"
    report["graph"]["nodes"].append({"id": hostile_id, "kind": "dataset", "label": "x' onload='y",
                                     "recorded": False})
    report["graph"]["edges"].append({"from": report["graph"]["nodes"][1]["id"], "to": hostile_id,
                                     "relation": "<b>used</b>"})
    report["runs"][0]["name"] = HOSTILE
    report["runs"][0]["params"] = {"<i>": '"><img src=x onerror=alert(1)>'}
    report["contributors"][0]["person"]["name"] = '"><img src=x onerror=alert(1)>'
    report["reviews"][0]["message"] = "</td></tr></table><script>alert(2)</script>"
    text = model_html(report)
    page = assert_self_contained(text)
    assert not page.find("img") and not page.find("b") and not page.find("i")
    shown = page.all_text
    assert HOSTILE in shown and '"><img src=x onerror=alert(1)>' in shown and "<b>used</b>" in shown
    assert "</td></tr></table><script>alert(2)</script>" in shown
    hostile_node = next(n for n in page.find("g", "node") if n["data-id"] == hostile_id)
    assert "no-record" in hostile_node["class"].split()
    assert "dataset · no record" in shown
    assert len(page.find("path", "edge")) == len(report["graph"]["edges"])
    assert "<script>" not in contributors_html({**_contributors_stub(), "contributors": [
        {"person": {"id": "x", "name": HOSTILE, "email": None, "key": None}, "roles": {}, "overall": 0.0,
         "impact": 0.0, "impact_records": []}]})


def _contributors_stub() -> dict[str, Any]:
    return {"schema": "openledger.report.contributors/1", "scope": {"model": None, "since": None,
                                                                    "model_versions": []},
            "scoring": {"weights": {"data": 1.0}, "primary_metric": "accuracy", "direction": "maximize"},
            "totals": {}, "contributors": [], "impact": []}


def test_layout_draws_right_to_left_and_survives_cycles_loops_and_dangling_edges() -> None:
    nodes = [LayoutNode(i, k, i)
             for i, k in (("m", "model"), ("r", "run"), ("s", "stage"), ("d", "dataset"), ("e", "dataset"))]
    edges = [LayoutEdge("m", "r", "trained by"), LayoutEdge("r", "d", "used"), LayoutEdge("s", "r", "ran"),
             LayoutEdge("s", "d", "read"), LayoutEdge("d", "s", "output of"),  # a cycle: d -> s -> d
             LayoutEdge("e", "e", "self"), LayoutEdge("m", "gone", "dangling")]
    placed = layout(nodes, edges)
    x = {n.id: n.x for n in placed.nodes}
    assert x["m"] > x["r"] > x["d"]  # what was made stands right of what it was made from
    assert [(e.source, e.target) for e in placed.edges] == [(e.source, e.target) for e in edges[:-1]]
    for a in placed.nodes:  # no two nodes overlap, and all are inside the drawing
        assert a.x - a.width / 2 >= 0 and a.x + a.width / 2 <= placed.width
        assert a.y - a.height / 2 >= 0 and a.y + a.height / 2 <= placed.height
        for b in placed.nodes:
            if a.id < b.id:
                assert (abs(a.x - b.x) >= (a.width + b.width) / 2 or abs(a.y - b.y) >= (a.height + b.height) / 2)
    chain = [LayoutNode(f"n{i}", "stage", f"n{i}") for i in range(3000)]
    long = layout(chain, [LayoutEdge(f"n{i}", f"n{i + 1}", "after") for i in range(2999)])
    assert len({n.layer for n in long.nodes}) == 3000  # no recursion limit on a long history


def test_html_written_to_a_file_for_both_reports(demo: Any, tmp_path: Path) -> None:
    for args in (("model", "wine-classifier@champion"), ("contributors",)):
        out = tmp_path / f"{args[0]}.html"
        result = openledger(demo, "report", *args, "--format", "html", "-o", str(out))
        assert result.stdout == "" and f"Wrote {out}" in result.stderr
        page = assert_self_contained(out.read_text(encoding="utf-8"))
        assert "Ada Lovelace" in page.all_text and "Bob Dylan" in page.all_text


CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# What keeps Chromium off the network besides the page's own policy: no background services, a proxy that
# is a closed port on this machine, no name resolution, and DevTools' offline mode for the page.
OFFLINE_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1280,2400")


def _requests(driver: webdriver.Chrome) -> list[str]:
    """The URLs the browser tried to fetch since the last call, from ChromeDriver's performance log."""
    events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


@pytest.mark.skipif(CHROMIUM is None or not CHROMEDRIVER.exists(),
                    reason="needs Debian's chromium and chromium-driver packages (.ci/run installs them)")
def test_report_opened_in_headless_chromium_offline_shows_the_lineage_and_the_contributors(
        demo: Any, model: dict[str, Any], tmp_path: Path) -> None:
    """The issue's outcome: the file, opened in headless Chromium with the network off, shows the lineage graph
    and the contributor table, read back from the rendered page.

    Driven through Selenium with Debian's chromedriver named in ``Service`` (so Selenium Manager never looks
    for, let alone downloads, a driver): WebDriver answers what a person sees (``is_displayed``, rendered
    boxes, visible text), and ChromeDriver's performance log carries the DevTools Network events, which is how
    the test knows that no request left the page. A control page that does reference a remote image checks
    that the log would have shown one.
    """
    out = tmp_path / "provenance.html"
    openledger(demo, "report", "model", "wine-classifier@2", "--format", "html", "-o", str(out))
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*OFFLINE_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                                                                     "downloadThroughput": -1,
                                                                     "uploadThroughput": -1})
        _requests(driver)  # what the browser's own start page loaded (chrome:// resources) is not the report's
        driver.get(out.as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        assert driver.title == "Provenance: wine-classifier v2"

        svg = driver.find_element(By.CSS_SELECTOR, "svg.lineage")
        assert svg.is_displayed() and svg.rect["width"] > 300 and svg.rect["height"] > 50
        nodes = driver.find_elements(By.CSS_SELECTOR, "svg.lineage g.node")
        assert len(nodes) == len(model["graph"]["nodes"])
        shown: dict[str, Any] = {}
        for node in nodes:
            box = node.rect
            assert node.is_displayed() and box["width"] > 0 and box["height"] > 0
            assert svg.rect["x"] <= box["x"] and box["x"] + box["width"] <= svg.rect["x"] + svg.rect["width"] + 1
            kind = str(node.get_attribute("data-kind"))
            shown[kind] = [*shown.get(kind, []), " ".join(node.text.split())]
        assert "MODEL wine-classifier v2" in shown["model"]
        assert f"RUN {model['runs'][0]['name']}" in shown["run"]  # the run's MLflow name (logreg-C0.3)
        assert any(t.startswith("DATASET data/raw md5:") for t in shown["dataset"])
        edges = driver.find_elements(By.CSS_SELECTOR, "svg.lineage path.edge")
        assert len(edges) == len(model["graph"]["edges"]) and all(e.rect["width"] > 0 for e in edges)

        table = driver.find_element(By.XPATH, "//h2[normalize-space()='Contributors']/following::table[1]")
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [
            "Ada Lovelace <ada@example.org>", "Bob Dylan <bob@example.org>"]
        assert all(r.is_displayed() and r.rect["height"] > 0 for r in rows)
        assert rows[0].find_elements(By.TAG_NAME, "td")[1].text == "code, data, training"

        driver.save_screenshot(str(tmp_path / "provenance.png"))
        requested = _requests(driver)
        assert requested == [out.as_uri()], requested  # the page itself, and nothing it asked for
        complaints = [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert not complaints  # a blocked load would be a Content-Security-Policy error here

        control = tmp_path / "control.html"
        control.write_text('<!DOCTYPE html><title>control</title><img src="http://openledger.invalid/x.png">')
        driver.get(control.as_uri())
        assert "http://openledger.invalid/x.png" in _requests(driver)  # the log does see a page's requests
    finally:
        driver.quit()
