"""A CycloneDX 1.6 ML-BOM of one model version: the model with a model card, datasets as data components with
their hashes, model -> dataset dependencies, record ids as ``openledger:`` properties."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from openledger import __version__
from openledger.credit.people import Person
from openledger.export import missing_extra
from openledger.reports.model import ModelReport
from openledger.store.digests import hex_of

if TYPE_CHECKING:
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.contact import OrganizationalContact

__all__ = ["cyclonedx_bom", "cyclonedx_json"]


def cyclonedx_bom(report: ModelReport) -> Bom:
    """The provenance as a CycloneDX ML-BOM (:class:`cyclonedx.model.bom.Bom`), without the model card:
    cyclonedx-python-lib has no model card type yet, :func:`cyclonedx_json` adds it to the JSON."""
    try:
        from cyclonedx.model import HashAlgorithm, HashType, IdentifiableAction, Property  # noqa: PLC0415
        from cyclonedx.model.bom import Bom  # noqa: PLC0415
        from cyclonedx.model.component import Commit, Component, ComponentType, Pedigree  # noqa: PLC0415
        from cyclonedx.model.contact import OrganizationalContact  # noqa: PLC0415
    except ImportError:
        raise missing_extra("cyclonedx-python-lib") from None

    def props(pairs: Iterable[tuple[str, Any]]) -> list[Property]:
        return [Property(name=f"openledger:{name}", value=str(value)) for name, value in pairs if value is not None]

    def contact(person: Person) -> OrganizationalContact:
        return OrganizationalContact(name=person.name, email=person.email)

    model = report.model
    makers = {run.trainer.id: run.trainer for run in report.runs if run.trainer}
    makers |= {a.person.id: a.person for a in report.code.authors}
    pairs: list[tuple[str, Any]] = [("record", rid) for rid in model.records]
    pairs += [("run-id", run.run_id) for run in report.runs]
    pairs += [("run-record", rid) for run in report.runs for rid in run.records]
    pairs += [("stage", f"{s.name} {rid}") for s in report.stages for rid in s.records]
    pairs += [("model-id", model.model_id), ("source", model.source)]
    pairs += [("alias", alias) for alias in model.aliases]
    pairs += [(f"contributor:{role}", f"{entry.person.label} {evidence}")
              for entry in report.contributors for role, ids in sorted(entry.roles.items()) for evidence in ids]
    pairs += [("review", f"{r.decision} by {r.reviewer.label} {r.record}") for r in report.reviews]
    pairs += [("feedback", f"{f.label or f.score or f.comment} on {f.target} by "
                           f"{f.by.label if f.by else 'unknown'} {f.record}")
              for f in report.feedback]
    pairs += [("verified", str(report.verified).lower())]
    authored = {sha: a.person for a in report.code.authors for sha in a.commits}
    commits = [Commit(uid=sha, author=IdentifiableAction(name=authored[sha].name, email=authored[sha].email)
                      if sha in authored else None)
               for sha in dict.fromkeys([*report.code.commits, *authored])]
    artifact = hex_of(model.artifact_digest, "sha256", 64)
    model_component = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=model.ref.name, version=str(model.ref.version),
        bom_ref=model.ref.key, description=f"{model.ref.name} version {model.ref.version}, provenance "
                                           "from its signed OpenLedger records",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=artifact)] if artifact else None,
        authors=[contact(p) for p in makers.values()], properties=props(pairs),
        pedigree=Pedigree(commits=commits) if commits else None)
    datasets: dict[str, Component] = {}
    for dataset in report.datasets:
        md5 = hex_of(dataset.ref.digest.removesuffix(".dir"), "md5", 32)
        hashes = [HashType(alg=HashAlgorithm.MD5, content=md5)] if md5 else []
        details = [("record", rid) for rid in dataset.records]
        details += [("digest", dataset.ref.digest), ("files", dataset.files), ("size", dataset.size),
                    ("commit", dataset.commit), ("recorded", str(dataset.recorded).lower())]
        details += [("contributor:data", f"{c.person.label} {c.files} files {' '.join(dataset.records)}")
                    for c in dataset.contributors]
        datasets[dataset.ref.key] = Component(
            type=ComponentType.DATA, name=dataset.ref.path, version=dataset.ref.digest, bom_ref=dataset.ref.key,
            hashes=hashes, authors=[contact(c.person) for c in dataset.contributors], properties=props(details))
    tool = Component(type=ComponentType.APPLICATION, name="openledger", version=__version__)
    # a fresh serialNumber on every export, as the spec asks even when the content has not changed
    bom = Bom(components=[model_component, *datasets.values()])
    bom.metadata.tools.components.add(tool)
    bom.register_dependency(model_component, list(datasets.values()))
    for derived, sources in report.graph.sources_of_outputs().items():
        if derived in datasets:
            bom.register_dependency(datasets[derived], [datasets[s.key] for s in sources if s.key in datasets])
    return bom


def _model_card(report: ModelReport) -> dict[str, Any]:
    metrics = [{"type": name, "value": repr(float(value))} for run in report.runs
               for name, value in sorted(run.metrics.items())
               if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)]
    card: dict[str, Any] = {}
    if report.datasets:
        card["modelParameters"] = {"datasets": [{"ref": d.ref.key} for d in report.datasets]}
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    params = [{"name": f"openledger:param:{name}", "value": str(value)} for run in report.runs
              for name, value in sorted(run.params.items())]
    if params:
        card["properties"] = params
    return card


def cyclonedx_json(report: ModelReport) -> str:
    """CycloneDX 1.6 JSON: :func:`cyclonedx_bom` serialised by the library, plus the model's ``modelCard``
    (datasets by reference, final metrics as performance metrics, params as properties)."""
    try:
        from cyclonedx.output.json import JsonV1Dot6  # noqa: PLC0415 - the export extra is optional
    except ImportError:
        raise missing_extra("cyclonedx-python-lib") from None
    document = json.loads(JsonV1Dot6(cyclonedx_bom(report)).output_as_string())
    for component in document.get("components", []):
        if component.get("bom-ref") == report.model.ref.key:
            component["modelCard"] = _model_card(report)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
