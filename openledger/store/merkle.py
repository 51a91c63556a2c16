"""RFC 6962 Merkle trees over record ids, and inclusion proofs.

Leaves are the raw 32-byte SHA-256 digests of the record ids, sorted; ``leaf = SHA-256(0x00 || digest)``,
``node = SHA-256(0x01 || left || right)``. Building level by level and carrying an odd last node up is the
same tree as RFC 6962's "largest power of two smaller than n" split.

>>> ids = ["sha256:" + bytes([i]).hex() * 32 for i in range(5)]
>>> root = merkle_root(ids)
>>> proof = inclusion_proof(ids, 3)
>>> verify_inclusion(ids[3], 3, len(ids), proof, root)
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["inclusion_proof", "leaf_hash", "merkle_root", "verify_inclusion"]

_EMPTY = hashlib.sha256(b"").digest()


def _digest_of(record_id: str) -> bytes:
    algorithm, _, hexdigest = record_id.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise ValueError(f"not a record id: {record_id!r}")
    return bytes.fromhex(hexdigest)


def leaf_hash(record_id: str) -> bytes:
    return hashlib.sha256(b"\x00" + _digest_of(record_id)).digest()


def _levels(record_ids: Sequence[str]) -> list[list[bytes]]:
    level = [leaf_hash(record_id) for record_id in record_ids]
    levels = [level]
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        levels.append(level)
    return levels


def merkle_root(record_ids: Sequence[str]) -> bytes:
    """The RFC 6962 tree head over ``record_ids`` in the order given (callers pass them sorted)."""
    if not record_ids:
        return _EMPTY
    return _levels(record_ids)[-1][0]


def inclusion_proof(record_ids: Sequence[str], index: int) -> list[bytes]:
    """The audit path for leaf ``index``, bottom up."""
    if not 0 <= index < len(record_ids):
        raise IndexError(index)
    path = []
    for level in _levels(record_ids)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def verify_inclusion(record_id: str, index: int, tree_size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: does ``path`` prove ``record_id`` at ``index`` in a tree with ``root``?"""
    if not 0 <= index < tree_size:
        return False
    fn, sn = index, tree_size - 1
    node = leaf_hash(record_id)
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = hashlib.sha256(b"\x01" + sibling + node).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = hashlib.sha256(b"\x01" + node + sibling).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == root
