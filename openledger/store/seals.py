"""Pack seals: a checkpoint signer's signed word on what a pack holds, so that incremental verification reads a
pack by hashing it once instead of decoding each of its records.

A pack never changes once written. When ``openledger ci`` signs a checkpoint on the default branch, it also
seals every pack its key has not sealed yet: ``seals/<pack name>.<key id, 16 hex>.seal`` holds

* a header: the pack's name, the SHA-256 of its bytes, the sealing key, the SHA-256 of the body;
* the Ed25519 signature of that key over ``openledger-pack-seal/v1`` and the header;
* the body: what verification reads of each record (id, kind, signer, feed, sequence number, ``prev``, time),
  column by column, and where the records that build trust and the checkpoint tree (identities,
  revocations, checkpoints, cosignatures, anchors) are, which are always checked in full.

The key seals only what the verification it has just run found sound, so a seal says: these bytes, whose
records have these fields, passed their own checks (signature, schema, content hash), or were covered by a
checkpoint this key trusted. ``verify --since CHECKPOINT`` uses the seals of the pinned checkpoint's signer:
a pack whose bytes hash to what its seal says gets its records' fields from the seal; any other pack (no seal,
another key's seal, a signature or hash that does not match, a body that does not decode) is read record by
record, as without seals. Everything after that is the same: the checkpoint tree recomputed from the records'
``prev`` (its Merkle roots included), full checks for every record the pinned checkpoint does not cover,
feeds, time order and trust. If the sealing key is not the pinned checkpoint's signer, or was ever revoked,
the seals are dropped and the verification runs again without them.

Two CI runs that seal the same pack with the same key write the same file (Ed25519 signatures are
deterministic, the body is a function of the pack), so seals merge like packs do.

>>> import tempfile; from openledger import Draft; from openledger.store.keys import generate_signer
>>> ledger = Ledger.init(Path(tempfile.mkdtemp())); ci = generate_signer(feed="ci")
>>> records = ledger.append_many(ci, [Draft("feedback", {"target": "x", "label": str(i)}) for i in range(3)])
>>> _ = ledger.pack()
>>> written = write_seals(ledger, ci, {r.id: (r.id, r.kind, r.actor, r.feed, r.seq, r.prev, r.time) for r in records})
>>> [len(sealed.rows) for sealed in read_seals(ledger, ci.keyid).values()]
[3]
"""

from __future__ import annotations

import base64
import hashlib
import operator
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import compress, repeat
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from openledger._internal.index import iter_pack
from openledger.errors import IntegrityError, OpenLedgerError
from openledger.store.canonical import canonical_bytes
from openledger.store.dsse import envelope_payload_v1
from openledger.store.files import MAX_ENVELOPE_BYTES, MAX_PACK_BYTES, read_regular, write_atomic
from openledger.store.ledger import Ledger
from openledger.store.records import RecordSigner, open_record, public_key_of, record_id_of
from openledger.store.summary import RecordSummary, as_summary

__all__ = ["CHECKED_IN_FULL", "SEAL_FORMAT", "SealedPack", "read_seals", "seal_path", "seals_directory", "signer_of",
           "writable_seals_directory", "write_seals"]

SEAL_FORMAT = "openledger-pack-seal/v1"
_DOMAIN = SEAL_FORMAT.encode() + b"\n"
MAX_SEAL_BYTES = 128 * 1024 * 1024  # a seal is about a sixth of its pack (50 MB packs: ~8 MB); larger: not read
_MAX_HEADER_BYTES = 4096  # a header is ~300 bytes; it is parsed before its signature can be checked
# The kinds that build trust and the checkpoint tree: incremental verification checks them in full, sealed or not.
CHECKED_IN_FULL = frozenset({"identity", "revocation", "checkpoint", "cosignature", "anchor"})


class SealedPack(NamedTuple):
    """A pack whose bytes match a seal: its records' summary fields and the lines to check in full."""

    path: Path
    key: str
    rows: list[RecordSummary]  # (id, kind, actor, feed, seq, prev, time, None), as verify files them
    full: list[tuple[int, bytes]]  # (offset, envelope bytes) of the records always checked in full
    # rows whose time order the seal's own columns do not settle: their one prev is not a row of this pack, or
    # it is dated after them, or a time is not in the spelling the ledger writes (verify compares these)
    unordered: list[int]


