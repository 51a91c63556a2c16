"""``openledger attribute``: measure how much each data contributor's files matter, by re-running the pipeline
on coalitions of contributors (docs/attribution.md)."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from openledger.attribution.engine import (
    Attribution,
    AttributionOptions,
    AttributionSettings,
    Game,
)
from openledger.attribution.engine import (
    attribute as measure,
)
from openledger.attribution.record import record_attribution
from openledger.attribution.target import AttributionTarget, data_target, model_target
from openledger.attribution.values import METHODS
from openledger.errors import BadInputError
from openledger.store.canonical import tag_nonfinite
from openledger_cli import render
from openledger_cli._common import FORMAT_TEXT_JSON, load_signer, open_ledger
from openledger_cli.report_md import interval_text
from openledger_cli.sinks import visible

if TYPE_CHECKING:
    from dvc_hooks.attribution import LocalDvcExecutor
    from dvc_hooks.attribution_ray import RayDvcExecutor
    from dvc_hooks.project import DvcProject
    from openledger.store.ledger import Ledger

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def _project() -> DvcProject:
    from dvc_hooks.project import DvcProject  # noqa: PLC0415 - keeps `openledger --help` fast

    return DvcProject.find()


def _target(project: DvcProject, ledger: Ledger, name: str | None, data: Path | None) -> AttributionTarget:
    from dvc_hooks.lockfile import read_dvcfile  # noqa: PLC0415

    if (name is None) == (data is None):
        raise BadInputError("name a model (NAME[@VERSION]) or a dataset (--data PATH), one of the two")
    if name is not None:
        model, _, version = name.partition("@")
        if not model:
            raise BadInputError(f"{name!r} is not NAME[@VERSION]")
        return model_target(ledger, model, version or None)
    assert data is not None
    relpath = project.relpath(data)
    for dvcfile in project.data_files():
        parent = Path(dvcfile).parent
        for out in read_dvcfile(project.root, dvcfile).outs:
            if (parent / out.path).as_posix().removeprefix("./") == relpath and out.digest:
                return data_target(ledger, relpath, out.digest)
    raise BadInputError(f"{relpath} is not a DVC-tracked dataset (no .dvc file names it)",
                        hint=f"`dvc add {relpath}` and commit it first")


def _commit(project: DvcProject, target: AttributionTarget) -> str:
    from dvc_hooks.attribution import head_commit  # noqa: PLC0415

    if target.commit:
        try:
            return head_commit(project, target.commit)
        except BadInputError:
            render.say(f"the commit the model was trained at ({target.commit[:10]}) is not "
                       "in this repository; running the pipeline at HEAD", label="note:")
    return head_commit(project)


@contextmanager
def _progress(where: str) -> Iterator[tuple[Callable[[int, int], None], list[int]]]:
    seen = [0, 0]
    with render.progress_bar(f"Coalition runs ({where})") as bar:

        def update(done: int, total: int) -> None:
            seen[0], seen[1] = done, total
            bar(done, total)

        yield update, seen


@click.command()
@click.argument("model", required=False, metavar="NAME[@VERSION]")
@click.option("--data", "data", type=click.Path(exists=True, path_type=Path),
              help="Value the contributors of this DVC-tracked directory (a pipeline with no registered model).")
@click.option("--metric", help="The metric to value (a DVC metrics file's key, or path:key). Default: "
                                "attribution.metric, else scoring.primary_metric in config.yaml, else accuracy.")
@click.option("--exact-max", type=click.IntRange(1, 16), default=8, show_default=True,
              help="Exact values up to this many players (2^N - 1 coalitions); sampling beyond.")
@click.option("--budget", type=click.IntRange(1), help="Runs the sampling estimators may use "
                                                      "[default: 2^exact-max per seed].")
@click.option("--repeats", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Runs per coalition, each with another seed (set through --seed-param).")
@click.option("--seed-param", metavar="[FILE:]KEY", help="The pipeline's seed param (default attribution.seed_param, "
                                                         "else seed).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Coalition runs at a time (local executor).")
@click.option("--executor", "executor_name", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where coalition runs are made: DVC experiments on this machine (-j at a time), or Ray tasks on "
                   "a cluster (attribution.ray in config.yaml; docs/cluster.md).")
@click.option("--address", metavar="HOST:PORT", help="The Ray cluster to use with --executor ray (default "
                                                       "attribution.ray.address, else RAY_ADDRESS, else a Ray "
                                                       "instance started on this machine).")
@click.option("--sample-seed", type=int, default=0, show_default=True,
              help="Seed of the coalitions the sampling estimators draw.")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def attribute(  # noqa: PLR0917 - click passes every option positionally
        ctx: click.Context, model: str | None, data: Path | None, metric: str | None, exact_max: int,
              budget: int | None, repeats: int, seed_param: str | None, jobs: int, executor_name: str,
              address: str | None, sample_seed: int, fmt: str) -> None:
    """Value each data contributor of model NAME[@VERSION] (the newest version when none is given) by
    re-running its DVC pipeline on coalitions of contributors' files, as DVC experiments: on this machine (-j
    at a time), or as Ray tasks on a cluster (--executor ray), where each worker signs its runs and every result
    is checked before it counts.

    Players are the people the dataset records of the model's lineage credit for its files (identical files
    are one file, credited to whoever committed it first). Prints each player's Shapley value, Banzhaf value
    and leave-one-out with intervals, and signs an `attribution` record. Runs already made are reused;
    Ctrl-C keeps the finished runs, and running the same command again resumes.

    Exit 0 when recorded; 2 for bad input (no dataset records, one contributor, a metric the pipeline does
    not produce, a pipeline that fails on the full data); 130 when interrupted.
    """
    from dvc_hooks.attribution import LocalDvcExecutor, prepare, seed_plan  # noqa: PLC0415

    project = _project()
    ledger = open_ledger(ctx)
    signer = load_signer()  # before any run: an unusable key must not cost the runs
    settings = AttributionSettings.from_config(ledger.config)
    options = AttributionOptions(exact_max=exact_max, budget=budget, confidence=settings.confidence,
                                 truncation=settings.truncation, sample_seed=sample_seed)
    target = _target(project, ledger, model, data)
    commit = _commit(project, target)
    valued = prepare(project, ledger, target)
    seeds, param, own = seed_plan(project, commit, seed_param or settings.seed_param, repeats)
    game = Game(valued.players, tuple(d.path for d in target.datasets), commit, metric or settings.metric,
                settings.direction, settings.baseline, seeds, param, own)
    if not settings.baseline_configured:
        render.say(f"the empty coalition (and a failed run) counts as {game.metric} = {game.baseline:g}; "
                   "set attribution.baseline in config.yaml to what a model that learned nothing scores", label="note:")
    executor: LocalDvcExecutor | RayDvcExecutor
    if executor_name == "ray":
        if jobs != 1:
            raise BadInputError("-j is for --executor local",
                                hint="a Ray cluster makes as many runs at a time as it has CPUs for "
                                     "(attribution.ray.cpus each)")
        from dvc_hooks.attribution_ray import RayDvcExecutor, RaySettings  # noqa: PLC0415 - the ray extra

        settings_ray = RaySettings.from_config(ledger.config.attribution.get("ray"), address=address)
        executor = RayDvcExecutor(project, ledger, valued, commit=commit, metric=game.metric, settings=settings_ray,
                                  warn=lambda message: render.say(message, label="warning:"))
        described = executor.describe
        label = "Ray"
    else:
        if address:
            raise BadInputError("--address is for --executor ray")
        executor = LocalDvcExecutor(project, ledger, valued, commit=commit, metric=game.metric, jobs=jobs)
        described = lambda: {"kind": "dvc-local", "jobs": jobs}  # noqa: E731
        label = f"-j {jobs}"
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a terminated attribution stops its workers too
    try:
        with executor, _progress(label) as (progress, seen):
            result = measure(game, executor, options, progress=progress)
    except KeyboardInterrupt:
        render.say(f"interrupted: {seen[0]} of {seen[1]} runs are finished and kept (dvc exp show lists them); "
                   "run the same command again to resume")
        sys.exit(INTERRUPTED)
    finally:
        signal.signal(signal.SIGTERM, previous)
    record = record_attribution(ledger, signer, result, target, executor=described())
    if fmt == "json":
        render.emit_json({"record": record.id, **tag_nonfinite(dict(record.body))})
    else:
        _print_table(result, target)
    render.say(f"Recorded attribution {record.id}")


def _print_table(result: Attribution, target: AttributionTarget) -> None:
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    game = result.game
    runs, cost = result.runs, result.cost()
    level = f"{result.options.confidence:.0%}"
    title = (f"{visible(target.label)}: {visible(game.metric)} ({game.direction}), {result.mode} values over "
             f"{sum(1 for p in game.players if p.files)} players, intervals {level} for all at once")
    table = Table(title=Text(title), show_edge=False, header_style="bold", title_justify="left")
    table.add_column("contributor", overflow="fold")
    table.add_column("files", justify="right")
    for method in METHODS:
        table.add_column({"shapley": "Shapley", "banzhaf": "Banzhaf", "loo": "leave-one-out"}[method],
                         justify="right")
    for value in sorted(result.values, key=lambda v: -v.shapley.value):
        person = value.person
        table.add_row(Text(visible(f"{person.name} <{person.email}>")), str(value.files),
                      *(interval_text(value.get(m)) for m in METHODS))
    out = render.stdout
    out.print(table)
    out.print(Text(f"full data: {result.full_value:+.6g}; empty coalition: {game.gain(game.baseline):+.6g} "
                   f"(values are on the scale where higher is better)"))
    out.print(Text(f"{runs} runs ({cost['new_runs']} new, {cost['reused_runs']} reused, {cost['failed_runs']} failed) "
                   f"in {cost['wall_seconds']:.1f} s; {json.dumps(result.method['noise'])[1:-1]}"))

