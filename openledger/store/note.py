"""C2SP signed notes: checkpoints as transparency-log tooling reads them, and witness cosignatures.

A checkpoint exports as a ``tlog-checkpoint`` (c2sp.org/tlog-checkpoint): the note text is the origin line,
the tree size and the base64 root hash, each ending in a newline; then a blank line; then signature lines
``— <key name> base64(key id || signature)``. The log's signature is Ed25519 over the note text (signature
type ``0x01``), its key name is the origin, and its key id is ``SHA-256(name || 0x0A || 0x01 || public
key)[:4]`` (c2sp.org/signed-note). A witness's cosignature is type ``0x04`` (c2sp.org/tlog-cosignature):
Ed25519 over ``cosignature/v1\\ntime <unix seconds>\\n`` followed by the note text, encoded as
``key id || 8-byte big-endian timestamp || signature``.

>>> from openledger.store.keys import generate_signer
>>> signer = generate_signer(feed="doc")
>>> text = checkpoint_text("example.com/log", 3, bytes(32))
>>> line = signature_line("example.com/log", signer_signature(signer, "example.com/log", text))
>>> verify_log_signature(parse_note(text + "\\n" + line), "example.com/log", public_key_of(signer.keyid))
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from openledger.errors import BadInputError
from openledger.store.records import RecordSigner, public_key_of

__all__ = [
    "ED25519",
    "ED25519_COSIGNATURE",
    "CheckpointNote",
    "Note",
    "check_key_name",
    "checkpoint_text",
    "cosignature_message",
    "key_id",
    "parse_checkpoint_note",
    "parse_note",
    "signature_line",
    "signer_cosignature",
    "signer_signature",
    "verifier_key",
    "verify_cosignature",
    "verify_log_signature",
]

ED25519 = 0x01
ED25519_COSIGNATURE = 0x04
_DASH = "\u2014"
MAX_SIGNATURES = 64  # the spec asks verifiers to accept at least 16
_MAX_NOTE = 1 << 20


def check_key_name(name: str, what: str = "key name") -> str:
    """A key name (or origin) as the spec allows it: non-empty, no Unicode space, no ``+``, no control character."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise BadInputError(f"{what} must be 1-255 characters")
    for char in name:
        if char == "+" or char.isspace() or unicodedata.category(char) in ("Cc", "Zs", "Zl", "Zp"):
            raise BadInputError(f"{what} {name!r} must not contain spaces, '+' or control characters")
    return name


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key).digest()[:4]


def verifier_key(name: str, signature_type: int, public_key: bytes) -> str:
    """The vkey text tooling is configured with: ``<name>+<hex key id>+<base64(type || public key)>``."""
    material = base64.b64encode(bytes([signature_type]) + public_key).decode()
    return f"{name}+{key_id(name, signature_type, public_key).hex()}+{material}"


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """The note text of a tlog-checkpoint (no extension lines)."""
    check_key_name(origin, "origin")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def cosignature_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def signer_signature(signer: RecordSigner, name: str, text: str) -> str:
    """The base64 value of the log's signature line (type 0x01) over ``text``."""
    signature = signer.sign(text.encode())
    return base64.b64encode(key_id(name, ED25519, public_key_of(signer.keyid)) + signature).decode()


def signer_cosignature(signer: RecordSigner, name: str, text: str, timestamp: int) -> str:
    """The base64 value of a witness's cosignature line (type 0x04) over checkpoint ``text`` at ``timestamp``."""
    if not 0 <= timestamp < 1 << 63:
        raise BadInputError(f"cosignature timestamp {timestamp} is out of range")
    signature = signer.sign(cosignature_message(text, timestamp))
    prefix = key_id(name, ED25519_COSIGNATURE, public_key_of(signer.keyid)) + timestamp.to_bytes(8, "big")
    return base64.b64encode(prefix + signature).decode()


def signature_line(name: str, value: str) -> str:
    return f"{_DASH} {name} {value}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: its text (with the final newline) and its (key name, decoded signature) lines."""

    text: str
    signatures: tuple[tuple[str, bytes], ...]

    def render(self) -> str:
        lines = "".join(signature_line(name, base64.b64encode(value).decode()) for name, value in self.signatures)
        return f"{self.text}\n{lines}"