def seal_path(ledger: Ledger, pack: Path, keyid: str) -> Path:
    return ledger.root / "seals" / f"{pack.stem}.{keyid.partition(':')[2][:16]}.seal"


# -- writing -----------------------------------------------------------------------------------------------

def _table(values: Sequence[str]) -> tuple[list[str], list[int]]:
    names = sorted(set(values))
    where = {name: i for i, name in enumerate(names)}
    return names, [where[v] for v in values]


def _body(rows: Sequence[Sequence[Any]], full: list[list[int]]) -> bytes:
    row_of = {row[0]: i for i, row in enumerate(rows)}
    prevs: list[Any] = []
    for row in rows:
        prev = row[5]
        if len(prev) == 1 and prev[0] in row_of:
            prevs.append(row_of[prev[0]])  # the usual case: the record before it in its feed is in this pack
        else:
            prevs.append([row_of.get(before, before) for before in prev])
    kinds, kind = _table([row[1] for row in rows])
    actors, actor = _table([row[2] for row in rows])
    feeds, feed = _table([row[3] for row in rows])
    return canonical_bytes({
        "ids": "".join(row[0][7:] for row in rows),
        "kinds": kinds, "kind": kind, "actors": actors, "actor": actor, "feeds": feeds, "feed": feed,
        "seq": [row[4] for row in rows], "prev": prevs, "time": [row[6] for row in rows], "full": full,
    })


def _seal_one(ledger: Ledger, pack: Path, data: bytes, signer: RecordSigner, summaries: Mapping[str, Sequence[Any]]
              ) -> bytes | None:
    rows: list[Sequence[Any]] = []
    full: list[list[int]] = []
    for offset, line in iter_pack(data):
        try:
            record_id = record_id_of(envelope_payload_v1(line)[0])
        except IntegrityError:
            return None  # not a canonical v1 envelope: never sealed, read record by record
        summary = summaries.get(record_id)
        if summary is None:
            return None  # not among what the verification found sound
        if (ledger.objects / record_id[7:9] / record_id[9:]).exists():
            # stored twice: the verification may have checked the loose copy only, so this line is checked here
            try:
                open_record(line, expected_id=record_id)
            except OpenLedgerError:
                return None
        if summary[1] in CHECKED_IN_FULL:
            full.append([offset, len(line)])
        else:
            rows.append(summary)
    body = _body(rows, full)
    header = canonical_bytes({"format": SEAL_FORMAT, "pack": pack.name, "sha256": hashlib.sha256(data).hexdigest(),
                              "key": signer.keyid, "records": len(rows) + len(full),
                              "body": hashlib.sha256(body).hexdigest()})
    return base64.b64encode(signer.sign(_DOMAIN + header)) + b"\n" + header + b"\n" + body


def write_seals(ledger: Ledger, signer: RecordSigner, summaries: Mapping[str, Sequence[Any]]) -> list[Path]:
    """Seal every pack ``signer`` has not sealed whose every record is in ``summaries`` (what a verification
    without errors found sound: id -> (id, kind, actor, feed, seq, prev, time, ...)); the seals written.

    Call it only after a verification without errors, with its summaries: a pack with a record it did not find
    sound is left unsealed."""
    directory = writable_seals_directory(ledger)
    if directory is None:
        return []
    written = []
    for pack in ledger.pack_paths():
        path = seal_path(ledger, pack, signer.keyid)
        if path.exists():
            continue
        try:
            data = read_regular(pack, MAX_PACK_BYTES)
        except (OpenLedgerError, OSError):
            continue  # verify names it
        content = _seal_one(ledger, pack, data, signer, summaries)
        if content is not None:
            path.parent.mkdir(exist_ok=True)
            write_atomic(path, content)
            written.append(path)
    return written


# -- reading -----------------------------------------------------------------------------------------------

class _Read(NamedTuple):
    pack: Path
    data: bytes
    key: str
    body: bytes


