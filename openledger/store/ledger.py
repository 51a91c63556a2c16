"""The ledger store: a content-addressed, append-only directory committed with the git repository.

::

    .openledger/
      config.yaml        trust roots, policies (committed)
      objects/ab/cd...   loose envelopes named by record id (committed, never modified)
      packs/             immutable pack files, one envelope per line (committed)
      .gitignore         keeps local/ out of git
      local/             index cache, locks (rebuildable, never committed)

Every write adds a new file: two branches that both appended merge with no conflict, and the union of
their objects is again a valid ledger.

>>> import tempfile; from openledger.store.keys import generate_signer
>>> ledger = Ledger.init(Path(tempfile.mkdtemp()))
>>> record = ledger.append(generate_signer(feed="doc"), "feedback", {"target": "x", "label": "ok"})
>>> ledger.get(record.id) == record
True
"""

from __future__ import annotations

import contextlib
import hashlib
import operator
import os
import sqlite3
import time as _time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from openledger._internal.index import LOOSE, LedgerIndex, Location, iter_pack
from openledger._internal.memory import paused_gc
from openledger._internal.parallel import read_ahead
from openledger._internal.signing import CHUNK as SIGNING_CHUNK
from openledger._internal.signing import HelperFailed, SigningHelper
from openledger.config import LedgerConfig
from openledger.errors import (
    BadInputError,
    HashMismatchError,
    IntegrityError,
    LedgerNotFoundError,
    NotFoundError,
    OpenLedgerError,
)
from openledger.identity.trust import TrustFact, TrustSource, TrustState, in_time_order
from openledger.store.canonical import parse_canonical
from openledger.store.dsse import PAYLOAD_TYPE, envelope_payload, pae
from openledger.store.factcache import FactCache, FactRow, PackFacts, cache_key
from openledger.store.files import MAX_PACK_BYTES, TMP_PREFIX, read_range, read_regular, write_atomic
from openledger.store.keys import Signer, openledger_home
from openledger.store.records import (
    Payload,
    Record,
    RecordSigner,
    assemble_record,
    decode_stored,
    format_time,
    open_record,
    record_id_of,
    sorted_unique,
)

__all__ = ["LEDGER_DIR", "Draft", "Fact", "FsckReport", "Ledger"]

LEDGER_DIR = ".openledger"
ENV_LEDGER_DIR = "OPENLEDGER_DIR"
PACK_THRESHOLD = 128  # batches at least this large go straight into one pack file
HELPER_THRESHOLD = 1000  # batches at least this large are signed by a helper process (its start costs ~50 ms)
PACK_BYTES = 50 * 1024 * 1024  # `pack` splits here: under git hosts' per-file limits, and each pack is read whole
_GITIGNORE = ("# Rebuildable cache and locks, and writes in flight: never commit.\nlocal/\n.tmp-*\n")

Clock = Callable[[], datetime]


class _LockBusyError(OpenLedgerError):
    """Another process held a ledger lock for longer than the wait allowed."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class Draft:
    """A record to append: the signer, feed, sequence number and time are filled in by the ledger."""

    kind: str
    body: Mapping[str, Any]
    links: Sequence[str] = ()
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class FsckReport:
    removed: tuple[str, ...] = ()
    corrupt: tuple[tuple[str, str], ...] = ()
    unexpected: tuple[str, ...] = ()
    objects: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "removed": list(self.removed),
            "corrupt": [{"path": path, "problem": problem} for path, problem in self.corrupt],
            "unexpected": list(self.unexpected),
        }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_DVC_EXPERIMENTS = (".dvc", "tmp", "exps")


def experiment_workspace_owner(path: Path) -> Path | None:
    """The repository whose DVC experiment runs in ``path``, when ``path`` is inside one of DVC's temporary
    experiment workspaces (``<repo>/.dvc/tmp/exps/<dir>``: ``dvc exp run --queue`` and ``--temp``); else None.

    DVC deletes such a workspace when the experiment ends, keeping only what git tracks in the experiment's
    commit: records written to its copy of the ledger would be lost, so they go to the repository's own.
    """
    parts = path.absolute().parts
    for at in range(1, len(parts) - len(_DVC_EXPERIMENTS)):
        if parts[at:at + len(_DVC_EXPERIMENTS)] == _DVC_EXPERIMENTS:
            return Path(*parts[:at])
    return None


def find_ledger_dir(start: Path | None = None) -> Path:
    """The ``.openledger`` directory: ``OPENLEDGER_DIR``, else the nearest one at or above ``start`` (above the
    repository's own workspace, inside a DVC experiment's temporary one: see :func:`experiment_workspace_owner`)."""
    env = os.environ.get(ENV_LEDGER_DIR)
    if env:
        path = Path(env).expanduser().absolute()
        return path if path.name == LEDGER_DIR or (path / "config.yaml").exists() else path / LEDGER_DIR
    here = (start or Path.cwd()).absolute()
    here = experiment_workspace_owner(here) or here
    for parent in [here, *here.parents]:
        if (parent / LEDGER_DIR).is_dir():
            return parent / LEDGER_DIR
    raise LedgerNotFoundError(
        f"no {LEDGER_DIR}/ in {here} or any parent directory",
        hint=f"run `openledger init` in your repository, or set {ENV_LEDGER_DIR}",
    )


#: The kinds that establish trust: who a key is, and from when it is revoked.
TRUST_KINDS = ("identity", "revocation")


class Fact(NamedTuple):
    """A record's content as :meth:`Ledger.scan` reads it: hash checked, signature not (yet)."""

    id: str
    kind: str
    actor: str
    time: str
    links: tuple[str, ...]
    body: dict[str, Any]


