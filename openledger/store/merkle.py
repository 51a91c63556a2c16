"""RFC 6962 / RFC 9162 Merkle trees over record ids: roots, inclusion proofs and consistency proofs.

A leaf is the raw 32-byte SHA-256 digest of a record id; ``leaf = SHA-256(0x00 || digest)``,
``node = SHA-256(0x01 || left || right)``, and the root of an empty tree is SHA-256 of the empty string.
Building level by level and carrying an odd last node up is the same tree as RFC 6962's "largest power of
two smaller than n" split: the node at level ``k``, index ``j`` is the hash of leaves
``[j * 2**k, min((j + 1) * 2**k, n))``, which is every subtree the proofs of RFC 9162 section 2.1 need.

>>> ids = ["sha256:" + bytes([i]).hex() * 32 for i in range(5)]
>>> root = merkle_root(ids)
>>> verify_inclusion(ids[3], 3, len(ids), inclusion_proof(ids, 3), root)
True
>>> verify_consistency(3, 5, merkle_root(ids[:3]), root, consistency_proof(ids, 3))
True
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "EMPTY_ROOT",
    "MerkleAccumulator",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def _digest_of(record_id: str) -> bytes:
    algorithm, _, hexdigest = record_id.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise ValueError(f"not a record id: {record_id!r}")
    return bytes.fromhex(hexdigest)


def leaf_hash(record_id: str) -> bytes:
    return _sha256(b"\x00" + _digest_of(record_id)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _levels(record_ids: Sequence[str]) -> list[list[bytes]]:
    level = [leaf_hash(record_id) for record_id in record_ids]
    levels = [level]
    while len(level) > 1:
        paired = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        levels.append(level)
    return levels


def merkle_root(record_ids: Sequence[str]) -> bytes:
    """The RFC 6962 tree head over ``record_ids`` in the order given."""
    if not record_ids:
        return EMPTY_ROOT
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
            node = _node(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = _node(node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node == root


def consistency_proof(record_ids: Sequence[str], old_size: int) -> list[bytes]:
    """RFC 9162 section 2.1.4.1: the proof that the tree over ``record_ids[:old_size]`` is a prefix of the
    tree over all of ``record_ids``. Empty when ``old_size`` is 0 or the whole tree."""
    size = len(record_ids)
    if not 0 <= old_size <= size:
        raise IndexError(old_size)
    if old_size in (0, size):
        return []
    levels = _levels(record_ids)

    def subtree(start: int, end: int) -> bytes:
        # the proof only asks for subtrees [j * 2**k, min((j + 1) * 2**k, size)): one node of `levels`
        height = (end - start - 1).bit_length()
        return levels[height][start >> height]

    proof: list[bytes] = []
    start, end, old_end, complete = 0, size, old_size, True
    while old_end != end:  # SUBPROOF(m, D[start:end], b), unrolled: every step recurses into one half
        split = 1 << ((end - start - 1).bit_length() - 1)
        if old_end - start <= split:
            proof.append(subtree(start + split, end))
            end = start + split
        else:
            proof.append(subtree(start, start + split))
            start += split
            complete = False
    if not complete:
        proof.append(subtree(start, end))
    proof.reverse()
    return proof


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: does ``proof`` show the tree (``old_size``, ``old_root``) is a prefix of the
    tree (``new_size``, ``new_root``)? The empty tree is a prefix of every tree (with an empty proof)."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node(node, fr)
            sr = _node(node, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, node)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


class MerkleAccumulator:
    """The root of a growing tree in O(log n) per leaf: the perfect subtrees of the leaves so far, largest
    first (a "compact range"). :meth:`copy` is cheap, so a walk over a tree of checkpoints can branch.

    >>> ids = ["sha256:" + bytes([i]).hex() * 32 for i in range(7)]
    >>> acc = MerkleAccumulator(); acc.extend(ids); acc.root() == merkle_root(ids)
    True
    """

    __slots__ = ("_hashes", "_sizes", "size")

    def __init__(self) -> None:
        self._sizes: list[int] = []
        self._hashes: list[bytes] = []
        self.size = 0

    @classmethod
    def restore(cls, size: int, hashes: Sequence[bytes]) -> MerkleAccumulator:
        """The accumulator of a tree of ``size`` leaves from its compact range (``hashes``, largest first)."""
        sizes = [1 << bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1]
        if size < 0 or len(sizes) != len(hashes) or any(len(node) != 32 for node in hashes):
            raise ValueError(f"not the compact range of a tree of {size} leaves")
        restored = cls()
        restored._sizes, restored._hashes, restored.size = sizes, list(hashes), size
        return restored

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The compact range: the roots of its perfect subtrees, largest first."""
        return tuple(self._hashes)

    def copy(self) -> MerkleAccumulator:
        other = MerkleAccumulator()
        other._sizes, other._hashes, other.size = list(self._sizes), list(self._hashes), self.size
        return other

    def extend(self, record_ids: Iterable[str]) -> None:
        sizes, hashes, sha256, unhex = self._sizes, self._hashes, _sha256, bytes.fromhex
        for record_id in record_ids:
            if not record_id.startswith("sha256:") or len(record_id) != 71:
                raise ValueError(f"not a record id: {record_id!r}")
            node, height = sha256(b"\x00" + unhex(record_id[7:])).digest(), 1
            while sizes and sizes[-1] == height:
                sizes.pop()
                node = sha256(b"\x01" + hashes.pop() + node).digest()
                height *= 2
            sizes.append(height)
            hashes.append(node)
            self.size += 1

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        node = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            node = _node(left, node)
        return node


def states_after(batches: Iterable[Sequence[str]]) -> Iterator[tuple[int, tuple[bytes, ...]]]:
    """The tree's size and compact range after each batch of leaves (openledger.store.leaves)."""
    accumulator = MerkleAccumulator()
    for batch in batches:
        accumulator.extend(batch)
        yield accumulator.size, accumulator.hashes


def _main(counts: Sequence[str]) -> int:
    """Run as a script (openledger.store.leaves.MerkleJob): record ids, one a line, on stdin, in batches of
    ``counts`` lines; one line out per batch: the size, then the compact range in hex."""
    ids = sys.stdin.buffer.read().decode("ascii").split("\n")
    if ids.pop() != "" or len(ids) != sum(map(int, counts)):
        return 1
    start, batches = 0, []
    for count in map(int, counts):
        batches.append(ids[start:start + count])
        start += count
    try:
        for size, hashes in states_after(batches):
            sys.stdout.write(" ".join([str(size), *(node.hex() for node in hashes)]) + "\n")
    except ValueError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
