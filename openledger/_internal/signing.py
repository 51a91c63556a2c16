"""A helper process that signs large batches while the appending process builds them.

Signing a record (libsodium, ~25 us) and building it (schema check, canonical JSON, envelope, index rows: all
Python, holding the GIL) cannot overlap in one process: a thread coming back from libsodium waits for the GIL
for up to the switch interval (5 ms) while the other thread runs Python, so a signing thread beside a busy one
signs about one record per 5 ms. A child process has its own interpreter: the parent sends each chunk's
messages down a pipe as soon as they are built, the child signs them on the other core, and the parent reads
the signatures back once the batch is built. When the child falls behind (two busy vCPUs may share one
physical core), the parent holds chunks back and signs them itself at the end, while the child finishes.

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
from collections import deque
from collections.abc import Callable, Sequence

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

CHUNK = 64  # messages per pipe write: small enough that the child starts signing early
_BACKLOG = 3  # chunks the child may have in hand; their signatures (12 KiB) always fit in a pipe
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
        self._chunks: list[Sequence[bytes]] = []  # the batch's messages, in chunks
        self._signed: list[list[bytes] | None] = []  # their signatures, once known
        self._sent: deque[int] = deque()  # chunks sent whose signatures are not read yet, oldest first
        self._held: list[int] = []  # chunks the parent signs itself
        self._buffer = bytearray()
        self._finalizer = weakref.finalize(self, _stop, self._process, self.pid)
        self._send(bytes(key))

    def _send(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._in, view):]
        except OSError as exc:
            raise HelperFailed(str(exc)) from None

    def _poll(self, *, wait: bool) -> None:
        """File the signatures the child has written (all it owes, if ``wait``), checking each chunk's first."""
        while self._sent:
            index = self._sent[0]
            chunk = self._chunks[index]
            size = _SIGNATURE * len(chunk)
            while len(self._buffer) < size:
                # A child that hangs (stopped, swapped out for good) must not hang the append with it.
                try:
                    ready = select.select([self._out], [], [], _PATIENCE if wait else 0)[0]
                    part = os.read(self._out, 1 << 16) if ready else None
                except OSError as exc:
                    raise HelperFailed(str(exc)) from None
                if part is None:
                    if wait:
                        raise HelperFailed(f"the signing helper did not answer in {_PATIENCE} s")
                    return
                if not part:
                    raise HelperFailed("the signing helper stopped")
                self._buffer += part
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._sent.popleft()
            signatures = [data[i:i + _SIGNATURE] for i in range(0, size, _SIGNATURE)]
            try:
                self._verify.verify(chunk[0], signatures[0])
            except BadSignatureError:
                raise HelperFailed("the signing helper's signature does not verify") from None
            self._signed[index] = signatures

    def submit(self, messages: Sequence[bytes]) -> None:
        """Send messages to be signed, in order; :meth:`collect` returns their signatures. While the child
        has ``_BACKLOG`` chunks in hand, further chunks are held back for the parent to sign at the end, so
        that a child slower than the parent (the cores are shared) does not keep it waiting."""
        for start in range(0, len(messages), CHUNK):
            chunk = messages[start:start + CHUNK]
            index = len(self._chunks)
            self._chunks.append(chunk)
            self._signed.append(None)
            self._poll(wait=False)
            if len(self._sent) >= _BACKLOG:
                self._held.append(index)
                continue
            self._send(struct.pack(f"<I{len(chunk)}I", len(chunk), *map(len, chunk)) + b"".join(chunk))
            self._sent.append(index)

    def collect(self, sign: Callable[[bytes], bytes]) -> list[bytes]:
        """The signatures of everything submitted since the last collect, in order: the chunks held back are
        signed here with ``sign`` while the child finishes its own."""
        for index in self._held:
            self._signed[index] = [sign(message) for message in self._chunks[index]]
        self._poll(wait=True)
        signatures = [signature for chunk in self._signed if chunk is not None for signature in chunk]
        self._reset()
        return signatures

    def discard(self) -> None:
        """Drop what a batch that failed midway (bad input, an interrupt) sent and never collected."""
        self._poll(wait=True)
        self._reset()

    def _reset(self) -> None:
        self._chunks, self._signed, self._held = [], [], []

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