class _Problem(NamedTuple):
    """Why a stored envelope is not a record, and its kind when it got that far (a scan of other kinds leaves
    it out, as it would leave the record out; None: listed by every scan)."""

    kind: str | None
    message: str


def _decode_one(data: bytes, expected: str | None, fields: Mapping[str, Sequence[str]] | None,
                seen: dict[Any, Any]) -> FactRow | _Problem | None:
    """A stored envelope's Fact fields (:meth:`Ledger.scan`: hash checked, signature not), why it is not a
    record, or None for a record of no kind a scan asks for (its kind is not a string: ``verify`` names it).
    ``fields`` projects bodies; ``seen`` shares equal strings (signers, link targets) between rows."""
    kind = None
    try:
        payload_bytes = envelope_payload(data)
        record_id = record_id_of(payload_bytes)
        if expected is not None and record_id != expected:
            raise HashMismatchError("content hash does not match its id")
        payload = parse_canonical(payload_bytes)
        kind = payload["kind"]
        if type(kind) is not str:
            return None
        actor, time, body, links = payload["actor"], payload["time"], payload["body"], tuple(payload["links"])
        if not (type(time) is str and isinstance(body, dict) and all(type(link) is str for link in links)):
            raise IntegrityError("payload is not a record")  # signed nonsense: no report reads it
        share = seen.setdefault
        keep = fields.get(kind) if fields else None
        if keep is not None:  # the few fields a report reads, equal values shared (a million feedback bodies)
            body = {name: _shared(body[name], share) for name in keep if name in body}
        links = tuple(share(link, link) for link in links)
        return share(record_id, record_id), share(kind, kind), _shared(actor, share), time, links, body
    except (ValueError, KeyError, TypeError, IntegrityError) as exc:
        return _Problem(kind, getattr(exc, "message", None) or str(exc))


def _shared(value: Any, share: Callable[[Any, Any], Any]) -> Any:
    """``value``, or an equal one seen before: strings, and objects of strings (a feedback's ``source``), which
    captured feedback repeats a million times. Bodies are read, never changed, so sharing is safe."""
    if type(value) is str:
        return share(value, value)
    if type(value) is dict and all(type(v) is str for v in value.values()):
        return share((dict, *value.items()), value)
    return value


def _decode_pack(data: bytes, fields: Mapping[str, Sequence[str]] | None) -> PackFacts:
    """Every line of a pack decoded by :func:`_decode_one` (what :class:`~openledger.store.factcache.FactCache`
    keeps): the rows of sound records with their lines' places, and the lines that failed."""
    facts = PackFacts([], [], [], [])
    seen: dict[str, str] = {}
    for offset, line in iter_pack(data):
        found = _decode_one(line, None, fields, seen)
        if isinstance(found, _Problem):
            facts.problems.append((offset, found.kind, found.message))
        elif found is not None:
            facts.rows.append(found)
            facts.starts.append(offset)
            facts.ends.append(offset + len(line))
    return facts


_ROW_KIND = operator.itemgetter(1)
_FACT_ID = operator.attrgetter("id")
_as_fact = partial(tuple.__new__, Fact)  # Fact._make without its Python frame (rows are checked for length)


def _pack_facts(entry: PackFacts | None, pack: Path, data: bytes | None, *,
                fields: Mapping[str, Sequence[str]] | None, wanted: frozenset[str], checked: Collection[str],
                store: FactCache | None, key: str | None) -> tuple[list[Fact], list[tuple[int, str]]]:
    """The facts of ``wanted`` kinds in one pack, from its cache ``entry`` or decoded from its bytes (``data``,
    read here if need be, and the entry kept), those of ``checked`` kinds checked in full against the bytes,
    and the problems a scan of those kinds lists ((offset, message))."""
    if entry is not None:
        try:
            return _facts_of(entry, pack, data, wanted, checked)
        except (TypeError, ValueError, IndexError):  # a cache entry of another shape: decode the pack after all
            pass
    data = read_regular(pack, MAX_PACK_BYTES) if data is None else data
    entry = _decode_pack(data, fields)
    if store is not None and key is not None:
        store.put(key, entry)
    return _facts_of(entry, pack, data, wanted, checked)


def _facts_of(entry: PackFacts, pack: Path, data: bytes | None, wanted: frozenset[str],
              checked: Collection[str]) -> tuple[list[Fact], list[tuple[int, str]]]:
    rows = entry.rows
    in_pack = [(offset, message) for offset, kind, message in entry.problems if kind is None or kind in wanted]
    kinds = set(map(_ROW_KIND, rows))
    if kinds <= wanted and kinds.isdisjoint(checked) and set(map(len, rows)) <= {len(Fact._fields)}:
        return list(map(_as_fact, rows)), in_pack  # every row kept as it is: in C, no loop here
    found: list[Fact] = []
    for row, start, end in zip(rows, entry.starts, entry.ends, strict=True):
        if row[1] not in wanted:
            continue
        if row[1] in checked:
            data = read_regular(pack, MAX_PACK_BYTES) if data is None else data
            if _full_check_fails(data[start:end], row[0], start, in_pack):
                continue
        found.append(Fact._make(row))
    return found, in_pack


