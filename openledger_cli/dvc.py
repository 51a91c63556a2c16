"""``openledger dvc …``: install the DVC capture, and the commands DVC and git run on its behalf."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from openledger.capture.recorder import Recorder
from openledger.store.keys import resolve_keyid
from openledger.store.records import Record
from openledger_cli import render
from openledger_cli._common import FORMAT_TEXT_JSON, ledger_dir, load_signer, open_ledger

if TYPE_CHECKING:
    from dvc_hooks.project import DvcProject


def _project() -> DvcProject:
    from dvc_hooks.project import DvcProject  # noqa: PLC0415 - keeps `openledger --help` fast

    return DvcProject.find()


def _summary(records: Sequence[Record]) -> str:
    counts = Counter(r.kind for r in records)
    if not counts:
        return "nothing new to record"
    parts = [f"{n} {kind} record{'s' if n != 1 else ''}" for kind, n in sorted(counts.items())]
    stages = [str(r.body.get("name")) for r in records if r.kind == "stage"]
    return "recorded " + ", ".join(parts) + (f" ({', '.join(stages)})" if stages else "")


@click.group()
def dvc() -> None:
    """Record DVC pipelines and dataset versions: run `openledger dvc install` once, then use DVC as usual.

    \b
    install      add the record stage to each dvc.yaml and a git post-commit hook
    status       stages and dataset versions with no record yet; install problems
    record       record them now (what the record stage and the hook do automatically)
    record-data  record data someone else supplied, crediting them
    uninstall    remove both, leaving dvc.yaml and the hooks as they were
    record-stage what the record stage runs (not by hand)
    """


@dvc.command()
def install() -> None:
    """Add the record stage to every dvc.yaml and the git post-commit hook (idempotent: run it again after
    adding stages, so the record stage keeps running last).

    The record stage depends on each pipeline's terminal outputs and is `always_changed`, so every
    `dvc repro` and `dvc exp run` ends by signing a stage record for each stage whose dvc.lock entry
    changed. The post-commit hook binds what was recorded to the new commit. Existing hooks keep running.
    """
    from dvc_hooks.install import install as do_install  # noqa: PLC0415

    report = do_install(_project())
    said = {"added": "Added the record stage to {}", "updated": "Updated the record stage in {}",
            "unchanged": "{}: the record stage is up to date"}
    for pipeline, outcome in report.pipelines.items():
        if outcome in said:
            render.say(said[outcome].format(pipeline))
    for warning in report.warnings:
        render.say(warning, label="warning:")
    render.say(f"Installed the post-commit hook: {report.hook}")
    if {"added", "updated"} & set(report.pipelines.values()):
        render.say("Commit the changed dvc.yaml so your team records too; run `dvc repro` as usual.")


@dvc.command()
def uninstall() -> None:
    """Remove the record stage and the post-commit hook; dvc.yaml and any hook you had come back as they were.
    The ledger keeps every record."""
    from dvc_hooks.install import uninstall as do_uninstall  # noqa: PLC0415

    changed, hook = do_uninstall(_project())
    for pipeline in changed:
        render.say(f"Removed the record stage from {pipeline}")
    render.say("Removed the post-commit hook." if hook else "No OpenLedger post-commit hook was installed.")


@dvc.command()
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Stages and dataset versions that have no record yet, and whether the capture is installed correctly
    (for example: the record stage no longer depends on every terminal output).

    Exit 0, also when something is unrecorded; 2 when a dvc.lock is corrupt or from a newer DVC, or there
    is no DVC project or ledger."""
    from dvc_hooks.status import status as do_status  # noqa: PLC0415

    result = do_status(_project(), open_ledger(ctx))
    if fmt == "json":
        render.emit_json(result.to_json())
        return
    render.line(f"post-commit hook: {'installed' if result.hook_installed else 'not installed'}")
    for pipeline, info in result.pipelines.items():
        render.line(f"{pipeline}: record stage {'installed' if info['record_stage'] else 'missing'}")
    if result.unrecorded_stages:
        render.line(f"{len(result.unrecorded_stages)} stage(s) with no current record:")
        for item in result.unrecorded_stages:
            render.line(f"  {item['dvcfile']}:{item['stage']}  ({item['why']})")
    if result.unrecorded_datasets:
        render.line(f"{len(result.unrecorded_datasets)} dataset version(s) with no record:")
        for item in result.unrecorded_datasets:
            render.line(f"  {item['path']}  {item['digest']}")
    if not result.unrecorded_stages and not result.unrecorded_datasets:
        render.line("Every stage and dataset version is recorded.")
    else:
        render.line("Record them with `openledger dvc record` (or the next `dvc repro`).")
    for warning in result.warnings:
        render.say(warning, label="warning:")


