"""What a review or a piece of feedback is about: TARGET strings resolved to the exact records they pin.

A TARGET is one of::

    sha256:ab12…              a record id (or a unique prefix of one, at least 4 hex digits)
    run:<mlflow run id>       the ``run`` record(s) of that MLflow run
    model:NAME@VERSION        the ``model`` record of that registered model version, as the registry has it now
    model:NAME@ALIAS          the same, for the version the alias points to now
    dataset:PATH[@DIGEST]     the ``dataset`` record(s) of that path (the newest digest when none is given)

Resolution works on ledger records alone (by link keys and bodies), except for the one thing only MLflow
knows: which logged model a registered version holds *now*, and where an alias points. That question is
asked through :class:`ModelRegistry`, which the MLflow adapter implements; the core imports no mlflow.

A :class:`Subject` pins record ids, not names: a version deleted and registered again from another run gets
a new ``model`` record, so reviews of the old record do not apply to it.

>>> parse_target("model:iris@champion")
TargetSpec(kind='model', text='model:iris@champion', name='iris', ref='champion')
>>> parse_target("run:0a1b").name
'0a1b'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from openledger.errors import BadInputError, NotFoundError
from openledger.identity.trust import in_time_order, instant
from openledger.lineage.joins import input_digest, run_key
from openledger.store.ledger import Fact, Ledger
from openledger.store.records import Record

__all__ = [
    "LedgerRegistry",
    "ModelRegistry",
    "ModelVersionRef",
    "Subject",
    "TargetSpec",
    "is_model_version_record",
    "parse_target",
    "promoted_version",
    "resolve_model_target",
    "resolve_target",
]

_HEX = re.compile(r"[0-9a-f]{16,128}")
_RECORD_PREFIX = re.compile(r"(sha256:)?[0-9a-f]{4,64}")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A parsed TARGET. ``kind`` is ``model``, ``run``, ``dataset`` or ``record``; ``name`` is the model name,
    run id, dataset path or record id prefix; ``ref`` the model version or alias, or the dataset digest."""

    kind: str
    text: str
    name: str
    ref: str = ""


def parse_target(text: str) -> TargetSpec:
    """Parse a TARGET string; a malformed one is :class:`BadInputError` (exit 2)."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    if scheme == "run" and colon:
        if not rest:
            raise BadInputError("run: needs an MLflow run id (run:<id>)")
        return TargetSpec("run", text, rest)
    if scheme == "model" and colon:
        name, at, ref = rest.rpartition("@")
        if not at or not name or not ref:
            raise BadInputError(f"{text!r}: a model target is model:NAME@VERSION or model:NAME@ALIAS")
        return TargetSpec("model", text, name, ref)
    if scheme == "dataset" and colon:
        path, at, digest = rest.rpartition("@")
        if not at:
            path, digest = rest, ""
        if not path:
            raise BadInputError(f"{text!r}: a dataset target is dataset:PATH or dataset:PATH@DIGEST")
        return TargetSpec("dataset", text, path, digest)
    if _RECORD_PREFIX.fullmatch(text):
        return TargetSpec("record", text, text)
    raise BadInputError(
        f"{text!r} is not a target",
        hint="give a record id, run:<run id>, model:NAME@VERSION, model:NAME@ALIAS or dataset:PATH[@DIGEST]",
    )


@dataclass(frozen=True, slots=True)
class ModelVersionRef:
    """A registered model version as the registry holds it now."""

    name: str
    version: int
    run_id: str | None
    model_id: str | None


class ModelRegistry(Protocol):
    """Answers what only the model registry knows (implemented by ``mlflow_plugin.registry``)."""

    def model_version(self, name: str, ref: str) -> ModelVersionRef:
        """The version ``ref`` (digits) or the version alias ``ref`` points to; NotFoundError if none."""
        ...

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points to now, or None."""
        ...