def _read_pack(store: FactCache | None, pack: Path) -> tuple[bytes | None, str | None, memoryview | None]:
    """A pack's cache entry's checked body if there is one, else the pack's bytes, and the entry's key: in a
    thread (file reads and hashing let go of the GIL) while the scan loads the pack before."""
    key = None if store is None else store.key_of(pack)
    body = None if store is None or key is None else store.body(key)
    return (None if body is not None else read_regular(pack, MAX_PACK_BYTES)), key, body


def _full_check_fails(data: bytes, record_id: str, where: Any, problems: list[tuple[Any, str]]) -> bool:
    """Check a record of a kind that decides something in full (signature, schema); on failure list it."""
    try:
        open_record(data, expected_id=record_id)
    except (ValueError, KeyError, TypeError, IntegrityError) as exc:
        problems.append((where, getattr(exc, "message", None) or str(exc)))
        return True
    return False


def _fsck_pack(path: str, corrupt: list[tuple[str, str]]) -> int:
    """Check one pack for :meth:`Ledger.fsck`: its name is its content's hash, each line a sound record; the
    number of lines."""
    try:
        data = read_regular(path, MAX_PACK_BYTES)
    except (IntegrityError, OSError) as exc:
        corrupt.append((path, getattr(exc, "message", None) or str(exc)))
        return 0
    if Path(path).name != f"pack-{hashlib.sha256(data).hexdigest()}.jsonl":
        corrupt.append((path, "pack content does not match its name"))
    objects = 0
    for offset, line in iter_pack(data):
        objects += 1
        try:
            open_record(line)
        except OpenLedgerError as exc:
            corrupt.append((f"{path}@{offset}", exc.message))
    return objects