def _read_one(pack: Path, seal: Path) -> _Read | None:
    """The pack and its seal's body, if the seal's signature verifies and both hashes match (threads: hashing
    large buffers releases the interpreter lock)."""
    try:
        content = read_regular(seal, MAX_SEAL_BYTES)
        signature_line, header_bytes, body = content.split(b"\n", 2)
        if len(signature_line) != 88 or len(header_bytes) > _MAX_HEADER_BYTES:
            return None
        header = orjson.loads(header_bytes)
        key = header["key"]
        if (type(header) is not dict or header["format"] != SEAL_FORMAT or header["pack"] != pack.name
                or type(key) is not str or seal.name != f"{pack.stem}.{key.partition(':')[2][:16]}.seal"):
            return None
        VerifyKey(public_key_of(key)).verify(_DOMAIN + header_bytes, base64.b64decode(signature_line, validate=True))
        if hashlib.sha256(body).hexdigest() != header["body"]:
            return None
        data = read_regular(pack, MAX_PACK_BYTES)
        if hashlib.sha256(data).hexdigest() != header["sha256"]:
            return None  # the pack changed since it was sealed: read record by record, which says how
    except (OpenLedgerError, OSError, ValueError, KeyError, TypeError, AttributeError, BadSignatureError):
        return None  # no seal, or one that does not hold: the pack is read record by record
    return _Read(pack, data, key, body)


_as_int = operator.index
_WRITTEN_LENGTH = 27  # len("2026-01-01T00:00:00.000000Z"), the spelling the ledger writes
_HEX_DIGITS = str.maketrans("", "", "0123456789abcdef")  # what is left after deleting them must be nothing
_RECORD_ID = re.compile(r"sha256:[0-9a-f]{64}")


def _prev_list(prev: list[Any], ids: list[str]) -> tuple[str, ...]:
    """A record's ``prev`` spelled as a list: rows of this pack by number, other records by id."""
    if type(prev) is not list:
        raise TypeError("prev")
    resolved = tuple(ids[before] if type(before) is int and before >= 0 else before for before in prev)
    if not all(type(before) is str and _RECORD_ID.fullmatch(before) for before in resolved):
        raise TypeError("prev")
    return resolved


def _full_lines(data: bytes, full: list[Any]) -> list[tuple[int, bytes]] | None:
    """The lines ``full`` names by (offset, length): whole lines of the pack, in order, each at most an
    envelope's size (else None), so they never add up to more than the pack."""
    lines: list[tuple[int, bytes]] = []
    end = -1
    for entry in full:
        start, length = map(_as_int, entry)
        stop = start + length
        if start <= end or not 0 < length <= MAX_ENVELOPE_BYTES or stop > len(data) \
                or (start and data[start - 1] != 0x0A) or (stop < len(data) and data[stop] != 0x0A):
            return None
        end = stop
        lines.append((start, data[start:stop]))
    return lines


def _decode(read: _Read) -> SealedPack | None:
    """The rows of a sealed pack, every field of the type a worker would send (else None: read it record by
    record). The body was signed by the key, but its reader does not crash on what the key wrote."""
    try:
        body = orjson.loads(read.body)
        hexes, full = body["ids"], body["full"]
        if type(hexes) is not str or len(hexes) % 64 or hexes.translate(_HEX_DIGITS) or type(full) is not list:
            return None
        ids = list(map("sha256:".__add__, map(hexes.__getitem__, map(slice, range(0, len(hexes), 64),
                                                                     range(64, len(hexes) + 64, 64)))))
        if not set(body["kinds"]).isdisjoint(CHECKED_IN_FULL):
            return None  # those records are listed in "full" and checked in full: a row would skip that
        columns = []
        for table, column in (("kinds", "kind"), ("actors", "actor"), ("feeds", "feed")):
            names, indices = body[table], body[column]
            if set(map(type, names)) - {str} or set(map(type, indices)) - {int} or min(indices, default=0) < 0:
                return None
            columns.append(list(map(names.__getitem__, indices)))  # IndexError: caught below
        seqs, times, prevs = body["seq"], body["time"], body["prev"]
        if not (set(map(type, seqs)) <= {int} and set(map(type, times)) <= {str} and type(prevs) is list):
            return None
        # most records follow one record of this pack (a row number): those in C, the few others patched after
        others = [i for i, p in enumerate(prevs) if type(p) is not int or p < 0]
        rows_before = prevs.copy()
        for i in others:
            rows_before[i] = 0
        prev_tuples: list[tuple[str, ...]] = list(zip(map(ids.__getitem__, rows_before)))
        for i in others:
            prev_tuples[i] = _prev_list(prevs[i], ids)
        if not len(ids) == len(columns[0]) == len(columns[1]) == len(columns[2]) == len(seqs) == len(times) \
                == len(prev_tuples):
            return None
        lines = _full_lines(read.data, full)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    if lines is None:
        return None
    rows = list(map(as_summary, zip(ids, *columns, seqs, prev_tuples, times, repeat(None))))
    return SealedPack(read.pack, read.key, rows, lines, _unordered(times, rows_before, others))


