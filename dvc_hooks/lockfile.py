"""Reading what DVC wrote: ``dvc.lock`` (schema 2.0), ``.dvc`` files and ``.dir`` manifests.

Everything here reads DVC's files as YAML/JSON and never imports DVC, so the record stage that runs on every
``dvc repro`` starts fast. Hashes are DVC's own: an entry ``{hash: md5, md5: <hex>[.dir]}`` becomes the digest
``md5:<hex>[.dir]`` (the spelling ``mlflow.data.from_dvc`` and dataset records use). Nothing is re-hashed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from openledger.errors import BadInputError, NotFoundError, UnsupportedVersionError
from openledger.store.canonical import canonical_bytes

__all__ = [
    "LOCK_SCHEMA",
    "RECORD_STAGE",
    "Artifact",
    "DvcFile",
    "LockStage",
    "cache_dir",
    "cached_size",
    "parse_lock",
    "read_dir_entries",
    "read_dir_manifest",
    "read_dvcfile",
    "read_lock",
]

LOCK_SCHEMA = "2.0"
RECORD_STAGE = "openledger-record"

try:  # libyaml when present: dvc.lock files of large pipelines parse several times faster
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class Artifact:
    """A dep or out as ``dvc.lock`` / a ``.dvc`` file states it, with DVC's hash as a digest."""

    path: str
    digest: str | None = None
    size: int | None = None
    nfiles: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "hash": self.digest}
        if self.size is not None:
            data["size"] = self.size
        if self.nfiles is not None:
            data["nfiles"] = self.nfiles
        data.update(self.extra)
        return data

    @property
    def is_dir(self) -> bool:
        return bool(self.digest and self.digest.endswith(".dir"))


@dataclass(frozen=True, slots=True)
class LockStage:
    """One stage entry of ``dvc.lock``: what DVC ran and the hashes it saw."""

    dvcfile: str  # the dvc.yaml, relative to the repository root (POSIX)
    name: str
    cmd: str | list[str]
    deps: tuple[Artifact, ...]
    outs: tuple[Artifact, ...]
    params: Mapping[str, Any]
    raw: Mapping[str, Any]

    @property
    def lock_digest(self) -> str:
        """A digest of the whole entry: it changes exactly when DVC's view of the stage changes."""
        return "sha256:" + hashlib.sha256(canonical_bytes(self.raw)).hexdigest()

    @property
    def expansion(self) -> dict[str, str] | None:
        """For a ``foreach`` / ``matrix`` stage, its group and key (``train@1`` -> train, 1)."""
        group, at, key = self.name.partition("@")
        return {"group": group, "key": key} if at else None


@dataclass(frozen=True, slots=True)
class DvcFile:
    """A ``.dvc`` file: data added with ``dvc add``, ``dvc import`` or ``dvc import-url``."""

    path: str  # the .dvc file, relative to the repository root
    outs: tuple[Artifact, ...]
    source: Mapping[str, Any]


def _load_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"{path} is missing", hint=f"run `dvc repro` to create {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader (C or Python)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise BadInputError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', None) or exc})",
                            hint=f"restore {path.name} from git, or regenerate it with `dvc repro`") from None


def _artifact(entry: Any, where: str) -> Artifact:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise BadInputError(f"{where}: every dep and out needs a `path`")
    extra: dict[str, Any] = {}
    digest = None
    if isinstance(entry.get("md5"), str):
        # `hash: md5` is DVC 3's hash; an entry without it was hashed by DVC 2 (md5 of dos2unix'd text).
        digest = f"md5:{entry['md5']}"
        if entry.get("hash") != "md5":
            extra["hash_name"] = "md5-dos2unix"
    for key in ("etag", "checksum", "version_id"):  # import-url from object stores
        if key in entry:
            extra[key] = entry[key]
    size = entry.get("size") if isinstance(entry.get("size"), int) else None
    nfiles = entry.get("nfiles") if isinstance(entry.get("nfiles"), int) else None
    return Artifact(entry["path"], digest, size, nfiles, extra)


def _artifacts(entries: Any, where: str) -> tuple[Artifact, ...]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise BadInputError(f"{where}: expected a list")
    return tuple(_artifact(entry, where) for entry in entries)


def read_lock(path: Path, *, dvcfile: str) -> list[LockStage]:
    """The stages of one ``dvc.lock``, in file order. Missing, corrupt or newer-schema files raise."""
    return parse_lock(_load_yaml(path, "it"), path, dvcfile=dvcfile)


