"""A helper process that signs large batches while the appending process builds them.

Signing a record (libsodium, ~25 us) and building it (schema check, canonical JSON, envelope, index rows: all
Python, holding the GIL) cannot overlap in one process: a thread coming back from libsodium waits for the GIL
for up to the switch interval (5 ms) while the other thread runs Python, so a signing thread beside a busy one
signs about one record per 5 ms. A child process has its own interpreter: the parent sends each chunk's
messages down a pipe as soon as they are built, the child signs them on the other core, and the parent reads
the signatures back once the batch is built.

The child is ``python -I -c`` with the code below (nothing from the project or the working directory is
imported); it gets the 32-byte seed on its stdin, never in its arguments or environment, and exits when its
stdin closes. Ed25519 signatures are deterministic, so the child's are the bytes the parent would have made;
the parent checks the first signature of every chunk against the key before it uses any of them. Anything
wrong with the child (it cannot start, dies, answers short or wrong) makes :meth:`SigningHelper.sign` raise
:class:`HelperFailed`; the caller then signs in process, and the helper is not used again.
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
import subprocess
import sys
import weakref
from collections.abc import Sequence

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

CHUNK = 64  # messages per pipe write: small enough that the child starts signing early
_MAX_PENDING = 512  # signatures the child may have written that the parent has not read (32 KiB < a pipe's 64)
_PIPE_BYTES = 1 << 20  # Linux lets a pipe grow to this without privileges: a batch's writes never block
_SIGNATURE = 64
_PATIENCE = 30.0  # seconds to wait for a chunk's signatures (64 take ~2 ms)

_CHILD = r"""
import struct, sys
from nacl.bindings import crypto_sign
from nacl.signing import SigningKey
read, write = sys.stdin.buffer.read, sys.stdout.buffer.write
seed = read(32)
if len(seed) != 32:
    sys.exit(0)
secret = SigningKey(seed)._signing_key
while True:
    head = read(4)
    if len(head) != 4:
        break
    (count,) = struct.unpack("<I", head)
    lengths = struct.unpack("<%dI" % count, read(4 * count))
    out = []
    for length in lengths:
        message = read(length)
        if len(message) != length:
            sys.exit(0)
        out.append(crypto_sign(message, secret)[:64])
    write(b"".join(out))
    sys.stdout.buffer.flush()
"""


class HelperFailed(Exception):  # noqa: N818 - a signal to fall back, not an error a user sees
    """The helper cannot sign this batch: sign in process instead."""


class SigningHelper:
    """One child process signing with one key, for the life of a :class:`~openledger.store.ledger.Ledger`."""

    def __init__(self, keyid: str, key: SigningKey) -> None:
        self.keyid = keyid
        self._verify = key.verify_key
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and code, no shell
            [sys.executable, "-I", "-c", _CHILD],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._in, self._out = self._process.stdin.fileno(), self._process.stdout.fileno()
        for fd in (self._in, self._out):
            with contextlib.suppress(OSError, AttributeError):  # F_SETPIPE_SZ: Linux only; flow control still holds
                import fcntl  # noqa: PLC0415 - not on every platform

                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self.pid = os.getpid()  # a forked child must not share the pipes
        self._chunks: list[Sequence[bytes]] = []  # sent, signatures not read yet
        self._pending: list[list[bytes]] = []  # read back, batch not collected yet
        self._unread = 0
        self._finalizer = weakref.finalize(self, _stop, self._process, self.pid)
        self._send(bytes(key))

    def _send(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._in, view):]
        except OSError as exc:
            raise HelperFailed(str(exc)) from None

    def _read(self, size: int) -> bytes:
        parts, left = [], size
        try:
            while left:
                # A child that hangs (stopped, swapped out for good) must not hang the append with it.
                if not select.select([self._out], [], [], _PATIENCE)[0]:
                    raise HelperFailed(f"the signing helper did not answer in {_PATIENCE} s")
                part = os.read(self._out, left)
                if not part:
                    raise HelperFailed("the signing helper stopped")
                parts.append(part)
                left -= len(part)
        except OSError as exc:
            raise HelperFailed(str(exc)) from None
        return b"".join(parts)

    def submit(self, messages: Sequence[bytes]) -> None:
        """Send messages to be signed, in order; :meth:`collect` returns their signatures."""
        for start in range(0, len(messages), CHUNK):
            chunk = messages[start:start + CHUNK]
            # Flow control without threads: the child blocks once a pipe's worth of signatures is unread,
            # so read the oldest chunk's back before sending more than that.
            while self._unread + len(chunk) > _MAX_PENDING and self._chunks:
                self._pending.append(self._receive(self._chunks.pop(0)))
            self._send(struct.pack(f"<I{len(chunk)}I", len(chunk), *map(len, chunk)) + b"".join(chunk))
            self._chunks.append(chunk)
            self._unread += len(chunk)

    def _receive(self, chunk: Sequence[bytes]) -> list[bytes]:
        data = self._read(_SIGNATURE * len(chunk))
        self._unread -= len(chunk)
        signatures = [data[i:i + _SIGNATURE] for i in range(0, len(data), _SIGNATURE)]
        try:
            self._verify.verify(chunk[0], signatures[0])
        except BadSignatureError:
            raise HelperFailed("the signing helper's signature does not verify") from None
        return signatures

    def collect(self) -> list[bytes]:
        """The signatures of everything submitted since the last collect, in order."""
        while self._chunks:
            self._pending.append(self._receive(self._chunks.pop(0)))
        signatures = [signature for chunk in self._pending for signature in chunk]
        self._pending = []
        return signatures

    def discard(self) -> None:
        """Drop what a batch that failed midway (bad input, an interrupt) sent and never collected."""
        while self._chunks:
            self._unread -= len(self._chunks[0])
            self._read(_SIGNATURE * len(self._chunks.pop(0)))
        self._pending = []

    def close(self) -> None:
        self._finalizer()

    def kill(self) -> None:
        """Stop a helper that failed without waiting for it (it may be hung)."""
        if self.pid == os.getpid() and self._process.poll() is None:
            with contextlib.suppress(OSError):
                self._process.kill()
        self._finalizer()


def _stop(process: subprocess.Popen[bytes], owner: int) -> None:
    """Close the child's stdin (it exits at the end of it) and wait for it; kill it if it hangs. Only in the
    process that started it: a forked copy of the parent leaves it to the parent."""
    if os.getpid() != owner:
        return
    for stream in (process.stdin, process.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
