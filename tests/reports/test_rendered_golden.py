"""What people and tools read stays byte-identical through restructurings: every rendered report format.

``test_generated_ledger`` pins the JSON data of the reports section by section; this pins the rendered bytes:
``report model`` and ``report contributors`` in Markdown, HTML, JSON and the terminal table, ``reconcile``
(Markdown and JSON), and the PROV-JSON, in-toto (statement, unsigned) and CycloneDX exports, all run through
the real ``openledger`` command on the benchmark's deterministic generated ledger. The golden file holds a
SHA-256 per output; on a mismatch the outputs are written next to the test's temporary directory so they can
be diffed against a run of the old code.

After a deliberate change of what is rendered, rewrite the golden file with::

    python -m tests.reports.test_rendered_golden --update
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

from benchmarks.reports import build
from openledger_cli.main import cli
from openledger_cli.sinks import md

GOLDEN = Path(__file__).parents[1] / "golden" / "rendered-reports.json"

# CycloneDX gives every BOM a fresh serial number and a generation time: not part of what a report says.
_VOLATILE = [
    (re.compile(r'"serialNumber": "urn:uuid:[0-9a-f-]+"'), '"serialNumber": "urn:uuid:X"'),
    (re.compile(r'"timestamp": "[0-9T:.+-]+Z?"'), '"timestamp": "X"'),
]


def _normalise(text: str, repo: Path) -> str:
    # reconcile and ci name the repository they read, in Markdown with its punctuation escaped
    for spelling in {str(repo), str(md(str(repo)))}:
        text = text.replace(spelling, "REPO")
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def render_all(repo: Path) -> dict[str, str]:
    built = build(repo, 1000, contributors=30, models=10)
    runner = CliRunner()
    ledger = str(built.repo / ".openledger")
    commands = {
        "model.md": ["report", "model", built.model_target, "--format", "md"],
        "model.html": ["report", "model", built.model_target, "--format", "html"],
        "model.json": ["report", "model", built.model_target, "--format", "json"],
        "model-ranker.md": ["report", "model", "ranker", "--format", "md"],
        "contributors.md": ["report", "contributors", "--format", "md"],
        "contributors.html": ["report", "contributors", "--format", "html"],
        "contributors.json": ["report", "contributors", "--format", "json"],
        "contributors.txt": ["report", "contributors"],
        "contributors-churn.md": ["report", "contributors", "--model", "churn-model", "--since", "2026-02-01",
                                  "--format", "md"],
        "reconcile.md": ["reconcile", "--no-dvc", "--format", "md"],
        "reconcile.json": ["reconcile", "--no-dvc", "--format", "json"],
        "ci.md": ["ci", "--no-checkpoint", "--format", "md"],
        "prov.json": ["export", "model", built.model_target, "--format", "prov-json"],
        "cyclonedx.json": ["export", "model", built.model_target, "--format", "cyclonedx"],
    }
    outputs: dict[str, str] = {}
    for name, args in commands.items():
        result = runner.invoke(cli, ["--ledger", ledger, *args], catch_exceptions=False,
                               env={"MLFLOW_TRACKING_URI": "", "COLUMNS": "160", "OPENLEDGER_SIGNING_KEY": "",
                                    "OPENLEDGER_HOME": str(repo.parent / "no-keys"), "GITHUB_STEP_SUMMARY": "",
                                    "GITHUB_OUTPUT": "", "GITHUB_ACTIONS": "", "GITLAB_CI": ""})
        assert result.exit_code in (0, 1), (name, result.output)
        outputs[name] = _normalise(result.stdout, built.repo)
    return outputs


def _digests(outputs: dict[str, str]) -> dict[str, str]:
    return {name: hashlib.sha256(text.encode()).hexdigest() for name, text in outputs.items()}


def test_rendered_reports_are_unchanged(tmp_path: Path) -> None:
    outputs = render_all(tmp_path / "repo")
    assert "## Lineage" in outputs["model.md"] and "<svg" in outputs["model.html"]
    changed = {name for name, digest in _digests(outputs).items()
               if json.loads(GOLDEN.read_text()).get(name) != digest}
    if changed:
        dump = tmp_path / "rendered"
        dump.mkdir()
        for name in changed:
            (dump / name).write_text(outputs[name])
    assert not changed, f"rendered outputs changed: {sorted(changed)} (written to {tmp_path / 'rendered'})"


if __name__ == "__main__":
    if sys.argv[1] == "--dump":
        target = Path(sys.argv[2])
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as workdir:
            for name, text in render_all(Path(workdir) / "repo").items():
                (target / name).write_text(text)
        sys.exit(0)
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as workdir:
        GOLDEN.write_text(json.dumps(_digests(render_all(Path(workdir) / "repo")), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
