"""Merkle trees: the level-by-level build matches RFC 6962's recursive definition, and proofs check."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openledger.store.merkle import (
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as the RFC states it (recursively), as an independent reference."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:])).digest()


def ids_of(count: int) -> list[str]:
    return sorted("sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(count))


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 100])
def test_root_matches_rfc_definition(count: int) -> None:
    ids = ids_of(count)
    assert merkle_root(ids) == rfc6962_root([bytes.fromhex(i[7:]) for i in ids])


@given(st.integers(1, 70), st.data())
def test_every_leaf_proves_and_no_other_does(count: int, data: st.DataObject) -> None:
    ids = ids_of(count)
    root = merkle_root(ids)
    index = data.draw(st.integers(0, count - 1))
    proof = inclusion_proof(ids, index)
    assert len(proof) <= max(1, count).bit_length()
    assert verify_inclusion(ids[index], index, count, proof, root)
    if count > 1:
        other = (index + 1) % count
        assert not verify_inclusion(ids[other], index, count, proof, root)
        assert not verify_inclusion(ids[index], other, count, proof, root)
    if proof:
        bent = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        assert not verify_inclusion(ids[index], index, count, bent, root)


def test_out_of_range() -> None:
    with pytest.raises(IndexError):
        inclusion_proof(ids_of(3), 3)
    assert not verify_inclusion(ids_of(3)[0], 5, 3, [], merkle_root(ids_of(3)))


def rfc9162_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    """RFC 9162 section 2.1.4.1, SUBPROOF, written as the RFC states it (recursively)."""
    n = len(leaves)
    if m == n:
        return [] if complete else [rfc6962_root(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*rfc9162_subproof(m, leaves[:k], complete), rfc6962_root(leaves[k:])]
    return [*rfc9162_subproof(m - k, leaves[k:], False), rfc6962_root(leaves[:k])]


@given(st.integers(1, 80), st.data())
def test_consistency_proofs_match_the_rfc_and_verify(count: int, data: st.DataObject) -> None:
    ids = ids_of(count)
    raw = [bytes.fromhex(i[7:]) for i in ids]
    old = data.draw(st.integers(1, count))
    proof = consistency_proof(ids, old)
    if old < count:
        assert proof == rfc9162_subproof(old, raw, True)
    old_root, new_root = merkle_root(ids[:old]), merkle_root(ids)
    assert verify_consistency(old, count, old_root, new_root, proof)
    assert not verify_consistency(old, count, new_root if old < count else bytes(32), new_root, proof)
    if proof:
        bent = [bytes([proof[-1][0] ^ 1]) + proof[-1][1:], *proof[:-1]][::-1]
        assert not verify_consistency(old, count, old_root, new_root, bent)
        # (a wrong tree size can still fit the path's shape: sizes are bound by the signed tree heads)
        assert not verify_consistency(old, count, old_root, new_root, proof[:-1])
    accumulator = MerkleAccumulator()
    accumulator.extend(ids[:old])
    assert accumulator.root() == old_root
    accumulator.extend(ids[old:])
    assert accumulator.root() == new_root


def test_consistency_edge_cases() -> None:
    ids = ids_of(8)
    assert verify_consistency(0, 8, merkle_root([]), merkle_root(ids), [])
    assert not verify_consistency(0, 8, merkle_root(ids[:1]), merkle_root(ids), [])
    assert verify_consistency(8, 8, merkle_root(ids), merkle_root(ids), [])
    assert not verify_consistency(8, 8, merkle_root(ids), merkle_root(ids), [merkle_root(ids)])
    assert not verify_consistency(5, 4, merkle_root(ids[:5]), merkle_root(ids[:4]), [])
    with pytest.raises(IndexError):
        consistency_proof(ids, 9)
