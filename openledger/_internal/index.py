"""The SQLite index under ``.openledger/local/``: a rebuildable cache of what queries need.

It maps record ids to where their bytes are (a loose object or a pack and offset), keeps each feed's tips
for appends, and the kind / actor / link columns reports query. It is never trusted for verification.

It stays current cheaply: it remembers each object fan-out directory's mtime and the packs it has read, so
a sync costs one ``stat`` per fan-out directory and rescans only what git (or anything else) changed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openledger.errors import IntegrityError
from openledger.identity.trust import instant
from openledger.store.canonical import parse_canonical
from openledger.store.dsse import parse_envelope
from openledger.store.files import MAX_PACK_BYTES, read_regular
from openledger.store.records import Record, record_id_of

# Appends must not get slower as the ledger grows. A table keyed by record id takes random inserts: a batch
# of 1000 dirties ~1000 pages of a large table, all rewritten to the WAL. So `records` is kept in insertion
# order (a batch fills the last pages) and ids are found through `ids`, keyed by the first 8 bytes of the
# digest (16-byte rows: a small tree). Two ids sharing those 8 bytes (2^32 work to make on purpose) put
# the second in `id_overflow`. No secondary indexes: reports scan 100k rows in milliseconds.
INDEX_VERSION = "5"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    n INTEGER PRIMARY KEY, id TEXT NOT NULL, kind TEXT, actor TEXT, feed TEXT, seq INTEGER, time TEXT,
    prev TEXT, location TEXT NOT NULL, offset INTEGER, length INTEGER
);
CREATE TABLE IF NOT EXISTS ids (key INTEGER PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS id_overflow (id TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS links (id TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (target, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tips (
    actor TEXT NOT NULL, feed TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER, PRIMARY KEY (actor, feed, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, problem TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dirs (name TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packs (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS loose_records ON records(n) WHERE location = 'loose';
"""

LOOSE = "loose"


class _NotIndexedError(Exception):
    pass


_RACY_NS = 2_000_000_000
_PACKS_DIR = "packs/"  # the packs directory's row in the dirs table (object directories are two hex digits)
_OFFSET = 1 << 63
_HEX_START = len("sha256:")


def _key(record_id: str) -> int:
    """The ``ids`` key: the digest's first 8 bytes, shifted so that SQLite's signed order is the hex order."""
    return int(record_id[_HEX_START:_HEX_START + 16], 16) - _OFFSET


def _key_range(hex_prefix: str) -> tuple[int, int]:
    head = hex_prefix[:16]
    return int(head.ljust(16, "0"), 16) - _OFFSET, int(head.ljust(16, "f"), 16) - _OFFSET


_ROW = "r.id, r.location, r.offset, r.length"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a record's envelope is: a loose object, or ``length`` bytes at ``offset`` in a pack."""

    location: str
    offset: int = 0
    length: int = 0


@dataclass(frozen=True, slots=True)
class IndexedRecord:
    """The fields of a record the index keeps (unverified: read from disk without a signature check)."""

    id: str
    kind: str
    actor: str
    feed: str
    seq: int
    time: str
    prev: tuple[str, ...]
    links: tuple[str, ...]


