"""Signing keys: generation, storage outside the working tree, loading for signing.

Private keys live in the user's config directory (``platformdirs``; ``OPENLEDGER_HOME`` overrides it), one
JSON file per key, mode 0600, the 32-byte Ed25519 seed optionally encrypted with a passphrase (Argon2id +
XSalsa20-Poly1305 from libsodium). In CI the seed comes from ``OPENLEDGER_SIGNING_KEY`` (base64) and never
touches the disk. A key id is ``ed25519:<hex public key>``; a feed is one key on one device.

>>> signer = generate_signer(feed="doc")
>>> signer.keyid.startswith("ed25519:") and len(signer.sign(b"x")) == 64
True
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
from nacl.signing import SigningKey

from openledger.errors import BadInputError, KeyMaterialError, NotFoundError
from openledger.store.files import write_atomic
from openledger.store.records import format_time

__all__ = [
    "ENV_FEED",
    "ENV_HOME",
    "ENV_KEY",
    "ENV_PASSPHRASE",
    "ENV_SIGNING_KEY",
    "KeyInfo",
    "KeyStore",
    "Signer",
    "generate_signer",
    "inside_worktree",
    "keyid_of",
    "openledger_home",
    "resolve_keyid",
    "short_keyid",
    "signer_from_seed",
]

ENV_HOME = "OPENLEDGER_HOME"
ENV_SIGNING_KEY = "OPENLEDGER_SIGNING_KEY"
ENV_KEY = "OPENLEDGER_KEY"
ENV_FEED = "OPENLEDGER_FEED"
ENV_PASSPHRASE = "OPENLEDGER_PASSPHRASE"

_KEYFILE_VERSION = 1


def keyid_of(public_key: bytes) -> str:
    return "ed25519:" + public_key.hex()


def short_keyid(keyid: str) -> str:
    """A readable prefix for tables (``ed25519:1a2b3c4d5e6f``); commands accept any unique prefix."""
    return keyid[:20]


def resolve_keyid(text: str, known: Iterable[str]) -> str:
    """Expand a unique prefix (with or without ``ed25519:``) to a full key id among ``known``."""
    prefix = text if text.startswith("ed25519:") else "ed25519:" + text
    matches = sorted({keyid for keyid in known if keyid.startswith(prefix)})
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(f"no key matches {text!r}", hint="`openledger keys list` shows the known keys")
    raise BadInputError(f"key prefix {text!r} is ambiguous ({len(matches)} keys match)")


@dataclass(frozen=True, slots=True)
class Signer:
    """A loaded private key, ready to sign records into one feed."""

    keyid: str
    feed: str
    _key: SigningKey = field(repr=False)

    def sign(self, message: bytes) -> bytes:
        signature: bytes = self._key.sign(message).signature
        return signature


def _default_feed(keyid: str, device: str) -> str:
    return f"{keyid.partition(':')[2][:16]}-{device}"


_FEED_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def signer_from_seed(seed: bytes, *, feed: str | None = None, device: str = "ci") -> Signer:
    if len(seed) != 32:
        raise KeyMaterialError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
    if feed is not None and (not _FEED_NAME.fullmatch(feed) or feed.startswith(".")):
        raise BadInputError(
            f"feed name {feed!r}: use 1-64 characters of A-Z a-z 0-9 . _ -, not starting with '.' ({ENV_FEED})"
        )
    key = SigningKey(seed)
    keyid = keyid_of(bytes(key.verify_key))
    return Signer(keyid=keyid, feed=feed or _default_feed(keyid, device), _key=key)


def generate_signer(*, feed: str | None = None) -> Signer:
    """A fresh in-memory key (tests, examples); never stored."""
    return signer_from_seed(nacl.utils.random(32), feed=feed, device="mem")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Public facts about a stored key."""

    keyid: str
    name: str
    email: str
    created: str
    encrypted: bool
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "keyid": self.keyid,
            "name": self.name,
            "email": self.email,
            "created": self.created,
            "encrypted": self.encrypted,
            "path": str(self.path),
        }


PassphraseSource = Callable[[str], str]


def _default_home() -> Path:
    from platformdirs import user_config_dir  # noqa: PLC0415 - not needed when OPENLEDGER_HOME is set

    return Path(user_config_dir("openledger", appauthor=False))


def openledger_home(home: Path | None = None) -> Path:
    """This user's OpenLedger directory: ``home``, else ``OPENLEDGER_HOME``, else the platform's config dir."""
    env_home = os.environ.get(ENV_HOME)
    return (home or (Path(env_home) if env_home else _default_home())).expanduser().absolute()


def inside_worktree(path: Path) -> Path | None:
    """The git working tree or ledger directory containing ``path``, if any."""
    for parent in [path, *path.parents]:
        if (parent / ".git").exists() or (parent / ".openledger").is_dir():
            return parent
    return None


