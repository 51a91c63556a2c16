"""What an attribution values: the dataset versions of a model's lineage (or one dataset), from checked records.

The records decide: dataset records (signatures checked) name the versions and credit their files; the lineage
graph finds which versions a model version was trained on and the commit its training stage ran at. Reading
the files of each version (DVC's ``.dir`` manifests) is the DVC adapter's part; :func:`credited_version`
joins the two.

>>> import tempfile; from pathlib import Path; from openledger.store.ledger import Ledger
>>> model_target(Ledger.init(Path(tempfile.mkdtemp())), "iris", None)
Traceback (most recent call last):
...
openledger.errors.NotFoundError: no model named 'iris' in the ledger
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openledger.attribution.players import Contributor, CreditedVersion
from openledger.errors import BadInputError
from openledger.identity.trust import instant
from openledger.lineage.graph import LedgerGraph
from openledger.lineage.joins import dataset_key
from openledger.store.ledger import Ledger
from openledger.store.records import Record

if TYPE_CHECKING:
    from openledger.identity.trust import TrustState

__all__ = ["AttributionTarget", "DatasetVersion", "credited_version", "data_target", "dataset_history",
           "model_target"]


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    """One recorded version of a DVC-tracked dataset: its path, DVC's hash, the ``.dvc`` file and its (newest,
    checked) dataset record."""

    path: str
    digest: str
    dvcfile: str | None
    record: Record

    @property
    def is_directory(self) -> bool:
        return self.digest.endswith(".dir")

    @property
    def committed(self) -> str | None:
        value = self.record.body.get("committed")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class AttributionTarget:
    """``label`` is ``model:NAME@VERSION`` or ``data:PATH``; ``commit`` the commit the model's training stage ran
    at (``None`` when no record says)."""

    label: str
    datasets: tuple[DatasetVersion, ...]
    model: tuple[str, str] | None = None
    model_records: tuple[str, ...] = ()
    commit: str | None = None
    skipped: tuple[str, ...] = ()  # datasets of the lineage that cannot be split into files (single files)


def _newest(records: Sequence[Record]) -> Record:
    return max(records, key=lambda r: (instant(r.time), r.id))


def _version(record: Record) -> DatasetVersion:
    body = record.body
    dvcfile = body.get("dvcfile")
    return DatasetVersion(str(body["path"]), str(body["digest"]), dvcfile if isinstance(dvcfile, str) else None,
                          record)


def _credited(records: Sequence[Record]) -> Record:
    """The record that credits a version file by file (``paths``) when there is one, else the newest."""
    with_paths = [r for r in records if any(isinstance(c, Mapping) and isinstance(c.get("paths"), list)
                                            for c in r.body.get("contributors") or [])]
    return _newest(with_paths or list(records))


def model_target(ledger: Ledger, name: str, version: str | None) -> AttributionTarget:
    """The dataset versions in the lineage of model ``name`` (``version`` None: the newest recorded)."""
    graph = LedgerGraph.load(ledger)
    name, version = graph.resolve(name, version)
    lineage = graph.lineage(name, version)
    datasets: list[DatasetVersion] = []
    skipped: list[str] = []
    for node in lineage.datasets:
        facts = [f for f in node.records if f.kind == "dataset"]
        if not facts:
            continue  # a pipeline output: no dataset record of its own
        records = [ledger.get(f.id) for f in facts]  # signatures checked: credit decides values
        chosen = _version(_credited(records))
        if chosen.is_directory and chosen.dvcfile:
            datasets.append(chosen)
        else:
            skipped.append(chosen.path)
    if not datasets:
        raise BadInputError(f"model {name}@{version} has no dataset records of DVC-tracked directories in its "
                            "lineage: there is nobody to value",
                            hint="track the training data with `dvc add DIR`, commit, and retrain under "
                                 "`dvc repro` with `openledger dvc install`; `openledger report model` shows the "
                                 "lineage")
    # the commit the training stage ran at, unless it ran with uncommitted changes (then no commit reproduces it)
    states = [g for s in lineage.stages if isinstance(g := s.body.get("git"), Mapping)]
    commit = next((str(g["commit"]) for g in states if isinstance(g.get("commit"), str) and not g.get("dirty")),
                  None)
    return AttributionTarget(f"model:{name}@{version}", tuple(sorted(datasets, key=lambda d: d.path)),
                             (name, version), tuple(r.id for r in lineage.model.records), commit, tuple(skipped))


def data_target(ledger: Ledger, path: str, digest: str) -> AttributionTarget:
    """One dataset version (as the working tree's ``.dvc`` file names it)."""
    records = list(ledger.select(kind="dataset", links_to=dataset_key(path, digest)))
    if not records:
        raise BadInputError(f"{path} ({digest[:20]}) has no dataset record: nobody is credited for its files",
                            hint="commit the .dvc file with `openledger dvc install` done, or run "
                                 "`openledger dvc record`")
    chosen = _version(_credited(records))
    if not chosen.is_directory:
        raise BadInputError(f"{path} is a single file: attribution values the contributors of a directory's files",
                            hint="track the data as a directory (`dvc add DIR`)")
    return AttributionTarget(f"data:{path}", (chosen,))


def dataset_history(ledger: Ledger, path: str) -> list[DatasetVersion]:
    """Every recorded version of the dataset at ``path`` (checked records; one per digest, the crediting one)."""
    by_digest: dict[str, list[Record]] = {}
    for record in ledger.select(kind="dataset"):
        if record.body.get("path") == path and isinstance(record.body.get("digest"), str):
            by_digest.setdefault(str(record.body["digest"]), []).append(record)
    return [_version(_credited(records)) for records in by_digest.values()]


def _contributor(entry: Mapping[str, Any], trust: TrustState) -> Contributor:
    """A dataset record's contributor entry as a person, by the rule every report uses
    (:meth:`~openledger.credit.people.People.by_email`): the key that owns the entry's email now (none while
    it is contested), else the entry's key when it has no email; with no key, the email names them. So a
    player's id is the id the contributors report gives the same person."""
    email = str(entry.get("email") or "")
    key = trust.credited_key(email, entry.get("key") if isinstance(entry.get("key"), str) else None)
    identity = trust.identities.get(key) if key else None
    name = identity.name if identity is not None else str(entry.get("name") or email or "unknown")
    return Contributor(key or f"email:{email.lower()}", name, email, key)


def credited_version(version: DatasetVersion, files: Mapping[str, str],
                     trust: TrustState) -> CreditedVersion:
    """``version`` with its files (``relpath -> digest``, from the ``.dir`` manifest) and who its record credits
    for each, under the ledger's ``trust`` state.

    A contributor entry with ``paths`` owns those files; an entry without (the whole version credited to one
    committer, its manifest unknown at recording time) owns every file when it is the only contributor.
    """
    owners: dict[str, Contributor] = {}
    entries = [c for c in version.record.body.get("contributors") or [] if isinstance(c, Mapping)]
    whole = [c for c in entries if not isinstance(c.get("paths"), list)]
    for entry in entries:
        if entry.get("paths_truncated"):
            raise BadInputError(f"the dataset record of {version.path} ({version.digest[:20]}) lists only the first "
                                f"{len(entry.get('paths') or [])} files of {entry.get('name')}: attribution needs "
                                "every file's contributor", hint="value a smaller dataset, or split it into "
                                "several DVC-tracked directories")
        person = _contributor(entry, trust)
        for relpath in entry.get("paths") or []:
            if isinstance(relpath, str) and relpath in files:
                owners[relpath] = person
    if len(entries) == 1 and whole:
        person = _contributor(whole[0], trust)
        owners = dict.fromkeys(files, person)
    return CreditedVersion(version.path, version.digest, version.record.id, version.committed, dict(files), owners)
