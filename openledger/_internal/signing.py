"""A helper process that signs large batches while the appending process builds them.

Signing a record (libsodium, ~25 us) and building it (schema check, canonical JSON, envelope, index rows: all
Python, holding the GIL) cannot overlap in one process: a thread coming back from libsodium waits for the GIL
for up to the switch interval (5 ms) while the other thread runs Python, so a signing thread beside a busy one
signs about one record per 5 ms. A child process has its own interpreter: the parent sends each chunk's
messages down a pipe as soon as they are built, the child signs them on the other core, and the parent reads
the signatures back once the batch is built. When the child falls behind (two busy vCPUs may share one
physical core), the parent holds chunks back and signs them itself at the end, while the child finishes.

The child is ``python -I -c`` with the code below (it imports PyNaCl, nothing from the project or the working
directory), in a session of its own; it gets the 32-byte seed on its stdin, never in its arguments or
environment, and exits when its stdin closes (forked copies of the parent close theirs). Ed25519 signatures
are deterministic, so the child's are the bytes the parent would have made; the parent checks the first
signature of every chunk against the key before it uses any of them. Anything wrong with the child (it cannot
start, dies, takes or answers nothing for ``_PATIENCE`` seconds, answers short, long or wrong) makes
:meth:`SigningHelper.submit` or :meth:`SigningHelper.collect` raise :class:`HelperFailed`; the caller then
signs in process, and does not use a helper again.
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
_PIPE_BYTES = 256 * 1024  # the request pipe is grown to this where Linux allows (it counts against a per-user
# budget of pipe memory, 64 MiB by default: a helper takes a quarter of a MiB of it, the answer pipe nothing)
_DEFAULT_PIPE_BYTES = 65536
_SIGNATURE = 64
_PATIENCE = 30.0  # seconds to wait for the child to take a chunk or answer one (64 signatures take ~2 ms)

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


def available() -> bool:
    """Whether a helper can be started here: POSIX pipes and poll, and an interpreter that is Python (in a
    frozen application ``sys.executable`` is the application, which must not be handed the seed)."""
    return os.name == "posix" and hasattr(select, "poll") and not getattr(sys, "frozen", False) and bool(sys.executable)


_LIVE: weakref.WeakSet[SigningHelper] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked copy of the parent closes its copies of every helper's pipes: the helper must see the end of
    its input when the parent closes it or dies, whatever the copy does (a worker pool, a pre-fork server)."""
    for helper in list(_LIVE):
        helper._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SigningHelper:
    """One child process signing with one key, for the life of a :class:`~openledger.store.ledger.Ledger`."""

    def __init__(self, keyid: str, key: SigningKey) -> None:
        if not available():
            raise HelperFailed("no signing helper on this platform")
        self.keyid = keyid
        self.pid = os.getpid()  # a forked child must not share the pipes
        self._verify = key.verify_key
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and code, no shell
            [sys.executable, "-I", "-c", _CHILD],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
            start_new_session=True,  # Ctrl-C in a terminal interrupts the append, not its helper
        )
        self._finalizer = weakref.finalize(self, _stop, self._process, self.pid)
        _LIVE.add(self)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._in, self._out = self._process.stdin.fileno(), self._process.stdout.fileno()
        self._capacity = _pipe_size(self._in)
        os.set_blocking(self._in, False)  # a write waits on poll, with the same patience as a read
        self._chunks: list[Sequence[bytes]] = []  # the batch's messages, in chunks
        self._signed: list[list[bytes] | None] = []  # their signatures, once known
        self._sent: deque[tuple[int, int]] = deque()  # (chunk, bytes) sent, not answered yet, oldest first
        self._in_flight = 0  # bytes sent whose chunk is not answered: at most what the pipe holds
        self._held: list[int] = []  # chunks the parent signs itself
        self._buffer = bytearray()
        self._send(bytes(key))

    @property
    def idle(self) -> bool:
        """Nothing of a batch is outstanding (a batch that raised midway leaves chunks behind)."""
        return not self._chunks and not self._buffer

    def _wait(self, fd: int, event: int, timeout: float) -> bool:
        poller = select.poll()  # not select(): it refuses descriptors above 1023, which servers have
        poller.register(fd, event)
        try:
            return bool(poller.poll(timeout * 1000))
        except (OSError, ValueError) as exc:
            raise HelperFailed(str(exc)) from None

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._in, view):]
            except BlockingIOError:
                if not self._wait(self._in, select.POLLOUT, _PATIENCE):
                    raise HelperFailed(f"the signing helper took nothing in {_PATIENCE} s") from None
            except OSError as exc:
                raise HelperFailed(str(exc)) from None

    def _poll(self, *, wait: bool) -> None:
        """File the signatures the child has written (all it owes, if ``wait``), checking each chunk's first."""
        while self._sent:
            index, sent = self._sent[0]
            chunk = self._chunks[index]
            size = _SIGNATURE * len(chunk)
            while len(self._buffer) < size:
                # A child that hangs (stopped, swapped out for good) must not hang the append with it.
                if not self._wait(self._out, select.POLLIN, _PATIENCE if wait else 0):
                    if wait:
                        raise HelperFailed(f"the signing helper did not answer in {_PATIENCE} s")
                    return
                try:
                    part = os.read(self._out, 1 << 16)
                except OSError as exc:
                    raise HelperFailed(str(exc)) from None
                if not part:
                    raise HelperFailed("the signing helper stopped")
                self._buffer += part
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._sent.popleft()
            self._in_flight -= sent
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
            data = struct.pack(f"<I{len(chunk)}I", len(chunk), *map(len, chunk)) + b"".join(chunk)
            # Held back when the child has enough in hand, or the pipe may not take it without waiting (the
            # first chunk in flight goes anyway: the child is then reading).
            if self._sent and (len(self._sent) >= _BACKLOG or self._in_flight + len(data) > self._capacity):
                self._held.append(index)
                continue
            self._send(data)
            self._sent.append((index, len(data)))
            self._in_flight += len(data)

    def collect(self, sign: Callable[[bytes], bytes]) -> list[bytes]:
        """The signatures of everything submitted since the last collect, in order: the chunks held back are
        signed here with ``sign`` while the child finishes its own."""
        for index in self._held:
            self._signed[index] = [sign(message) for message in self._chunks[index]]
        self._poll(wait=True)
        if self._buffer or self._wait(self._out, select.POLLIN, 0):
            raise HelperFailed("the signing helper answered more than it was asked")
        signatures = [signature for chunk in self._signed if chunk is not None for signature in chunk]
        self._chunks, self._signed, self._held = [], [], []
        return signatures

    def _forget(self) -> None:
        """In a forked copy of the parent: close this copy's pipe ends, leave the child to the parent."""
        for stream in (self._process.stdin, self._process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def close(self) -> None:
        self._finalizer()

    def kill(self) -> None:
        """Stop a helper that failed without waiting for it (it may be hung)."""
        if self.pid == os.getpid() and self._process.poll() is None:
            with contextlib.suppress(OSError):
                self._process.kill()
        self._finalizer()


def _pipe_size(fd: int) -> int:
    """Grow the request pipe where Linux allows; what it holds now."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only

        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        return int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    except (ImportError, AttributeError, OSError):  # not Linux: pipes hold 64 KiB on the usual systems
        return _DEFAULT_PIPE_BYTES


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
