"""What :meth:`~openledger.store.ledger.Ledger.scan` decoded from each pack, kept under ``local/facts/`` so the
next report does not decode it again.

A report over a million records spent ~20 s of its ~33 s decoding 700 MB of envelopes (base64, then JSON)
that had not changed since the last report: a pack is immutable. This cache keeps each pack's decoded
facts, in :mod:`marshal`'s format (the fastest load the standard library has), keyed by

* the pack's name and what ``stat`` says of its file (device, inode, size, modification and change times in
  nanoseconds), as git's own index decides a file is unchanged without reading it. Any write to the file,
  ``git checkout``, ``git pull`` or a copy changes the change time, which no program can set back, so the
  entry is another one and the pack is decoded again. A pack written less than two seconds before it is
  decoded is not kept (a second write within one tick of a coarse clock could leave every field equal);
* a tag naming the format and the fields kept (:data:`~openledger.lineage.graph.REPORT_FIELDS`: a report
  keeps five of the dozen fields a captured feedback body has).

Hashing every pack instead (1.6 GB at a million records) cost more than the rest of a cached read.

**Trust.** Each file carries an HMAC-SHA256 under a key kept with the user's private keys
(``OPENLEDGER_HOME``), never in the repository. A ``local/`` that comes from anywhere else (a CI cache
restored from a pull request's job, a copied working tree) does not verify and is not read; marshal must
never read bytes from elsewhere. With no usable key (a home inside the working tree, a read-only one), the
scan decodes every pack as before. Nothing here decides trust, a gate or a verification: those read the
records with their signatures (:meth:`~openledger.store.ledger.Ledger.checked`, ``verify``).

**Failure is a miss.** A file that is missing, short, of another format, fails its HMAC or cannot be
written (a full disk) is ignored; the pack is decoded and the report is the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import marshal
import os
import secrets
import stat
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from openledger import __version__
from openledger.errors import IntegrityError
from openledger.store.files import read_regular, write_atomic
from openledger.store.keys import inside_worktree

__all__ = ["FACTS_DIR", "FactCache", "PackFacts", "cache_key"]

FACTS_DIR = "facts"
_MAGIC = b"openledger-facts/1\n"
_MAC_BYTES = 32
_KEY_FILE = "cache.key"
_RACY_NS = 2_000_000_000

# (id, kind, actor, time, links, body): the fields of a Fact, as marshal stores them
FactRow = tuple[str, str, str, str, tuple[str, ...], dict[str, Any]]


class PackFacts:
    """One pack's decoded records: ``rows`` (Fact fields), ``starts`` and ``ends`` (each row's line in the
    pack, to check it in full when asked), ``problems`` ((offset, kind or None, message) of the lines that
    failed: the kind, when known, lets a scan of other kinds leave them out as it leaves their records)."""

    __slots__ = ("ends", "problems", "rows", "starts")

    def __init__(self, rows: list[FactRow], starts: list[int], ends: list[int],
                 problems: list[tuple[int, str | None, str]]) -> None:
        self.rows, self.starts, self.ends, self.problems = rows, starts, ends, problems

    def dumps(self) -> bytes:
        return marshal.dumps((self.rows, self.starts, self.ends, self.problems), 4)

    @classmethod
    def loads(cls, data: bytes | memoryview) -> PackFacts | None:
        try:
            rows, starts, ends, problems = marshal.loads(data)  # noqa: S302 - only after its HMAC verified
        except (ValueError, EOFError, TypeError):
            return None
        if not (type(rows) is list and type(starts) is list and type(ends) is list and type(problems) is list
                and len(rows) == len(starts) == len(ends)):
            return None
        return cls(rows, starts, ends, problems)


def cache_key(home: Path) -> bytes | None:
    """The HMAC key of this user's fact caches (``home/cache.key``, made on first use, mode 0600), or None
    when it cannot be had: no home, a home inside a working tree (the key would travel with the repository),
    a key file that is not one."""
    if inside_worktree(home) is not None:
        return None
    path = home / _KEY_FILE
    for _ in range(2):
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.path.lexists(path):
                tmp = home / f".{_KEY_FILE}.{os.getpid()}-{secrets.token_hex(6)}"
                write_atomic(tmp, secrets.token_bytes(_MAC_BYTES), mode=0o600)
                try:
                    os.link(tmp, path)  # whole or not at all, and never over another process's key
                except FileExistsError:
                    pass
                finally:
                    tmp.unlink(missing_ok=True)
            key = read_regular(path, _MAC_BYTES + 1)
        except (OSError, IntegrityError):
            return None  # a key file that is not one (a link, a FIFO): no cache, the reports decode
        if len(key) == _MAC_BYTES:
            return key
        with contextlib.suppress(OSError):  # one of the wrong length (an older writer's, cut short): a new one
            path.unlink()
    return None


class FactCache:
    """The fact files of one ledger (``local/facts``) for one projection."""

    def __init__(self, local: Path, key: bytes, fields: Mapping[str, Iterable[str]] | None) -> None:
        self.directory = local / FACTS_DIR
        self.secret = key
        spelled = repr(sorted((kind, sorted(names)) for kind, names in (fields or {}).items())).encode()
        # change _MAGIC when what a scan decodes changes; the version and marshal's format change the tag too
        versions = f"{__version__}/{marshal.version}".encode()
        self.tag = hashlib.sha256(_MAGIC + spelled + versions).hexdigest()[:16]
        self.used: set[str] = set()
        self.racy: set[str] = set()
        self.limits: dict[str, int] = {}
        self.usable = self._usable()  # once a scan: not two lstat calls per pack

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}-{self.tag}.marshal"

    def key_of(self, pack: Path) -> str | None:
        """The key of ``pack``'s entry: a hash of its name and its file's ``stat``; None if it is not a regular
        file (reading it will say why). Thread-safe."""
        try:
            st = os.lstat(pack)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        spelled = f"{pack.name}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
        key = hashlib.sha256(spelled.encode("utf-8", "surrogateescape")).hexdigest()
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
            self.racy.add(key)
        # what a pack's facts can take: its own size twice over (they take less), and room for a tiny pack's
        self.limits[key] = 2 * st.st_size + 65536
        return key

    def _mac(self, key: str, body: bytes | memoryview) -> bytes:
        inner = hashlib.sha256(body).digest()  # hashlib lets go of the GIL for large bodies; hmac over 32 bytes
        return hmac.digest(self.secret, _MAGIC + self.tag.encode() + key.encode() + inner, "sha256")

    def load(self, key: str) -> PackFacts | None:
        """The facts kept under ``key`` (:meth:`key_of` a pack), if its file verifies."""
        body = self.body(key)
        return None if body is None else PackFacts.loads(body)

    def body(self, key: str) -> memoryview | None:
        """The verified body of ``key``'s file (marshal's bytes, still to load), or None. Thread-safe: a scan
        reads and checks the next pack's file in a thread while it loads this one's. The file is read as
        objects are (no link followed, no FIFO or device opened, nothing larger than :meth:`key_of` allowed)."""
        self.used.add(key)
        if not self.usable:
            return None
        try:
            data = read_regular(self._path(key), self.limits.get(key, 0))
        except (OSError, IntegrityError):
            return None
        head = len(_MAGIC) + _MAC_BYTES
        if len(data) < head or not data.startswith(_MAGIC):
            return None
        body = memoryview(data)[head:]
        return body if hmac.compare_digest(data[len(_MAGIC):head], self._mac(key, body)) else None

    def _usable(self) -> bool:
        """``local/facts`` is a real directory (or can be one): not a link that would send reads, writes and
        removals elsewhere (``local/`` is ignored by git, but ``git add -f`` can commit a link)."""
        for directory in (self.directory.parent, self.directory):
            try:
                status = os.lstat(directory)
            except FileNotFoundError:
                return directory == self.directory
            except OSError:
                return False
            if not stat.S_ISDIR(status.st_mode):
                return False
        return True

    def put(self, key: str, facts: PackFacts) -> None:
        """Keep ``facts`` as the pack ``key``'s, for the next scan (nothing, if it cannot be written or the
        pack was written too recently to be told from a second write)."""
        self.used.add(key)
        if key in self.racy or not self.usable:
            return
        body = facts.dumps()
        with contextlib.suppress(OSError):  # a full disk or a read-only tree: no cache, same report
            self.directory.mkdir(exist_ok=True)
            write_atomic(self._path(key), _MAGIC + self._mac(key, body) + body, mode=0o600)

    def prune(self) -> None:
        """Remove the files of packs this scan did not read (packs folded into others, a branch left), and those
        of other projections or versions: one scan's files are all the next one can use."""
        if not self.usable:
            return
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.directory):
                key, _, rest = entry.name.partition("-")
                # another process's write in flight (a .tmp- file) is left to finish
                if entry.name.endswith(".marshal") and (rest != f"{self.tag}.marshal" or key not in self.used):
                    with contextlib.suppress(OSError):
                        Path(entry.path).unlink()
