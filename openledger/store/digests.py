"""Content digests of files and directories, always spelled with their algorithm (``sha256:<hex>``).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("hi")
>>> directory_digest(d) == directory_digest(d)
True
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = ["directory_digest", "file_digest", "hex_of"]

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def directory_digest(path: Path) -> str:
    """A digest of a directory tree: SHA-256 over sorted ``<file digest> <relative path>`` lines."""
    if path.is_file():
        return file_digest(path)
    lines = [
        f"{file_digest(file)} {file.relative_to(path).as_posix()}\n"
        for file in sorted(p for p in path.rglob("*") if p.is_file())
    ]
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def hex_of(digest: str | None, algorithm: str, length: int) -> str | None:
    """The hex of ``algorithm:<hex>`` when it is spelled with that algorithm and has its length, else None.

    >>> hex_of("sha256:" + "ab" * 32, "sha256", 64) == "ab" * 32, hex_of("md5:ab", "md5", 32)
    (True, None)
    """
    prefix, _, value = (digest or "").partition(":")
    return value if prefix == algorithm and re.fullmatch(f"[0-9a-f]{{{length}}}", value) else None