@dataclass
class Ledger:
    """One ``.openledger/`` directory."""

    root: Path
    config: LedgerConfig
    clock: Clock = field(default=_utc_now, repr=False)
    _index: LedgerIndex = field(init=False, repr=False)  # a cache: finds candidates, never decides
    _left_out: list[tuple[str, str]] = field(init=False, repr=False, default_factory=list)  # what scan skipped
    _helper: SigningHelper | None = field(init=False, repr=False, default=None)  # signs large batches
    _no_helper: bool = field(init=False, repr=False, default=False)

    def __post_init__(self) -> None:
        self.objects = self.root / "objects"
        self.packs = self.root / "packs"
        self.local = self.root / "local"
        self._index = LedgerIndex(self.root)

    # -- opening ---------------------------------------------------------------------------------------
    @classmethod
    def init(cls, directory: Path, config: LedgerConfig | None = None) -> Ledger:
        """Create ``directory/.openledger`` (or return the existing one unchanged)."""
        root = directory / LEDGER_DIR if directory.name != LEDGER_DIR else directory
        if (root / "config.yaml").exists():
            return cls.open(root)
        for sub in ("objects", "packs", "local"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        write_atomic(root / ".gitignore", _GITIGNORE.encode())
        # git does not keep empty directories; these markers keep the layout in a fresh clone.
        for sub in ("objects", "packs"):
            (root / sub / ".gitkeep").touch()
        write_atomic(root / "config.yaml", (config or LedgerConfig()).to_yaml().encode())
        return cls.open(root)

    @classmethod
    def open(cls, path: Path | None = None, *, clock: Clock | None = None) -> Ledger:
        root = find_ledger_dir() if path is None else path
        if root.name != LEDGER_DIR and (root / LEDGER_DIR).is_dir():
            root = root / LEDGER_DIR
        if not root.is_dir():
            raise LedgerNotFoundError(f"{root} is not an OpenLedger directory", hint="run `openledger init`")
        config = LedgerConfig.load(root / "config.yaml")
        ledger = cls(root=root, config=config, clock=clock or _utc_now)
        with contextlib.suppress(OSError):  # a read-only ledger still reads (the index then lives in memory)
            ledger.local.mkdir(exist_ok=True)
        return ledger

    def close(self) -> None:
        if self._helper is not None and self._helper.pid == os.getpid():
            self._helper.close()
        self._helper = None
        self._index.close()

    # -- writing ---------------------------------------------------------------------------------------
    def _object_path(self, record_id: str) -> Path:
        hexdigest = record_id.partition(":")[2]
        return self.objects / hexdigest[:2] / hexdigest[2:]

    def _feed_lock(self, feed: str) -> contextlib.AbstractContextManager[None]:
        return self._file_lock(self.local / "locks" / f"{feed}.lock", f"the lock of feed {feed}")

    @contextlib.contextmanager
    def _file_lock(self, path: Path, what: str, *, timeout: float = 120) -> Iterator[None]:
        """Hold an exclusive lock on ``path`` (other processes wait up to ``timeout`` seconds, then
        :class:`_LockBusyError`)."""
        # imported on the first append: its import costs about as much as all the work of a record stage
        # that appends nothing
        from filelock import FileLock, Timeout  # noqa: PLC0415

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(path), timeout=timeout):
                yield
        except Timeout:
            raise _LockBusyError(f"timed out waiting for {what}",
                                 hint=f"another openledger process holds {path}") from None

    def _write_loose(self, record: Record) -> str:
        path = self._object_path(record.id)
        try:
            path.parent.mkdir(exist_ok=True)
        except FileNotFoundError:
            raise LedgerNotFoundError(f"{self.objects} is missing", hint="run `openledger init`") from None
        # Objects are read-only on disk: they are never modified, only added.
        write_atomic(path, record.envelope, mode=0o444, fsync=self.config.durability == "fsync")
        return path.parent.name

    def _write_pack(self, records: Sequence[Record], *, fsync: bool, sort: bool = True
                    ) -> tuple[str, list[Location]]:
        # `pack` sorts by id so that two people packing the same objects write the same file; an appended
        # batch keeps feed order.
        ordered = sorted(records, key=lambda r: r.id) if sort else records
        data = b"".join(record.envelope + b"\n" for record in ordered)
        name = f"pack-{hashlib.sha256(data).hexdigest()}.jsonl"
        self.packs.mkdir(exist_ok=True)
        write_atomic(self.packs / name, data, mode=0o444, fsync=fsync)
        offsets, offset = {}, 0
        for record in ordered:
            offsets[record.id] = offset
            offset += len(record.envelope) + 1
        return name, [Location(name, offsets[record.id], len(record.envelope)) for record in records]

    def _helper_for(self, signer: RecordSigner) -> SigningHelper | None:
        """The signing helper process for ``signer`` (started on its first large batch), or None where there
        is none to be had: ``signing_helper: false`` in config.yaml, a signer whose key is not in this process,
        or a helper that failed once."""
        if self._no_helper or not self.config.signing_helper or not isinstance(signer, Signer):
            return None
        helper = self._helper
        if helper is not None and (helper.keyid != signer.keyid or helper.pid != os.getpid() or not helper.idle):
            if helper.pid == os.getpid():
                # another key's, or one a batch that raised midway (bad input, an interrupt) left with chunks
                # in hand: a new helper costs ~50 ms, untangling the old one's pipe is not worth a risk
                helper.kill()
            helper = self._helper = None
        if helper is None:
            try:
                helper = self._helper = SigningHelper(signer.keyid, signer._key)  # the key stays in-house
            except (OSError, ValueError, HelperFailed):  # no interpreter to start, or no helper here at all
                self._drop_helper()
                return None
        return helper

    def _sign_in_process(self, signer: RecordSigner, messages: Sequence[bytes]) -> list[bytes]:
        """Two threads sign: libsodium releases the GIL while it works, so they overlap on two cores (but not
        with Python work: see :mod:`openledger._internal.signing`)."""
        half = len(messages) // 2
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only batches this large use it

        with ThreadPoolExecutor(max_workers=1) as pool:
            second_half = pool.submit(lambda: [signer.sign(m) for m in messages[half:]])
            signatures = [signer.sign(m) for m in messages[:half]]
            signatures += second_half.result()
        return signatures

    def _store_pack(self, signer: RecordSigner, chained: Sequence[tuple[Payload, bytes, str]],
                    messages: Sequence[bytes], helper: SigningHelper | None) -> list[Record]:
        """Sign a chain (its messages already sent to ``helper``, if there is one) and store it as one pack."""
        signatures = None
        if helper is not None:
            try:
                signatures = helper.collect(signer.sign)
                if len(signatures) != len(messages):
                    raise HelperFailed(f"{len(signatures)} signatures for {len(messages)} messages")
            except HelperFailed:
                signatures = None
                self._drop_helper()
        if signatures is None:
            signatures = self._sign_in_process(signer, messages)
        records = [
            assemble_record(payload, payload_bytes, record_id, signature)
            for (payload, payload_bytes, record_id), signature in zip(chained, signatures, strict=True)
        ]
        name, locations = self._write_pack(records, fsync=self.config.durability == "fsync", sort=False)
        self._index.add(records, locations, pack=name)
        return records

    def append(
        self,
        signer: RecordSigner,
        kind: str,
        body: Mapping[str, Any],
        links: Sequence[str] = (),
        *,
        time: datetime | None = None,
    ) -> Record:
        """Sign one record into the signer's feed and store it; returns once it is on disk."""
        return self.append_many(signer, [Draft(kind, body, links, time)])[0]

    def append_once(self, signer: RecordSigner, kind: str, body: Mapping[str, Any], links: Sequence[str],
                    *, key: str) -> Record | None:
        """Append unless a ``kind`` record linking to ``key`` exists; checked under the feed lock, so processes
        sharing a key (an MLflow server's workers) cannot both record the same thing. ``None`` if it exists."""
        appended = self._append(signer, [Draft(kind, body, [*links, key])], once=(kind, key))
        return appended[0] if appended else None

    def append_many(self, signer: RecordSigner, drafts: Iterable[Draft]) -> list[Record]:
        """Sign a batch into the signer's feed, chained in order, under one lock.

        Large batches are written as a single pack file. Bad input (a body failing its schema) is raised
        before anything is written.
        """
        return self._append(signer, list(drafts))

    def receive(self, records: Sequence[Record]) -> list[Record]:
        """Store records signed elsewhere (a cluster worker's stage records), as they are: the bytes are
        the record. Each must be opened with :func:`~openledger.store.records.open_record` (signature, id,
        schema) by the caller; this checks that each feed's chain is whole here (every ``prev`` is in the
        ledger or in ``records``) so that ``verify`` finds nothing missing. Records already stored are
        skipped; returns those written."""
        self._index.sync()
        ids = {record.id for record in records}
        for record in records:
            missing = [p for p in record.prev if p not in ids and self._index.locate(p) is None]
            if missing:
                raise IntegrityError(f"record {record.id} follows {missing[0]}, which is neither here nor received "
                                     "with it", code="missing-prev")
        written: list[Record] = []
        for feed in sorted({(r.actor, r.feed) for r in records}):
            with self._feed_lock(feed[1]):
                self._index.sync()
                new = [r for r in records if (r.actor, r.feed) == feed and self._index.locate(r.id) is None]
                touched = {self._write_loose(record) for record in new}
                self._index.add(new, [Location(LOOSE)] * len(new), touched_dirs=touched)
                written += new
        return written

    def _append(self, signer: RecordSigner, drafts: list[Draft], once: tuple[str, str] | None = None
                ) -> list[Record]:
        if not drafts:
            return []
        with self._feed_lock(signer.feed):
            self._index.sync()
            if once is not None and self._index.query(kind=once[0], links_to=once[1]):
                return []
            tips = self._index.feed_tips(signer.keyid, signer.feed)
            prev = sorted_unique([tip for tip, _ in tips])
            seq = max((s for _, s in tips), default=-1) + 1
            batch_time = format_time(self.clock())
            chained: list[tuple[Payload, bytes, str]] = []
            messages: list[bytes] = []
            helper = self._helper_for(signer) if len(drafts) >= HELPER_THRESHOLD else None
            sent = 0
            # Bulk work allocates many small objects that all stay alive: collecting garbage midway is pure
            # cost (about a fifth of a large batch), so the collector waits until the batch is stored.
            with paused_gc():
                for draft in drafts:
                    payload = Payload(
                        kind=draft.kind,
                        actor=signer.keyid,
                        feed=signer.feed,
                        seq=seq,
                        prev=prev,
                        time=format_time(draft.time) if draft.time else batch_time,
                        links=sorted_unique(list(draft.links)),
                        body=draft.body,
                    )
                    payload_bytes = payload.encode()
                    record_id = record_id_of(payload_bytes)
                    chained.append((payload, payload_bytes, record_id))
                    messages.append(pae(PAYLOAD_TYPE, payload_bytes))
                    # The next record's prev is this one's id, a hash of the payload alone: signing can wait,
                    # and a helper process signs what is built while the rest is built.
                    prev, seq = (record_id,), seq + 1
                    if helper is not None and len(messages) - sent >= SIGNING_CHUNK:
                        helper = self._submit(helper, messages[sent:])
                        sent = len(messages)
                if helper is not None and sent < len(messages):
                    helper = self._submit(helper, messages[sent:])
                if len(chained) >= PACK_THRESHOLD:
                    records = self._store_pack(signer, chained, messages, helper)
                else:
                    records = [
                        assemble_record(payload, data, record_id, signer.sign(message))
                        for (payload, data, record_id), message in zip(chained, messages, strict=True)
                    ]
                    touched = {self._write_loose(record) for record in records}
                    self._index.add(records, [Location(LOOSE)] * len(records), touched_dirs=touched)
        if len(records) < PACK_THRESHOLD:
            self._auto_pack()
        return records

    def _submit(self, helper: SigningHelper, messages: Sequence[bytes]) -> SigningHelper | None:
        try:
            helper.submit(messages)
        except HelperFailed:
            self._drop_helper()
            return None
        return helper

    def _drop_helper(self) -> None:
        """A helper that failed is not used again by this ledger: its batch, and the next, sign in process."""
        if self._helper is not None:
            self._helper.kill()
        self._helper, self._no_helper = None, True

    def _auto_pack(self) -> None:
        """Pack every loose object once there are ``auto_pack`` of them (config.yaml; 0: never), so that a
        ledger of a million records is a few hundred files in git, not a million. Best effort: the records are
        stored already, so a pack that cannot be written (a full disk) leaves them loose for the next try, and
        a pack another process is making is not made twice."""
        threshold = self.config.auto_pack
        with contextlib.suppress(OSError, OpenLedgerError, sqlite3.Error):
            if threshold and self._index.loose_count() >= threshold:
                self._pack_locked(wait=False, threshold=threshold)

    # -- reading ---------------------------------------------------------------------------------------
    def _read_at(self, record_id: str, where: Location) -> bytes:
        if where.location == LOOSE:
            return read_regular(self._object_path(record_id))
        return read_range(self.packs / where.location, where.offset, where.length)

    def get(self, record_id: str) -> Record:
        """The checked record (hash, canonical form, signature); raises IntegrityError if it is damaged."""
        data = self._read(record_id)
        try:
            return open_record(data, expected_id=record_id)
        except IntegrityError as exc:
            raise type(exc)(f"record {record_id}: {exc.message}", hint="run `openledger verify`",
                            code=exc.code) from None

    def body(self, record_id: str) -> dict[str, Any]:
        """A stored record's body, its hash, canonical form and signature checked but not its schema: for
        comparisons on hot paths (the record stage asks whether a stage changed since its last record on every
        repro, and compiling a kind's schema costs more than the rest of that check). :meth:`get` checks all."""
        data = self._read(record_id)
        try:
            payload = decode_stored(data, expected_id=record_id)[2]
            body = payload.get("body") if isinstance(payload, dict) else None
            if not isinstance(body, dict):
                raise IntegrityError("payload is not a record")
        except IntegrityError as exc:
            raise type(exc)(f"record {record_id}: {exc.message}", hint="run `openledger verify`",
                            code=exc.code) from None
        return body

    def _read(self, record_id: str) -> bytes:
        for attempt in range(2):
            where = self._index.locate(record_id)
            if where is None:
                self._index.sync()
                where = self._index.locate(record_id)
            if where is None:
                path = self._object_path(record_id)
                if os.path.lexists(path):  # present but not indexable: damaged, and open_record will say so
                    return read_regular(path)
                break
            try:
                return self._read_at(record_id, where)
            except FileNotFoundError:
                if attempt == 0:
                    self._index.rebuild()  # moved by `pack` or removed by git behind the index's back
        raise NotFoundError(f"no record {record_id}")

    def resolve(self, text: str) -> str:
        """Expand a unique record id prefix (``sha256:ab12``, or just ``ab12``)."""
        prefix = text if text.startswith("sha256:") else "sha256:" + text
        if not all(c in "0123456789abcdef" for c in prefix[len("sha256:"):]):
            raise BadInputError(f"{text!r} is not a record id (sha256:<hex>, or a prefix of one)")
        if len(prefix) < len("sha256:") + 4:
            raise BadInputError(f"record id prefix {text!r} is too short (give at least 4 hex digits)")
        self._index.sync()
        matches = self._index.ids_with_prefix(prefix)
        if not matches and len(prefix) > len("sha256:") + 2:
            # The index skips damaged objects; look on disk so they are reported as damaged, not unknown.
            hexdigest = prefix.partition(":")[2]
            fanout = self.objects / hexdigest[:2]
            if fanout.is_dir():
                matches = sorted(f"sha256:{hexdigest[:2]}{name}" for name in os.listdir(fanout)
                                 if name.startswith(hexdigest[2:]) and len(name) == 62)
        if not matches:
            raise NotFoundError(f"no record matches {text!r}")
        if len(matches) > 1:
            raise BadInputError(f"record id prefix {text!r} is ambiguous")
        return matches[0]

    def select(self, *, kind: str | None = None, actor: str | None = None, links_to: str | None = None,
               damaged: list[tuple[str, str]] | None = None) -> Iterator[Record]:
        """Checked records matching the filters, oldest first.

        With ``damaged`` given, a record that fails its checks is appended there (id, problem) and skipped,
        together with the objects the index could not read at all; without it, the first one raises.
        """
        self._index.sync()
        if damaged is not None:
            damaged.extend(self._index.skipped())
        for record_id in self._index.query(kind=kind, actor=actor, links_to=links_to):
            try:
                yield self.get(record_id)
            except IntegrityError as exc:
                if damaged is None:
                    raise
                damaged.append((record_id, exc.message))

    def scan(self, kinds: Sequence[str], damaged: list[tuple[str, str]] | None = None, *,
             checked: Collection[str] = (), fields: Mapping[str, Sequence[str]] | None = None,
             cache: bool = False) -> list[Fact]:
        """Every record of ``kinds``, fast: read from the disk (each loose object and pack line, never found
        through the index, so a stale or poisoned cache cannot hide one), each record's hash checked, its
        signature not.

        For reports over the whole ledger (100k records in about a second, where checking every signature
        takes several): they check the records they show with :meth:`get`, build trust with :meth:`trust`, and
        `verify` checks them all. Records that fail the hash or do not parse are left out and listed in
        ``damaged`` when given, with the files that could not be read at all. The envelope is read as
        :func:`~openledger.store.dsse.envelope_payload` reads it (the signature's spelling is matched, its bytes
        left to the signature check). Records of the ``checked`` kinds are checked in full (signature, schema), for
        what decides something (trust: identities and revocations). The collector is paused: see
        _internal/memory.py.

        ``fields`` keeps, for the kinds it names, only those body fields (a report keeps five of the dozen a
        captured feedback body has: a third of the memory at a million records). ``cache`` reads each pack's
        facts from this user's fact cache when it has them for the pack's file as ``stat`` sees it now (its
        hash was checked when it was decoded; :mod:`openledger.store.factcache`), and writes them there when
        it has not.
        """
        wanted = frozenset(kinds)
        facts: dict[str, Fact] = {}
        problems: list[tuple[str, str]] = []
        store = self._fact_cache(fields) if cache else None
        with paused_gc():
            for data, expected, where in self._stored(problems, packs=False):
                found = _decode_one(data, expected, fields, {})
                if found is None:
                    continue
                if isinstance(found, _Problem):  # listed unless it is a record of a kind not asked for
                    if found.kind is None or found.kind in wanted:
                        problems.append((expected or where, found.message))
                    continue
                kind = found[1]
                if kind in wanted and not (kind in checked
                                           and _full_check_fails(data, found[0], expected or where, problems)):
                    facts[found[0]] = Fact._make(found)  # a record both loose and packed is one fact
            for pack, got in read_ahead(partial(_read_pack, store), self.pack_paths()):
                if isinstance(got, Exception):
                    if not isinstance(got, (OpenLedgerError, OSError)):
                        raise got
                    problems.append((pack.name, getattr(got, "message", None) or str(got)))
                    continue
                pack_bytes, key, body = got
                try:
                    in_facts, in_pack = _pack_facts(None if body is None else PackFacts.loads(body), pack, pack_bytes,
                                                    fields=fields, wanted=wanted, checked=checked, store=store,
                                                    key=key)
                except (OpenLedgerError, OSError) as exc:  # the pack's bytes, needed after all, cannot be read
                    problems.append((pack.name, getattr(exc, "message", None) or str(exc)))
                    continue
                facts.update(zip(map(_FACT_ID, in_facts), in_facts, strict=True))
                problems += [(f"{pack.name}@{offset}", message) for offset, message in sorted(in_pack)]
            if store is not None:
                store.prune()
        self._left_out.extend(problems)
        if damaged is not None:
            damaged.extend(problems)
        return list(facts.values())

    def _fact_cache(self, fields: Mapping[str, Sequence[str]] | None) -> FactCache | None:
        key = cache_key(openledger_home())
        return None if key is None else FactCache(self.local, key, fields)

    def ids(self, *, kind: str | None = None, links_to: str | None = None) -> list[str]:
        """Ids of the records matching the filters, oldest first, without reading the records."""
        self._index.sync()
        return self._index.query(kind=kind, links_to=links_to)

    def actors(self) -> set[str]:
        """The key ids that signed at least one record."""
        self._index.sync()
        return self._index.actors()

    def prev_links(self) -> dict[str, tuple[str, ...]]:
        """Every record's ``prev`` ids as the index has them (a cache: whoever derives a decision from them checks
        it, as :class:`~openledger.anchors.anchoring.AnchorIndex` does against a checkpoint's signed root)."""
        self._index.sync()
        return self._index.prev_links()

    def stored_bytes(self, record_id: str) -> bytes:
        """A record's envelope bytes as stored, unchecked: for callers that check them (incremental verify)."""
        return self._read(record_id)

    def rebuild_index(self) -> None:
        """Throw the index cache away and read every object again (after files changed behind its back)."""
        self._index.rebuild()

    def unreferenced(self, by_kind: str) -> list[str]:
        """Ids of records that no ``by_kind`` record links to yet (for example: not bound to a git commit)."""
        self._index.sync()
        return self._index.unreferenced(by_kind)

    def trust(self, *, from_disk: bool = False) -> TrustState:
        """Trust as the ledger's identity and revocation records establish it. Each record's hash, signature and
        schema are checked as it is read; feeds and checkpoints are not (that is
        :func:`openledger.store.verify.verify_ledger`'s job).

        The records are found through the index, fast, for capture and listings; ``from_disk`` reads them with
        :meth:`checked` instead, never through the index, for verdicts (the gate): a poisoned index could hide a
        revocation and make a revoked key's approval count.
        """
        # a damaged record is left out (`verify` names it), as checked() does: it grants nothing and stops nothing
        records = (self.checked(TRUST_KINDS) if from_disk
                   else [r for kind in TRUST_KINDS for r in self.select(kind=kind, damaged=[])])
        return self.trust_of(records)

    def trust_of(self, records: Iterable[TrustSource]) -> TrustState:
        """Trust as the identity and revocation records among ``records`` establish it under this ledger's
        config (records of other kinds are ignored). The caller answers for their signatures."""
        facts = [TrustFact(r.id, r.kind, r.actor, r.time, r.body) for r in records if r.kind in TRUST_KINDS]
        return TrustState.evaluate(facts, mode=self.config.trust_mode, roots=self.config.trust_roots)

    def checked(self, kinds: Iterable[str]) -> list[Record]:
        """Every sound record of ``kinds``, oldest first, read from the disk: each loose object and pack line,
        never through the index, so a stale or poisoned cache cannot hide one. Records of ``kinds`` are checked
        in full (hash, canonical form, signature, schema); a damaged one is left out (`verify` names it).

        For what decides trust, credit or a gate verdict. The other kinds' records are only decoded to read their
        kind: one pass over the ledger, about a second per 100k records.
        """
        wanted = frozenset(kinds)
        found: dict[str, Record] = {}
        for data, expected, _ in self._stored():
            try:
                payload = parse_canonical(envelope_payload(data))
                if payload["kind"] not in wanted:
                    continue
                record = open_record(data, expected_id=expected)
            except (OpenLedgerError, ValueError, KeyError, TypeError):
                continue
            found[record.id] = record
        return in_time_order(found.values())

    def _stored(self, problems: list[tuple[str, str]] | None = None, *,
                packs: bool = True) -> Iterator[tuple[bytes, str | None, str]]:
        """(bytes, the id its file name gives, where) of every loose object, then (bytes, None, where) of every
        pack line (unless not ``packs``); files that cannot be read are skipped (and listed in ``problems``)."""
        for path in self.loose_paths():
            expected = f"sha256:{path.parent.name}{path.name}"
            try:
                data = read_regular(path)
            except (OpenLedgerError, OSError) as exc:
                if problems is not None:
                    problems.append((str(path), getattr(exc, "message", None) or str(exc)))
                continue
            yield data, expected, str(path)
        for pack in self.pack_paths() if packs else ():
            try:
                data = read_regular(pack, MAX_PACK_BYTES)
            except (OpenLedgerError, OSError) as exc:
                if problems is not None:
                    problems.append((pack.name, getattr(exc, "message", None) or str(exc)))
                continue
            for offset, line in iter_pack(data):
                yield line, None, f"{pack.name}@{offset}"

    def __len__(self) -> int:
        self._index.sync()
        return self._index.count()

    def unreadable(self) -> list[tuple[str, str]]:
        """The objects every listing leaves out because they cannot be read (path or pack, problem): damaged,
        oversized, too deeply nested, or not a regular file. `verify` says what is wrong with each."""
        self._index.sync()
        skipped = self._index.skipped()
        return skipped + [problem for problem in dict.fromkeys(self._left_out) if problem not in skipped]

    def loose_paths(self) -> list[Path]:
        if not self.objects.is_dir():
            return []
        paths: list[Path] = []
        for entry in sorted(os.scandir(self.objects), key=lambda e: e.name):
            if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
                paths.extend(
                    Path(entry.path) / name
                    for name in sorted(os.listdir(entry.path))
                    if len(name) == 62 and not name.startswith(".")
                )
        return paths

    def pack_paths(self) -> list[Path]:
        if not self.packs.is_dir():
            return []
        return sorted(self.packs.glob("pack-*.jsonl"))

    # -- maintenance -----------------------------------------------------------------------------------
    def pack(self) -> tuple[str | None, int]:
        """Fold every loose object into new immutable packs; returns (the first pack's name, records packed).

        Objects are checked before packing; a damaged one is left loose for ``verify`` to name. Packs are sorted
        by record id and split at ``PACK_BYTES``, so two people packing the same objects write the same files.
        One process packs at a time (``local/pack.lock``); this waits for another's pack to finish.
        """
        return self._pack_locked(wait=True, threshold=0)

    def _pack_locked(self, *, wait: bool, threshold: int) -> tuple[str | None, int]:
        # not under locks/, where a feed named "pack" has its lock
        lock = self._file_lock(self.local / "pack.lock", "another process's pack to finish",
                               timeout=120 if wait else 0)
        try:
            with lock:
                self._index.sync()
                if threshold and self._index.loose_count() < threshold:
                    return None, 0  # another process packed while this one waited
                return self._pack()
        except _LockBusyError:
            if wait:
                raise
            return None, 0  # another process is packing them

    def _pack(self) -> tuple[str | None, int]:
        first: str | None = None
        packed = unpackable = size = 0
        chunk: list[Record] = []
        for path in sorted(self.loose_paths()):  # record id order: objects/<2 hex>/<62 hex>
            try:
                record = open_record(read_regular(path), expected_id=f"sha256:{path.parent.name}{path.name}")
            except OpenLedgerError:
                unpackable += 1
                continue
            except OSError:
                continue  # gone since the listing (git, or a pack by hand)
            chunk.append(record)
            size += len(record.envelope) + 1
            if size >= PACK_BYTES:
                name = self._pack_chunk(chunk)
                first, packed, chunk, size = first or name, packed + len(chunk), [], 0
        if chunk:
            name = self._pack_chunk(chunk)
            first, packed = first or name, packed + len(chunk)
        self._index.note_unpackable(unpackable)
        return first, packed

    def _pack_chunk(self, records: list[Record]) -> str:
        # The loose copies are deleted last: the pack is on disk first, whatever the durability, and the index
        # points at it before the files it listed go (a sync in between would otherwise rebuild it).
        name, locations = self._write_pack(records, fsync=True)
        if not self._index.repacked([r.id for r in records], locations, pack=name):
            self._index.rebuild()  # one of them is not indexed (git put it there since the sync)
        for record in records:
            self._object_path(record.id).unlink(missing_ok=True)
        return name

    def fsck(self, *, stale_after: float = 3600.0) -> FsckReport:
        """Remove leftovers of interrupted writes (never a record) and report damaged objects."""
        removed, corrupt, unexpected = [], [], []
        now = _time.time()
        seals = self.root / "seals"  # openledger.store.seals: a seal that does not hold is never believed
        candidates = [self.root] + [d for d in (self.packs, seals) if d.is_dir() and not d.is_symlink()]
        if seals.is_symlink():
            unexpected.append(str(seals))  # seals are never read or written through it
        if self.objects.is_dir():
            for entry in os.scandir(self.objects):
                if entry.is_dir(follow_symlinks=False):
                    candidates.append(Path(entry.path))
                elif entry.is_symlink():
                    corrupt.append((entry.path, "a symbolic link: never followed"))
        objects = 0
        for directory in candidates:
            for entry in os.scandir(directory):
                name = entry.name
                if name.startswith(TMP_PREFIX):
                    pid_text = name[len(TMP_PREFIX):].partition("-")[0]
                    writer_gone = not (pid_text.isdigit() and _pid_alive(int(pid_text)))
                    if writer_gone or now - entry.stat(follow_symlinks=False).st_mtime > stale_after:
                        Path(entry.path).unlink(missing_ok=True)
                        removed.append(entry.path)
                    continue
                if name == ".gitkeep" or directory == self.root:
                    continue
                if directory == seals:  # pack seals and checkpoint leaf lists (openledger.store.leaves)
                    if not ((name.startswith("pack-") and name.endswith(".seal"))
                            or (len(name) == 71 and name.endswith(".leaves"))):
                        unexpected.append(entry.path)
                    continue
                if directory == self.packs:
                    if not (name.startswith("pack-") and name.endswith(".jsonl")):
                        unexpected.append(entry.path)
                        continue
                    objects += _fsck_pack(entry.path, corrupt)
                    continue
                if len(name) != 62:
                    unexpected.append(entry.path)
                    continue
                objects += 1
                try:
                    open_record(read_regular(entry.path), expected_id=f"sha256:{directory.name}{name}")
                except OpenLedgerError as exc:
                    corrupt.append((entry.path, exc.message))
                except OSError as exc:
                    corrupt.append((entry.path, f"unreadable: {exc.strerror or exc}"))
        self._index.rebuild()
        return FsckReport(tuple(removed), tuple(corrupt), tuple(unexpected), objects)
