"""``openledger export model``: one model version's provenance as W3C PROV-JSON, a signed in-toto
attestation, or a CycloneDX ML-BOM, for tools that speak those formats."""

from __future__ import annotations

import json
from pathlib import Path

import click

from openledger.export import EXPORT_FORMATS
from openledger.export.cyclonedx import cyclonedx_json
from openledger.export.intoto import intoto_envelope, intoto_statement
from openledger.export.prov import prov_json
from openledger.store.digests import directory_digest
from openledger_cli import render
from openledger_cli._common import emit, load_signer
from openledger_cli.report import load_model_report


@click.group()
def export() -> None:
    """Provenance in standard formats, for other tools (the builders need the export extra:
    pip install 'openledger-mlops[export]').

    \b
    openledger export model wine-classifier@2 --format prov-json -o wine.prov.json
    openledger export model wine-classifier@champion --format in-toto -o wine.intoto.json
    openledger export model wine-classifier@2 --format cyclonedx -o wine.cdx.json
    """


@export.command("model")
@click.argument("target", metavar="NAME[@VERSION|@ALIAS]")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True,
              help="prov-json, in-toto or cyclonedx (see above).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically).")
@click.option("--artifact", type=click.Path(exists=True, path_type=Path), metavar="PATH",
              help="in-toto: a local copy of the model's artifacts, hashed as the MLflow plugin hashes them. "
                   "Names the subject when the model record has no artifact digest; must match it when it has.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", metavar="URI",
              help="MLflow store to resolve an @ALIAS in when no promotion of it is recorded.")
@click.pass_context
def export_model(  # noqa: PLR0917 - click passes every option positionally
        ctx: click.Context, target: str, fmt: str, output: Path | None, artifact: Path | None,
        tracking_uri: str | None) -> None:
    """The provenance of one model version (as `report model` shows it) in a standard format:

    \b
    prov-json  W3C PROV-JSON: the model, datasets, stage outputs and commits as
               entities; MLflow runs, DVC stages, reviews and feedback as
               activities; contributors and signers as agents, with roles
               (data, code, training, review, feedback) and record ids.
    in-toto    An in-toto Statement v1 about the model artifact (subject
               NAME@VERSION, its sha256), OpenLedger's provenance as the
               predicate, in a DSSE envelope signed by your key.
    cyclonedx  A CycloneDX 1.6 ML-BOM: the model with a model card, datasets
               as data components with their hashes, model -> dataset
               dependencies, record ids as properties.

    Exit 0; 1 if a record shown fails verification (in-toto then signs nothing) or --artifact does not
    match the model record; 2 for bad input (unknown version, no artifact digest for in-toto, no key).
    """
    if artifact is not None and fmt != "in-toto":
        raise click.UsageError("--artifact names the subject of an in-toto statement: use it with --format in-toto")
    signer = load_signer() if fmt == "in-toto" else None  # a missing key fails before any work
    data = load_model_report(ctx, target, tracking_uri)
    if signer is not None:
        statement = intoto_statement(data, subject_digest=directory_digest(artifact) if artifact else None)
        text = json.dumps(intoto_envelope(statement, signer), indent=2, sort_keys=True) + "\n"
    else:
        text = prov_json(data) if fmt == "prov-json" else cyclonedx_json(data)
    emit(text, output)
    if not data.verified:
        render.say("Some records in this export failed verification: run `openledger verify`.", label="error:")
        ctx.exit(1)
