"""Standard exports of one model version's provenance, one module per format:

* :mod:`openledger.export.prov`: W3C PROV-JSON (through the ``prov`` library);
* :mod:`openledger.export.intoto`: an in-toto Statement v1 in a signed DSSE envelope;
* :mod:`openledger.export.cyclonedx`: a CycloneDX 1.6 ML-BOM (through ``cyclonedx-python-lib``).

Each builder reads the :class:`~openledger.reports.model.ModelReport` view (the lineage, its people and the
verification status of every record) and returns a JSON document as text::

    report = model_report(LedgerGraph.load(ledger), "wine-classifier", "2")
    prov_json(report)
    intoto_envelope(intoto_statement(report), signer)
    cyclonedx_json(report)

prov and cyclonedx-python-lib are the optional ``export`` extra: they are imported when a builder runs, so the
core imports without them; a missing one is a :class:`BadInputError` naming the extra to install. Every element
carries the ids of the ledger records behind it, in OpenLedger's own namespace (``ol:record`` in PROV,
``records`` in the in-toto predicate, ``openledger:record`` properties in CycloneDX). Element identifiers are
the lineage's node keys (:mod:`openledger.lineage.nodes`) under :data:`ID_NAMESPACE`: stable across exports.
"""

from __future__ import annotations

from openledger.errors import BadInputError

__all__ = ["EXPORT_FORMATS", "ID_NAMESPACE", "missing_extra"]

EXPORT_FORMATS = ("prov-json", "in-toto", "cyclonedx")
ID_NAMESPACE = "urn:openledger:"
_INSTALL_HINT = "pip install 'openledger-mlops[export]'"


def missing_extra(library: str) -> BadInputError:
    return BadInputError(f"{library} is not installed (the export formats need the export extra)",
                         hint=_INSTALL_HINT)
