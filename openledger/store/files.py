"""Atomic file writes: temporary file in the target directory, optional fsync, rename into place.

A reader never sees half a file; a crash leaves at most a ``.tmp-*`` file, which ``fsck`` removes.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from openledger.errors import IntegrityError

TMP_PREFIX = ".tmp-"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (replacing any previous file)."""
    # The writer's pid in the name lets `fsck` tell a crashed write from one still in flight.
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    """os.write until everything is written (a write may be short, e.g. on a nearly full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading what anyone with write access to the repository may have put there --------------------------------

#: The largest record payload (canonical JSON) OpenLedger writes or reads: 12 MiB. A record describes work (a
#: dataset manifest of ~50,000 files fits); data itself belongs in DVC or MLflow.
MAX_PAYLOAD_BYTES = 12 * 1024 * 1024
#: The largest stored envelope: the payload in base64 (4/3 of it) plus the envelope's fixed fields.
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024 + 512
#: The largest pack file read.
MAX_PACK_BYTES = 4 * 1024 * 1024 * 1024

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _open_regular(path: str | os.PathLike[str], limit: int) -> tuple[int, int]:
    """Open a file only if it is a regular file no larger than ``limit``: (fd, size).

    A symlink is not followed (``O_NOFOLLOW``), and a FIFO or device is opened without blocking and refused
    before a byte is read, so nobody can make a command hang on a FIFO or read ``/dev/zero`` forever.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IntegrityError("a symbolic link: never followed", code="not-regular") from None
        raise
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise IntegrityError("not a regular file (a FIFO, socket or device): never read", code="not-regular")
        if status.st_size > limit:
            raise _oversized(status.st_size, limit)
    except BaseException:
        os.close(fd)
        raise
    return fd, status.st_size


def regular_size(path: str | os.PathLike[str], limit: int) -> int:
    """The size of a regular file of at most ``limit`` bytes, with :func:`read_regular`'s refusals (a link, a
    FIFO or device, an oversized file), without reading it."""
    fd, size = _open_regular(path, limit)
    os.close(fd)
    return size


def read_lines_starting_in(path: str | os.PathLike[str], start: int, end: int, size: int) -> tuple[int, bytes]:
    """The whole lines of a pack that start at a byte offset in ``[start, end)``, and the offset of the first.

    Ranges that tile a file give each line to exactly one of them, so a pack can be split by its ``size``
    alone, without reading it first; the last line is read on past ``end`` to its newline, or to ``size``:
    bytes written to the file after it was split are not read (a line cut there is reported as it was)."""
    fd, now = _open_regular(path, MAX_PACK_BYTES)
    size = min(size, now)
    try:
        head = max(start - 1, 0)  # the byte before start says whether a line starts at start
        data = os.pread(fd, max(min(end, size) - head, 0), head)
        first = data.find(b"\n") + 1 if start > 0 else 0
        if (start > 0 and first == 0) or head + first >= end:
            return end, b""  # no line starts in the range: the one in progress belongs to an earlier range
        pieces, position = [data], head + len(data)
        while not pieces[-1].endswith(b"\n") and position < size:
            block = os.pread(fd, min(1 << 16, size - position), position)
            if not block:
                break
            newline = block.find(b"\n")
            pieces.append(block if newline < 0 else block[:newline + 1])
            position += len(block)
        data = b"".join(pieces) if len(pieces) > 1 else data
    finally:
        os.close(fd)
    return head + first, data[first:]


def _oversized(size: int, limit: int) -> IntegrityError:
    return IntegrityError(f"{size:,} bytes, more than the {limit:,} a file of the ledger may have", code="oversized")


def read_regular(path: str | os.PathLike[str], limit: int = MAX_ENVELOPE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else is an :class:`IntegrityError` with
    code ``not-regular`` or ``oversized`` (an ``OSError`` when it cannot be opened at all)."""
    fd, size = _open_regular(path, limit)
    try:
        chunks, total = [], 0
        while True:  # to the end, even if the file grew since fstat, but never past the limit
            want = min(limit + 1 - total, max(size - total, 0) + 65536, 1 << 30)  # Linux reads < 2 GiB a call
            chunk = os.read(fd, want)
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _oversized(total, limit)
            if len(chunk) < want:  # a regular file reads short only at its end (below Linux's 2 GiB a call)
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def read_range(path: str | os.PathLike[str], offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of a regular file (a pack), with :func:`read_regular`'s checks."""
    fd, _ = _open_regular(path, MAX_PACK_BYTES)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)