def summarize(data: bytes) -> IndexedRecord:
    """Read the index fields out of envelope bytes (no signature check: the index is only a cache)."""
    envelope = parse_envelope(data)
    try:
        payload = parse_canonical(envelope.payload)
        return IndexedRecord(
            id=record_id_of(envelope.payload),
            kind=payload["kind"],
            actor=payload["actor"],
            feed=payload["feed"],
            seq=int(payload["seq"]),
            time=payload["time"],
            prev=tuple(payload["prev"]),
            links=tuple(payload["links"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"payload is not a record: {exc}") from None


def iter_pack(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(offset, envelope bytes)`` for each line of a pack."""
    offset = 0
    size = len(data)
    while offset < size:
        end = data.find(b"\n", offset)
        if end < 0:
            end = size
        if end > offset:
            yield offset, data[offset:end]
        offset = end + 1


class LedgerIndex:
    """The query cache of one ledger directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.packs = root / "packs"
        self.path = root / "local" / "index.sqlite"
        self._db: sqlite3.Connection | None = None

    # -- connection ------------------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._connect()
        return self._db

    def _connect(self) -> sqlite3.Connection:
        try:
            return self._connect_file()
        except (OSError, sqlite3.OperationalError):
            if self._writable():
                raise
        # A read-only ledger (a read-only checkout, mount or permissions): the cache lives in memory for this
        # process, built from the objects like any new index, so the read-only commands still work.
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(_SCHEMA)
        db.execute("INSERT INTO meta VALUES ('version', ?)", (INDEX_VERSION,))
        return db

    def _writable(self) -> bool:
        return os.access(self.path.parent if self.path.parent.exists() else self.root, os.W_OK)

    def _connect_file(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                # The id lookup takes random inserts: with SQLite's default 2 MiB of cache, a 1M-record index
                # reads most of its pages back for every batch (pages are allocated as used, up to this).
                db.execute("PRAGMA cache_size=-65536")
                db.executescript(_SCHEMA)
                row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
                if row is None:
                    db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (INDEX_VERSION,))
                elif row[0] != INDEX_VERSION:
                    raise sqlite3.DatabaseError("index from another OpenLedger version")
                return db
            except sqlite3.DatabaseError:
                db.close()
                if attempt:
                    raise
                # A cache: a damaged or foreign index is thrown away and rebuilt, losing nothing.
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- updates ---------------------------------------------------------------------------------------
    @staticmethod
    def _insert(db: sqlite3.Connection, summaries: Sequence[IndexedRecord | Record],
                where: Sequence[Location], *, fresh: bool = False, unseen: bool = False) -> set[tuple[str, str]]:
        """Add records in bulk; returns the feeds whose tips must be recomputed.

        ``fresh`` records were just signed by this process as one chain from the feed's current tips, so
        the tips move from their prev to the last of them; anything else (records found on disk after a
        git merge, in any order) marks its feed for a recount. ``unseen`` records are expected to be in no
        index row (a batch this process just packed, in a pack no sync has read): they are inserted without
        looking each one up first, and looked up after all if one of their keys turns out to be taken.
        """
        if not summaries:
            return set()
        # Otherwise skip what is indexed already, fresh or not: between writing an object and indexing it,
        # another process's sync may have found the file and indexed it first.
        known = set() if unseen else LedgerIndex._known(db, [s.id for s in summaries])
        unique = {s.id: (s, w) for s, w in zip(summaries, where, strict=True) if s.id not in known}
        pairs = list(unique.values())  # also one row when a scan finds a record both packed and loose
        if not pairs:
            return set() if fresh else {(s.actor, s.feed) for s in summaries}
        start = db.execute("SELECT coalesce(max(n), 0) + 1 FROM records").fetchone()[0]
        db.executemany(
            "INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (start + i, s.id, s.kind, s.actor, s.feed, s.seq, s.time, " ".join(s.prev), w.location, w.offset,
                 w.length)
                for i, (s, w) in enumerate(pairs)
            ],
        )
        keyed = [(_key(s.id), start + i) for i, (s, _) in enumerate(pairs)]
        inserted = db.executemany("INSERT OR IGNORE INTO ids VALUES (?,?)", keyed).rowcount
        if inserted != len(keyed) and unseen:
            # A key was taken: a record indexed already (one also in another pack) or two ids sharing their
            # first 8 bytes. Undo this batch's rows and take the way that looks every id up.
            db.execute("DELETE FROM ids WHERE n >= ?", (start,))
            db.execute("DELETE FROM records WHERE n >= ?", (start,))
            return LedgerIndex._insert(db, summaries, where, fresh=fresh)
        if inserted != len(keyed):
            for (key, n), (s, _) in zip(keyed, pairs, strict=True):
                if db.execute("SELECT n FROM ids WHERE key=?", (key,)).fetchone()[0] != n:
                    # Two different ids sharing their first 8 bytes (not a repeat: known ids were skipped above).
                    db.execute("INSERT OR IGNORE INTO id_overflow VALUES (?,?)", (s.id, n))
        db.executemany("INSERT OR IGNORE INTO links VALUES (?,?)", [(s.id, t) for s, _ in pairs for t in s.links])
        if not fresh:
            return {(s.actor, s.feed) for s, _ in pairs}
        first, last = summaries[0], summaries[-1]
        db.executemany(
            "DELETE FROM tips WHERE actor=? AND feed=? AND id=?", [(first.actor, first.feed, p) for p in first.prev]
        )
        db.execute("INSERT OR IGNORE INTO tips VALUES (?,?,?,?)", (last.actor, last.feed, last.id, last.seq))
        return set()

    @staticmethod
    def _with_prefix(db: sqlite3.Connection, hex_prefix: str, columns: str = _ROW) -> list[tuple[Any, ...]]:
        """Rows of the records whose id's hex digest starts with ``hex_prefix``."""
        low, high = _key_range(hex_prefix)
        rows = db.execute(
            f"SELECT {columns} FROM ids JOIN records r ON r.n = ids.n WHERE ids.key BETWEEN ? AND ?",  # noqa: S608
            (low, high),
        ).fetchall()
        rows += db.execute(
            f"SELECT {columns} FROM id_overflow o JOIN records r ON r.n = o.n WHERE o.id >= ? AND o.id < ?",  # noqa: S608
            (f"sha256:{hex_prefix}", f"sha256:{hex_prefix}g"),
        ).fetchall()
        return [row for row in rows if row[0].startswith("sha256:" + hex_prefix)]

    @staticmethod
    def _known(db: sqlite3.Connection, record_ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(record_ids), 500):
            chunk = record_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT r.id FROM ids JOIN records r ON r.n = ids.n WHERE ids.key IN ({marks})",  # noqa: S608
                [_key(record_id) for record_id in chunk],
            )
            known.update(row[0] for row in rows)
            rows = db.execute(f"SELECT id FROM id_overflow WHERE id IN ({marks})", chunk)  # noqa: S608
            known.update(row[0] for row in rows)
        return known & set(record_ids)

    @staticmethod
    def _recount_tips(db: sqlite3.Connection, feeds: Iterable[tuple[str, str]]) -> None:
        """A feed is one key on one device: (actor, feed name), so reusing a name joins nobody's feed."""
        for actor, feed in feeds:
            rows = db.execute("SELECT id, seq, prev FROM records WHERE actor=? AND feed=?", (actor, feed)).fetchall()
            followed = {p for _, _, prev in rows for p in prev.split()}
            db.execute("DELETE FROM tips WHERE actor=? AND feed=?", (actor, feed))
            db.executemany(
                "INSERT INTO tips VALUES (?,?,?,?)",
                [(actor, feed, record_id, seq) for record_id, seq, _ in rows if record_id not in followed],
            )

    def add(self, records: Sequence[IndexedRecord | Record], where: Sequence[Location], *,
            touched_dirs: Iterable[str] = (), pack: str | None = None) -> None:
        """Index records this process just wrote, and note the directories it changed as seen."""
        with self._write() as db:
            if pack is not None and db.execute("SELECT 1 FROM packs WHERE name = ?", (pack,)).fetchone():
                return  # another process's sync read the pack first, and so indexed every record in it
            self._insert(db, records, where, fresh=True, unseen=pack is not None)
            self._note_written(db, touched_dirs, pack)

    def _note_written(self, db: sqlite3.Connection, touched_dirs: Iterable[str], pack: str | None) -> None:
        for name in touched_dirs:
            with contextlib.suppress(FileNotFoundError):
                db.execute(
                    "INSERT OR REPLACE INTO dirs VALUES (?,?)", (name, os.stat(self.objects / name).st_mtime_ns)
                )
        if pack is not None:
            db.execute("INSERT OR IGNORE INTO packs VALUES (?)", (pack,))

    def repacked(self, record_ids: Sequence[str], where: Sequence[Location], *, pack: str) -> bool:
        """Note that loose records are now also in ``pack``, which ``Ledger.pack`` just wrote (before it removes
        their files), without re-reading the ledger. False, changing nothing, when one of them is not indexed
        (then rebuild). The object directories are left to the next sync: it rescans those whose mtime moved."""
        try:
            with self._write() as db:
                self._relocate(db, record_ids, where)
                self._note_written(db, (), pack)
        except _NotIndexedError:
            return False
        return True

    @staticmethod
    def _relocate(db: sqlite3.Connection, record_ids: Sequence[str], where: Sequence[Location]) -> None:
        """Point indexed loose records at a pack; _NotIndexedError when one is not indexed."""
        rows = []
        for record_id, location in zip(record_ids, where, strict=True):
            found = db.execute("SELECT r.n, r.id FROM ids JOIN records r ON r.n = ids.n WHERE ids.key = ?",
                               (_key(record_id),)).fetchone()
            if found is None or found[1] != record_id:
                found = db.execute("SELECT n FROM id_overflow WHERE id = ?", (record_id,)).fetchone()
            if found is None:
                raise _NotIndexedError(record_id)
            rows.append((location.location, location.offset, location.length, found[0]))
        db.executemany("UPDATE records SET location = ?, offset = ?, length = ? WHERE n = ? AND location = 'loose'",
                       rows)

    def loose_count(self) -> int:
        """How many indexed records are loose objects (a partial index keeps this cheap at any size), less those
        the last pack left loose because they are damaged (``verify`` names them; packing cannot fix them)."""
        loose = int(self.db.execute("SELECT count(*) FROM records WHERE location = 'loose'").fetchone()[0])
        row = self.db.execute("SELECT value FROM meta WHERE key = 'unpackable'").fetchone()
        return max(0, loose - int(row[0])) if row is not None and str(row[0]).isdigit() else loose

    def note_unpackable(self, count: int) -> None:
        """How many loose records the last pack could not take."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('unpackable', ?)", (str(count),))

    def sync(self) -> None:
        """Bring the index up to date with the files on disk."""
        with self._write() as db:
            if not self._sync(db):
                self._clear(db)
                self._sync(db)

    def rebuild(self) -> None:
        with self._write() as db:
            self._clear(db)
            self._sync(db)

    @staticmethod
    def _clear(db: sqlite3.Connection) -> None:
        for table in ("records", "ids", "id_overflow", "links", "tips", "dirs", "packs", "skipped"):
            db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    def _sync(self, db: sqlite3.Connection) -> bool:
        """Index what is new; False when something indexed has disappeared (then the caller rebuilds)."""
        changed: set[tuple[str, str]] = set()
        complete = self._sync_files(db, changed)
        if complete:
            self._recount_tips(db, changed)
        return complete

    def _sync_files(self, db: sqlite3.Connection, changed: set[tuple[str, str]]) -> bool:
        seen_dirs = dict(db.execute("SELECT name, mtime_ns FROM dirs").fetchall())
        # The packs directory is listed only when its mtime moved (taken before listing, so a pack that arrives
        # meanwhile moves it again): a ledger of a thousand packs costs an append no listing of them.
        try:
            packs_mtime: int | None = os.stat(self.packs).st_mtime_ns
        except OSError:
            packs_mtime = None
        if packs_mtime is None or seen_dirs.get(_PACKS_DIR) != packs_mtime:
            if not self._sync_packs(db, changed):
                return False
            if packs_mtime is not None:
                trusted = packs_mtime if packs_mtime < time.time_ns() - _RACY_NS else -1
                db.execute("INSERT OR REPLACE INTO dirs VALUES (?,?)", (_PACKS_DIR, trusted))
        return self._sync_objects(db, changed, seen_dirs)

    def _sync_packs(self, db: sqlite3.Connection, changed: set[tuple[str, str]]) -> bool:
        seen_packs = {row[0] for row in db.execute("SELECT name FROM packs")}
        current_packs = set()
        if self.packs.is_dir():
            current_packs = {p for p in os.listdir(self.packs) if p.startswith("pack-") and p.endswith(".jsonl")}
        if seen_packs - current_packs:
            return False
        for name in sorted(current_packs - seen_packs):
            try:
                data = read_regular(self.packs / name, MAX_PACK_BYTES)
            except (IntegrityError, OSError) as exc:  # `verify` names it; listings say something was left out
                db.execute("INSERT OR REPLACE INTO skipped VALUES (?,?)", (name, getattr(exc, "message", str(exc))))
                continue
            found, places = [], []
            for offset, line in iter_pack(data):
                try:
                    found.append(summarize(line))
                    places.append(Location(name, offset, len(line)))
                except IntegrityError as exc:
                    db.execute("INSERT OR REPLACE INTO skipped VALUES (?,?)", (f"{name}@{offset}", str(exc)))
            # Records this index has as loose objects, now in a pack (another clone packed them; a merge brings
            # the pack and deletes their files): they move to the pack, or the object scan would miss them.
            loose = {row[0] for row in db.execute("SELECT id FROM records WHERE location = 'loose'")}
            moved = [(s.id, w) for s, w in zip(found, places, strict=True) if s.id in loose]
            if moved:
                self._relocate(db, [i for i, _ in moved], [w for _, w in moved])
            changed |= self._insert(db, found, places)
            db.execute("INSERT INTO packs VALUES (?)", (name,))
        return True

    def _sync_objects(self, db: sqlite3.Connection, changed: set[tuple[str, str]], seen_dirs: dict[str, int]) -> bool:
        if not self.objects.is_dir():
            return True
        present = set()
        with os.scandir(self.objects) as entries:  # closed on the early return too
            directories = [entry for entry in entries if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False)]
        for entry in directories:
            present.add(entry.name)
            mtime = entry.stat().st_mtime_ns
            if seen_dirs.get(entry.name) == mtime:
                continue
            if not self._rescan(db, entry.name, changed):
                return False
            # "Racy" mtimes (git's term): file timestamps are coarse, so a file written in the same tick as
            # this scan would leave the mtime unchanged. A recent mtime is not trusted: rescan next time.
            trusted = mtime if mtime < time.time_ns() - _RACY_NS else -1
            db.execute("INSERT OR REPLACE INTO dirs VALUES (?,?)", (entry.name, trusted))
        # git removes a directory it empties (checking out a branch without those objects).
        for gone in seen_dirs.keys() - present - {_PACKS_DIR}:
            if any(row[1] == LOOSE for row in self._with_prefix(db, gone)):
                return False
            db.execute("DELETE FROM dirs WHERE name = ?", (gone,))
        return True

    def _rescan(self, db: sqlite3.Connection, fanout: str, changed: set[tuple[str, str]]) -> bool:
        directory = self.objects / fanout
        on_disk = {
            f"sha256:{fanout}{name}" for name in os.listdir(directory) if len(name) == 62 and "." not in name
        }
        low = f"sha256:{fanout}"
        indexed = {row[0]: row[1] for row in self._with_prefix(db, fanout)}
        for record_id, location in indexed.items():
            if location == LOOSE and record_id not in on_disk:
                return False
        found = []
        for record_id in sorted(on_disk - indexed.keys()):
            path = directory / record_id[len(low):]
            try:
                summary = summarize(read_regular(path))
            except (IntegrityError, OSError) as exc:
                # `verify` names it; the index remembers it was skipped so that listings can say so.
                db.execute("INSERT OR REPLACE INTO skipped VALUES (?,?)",
                           (str(path), getattr(exc, "message", None) or str(exc)))
                continue
            if summary.id == record_id:
                found.append(summary)
            else:
                db.execute("INSERT OR REPLACE INTO skipped VALUES (?,?)", (str(path), "content does not match name"))
        changed |= self._insert(db, found, [Location(LOOSE)] * len(found))
        return True

    # -- queries ---------------------------------------------------------------------------------------
    def actors(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT DISTINCT actor FROM records")}

    def feed_tips(self, actor: str, feed: str) -> list[tuple[str, int]]:
        rows = self.db.execute("SELECT id, seq FROM tips WHERE actor=? AND feed=?", (actor, feed))
        return [(row[0], row[1]) for row in rows]

    def skipped(self) -> list[tuple[str, str]]:
        """Objects the index could not read (damaged); `verify` says what is wrong with each."""
        return [(row[0], row[1]) for row in self.db.execute("SELECT path, problem FROM skipped ORDER BY path")]

    def locate(self, record_id: str) -> Location | None:
        if len(record_id) != 71 or not record_id.startswith("sha256:"):
            return None
        row = self.db.execute(
            f"SELECT {_ROW} FROM ids JOIN records r ON r.n = ids.n WHERE ids.key = ?", (_key(record_id),)  # noqa: S608
        ).fetchone()
        if row is None or row[0] != record_id:
            row = self.db.execute(
                f"SELECT {_ROW} FROM id_overflow o JOIN records r ON r.n = o.n WHERE o.id = ?", (record_id,)  # noqa: S608
            ).fetchone()
        return None if row is None else Location(row[1], row[2], row[3])

    def ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Record ids starting with ``prefix`` (``sha256:`` and some hex digits), at most ``limit``."""
        hex_prefix = prefix[_HEX_START:]
        if not all(c in "0123456789abcdef" for c in hex_prefix):
            return []
        return sorted(row[0] for row in self._with_prefix(self.db, hex_prefix))[:limit]

    def query(self, *, kind: str | None = None, actor: str | None = None,
              links_to: str | None = None) -> list[str]:
        """Record ids matching all given filters, oldest first (by claimed time, then feed order)."""
        if links_to is not None:
            rows = self._linking(links_to)
            rows = [row for row in rows if (kind is None or row[4] == kind) and (actor is None or row[5] == actor)]
        else:
            where = " AND ".join(f"{column} = ?" for column, value in (("kind", kind), ("actor", actor))
                                 if value is not None)
            args = [value for value in (kind, actor) if value is not None]
            sql = "SELECT id, time, feed, seq FROM records" + (f" WHERE {where}" if where else "")  # noqa: S608
            rows = self.db.execute(sql, args).fetchall()  # the WHERE names columns and placeholders only
        # Times are claimed by signers and may be spelled with fewer fraction digits: sort as instants.
        rows.sort(key=lambda row: (instant(row[1]), row[2], row[3], row[0]))
        return [row[0] for row in rows]

    def _linking(self, target: str) -> list[tuple[Any, ...]]:
        """(id, time, feed, seq, kind, actor) of the records linking to ``target``: found through ``links``
        (its primary key starts with the target), then each by its id key. A join of ``records`` to ``links``
        scans every record (``records`` has no index on ``id``): 17 ms per query at 100k records."""
        ids = [row[0] for row in self.db.execute("SELECT id FROM links WHERE target = ?", (target,))
               if len(row[0]) == 71 and row[0].startswith("sha256:")]  # ids of indexed records: always
        wanted, found = set(ids), {}
        columns = "r.id, r.time, r.feed, r.seq, r.kind, r.actor"
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            queries = (
                (f"SELECT {columns} FROM ids JOIN records r ON r.n = ids.n WHERE ids.key IN ({marks})",  # noqa: S608
                 [_key(i) for i in chunk]),
                (f"SELECT {columns} FROM id_overflow o JOIN records r ON r.n = o.n WHERE o.id IN ({marks})",  # noqa: S608
                 chunk),
            )
            for sql, args in queries:
                for row in self.db.execute(sql, args):
                    if row[0] in wanted:  # an id key shared by two ids names the first one's row
                        found[row[0]] = row
        return list(found.values())

    def locations(self, kinds: Sequence[str]) -> list[tuple[str, str, int, int]]:
        """(id, location, offset, length) of every record of ``kinds``, grouped by file for one pass each."""
        marks = ",".join("?" * len(kinds))
        rows = self.db.execute(
            f"SELECT id, location, offset, length FROM records WHERE kind IN ({marks}) ORDER BY location, offset",  # noqa: S608
            list(kinds))
        return [(row[0], row[1], row[2] or 0, row[3] or 0) for row in rows]

    def unreferenced(self, by_kind: str) -> list[str]:
        """Ids of records (other than ``by_kind`` ones) that no ``by_kind`` record links to, in insertion order."""
        referrers = [row[0] for row in self.db.execute("SELECT id FROM records WHERE kind = ?", (by_kind,))]
        referenced: set[str] = set()
        for start in range(0, len(referrers), 500):
            chunk = referrers[start:start + 500]
            marks = ",".join("?" * len(chunk))
            referenced.update(row[0] for row in self.db.execute(
                f"SELECT target FROM links WHERE id IN ({marks})", chunk))  # noqa: S608 - placeholders only
        rows = self.db.execute("SELECT id FROM records WHERE kind IS NOT ? ORDER BY n", (by_kind,))
        return [row[0] for row in rows if row[0] not in referenced]

    def prev_links(self) -> dict[str, tuple[str, ...]]:
        """Every indexed record's ``prev`` ids (unverified, like everything here: callers check what they derive)."""
        return {row[0]: tuple(row[1].split()) if row[1] else ()
                for row in self.db.execute("SELECT id, prev FROM records")}

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM records").fetchone()[0])