def parse_lock(data: Any, path: Path | str, *, dvcfile: str) -> list[LockStage]:
    """The stages of a ``dvc.lock`` already parsed as YAML (``path`` names it in errors)."""
    if not isinstance(data, dict):
        raise BadInputError(f"{path} is not a dvc.lock file (expected a mapping with `schema` and `stages`)",
                            hint="restore it from git, or regenerate it with `dvc repro`")
    schema = str(data.get("schema", ""))
    if schema != LOCK_SCHEMA:
        if schema and schema.partition(".")[0].isdigit() and int(schema.partition(".")[0]) > 2:
            raise UnsupportedVersionError(f"{path} has schema {schema}, written by a newer DVC; this OpenLedger "
                                          f"reads schema {LOCK_SCHEMA}", hint="upgrade openledger-mlops")
        raise BadInputError(f"{path} has schema {schema or 'none'}; expected {LOCK_SCHEMA} (DVC 2 or 3)",
                            hint="regenerate it with a current DVC: `dvc repro`")
    stages = data.get("stages") or {}
    if not isinstance(stages, dict):
        raise BadInputError(f"{path}: `stages` must be a mapping")
    result = []
    for name, entry in stages.items():
        where = f"{path} stage {name}"
        if not isinstance(entry, dict) or "cmd" not in entry:
            raise BadInputError(f"{where}: an entry needs a `cmd`", hint="regenerate dvc.lock with `dvc repro`")
        params = entry.get("params") or {}
        if not isinstance(params, dict):
            raise BadInputError(f"{where}: `params` must be a mapping")
        result.append(LockStage(dvcfile, str(name), entry["cmd"], _artifacts(entry.get("deps"), where),
                                _artifacts(entry.get("outs"), where), params, entry))
    return result


def read_dvcfile(root: Path, relpath: str) -> DvcFile:
    """A ``.dvc`` file (relative to ``root``) with its outs and where the data came from."""
    path = root / relpath
    data = _load_yaml(path, "it")
    if not isinstance(data, dict):
        raise BadInputError(f"{path} is not a .dvc file (expected a mapping with `outs`)")
    outs = _artifacts(data.get("outs"), str(path))
    deps = data.get("deps") or []
    source: dict[str, Any] = {"type": "dvc-add"}
    if deps and isinstance(deps, list) and isinstance(deps[0], dict):
        dep = deps[0]
        repo = dep.get("repo")
        if isinstance(repo, dict):
            source = {"type": "dvc-import", "repo": repo.get("url"), "path": dep.get("path"),
                      "rev": repo.get("rev"), "rev_lock": repo.get("rev_lock")}
        else:
            source = {"type": "import-url", "url": dep.get("path")}
            if isinstance(dep.get("md5"), str):
                source["digest"] = f"md5:{dep['md5']}"
            for key in ("etag", "checksum", "version_id"):
                if key in dep:
                    source[key] = dep[key]
    if "frozen" in data:
        source["frozen"] = bool(data["frozen"])
    return DvcFile(relpath, outs, source)


def cache_dir(root: Path) -> Path:
    """DVC's local cache: ``cache.dir`` from ``.dvc/config.local`` or ``.dvc/config``, else ``.dvc/cache``."""
    import configparser  # here: only when a new dataset version is read from the cache

    for name in ("config.local", "config"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read(root / ".dvc" / name, encoding="utf-8")
        except (configparser.Error, OSError):
            continue
        value = parser.get("cache", "dir", fallback=None)
        if value:
            # relative to the config file's directory, as DVC reads it
            return (root / ".dvc" / value.strip().strip("'\"")).resolve()
    return root / ".dvc" / "cache"


def _cache_objects(cache: Path, digest: str) -> tuple[str, str]:
    """Where DVC keeps an object: DVC 3's ``files/md5/`` layout first, then DVC 2's (plain strings: this runs
    once per file of a directory version)."""
    hexdigest = digest.partition(":")[2]
    base = str(cache)
    return (f"{base}/files/md5/{hexdigest[:2]}/{hexdigest[2:]}", f"{base}/{hexdigest[:2]}/{hexdigest[2:]}")


def read_dir_manifest(cache: Path, digest: str) -> dict[str, str] | None:
    """A directory version's files (POSIX relative path -> ``md5:<hex>``) from its ``.dir`` manifest in the
    local cache; ``None`` when the manifest is not in this cache (never fetched here)."""
    entries = read_dir_entries(cache, digest)
    if entries is None:
        return None
    return {e["relpath"]: f"md5:{e['md5']}" for e in entries}


def read_dir_entries(cache: Path, digest: str) -> list[dict[str, Any]] | None:
    """The entries of a ``.dir`` manifest as DVC wrote them (each with ``relpath`` and ``md5``), or ``None``
    when it is not in the local cache."""
    for candidate in _cache_objects(cache, digest):
        try:
            with open(candidate, "rb") as handle:
                entries = orjson.loads(handle.read())  # a 10,000-file manifest parses in a third of json's time
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise BadInputError(f"DVC cache object {candidate} is unreadable ({exc})",
                                hint="`dvc fetch` it again, or remove it and `dvc add` the data") from None
        if not isinstance(entries, list):
            raise BadInputError(f"DVC cache object {candidate} is not a .dir manifest")
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("relpath"), str)
                and isinstance(e.get("md5"), str)]
    return None


def cached_size(cache: Path, digest: str) -> int | None:
    """The size of a file version in the local cache (``None`` when it is not cached here)."""
    for candidate in _cache_objects(cache, digest):
        try:
            return os.stat(candidate).st_size
        except OSError:
            continue
    return None
