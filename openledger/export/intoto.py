"""An in-toto Statement v1 about a model artifact, with OpenLedger's provenance as its predicate, in a DSSE
envelope signed by the exporter's key.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from openledger import __version__
from openledger.errors import BadInputError, IntegrityError
from openledger.reports.model import ModelReport
from openledger.store.canonical import canonical_bytes, tag_nonfinite
from openledger.store.digests import hex_of
from openledger.store.dsse import pae
from openledger.store.records import RecordSigner

__all__ = ["INTOTO_PAYLOAD_TYPE", "PREDICATE_TYPE", "intoto_envelope", "intoto_statement", "unverified_records"]

INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://openledger.dev/attestation/model-provenance/v1"


def unverified_records(report: ModelReport) -> str | None:
    """What fails verification among the report's records, in a few words; None when everything verifies."""
    counts: dict[str, int] = {}
    for check in report.records.values():
        if not check.verified:
            counts[check.status] = counts.get(check.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or None


def _digest_set(digest: str) -> dict[str, str]:
    """An OpenLedger digest as an in-toto DigestSet. DVC's directory hash (``md5:<hex>.dir``) is the MD5 of
    DVC's manifest, not of any file, so it gets an algorithm name of its own instead of posing as ``md5``."""
    algorithm, _, value = digest.partition(":")
    if value.endswith(".dir"):
        return {"dvcDirMd5": value.removesuffix(".dir")}
    if value and algorithm:
        return {algorithm: value}
    return {}


def _resource(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A DVC dep or out as an in-toto ResourceDescriptor-like object: path, digest set, DVC's spelling."""
    digest = str(entry.get("hash") or "")
    return {"name": entry.get("path"), "digest": _digest_set(digest), "ledger_digest": digest or None,
            "size": entry.get("size")}


def intoto_statement(report: ModelReport, *, subject_digest: str | None = None,
                     allow_unverified: bool = False) -> dict[str, Any]:
    """An in-toto Statement v1 about the model artifact, with OpenLedger's provenance as its predicate.

    The subject is ``NAME@VERSION`` with the SHA-256 of the artifact directory from the model record
    (``model.artifact_digest``). ``subject_digest`` (``sha256:<hex>``) is a digest the exporter computed
    from a local copy of the artifact: used when the record has none, and it must equal the record's when
    it has one (else :class:`IntegrityError`). Without either there is no artifact to name: :class:`BadInputError`.

    A signed statement vouches for its predicate, so it is refused (:class:`IntegrityError`) when a record
    of the report is damaged or its signer untrusted, unless ``allow_unverified``; the predicate's
    ``verification`` lists every record's status either way.
    """
    model = report.model
    subject = f"{model.ref.name}@{model.ref.version}"
    problems = unverified_records(report)
    if problems and not allow_unverified:
        raise IntegrityError(f"the provenance of {subject} has records that fail verification "
                             f"({problems}): no statement is made over them", hint="run `openledger verify`")
    recorded = model.artifact_digest
    if recorded and subject_digest and recorded != subject_digest:
        raise IntegrityError(f"the artifact given has digest {subject_digest}, but the model record of "
                             f"{subject} says {recorded}")
    digest = recorded or subject_digest
    if not digest:
        raise BadInputError(
            f"the model record of {subject} has no artifact digest, so an in-toto statement has no "
            "subject (the artifacts were not on a local path when the version was recorded, e.g. behind a "
            "tracking server's artifact proxy)",
            hint="download the model's artifacts and pass --artifact DIR to name them by their digest")
    value = hex_of(digest, "sha256", 64)
    if value is None:
        raise BadInputError(f"the artifact digest of {subject} is not sha256:<64 hex>: {digest}")
    full = report.to_json()
    predicate = {
        "model": {"name": model.ref.name, "version": model.ref.version, "run_id": model.run_id,
                  "model_id": model.model_id, "source": model.source, "aliases": list(model.aliases),
                  "artifact_digest": digest,
                  "artifact_digest_from": "model-record" if recorded else "exporter",
                  "records": list(model.records)},
        "runs": [{"run_id": r.run_id, "name": r.name, "experiment_id": r.experiment_id, "status": r.status,
                  "start_time": r.start_time, "end_time": r.end_time, "params": dict(r.params),
                  "metrics": dict(r.metrics), "git": r.git, "dvc": r.dvc,
                  "trainer": r.trainer.to_json() if r.trainer else None, "records": list(r.records)}
                 for r in report.runs],
        "stages": [{"name": s.name, "dvcfile": s.dvcfile, "cmd": s.cmd, "experiment": s.experiment,
                    "params": s.params, "deps": [_resource(d) for d in s.deps], "outs": [_resource(o) for o in s.outs],
                    "git": s.git, "records": list(s.records)} for s in report.stages],
        "datasets": [{"name": d.ref.path, "digest": _digest_set(d.ref.digest), "ledger_digest": d.ref.digest,
                      "files": d.files, "size": d.size, "source": d.source, "commit": d.commit,
                      "complete": d.complete, "recorded": d.recorded,
                      "contributors": [{"person": c.person.to_json(), "files": c.files, "bytes": c.bytes,
                                        "commits": list(c.commits)} for c in d.contributors],
                      "records": list(d.records)} for d in report.datasets],
        "code": {"commits": [{"digest": {"gitCommit": sha}, "records": list(report.code.commit_records.get(sha, ()))}
                             for sha in report.code.commits],
                 "files": list(report.code.files), "authors": full["code"]["authors"]},
        "contributors": full["contributors"],
        "reviews": [{k: v for k, v in r.to_json().items() if k != "links"} for r in report.reviews],
        "feedback": [{k: v for k, v in f.to_json().items() if k != "links"} for f in report.feedback],
        "promotions": full["promotions"],
        "verification": {"verified": report.verified,
                         "records": {rid: {"kind": c.kind, "status": c.status,
                                           "signer": c.signer.key if c.signer else None, "time": c.time}
                                     for rid, c in report.records.items()}},
        "exporter": {"name": "openledger", "version": __version__},
    }
    return {"_type": INTOTO_STATEMENT_TYPE,
            "subject": [{"name": subject, "digest": {"sha256": value}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": tag_nonfinite(predicate)}


def intoto_envelope(statement: Mapping[str, Any], signer: RecordSigner) -> dict[str, Any]:
    """The statement in a DSSE envelope signed by ``signer`` (Ed25519 over PAE, ``keyid`` = its key id)."""
    payload = canonical_bytes(statement)
    signature = signer.sign(pae(INTOTO_PAYLOAD_TYPE, payload))
    return {"payloadType": INTOTO_PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode("ascii"),
            "signatures": [{"keyid": signer.keyid, "sig": base64.b64encode(signature).decode("ascii")}]}