_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def parse_note(data: str | bytes) -> Note:
    """Split a signed note into text and signatures, enforcing the format (c2sp.org/signed-note)."""
    if isinstance(data, bytes):
        if len(data) > _MAX_NOTE:
            raise BadInputError("the note is too large")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInputError("a signed note must be UTF-8") from None
    if len(data) > _MAX_NOTE:
        raise BadInputError("the note is too large")
    if any(ord(char) < 0x20 and char != "\n" for char in data):
        raise BadInputError("a signed note must not contain control characters other than newline")
    if not data.endswith("\n"):
        raise BadInputError("a signed note ends with a newline")
    split = data.rfind("\n\n")
    if split < 0:
        raise BadInputError("no blank line separates the note text from its signatures")
    text, block = data[:split + 1], data[split + 2:]
    signatures = []
    for line in block[:-1].split("\n"):
        dash, _, rest = line.partition(" ")
        name, _, value = rest.partition(" ")
        if dash != _DASH or not name or not _B64.fullmatch(value):
            raise BadInputError(f"malformed signature line: {line[:80]!r}")
        check_key_name(name)
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadInputError(f"malformed signature line: {line[:80]!r}") from None
        if len(decoded) < 5:
            raise BadInputError("a signature is at least a key id and one byte")
        signatures.append((name, decoded))
    if not signatures:
        raise BadInputError("a signed note has at least one signature")
    if len(signatures) > MAX_SIGNATURES:
        raise BadInputError(f"the note has more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(signatures))


def _verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def verify_log_signature(note: Note, name: str, public_key: bytes) -> bool:
    """Does a signature line of ``name`` with the Ed25519 key id of ``public_key`` verify over the text?
    Lines of other keys are ignored, as the spec requires; a matching line that fails makes the note fail."""
    wanted = key_id(name, ED25519, public_key)
    matching = [value[4:] for line_name, value in note.signatures if line_name == name and value[:4] == wanted]
    return bool(matching) and all(len(s) == 64 and _verify(public_key, note.text.encode(), s) for s in matching)


def verify_cosignature(note_text: str, name: str, public_key: bytes, value: bytes) -> int | None:
    """The timestamp of a valid type 0x04 cosignature ``value`` by ``public_key`` over ``note_text``, else None."""
    if len(value) != 4 + 8 + 64 or value[:4] != key_id(name, ED25519_COSIGNATURE, public_key):
        return None
    timestamp = int.from_bytes(value[4:12], "big")
    if timestamp >= 1 << 63 or not _verify(public_key, cosignature_message(note_text, timestamp), value[12:]):
        return None
    return timestamp


@dataclass(frozen=True, slots=True)
class CheckpointNote:
    """The three lines of a tlog-checkpoint's text, and the note they came from."""

    origin: str
    size: int
    root: bytes
    note: Note

    @property
    def root_id(self) -> str:
        return "sha256:" + self.root.hex()


def parse_checkpoint_note(data: str | bytes) -> CheckpointNote:
    """A signed note whose text is a tlog-checkpoint (signatures are not checked here)."""
    note = parse_note(data)
    lines = note.text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise BadInputError("a checkpoint note has an origin, a tree size and a root hash, each on a non-empty line")
    origin, size_text, root_text = lines[:3]
    check_key_name(origin, "origin")
    if not size_text.isdigit() or not size_text.isascii() or (size_text != "0" and size_text.startswith("0")):
        raise BadInputError(f"tree size {size_text[:40]!r} is not a decimal number without leading zeroes")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        root = b""
    if len(root) != 32:
        raise BadInputError("the root hash is not 32 bytes of base64")
    return CheckpointNote(origin, int(size_text), root, note)


def cosignature_lines(items: Sequence[tuple[str, str]]) -> str:
    """Signature lines for (key name, base64 value) pairs."""
    return "".join(signature_line(name, value) for name, value in items)