class KeyStore:
    """The private keys of this user on this device."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = openledger_home(home)
        self.keys_dir = self.home / "keys"

    # -- writing ---------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        tree = inside_worktree(self.home)
        if tree is not None:
            raise KeyMaterialError(
                f"refusing to store private keys under {self.home}: it is inside the working tree {tree}",
                hint=f"point {ENV_HOME} outside any git repository",
            )
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.home, 0o700)
        os.chmod(self.keys_dir, 0o700)

    def generate(self, name: str, email: str, passphrase: str | None = None) -> KeyInfo:
        if not name.strip() or "@" not in email:
            raise BadInputError("a key needs a non-empty --name and an --email address")
        self._prepare()
        key = SigningKey.generate()
        keyid = keyid_of(bytes(key.verify_key))
        created = format_time(datetime.now(timezone.utc))
        secret: dict[str, Any]
        if passphrase:
            salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
            box_key = self._derive(passphrase, salt)
            sealed = nacl.secret.SecretBox(box_key).encrypt(bytes(key))
            secret = {
                "kdf": "argon2id",
                "opslimit": nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                "memlimit": nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
                "salt": base64.b64encode(salt).decode(),
                "box": base64.b64encode(bytes(sealed)).decode(),
            }
        else:
            secret = {"seed": base64.b64encode(bytes(key)).decode()}
        document = {
            "version": _KEYFILE_VERSION,
            "keyid": keyid,
            "name": name,
            "email": email,
            "created": created,
            "secret": secret,
        }
        path = self.keys_dir / f"{keyid.partition(':')[2]}.json"
        write_atomic(path, json.dumps(document, indent=2).encode() + b"\n", mode=0o600, fsync=True)
        if self.default_keyid() is None:
            self.set_default(keyid)
        return self._info(path, document)

    def set_default(self, keyid: str) -> None:
        self._prepare()
        write_atomic(self.home / "default-key", keyid.encode() + b"\n", mode=0o600)

    def device_id(self) -> str:
        """A random name for this device, made once; it keeps each device's appends in its own feed."""
        path = self.home / "device-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            self._prepare()
            device = secrets.token_hex(4)
            write_atomic(path, device.encode() + b"\n", mode=0o600)
            return device

    # -- reading ---------------------------------------------------------------------------------------
    @staticmethod
    def _derive(passphrase: str, salt: bytes) -> bytes:
        derived: bytes = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase.encode("utf-8"),
            salt,
            opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
            memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
        )
        return derived

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            document = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyMaterialError(f"cannot read key file {path}: {exc}") from None
        if not isinstance(document, dict) or "keyid" not in document or "secret" not in document:
            raise KeyMaterialError(f"{path} is not an OpenLedger key file")
        return document

    def _info(self, path: Path, document: dict[str, Any]) -> KeyInfo:
        return KeyInfo(
            keyid=document["keyid"],
            name=document.get("name", ""),
            email=document.get("email", ""),
            created=document.get("created", ""),
            encrypted="box" in document["secret"],
            path=path,
        )

    def list(self) -> list[KeyInfo]:
        if not self.keys_dir.is_dir():
            return []
        return [self._info(path, self._read(path)) for path in sorted(self.keys_dir.glob("*.json"))]

    def default_keyid(self) -> str | None:
        try:
            text = (self.home / "default-key").read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def find(self, keyid_or_prefix: str) -> KeyInfo:
        infos = {info.keyid: info for info in self.list()}
        return infos[resolve_keyid(keyid_or_prefix, infos)]

    def selected_keyid(self) -> str:
        wanted = os.environ.get(ENV_KEY) or self.default_keyid()
        if wanted:
            return self.find(wanted).keyid
        infos = self.list()
        if len(infos) == 1:
            return infos[0].keyid
        if not infos:
            raise KeyMaterialError(
                "no signing key on this machine",
                hint="run `openledger keys generate --name NAME --email EMAIL`, or set "
                f"{ENV_SIGNING_KEY} in CI",
            )
        raise KeyMaterialError(f"several keys and no default: set {ENV_KEY} to one of them")

    def load_seed(self, keyid: str, passphrase: PassphraseSource | None = None) -> bytes:
        info = self.find(keyid)
        document = self._read(info.path)
        secret = document["secret"]
        try:
            if "seed" in secret:
                return base64.b64decode(secret["seed"], validate=True)
            if passphrase is None:
                raise KeyMaterialError(
                    f"key {short_keyid(info.keyid)} is protected by a passphrase",
                    hint=f"set {ENV_PASSPHRASE} or run the command in a terminal",
                )
            box_key = self._derive(passphrase(info.keyid), base64.b64decode(secret["salt"], validate=True))
            seed: bytes = nacl.secret.SecretBox(box_key).decrypt(base64.b64decode(secret["box"], validate=True))
            return seed
        except nacl.exceptions.CryptoError:
            raise KeyMaterialError(f"wrong passphrase for key {short_keyid(info.keyid)}") from None
        except (KeyError, binascii.Error, ValueError) as exc:
            raise KeyMaterialError(f"key file {info.path} is damaged: {exc}") from None

    def load_signer(self, keyid: str | None = None, passphrase: PassphraseSource | None = None) -> Signer:
        """The signer for ``keyid`` (default: ``OPENLEDGER_KEY``, the default key, or the only key).

        ``OPENLEDGER_SIGNING_KEY`` (base64 seed), when set, wins: that is how CI signs.
        """
        env_seed = os.environ.get(ENV_SIGNING_KEY)
        if env_seed and keyid is None:
            return signer_from_env(env_seed)
        chosen = keyid or self.selected_keyid()
        return signer_from_seed(self.load_seed(chosen, passphrase), feed=self.feed_for(chosen))

    def feed_for(self, keyid: str) -> str:
        """The feed this device appends to with ``keyid``: ``OPENLEDGER_FEED``, else one named after the key and
        this device (so two laptops with one key never race for one feed's sequence numbers)."""
        return os.environ.get(ENV_FEED) or _default_feed(keyid, self.device_id())


def signer_from_env(value: str) -> Signer:
    try:
        seed = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{ENV_SIGNING_KEY} is not base64") from None
    return signer_from_seed(seed, feed=os.environ.get(ENV_FEED) or None, device="ci")