def _unordered(times: list[str], rows_before: list[int], others: list[int]) -> list[int]:
    """The rows :attr:`SealedPack.unordered` names: a record dated no earlier than the row before it in its feed
    (both in the ledger's one spelling) is in order, compared in C over the columns."""
    if set(map(len, times)) != {_WRITTEN_LENGTH}:
        return list(range(len(times)))
    before = map(times.__getitem__, rows_before)
    return sorted({*others, *compress(range(len(times)), map(operator.lt, times, before))})


def writable_seals_directory(ledger: Ledger) -> Path | None:
    """``seals/``, to write in (it may not exist yet), unless it is a symlink out of the repository or not a
    directory: then None, and nothing is written (fsck names it)."""
    directory = ledger.root / "seals"
    return None if directory.is_symlink() or (directory.exists() and not directory.is_dir()) else directory


def seals_directory(ledger: Ledger) -> Path | None:
    """``seals/`` if it is a real directory (not a symlink out of the repository), else None."""
    directory = ledger.root / "seals"
    return directory if directory.is_dir() and not directory.is_symlink() else None


def _sealed_with(directory: Path, names: set[str], packs: list[Path], suffix: str, key: str | None
                 ) -> dict[Path, SealedPack]:
    candidates = [(pack, directory / f"{pack.stem}.{suffix}") for pack in packs if f"{pack.stem}.{suffix}" in names]
    with ThreadPoolExecutor(max_workers=2) as pool:
        reads = [read for read in pool.map(lambda pair: _read_one(*pair), candidates) if read is not None]
    if key is not None:
        reads = [read for read in reads if read.key == key]
    elif len({read.key for read in reads}) > 1:  # two keys whose ids share 16 hex digits: use neither
        return {}
    sealed = {}
    for read in reads:
        decoded = _decode(read)
        if decoded is not None:
            sealed[read.pack] = decoded
    return sealed


def _signer_in(sealed: Iterable[SealedPack], pin: str) -> str | None:
    """The signer of checkpoint ``pin`` (an id or a unique prefix of one), read from its own line among the
    lines the seals list as checked in full: a line counts only if its payload hashes to the pin, so no seal
    can name another signer."""
    prefix = pin if pin.startswith("sha256:") else "sha256:" + pin
    found = {signer_of(line, prefix) for pack in sealed for _, line in pack.full} - {None}
    return found.pop() if len(found) == 1 else None


def signer_of(envelope: bytes, prefix: str) -> str | None:
    """The signer of a canonical v1 envelope whose record id starts with ``prefix``, if its payload names the key
    its envelope does; None for anything else. Which seals to read, never a verdict: verify checks the record."""
    try:
        payload, keyid = envelope_payload_v1(envelope)
        actor = orjson.loads(payload)["actor"] if record_id_of(payload).startswith(prefix) else None
    except (IntegrityError, ValueError, KeyError, TypeError):
        return None
    return actor if type(actor) is str and actor.encode() == keyid else None


def read_seals(ledger: Ledger, key: str | None = None, packs: Iterable[Path] | None = None, *,
               pin: str | None = None) -> dict[Path, SealedPack]:
    """The packs whose bytes match a seal of ``key``, by path. Without ``key``, the seals of the signer of
    checkpoint ``pin``, found from the pin's own line in a sealed pack (the seals of at most three keys, most
    seals first, are tried); without either, none."""
    directory = seals_directory(ledger)
    if directory is None or (key is None and pin is None):
        return {}
    try:
        names = {entry.name for entry in os.scandir(directory)}
    except OSError:  # unreadable: the packs are read record by record
        return {}
    packs = list(ledger.pack_paths() if packs is None else packs)
    if key is not None:
        return _sealed_with(directory, names, packs, f"{key.partition(':')[2][:16]}.seal", key)
    counts = Counter(name.partition(".")[2] for name in names if name.endswith(".seal"))
    for suffix, _ in counts.most_common(3):
        sealed = _sealed_with(directory, names, packs, suffix, None)
        signer = _signer_in(sealed.values(), pin or "")
        if signer is not None and {pack.key for pack in sealed.values()} == {signer}:
            return sealed
    return {}