class LedgerRegistry:
    """A :class:`ModelRegistry` answered from the ledger's own records, for CI jobs without access to MLflow:
    a version is what its newest ``model`` record says, an alias points where its newest promotion record
    put it. What MLflow holds now may differ; with a tracking URI the MLflow registry is asked instead."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def alias_version(self, name: str, alias: str) -> int | None:
        promoted = promoted_version(self.ledger.select(kind="model"), name, alias)
        return int(promoted) if promoted is not None and promoted.isdigit() else None

    def model_version(self, name: str, ref: str) -> ModelVersionRef:
        models = [r for r in self.ledger.select(kind="model") if r.body.get("name") == name]
        if not models:
            raise NotFoundError(f"no model named {name!r} in the ledger",
                                hint="`openledger log --kind model` lists the recorded models")
        if not ref.isdigit():
            promoted = promoted_version(models, name, ref)
            if promoted is None:
                raise NotFoundError(f"no promotion of {name} to @{ref} is recorded",
                                    hint="give NAME@VERSION, or a tracking URI so MLflow can resolve the alias")
            ref = promoted
        versions = [r for r in models if is_model_version_record(r) and str(r.body.get("version")) == ref]
        if not versions:
            raise NotFoundError(f"no record of {name} version {ref} in the ledger",
                                hint="record it with `openledger capture mlflow`")
        newest = _newest_first(versions)[0].body
        return ModelVersionRef(name, int(ref), newest.get("run_id"), newest.get("model_id"))


def promoted_version(records: Iterable[Record | Fact], name: str, alias: str) -> str | None:
    """The version that the newest promotion of ``name`` to ``@alias`` among ``records`` names (newest by
    claimed time, then id), or None when none was recorded."""
    promoted = [r for r in records if r.kind == "model" and r.body.get("action") == "promote"
                and r.body.get("name") == name and r.body.get("alias") == alias]
    if not promoted:
        return None
    return str(max(promoted, key=lambda r: (instant(r.time), r.id)).body.get("version"))


def resolve_model_target(records: Iterable[Record | Fact], target: str,
                         registry: Callable[[], ModelRegistry] | None = None) -> tuple[str, str | None]:
    """``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS`` as (name, version); version ``None`` means the newest.

    An alias resolves to the version its newest recorded promotion names (among ``records``, the ledger's
    ``model`` records); when none is recorded, ``registry`` (made only then: it may need MLflow) is asked
    where the alias points now."""
    name, at, ref = target.partition("@")
    if not name or (at and not ref):
        raise BadInputError(f"{target!r} is not NAME, NAME@VERSION or NAME@ALIAS")
    if not ref or ref.isdigit():
        return name, ref or None
    promoted = promoted_version(records, name, ref)
    if promoted is not None:
        return name, promoted
    found = registry().alias_version(name, ref) if registry is not None else None
    if found is not None:
        return name, str(found)
    raise NotFoundError(f"no promotion to @{ref} of {name} is recorded",
                        hint="give NAME@VERSION, or --tracking-uri so MLflow's registry can resolve the alias")


def is_model_version_record(record: Record) -> bool:
    """A ``model`` record describing a model version (a promotion is a ``model`` record with an ``action``)."""
    return record.kind == "model" and "action" not in record.body


@dataclass(frozen=True, slots=True)
class Subject:
    """A resolved target.

    ``records`` are the pinned records (usually one; several when more than one key attested the same
    run, version or dataset digest). ``runs`` are the run records behind a model (or the run itself);
    ``datasets`` the dataset records those runs consumed (or the dataset itself). ``kind`` names the policy
    that applies: ``model``, ``run``, ``dataset`` or ``record``.
    """

    kind: str
    target: str
    records: tuple[Record, ...]
    runs: tuple[Record, ...] = ()
    datasets: tuple[Record, ...] = ()
    version: ModelVersionRef | None = None

    @property
    def record_ids(self) -> tuple[str, ...]:
        return tuple(sorted({r.id for r in self.records}))

    def links(self) -> list[str]:
        """What a review or feedback on this subject links to: the pinned records, the model's run records
        and the run's join key."""
        links = {r.id for r in self.records} | {r.id for r in self.runs}
        for run in self.runs:
            key = run_key(str(run.body.get("run_id", "")))
            if key:
                links.add(key)
        return sorted(links)

    def trainers(self) -> frozenset[str]:
        """Keys that trained or registered it: the signers of its run records and of its model records."""
        keys = {r.actor for r in self.runs}
        keys |= {r.actor for r in self.records if r.kind in ("model", "run")}
        return frozenset(keys)

    def trainer_claims(self) -> frozenset[str]:
        """MLflow's ``user_id`` on the run and model records, lower-cased: who the client *said* trained it
        (unauthenticated; on a tracking server the records' signer is the server, so this is all there is)."""
        claims = {r.body.get("user_id") for r in (*self.runs, *self.records) if r.kind in ("model", "run")}
        return frozenset(str(c).lower() for c in claims if c)

    def data_contributors(self) -> tuple[frozenset[str], frozenset[str]]:
        """(keys, lower-cased emails) of who supplied its data: the dataset records' signers and the
        ``contributors`` those records name (by ``key`` or ``email``)."""
        keys: set[str] = set()
        emails: set[str] = set()
        for dataset in self.datasets:
            keys.add(dataset.actor)
            for contributor in dataset.body.get("contributors", ()) or ():
                if isinstance(contributor, Mapping):
                    if isinstance(contributor.get("key"), str):
                        keys.add(contributor["key"])
                    if isinstance(contributor.get("email"), str):
                        emails.add(contributor["email"].lower())
        return frozenset(keys), frozenset(emails)

    def describe(self) -> str:
        ids = ", ".join(record_id[:19] for record_id in self.record_ids)
        return f"{self.target} ({self.kind} record {ids})"


