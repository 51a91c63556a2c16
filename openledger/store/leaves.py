"""Checkpoint leaf lists: the records each checkpoint adds to its Merkle tree, in tree order, in a file.

Incremental verification must know which records the pinned checkpoint covers and recompute its root. Found
from the records, that is a walk along a million ``prev`` links, a sort, and two million SHA-256 calls, one
after the other. When ``openledger ci`` checkpoints on the default branch it also writes, for its checkpoint
and each one its tree extends, ``seals/<64 hex of the checkpoint id>.leaves``::

    {"checkpoint":"sha256:…","count":1000000,"format":"openledger-checkpoint-leaves/v1","previous":"sha256:…"}
    sha256:…      one line per record the checkpoint adds to the leaves of ``previous``, in tree order
    …

``verify --since CHECKPOINT`` then takes the pinned checkpoint's leaves from the files of its chain: the
Merkle roots are recomputed from them in a child process while the parent reads the seals and the objects,
and the walk is skipped. The files are not signed and need not be: they are used only if, for every
checkpoint of the chain, the root recomputed from the files up to it is the root and count that checkpoint
(a record in the ledger, checked in full) states, with the pinned checkpoint last; and if every listed record
is in the ledger and sound, each once. The pinned checkpoint's signer signed that root, so the list is the one
it computed when it signed, from the same immutable records (collision resistance). Anything else (no file, a
header that does not chain, a root that differs, a record that is missing or damaged) and the leaves are
found by the walk, as without the files: they can make a verification slower, never change its verdict.

Like packs and seals, two writers of one checkpoint's leaves write the same file, so they merge.

>>> import tempfile; from openledger import Draft; from openledger.store.keys import generate_signer
>>> from openledger.store.checkpoint import append_checkpoint
>>> from openledger.store.verify import verify_ledger
>>> ledger = Ledger.init(Path(tempfile.mkdtemp())); ci = generate_signer(feed="ci")
>>> _ = ledger.append_many(ci, [Draft("feedback", {"target": "x", "label": str(i)}) for i in range(3)])
>>> report = verify_ledger(ledger, workers=1); checkpoint = append_checkpoint(ledger, ci, report)
>>> [path.name == checkpoint.id[7:] + ".leaves" for path in write_leaves(ledger, report.log, checkpoint)]
[True]
>>> links = chain_of(ledger, checkpoint.id); [(link.size, len(link.ids())) for link in links]
[(3, 3)]
>>> MerkleJob(links).states()[-1][0]
3
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from openledger.errors import OpenLedgerError
from openledger.store import merkle
from openledger.store.canonical import canonical_bytes
from openledger.store.files import read_regular, write_atomic
from openledger.store.ledger import Ledger
from openledger.store.logtree import CheckpointHead, LogTree
from openledger.store.merkle import MerkleAccumulator
from openledger.store.records import Record
from openledger.store.seals import seals_directory, writable_seals_directory

__all__ = ["LEAVES_FORMAT", "Known", "Link", "MerkleJob", "chain_of", "known_leaves", "write_leaves"]

LEAVES_FORMAT = "openledger-checkpoint-leaves/v1"
MAX_LEAVES_BYTES = 1 << 30  # 72 bytes a record: 15 million records added by one checkpoint
_MAX_HEADER_BYTES = 1024
_LINE = 72  # "sha256:" + 64 hex + "\n"
_MAX_CHAIN = 100_000
_RECORD_ID = re.compile(r"sha256:[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{1,64}")
# the child's time before the parent hashes instead (a host program as sys.executable, a stuck child)
_CHILD_SECONDS = 30.0
_CHILD_SECONDS_PER_LEAF = 20e-6  # ~1.5 µs a leaf measured: a generous margin for a loaded machine


class Link(NamedTuple):
    """One checkpoint of a chain, as its leaves file says: read, not yet believed."""

    checkpoint: str
    previous: str | None
    size: int  # the tree's size after it: the checkpoint's count
    body: bytes  # its lines

    def ids(self) -> list[str]:
        return self.body.decode("ascii").split("\n")[:-1]


def leaves_path(directory: Path, checkpoint_id: str) -> Path:
    return directory / f"{checkpoint_id.partition(':')[2]}.leaves"


# -- writing -----------------------------------------------------------------------------------------------

def write_leaves(ledger: Ledger, log: LogTree, checkpoint: Record) -> list[Path]:
    """The leaves files of ``checkpoint`` (just appended, extending a checkpoint of ``log``) and of each
    checkpoint its tree extends that has none; the files written. None when a checkpoint of the chain is a
    version 1 one (its leaves are not a prefix) or a record it covers is missing."""
    directory = writable_seals_directory(ledger)
    if directory is None:
        return []
    head = CheckpointHead.from_record(checkpoint.id, checkpoint.actor, checkpoint.time, checkpoint.body)
    if head.previous is not None and head.previous not in log.heads:
        return []
    increments = log.increments(head.previous) if head.previous is not None else []
    chain = [log.heads[link] for link, _, _ in increments]
    if any(link.version < 2 for link in (*chain, head)) or (chain and chain[0].previous is not None):
        return []
    written: list[Path] = []
    covered: set[str] = set()
    previous: str | None = None
    for link, increment in zip((*chain, head), (*increments, None), strict=True):
        # the checkpoint just appended (no increment): what its tips reach beyond its chain
        new, missing = log.new_records(head.tips, covered) if increment is None else increment[1:]
        if missing:
            return written
        covered.update(new)
        path = leaves_path(directory, link.id)
        if not path.exists():
            header = canonical_bytes({"format": LEAVES_FORMAT, "checkpoint": link.id, "previous": previous,
                                      "count": len(covered)})
            directory.mkdir(exist_ok=True)
            write_atomic(path, b"".join([header, b"\n", *(record_id.encode() + b"\n" for record_id in new)]))
            written.append(path)
        previous = link.id
    return written


# -- reading -----------------------------------------------------------------------------------------------

def _read_link(directory: Path, checkpoint_id: str) -> Link | None:
    try:
        data = read_regular(leaves_path(directory, checkpoint_id), MAX_LEAVES_BYTES)
        header_bytes, _, body = data.partition(b"\n")
        if len(header_bytes) > _MAX_HEADER_BYTES:
            return None
        header = orjson.loads(header_bytes)
        previous, count = header["previous"], header["count"]
        if (type(header) is not dict or header["format"] != LEAVES_FORMAT or header["checkpoint"] != checkpoint_id
                or not (previous is None or (type(previous) is str and _RECORD_ID.fullmatch(previous)))
                or type(count) is not int or len(body) % _LINE or len(body) // _LINE > count):
            return None
    except (OpenLedgerError, OSError, ValueError, KeyError, TypeError):
        return None
    return Link(checkpoint_id, previous, count, body)


def chain_of(ledger: Ledger, pin: str, *, size: int | None = None) -> list[Link] | None:
    """The leaves files of checkpoint ``pin`` (an id or a unique prefix of one) and of every checkpoint its
    tree extends, oldest first, if they are all there and their counts add up (to ``size``, the pin's count
    when it is known); else None. Counts must fall strictly along the chain and the lines read never exceed
    the pin's count, so a file naming itself, or a long chain of large files, is refused as it is read."""
    directory = seals_directory(ledger)
    if directory is None:
        return None
    hexdigest = pin.partition(":")[2] if pin.startswith("sha256:") else pin
    if not _HEX.fullmatch(hexdigest):
        return None
    if len(hexdigest) != 64:
        try:
            names = [entry.name for entry in os.scandir(directory)
                     if entry.name.startswith(hexdigest) and entry.name.endswith(".leaves")]
        except OSError:
            return None
        if len(names) != 1 or not hexdigest:
            return None
        hexdigest = names[0].partition(".")[0]
    links: list[Link] = []
    current: str | None = "sha256:" + hexdigest
    lines = 0
    while current is not None:
        link = _read_link(directory, current)
        if (link is None or len(links) >= _MAX_CHAIN or (size is not None and not links and link.size != size)
                or (links and link.size >= links[-1].size)):
            return None
        lines += len(link.body) // _LINE
        if lines > links[0].size if links else False:
            return None
        links.append(link)
        current = link.previous
    links.reverse()
    before = 0
    for link in links:
        if link.size != before + len(link.body) // _LINE:
            return None
        before = link.size
    return links