@dvc.command()
@click.pass_context
def record(ctx: click.Context) -> None:
    """Record now every dataset version and changed dvc.lock entry that has no record (the record stage and
    the hook do this automatically; use it after `dvc repro TARGET` or `dvc commit`)."""
    from dvc_hooks.record import record_project  # noqa: PLC0415

    project = _project()
    recorder = Recorder(source="dvc", ledger=open_ledger(ctx), signer=load_signer(), strict=True)
    recorded = record_project(project, recorder, require_lock=True)
    if recorded.never_run:
        render.say(f"not reproduced yet (no dvc.lock): {', '.join(recorded.never_run)}", label="warning:")
    render.say(_summary(recorded.records))


@dvc.command("record-data")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--contributor", "contributors", multiple=True, required=True, metavar="KEYID",
              help="Who supplied the data: a key id or unique prefix with an identity record (repeatable).")
@click.option("-m", "--message", "description", help="What the data is, where it came from.")
@click.pass_context
def record_data(ctx: click.Context, path: Path, contributors: tuple[str, ...], description: str | None) -> None:
    """Record the current version of PATH (DVC-tracked) as supplied by someone else, crediting them.

    You sign the record; the contributors are named in it. Their keys must be known to the ledger
    (`openledger keys publish` on their machine, committed).
    """
    from dvc_hooks.record import record_data as do_record_data  # noqa: PLC0415

    project = _project()
    ledger = open_ledger(ctx)
    known = list(ledger.trust().identities)
    keyids = [resolve_keyid(c, known) for c in contributors]
    recorder = Recorder(source="dvc", ledger=ledger, signer=load_signer(), strict=True)
    written = do_record_data(project, recorder, path, keyids, description)
    if written is None:
        render.say("Already recorded with these contributors.")
    else:
        render.line(written.id)


@dvc.command("record-stage", hidden=False)
@click.pass_context
def record_stage(ctx: click.Context) -> None:
    """Run by the record stage in dvc.yaml (not by hand): record the stages of this pipeline whose dvc.lock
    entry changed (with the MLflow runs they logged) and any dataset version in the repository not recorded
    yet. Fails open: a problem is a warning and the repro goes on."""
    from dvc_hooks.lockfile import RECORD_STAGE  # noqa: PLC0415
    from dvc_hooks.record import attribution_run, record_stages  # noqa: PLC0415

    recorder = Recorder(source="dvc", ledger_dir=ledger_dir(ctx))
    with recorder.failing_open("this repro was"):
        project = _project()
        pipeline = project.relpath(Path.cwd() / "dvc.yaml")
        stage_env = os.environ.get("DVC_STAGE", "")
        prefix = stage_env[: -len(RECORD_STAGE)] if stage_env.endswith(RECORD_STAGE) else None
        written = record_stages(project, recorder, pipeline, experiment=os.environ.get("DVC_EXP_NAME") or None,
                                stage_prefix=prefix, attribution_run=attribution_run())
        render.say(f"openledger: {_summary(written)}")


@dvc.command("post-commit", hidden=True)
@click.pass_context
def post_commit(ctx: click.Context) -> None:
    """Run by the git post-commit hook: record what changed and bind unbound records to the new commit."""
    from dvc_hooks.record import bind_commit, record_project  # noqa: PLC0415

    recorder = Recorder(source="dvc", ledger_dir=ledger_dir(ctx))
    with recorder.failing_open("this commit was"):
        project = _project()
        written = record_project(project, recorder, require_lock=False).records
        binding = bind_commit(project, recorder)
        if written or binding:
            bound = f"; bound {binding.body['records']} records to {binding.body['commit'][:10]}" if binding else ""
            render.say(f"openledger: {_summary(written)}{bound}")
