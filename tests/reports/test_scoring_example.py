"""docs/scoring.md's worked example: the script checks its own numbers, and the page shows what it prints."""

from __future__ import annotations

import subprocess
import sys

from tests.reports.conftest import ROOT


def test_the_worked_example_runs_and_the_page_shows_its_output() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "scoring.py")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr  # exit 1: the scoring disagrees with the page
    page = (ROOT / "docs" / "scoring.md").read_text()
    # The Markdown report (table rows, impact steps) is pasted into the page: keys, times and git dates are
    # fixed, so record ids and commits are the same on every machine and every line must be there verbatim.
    markdown = result.stdout.split("$ openledger report contributors --format md\n")[1].split("\n$ ")[0]
    lines = [line for line in markdown.splitlines() if line.startswith(("| ", "- churn", "Model versions:"))]
    assert len(lines) == 9  # the summary line, the header, five people, two steps
    missing = [line for line in lines if line not in page]
    assert not missing, f"docs/scoring.md no longer shows what examples/scoring.py prints: {missing}"