class MerkleJob:
    """The Merkle tree states (compact ranges) after each link of a chain, computed in a child process (hashing
    is most of the cost, and the parent has other work meanwhile); in this one if that cannot start."""

    def __init__(self, links: Sequence[Link]) -> None:
        self.links = list(links)
        self._states: list[tuple[int, list[bytes]]] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._done = self._reaped = False
        if not _is_python(sys.executable) or getattr(sys, "frozen", False):
            return  # no interpreter to start (a frozen application, a host program such as uWSGI): the parent hashes
        try:
            # stdin from a file, not a pipe: starting never waits for the child to read
            with tempfile.TemporaryFile() as lines:
                for link in self.links:
                    lines.write(link.body)
                lines.seek(0)
                # the module as a script: it imports nothing but hashlib (-I: no user site, no current directory)
                self._process = subprocess.Popen(  # noqa: S603 - this interpreter, this package's own file
                    [sys.executable, "-I", "-S", merkle.__file__,
                     *(str(len(link.body) // _LINE) for link in self.links)],
                    stdin=lines, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:  # no process (a sandbox, a full process table), a full disk: the parent hashes
            self._process = None

    def states(self) -> list[tuple[int, list[bytes]]] | None:
        """(tree size, compact range hashes) after each link; None if a line is not a record id."""
        if self._done:
            return self._states
        self._done = True
        if self._process is not None:
            leaves = sum(len(link.body) for link in self.links) // _LINE
            try:
                output, _ = self._process.communicate(timeout=_CHILD_SECONDS + leaves * _CHILD_SECONDS_PER_LEAF)
            except subprocess.TimeoutExpired:  # not our interpreter, or stuck: hash here instead
                self.close()
            else:
                self._reaped = True
                if self._process.returncode == 0:
                    self._states = _parse_states(output, len(self.links))
                return self._states
        try:
            self._states = [(size, list(hashes)) for size, hashes in merkle.states_after(
                [link.ids() for link in self.links])]
        except (ValueError, UnicodeDecodeError):
            self._states = None
        return self._states

    def close(self) -> None:
        """Stop the child if it still runs, and reap it."""
        if self._process is not None and not self._reaped:
            if self._process.poll() is None:
                self._process.kill()
            self._process.communicate()
            self._reaped = True


def _is_python(executable: str) -> bool:
    name = Path(executable).name.lower()
    return name.startswith(("python", "pypy"))


def _parse_states(output: bytes, links: int) -> list[tuple[int, list[bytes]]] | None:
    try:
        lines = output.decode("ascii").split("\n")[:-1]
        states = []
        for line in lines:
            size, *hashes = line.split(" ")
            states.append((int(size), [bytes.fromhex(h) for h in hashes]))
    except ValueError:
        return None
    return states if len(states) == links else None


Known = dict[str, tuple[list[str], MerkleAccumulator]]  # checkpoint -> (the leaves it adds, the tree after them)


def known_leaves(links: Sequence[Link], states: Sequence[tuple[int, Sequence[bytes]]],
                 summaries: Mapping[str, Any]) -> Known | None:
    """Each link's new leaves and tree state, if every checkpoint of the chain (a sound record in ``summaries``)
    states the root and count recomputed from the files. Whether every leaf is in ``summaries``, once, is the
    caller's to check: it builds the set of the records they cover anyway."""
    known: Known = {}
    previous: str | None = None
    for link, (size, hashes) in zip(links, states, strict=True):
        summary = summaries.get(link.checkpoint)
        if summary is None or summary.kind != "checkpoint" or link.previous != previous:
            return None
        try:
            head = CheckpointHead.from_record(summary.id, summary.actor, summary.time, summary.body)
            accumulator = MerkleAccumulator.restore(size, hashes)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        if (head.version < 2 or head.previous != previous or not head.count == size == link.size
                or head.root != "sha256:" + accumulator.root().hex()):
            return None
        known[link.checkpoint] = (link.ids(), accumulator)
        previous = link.checkpoint
    return known or None