def _newest_first(records: Iterable[Record]) -> list[Record]:
    return in_time_order(records, reverse=True)


def _run_records(ledger: Ledger, run_id: str) -> list[Record]:
    key = run_key(run_id)
    if key is not None:
        return [r for r in ledger.select(kind="run", links_to=key) if r.body.get("run_id") == run_id]
    return [r for r in ledger.select(kind="run") if r.body.get("run_id") == run_id]


def _datasets_of(ledger: Ledger, runs: Sequence[Record]) -> list[Record]:
    digests = {link for run in runs for link in run.links if not link.startswith(("sha256:", "mlflowrun:"))}
    digests |= {str(input_digest(item)) for run in runs for item in run.body.get("inputs", ()) or ()
                if isinstance(item, Mapping)}
    if not digests:
        return []
    return [r for r in ledger.select(kind="dataset") if r.body.get("digest") in digests]


def _model_records(ledger: Ledger, version: ModelVersionRef) -> list[Record]:
    def matches(body: Mapping[str, Any]) -> bool:
        if body.get("name") != version.name or str(body.get("version")) != str(version.version):
            return False
        if version.model_id and body.get("model_id") != version.model_id:
            return False
        return not (version.run_id and body.get("run_id") and body.get("run_id") != version.run_id)

    return [r for r in ledger.select(kind="model") if is_model_version_record(r) and matches(r.body)]


def _subject(ledger: Ledger, kind: str, target: str, records: Sequence[Record],
             version: ModelVersionRef | None = None) -> Subject:
    runs: list[Record] = []
    datasets: list[Record] = []
    if kind == "model":
        for run_id in sorted({str(r.body["run_id"]) for r in records if r.body.get("run_id")}):
            runs += _run_records(ledger, run_id)
        datasets = _datasets_of(ledger, runs)
    elif kind == "run":
        runs = list(records)
        datasets = _datasets_of(ledger, runs)
    elif kind == "dataset":
        datasets = list(records)
    return Subject(kind, target, tuple(records), tuple(runs), tuple(datasets), version)


def resolve_target(ledger: Ledger, spec: TargetSpec | str, registry: ModelRegistry | None = None) -> Subject:
    """The records a TARGET pins. Model targets need ``registry``; anything that has no record in the
    ledger is :class:`NotFoundError` (exit 2) with a hint on how to record it."""
    if isinstance(spec, str):
        spec = parse_target(spec)
    if spec.kind == "record":
        record = ledger.get(ledger.resolve(spec.name))
        kind = record.kind if record.kind in ("run", "dataset") or is_model_version_record(record) else "record"
        return _subject(ledger, kind, spec.text, [record])
    if spec.kind == "run":
        runs = _run_records(ledger, spec.name)
        if not runs:
            raise NotFoundError(f"no record of MLflow run {spec.name} in the ledger",
                                hint=f"record it with `openledger capture mlflow --run {spec.name}`")
        return _subject(ledger, "run", spec.text, runs)
    if spec.kind == "model":
        if registry is None:
            raise BadInputError(f"{spec.text}: a model target needs the MLflow registry",
                                hint="give --tracking-uri or set MLFLOW_TRACKING_URI")
        version = registry.model_version(spec.name, spec.ref)
        models = _model_records(ledger, version)
        if not models:
            raise NotFoundError(
                f"no record of model {version.name} version {version.version} in the ledger",
                hint="record it with `openledger capture mlflow`",
            )
        return _subject(ledger, "model", spec.text, models, version)
    datasets = [r for r in ledger.select(kind="dataset") if r.body.get("path") == spec.name]
    if spec.ref:
        datasets = [r for r in datasets if r.body.get("digest") == spec.ref]
    elif datasets:
        newest = _newest_first(datasets)[0].body.get("digest")
        datasets = [r for r in datasets if r.body.get("digest") == newest]
    if not datasets:
        raise NotFoundError(f"no dataset record for {spec.name}{'@' + spec.ref if spec.ref else ''} in the ledger",
                            hint="record it with `openledger record dataset` or the DVC hooks")
    return _subject(ledger, "dataset", spec.text, datasets)
