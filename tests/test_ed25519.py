"""The fast Ed25519 path (ed25519-zebra, ZIP 215) gives libsodium's answers, and where it cannot, only the key's
holder can tell.

Hostile signatures are made here the way an attacker would, with the curve arithmetic libsodium exposes: a
small-order key anyone can sign for, small-order and non-canonical ``R``, non-canonical ``S``, torsion added
to someone else's signature. Each is checked against libsodium itself (PyNaCl), against ed25519-zebra alone
(so the test shows the case is one where the two differ), and against :func:`openledger.store.ed25519.verify`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from ed25519_zebra import ed_verify as zebra_verify
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_scalar_add,
    crypto_core_ed25519_scalar_mul,
    crypto_core_ed25519_scalar_reduce,
    crypto_scalarmult_ed25519_base_noclamp,
)
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from openledger import Ledger, verify_ledger
from openledger.store import ed25519
from openledger.store.dsse import PAYLOAD_TYPE, encode_envelope, pae
from tests.conftest import make_signer

L = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes([1]) + bytes(31)
ORDER_8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
IDENTITY_NONCANONICAL = (2**255 - 19 + 1).to_bytes(32, "little")  # y = p + 1, which is 1
SEED = bytes(range(32))
MESSAGE = b"DSSEv1 4 test 5 hello"


def libsodium(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except BadSignatureError:
        return False
    return True


def scalar(value: int) -> bytes:
    return (value % L).to_bytes(32, "little")


def secret_scalar(seed: bytes) -> bytes:
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return crypto_core_ed25519_scalar_reduce(bytes(digest) + bytes(32))


def challenge(r: bytes, public_key: bytes, message: bytes) -> bytes:
    return crypto_core_ed25519_scalar_reduce(hashlib.sha512(r + public_key + message).digest())


def sign_with(r_point: bytes, r_scalar: bytes, a: bytes, public_key: bytes, message: bytes) -> bytes:
    """S = r + k·a for a chosen R: a signature made with the secret scalar, whatever R is."""
    k = challenge(r_point, public_key, message)
    return r_point + crypto_core_ed25519_scalar_add(r_scalar, crypto_core_ed25519_scalar_mul(k, a))




def fast_path_of(public_key: bytes) -> object:
    """The fast verifier a key is given once decided (at its second signature)."""
    for _ in range(2):
        ed25519.verify(public_key, MESSAGE, bytes(64))
    return ed25519._key(public_key).fast


@pytest.fixture
def key() -> tuple[bytes, bytes]:
    """The test key, settled on the fast path (as after its second signature), and its secret scalar."""
    public_key = bytes(SigningKey(SEED).verify_key)
    assert fast_path_of(public_key) is not None
    return public_key, secret_scalar(SEED)


def test_the_fast_path_is_installed_and_used_from_a_keys_second_signature() -> None:
    assert ed25519.fast_available()
    public_key = bytes(SigningKey(bytes([99]) * 32).verify_key)
    ed25519.verify(public_key, MESSAGE, bytes(64))
    assert ed25519._key(public_key).fast is None  # once: libsodium, no subgroup check yet
    assert fast_path_of(public_key) is not None  # a real key takes the fast path


def test_honest_signatures_verify_and_any_changed_byte_fails(key: tuple[bytes, bytes]) -> None:
    public_key, _ = key
    signature = SigningKey(SEED).sign(MESSAGE).signature
    assert ed25519.verify(public_key, MESSAGE, signature)
    for position in (0, 31, 32, 63):
        bad = bytearray(signature)
        bad[position] ^= 1
        assert not ed25519.verify(public_key, MESSAGE, bytes(bad))
    assert not ed25519.verify(public_key, MESSAGE + b"!", signature)
    other = bytes(SigningKey(bytes(32)).verify_key)
    assert not ed25519.verify(other, MESSAGE, signature)


@pytest.mark.parametrize("public_key, message, signature", [
    (b"x" * 31, MESSAGE, b"s" * 64),
    (b"x" * 32, MESSAGE, b"s" * 63),
    (b"x" * 32, "text", b"s" * 64),
    (bytearray(32), MESSAGE, b"s" * 64),
    (b"\xff" * 32, MESSAGE, b"\xff" * 64),
])
def test_malformed_input_is_invalid_not_an_error(public_key: object, message: object, signature: object) -> None:
    assert ed25519.verify(public_key, message, signature) is False  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300),
       flip=st.one_of(st.none(), st.tuples(st.integers(0, 63), st.integers(1, 255))))
def test_agrees_with_libsodium_on_signatures_and_their_corruptions(seed: bytes, message: bytes,
                                                                  flip: tuple[int, int] | None) -> None:
    signing = SigningKey(seed)
    signature = bytearray(signing.sign(message).signature)
    if flip:
        signature[flip[0]] ^= flip[1]
    public_key = bytes(signing.verify_key)
    assert fast_path_of(public_key) is not None  # the fast path answers, not libsodium
    assert ed25519.verify(public_key, message, bytes(signature)) == libsodium(public_key, message, bytes(signature))


def test_a_small_order_key_that_anyone_can_sign_for_is_refused() -> None:
    forged = IDENTITY + bytes(32)  # R = identity, S = 0: valid under ZIP 215 for any message and this key
    assert zebra_verify(forged, MESSAGE, IDENTITY)
    assert not libsodium(IDENTITY, MESSAGE, forged)
    assert not ed25519.verify(IDENTITY, MESSAGE, forged)
    assert fast_path_of(IDENTITY) is None


def test_a_key_with_a_torsion_part_is_left_to_libsodium(key: tuple[bytes, bytes]) -> None:
    public_key, a = key
    mixed = crypto_core_ed25519_add(public_key, ORDER_8)
    assert fast_path_of(mixed) is None
    r = scalar(12345)
    r_point = crypto_scalarmult_ed25519_base_noclamp(r)
    for n in range(64):  # a signature the cofactored check takes and the plain one refuses (k not a multiple of 8)
        message = MESSAGE + bytes([n])
        if int.from_bytes(challenge(r_point, mixed, message), "little") % 8:
            break
    signature = sign_with(r_point, r, a, mixed, message)
    assert zebra_verify(signature, message, mixed)
    assert not libsodium(mixed, message, signature)
    assert not ed25519.verify(mixed, message, signature)


@pytest.mark.parametrize("r_point", [IDENTITY, ORDER_8, bytes(32), IDENTITY_NONCANONICAL,
                                     IDENTITY[:31] + bytes([0x80])],  # the identity with its sign bit set
                         ids=["identity", "order-8", "order-4", "identity-as-p+1", "identity-sign-bit"])
def test_a_small_order_or_non_canonical_r_is_refused(key: tuple[bytes, bytes], r_point: bytes) -> None:
    public_key, a = key
    signature = sign_with(r_point, bytes(32), a, public_key, MESSAGE)  # S = k·a
    assert not libsodium(public_key, MESSAGE, signature)
    assert not ed25519.verify(public_key, MESSAGE, signature)


def test_these_r_values_are_ones_zebra_alone_would_take(key: tuple[bytes, bytes]) -> None:
    """The routing matters: without it, the fast path would accept what libsodium refuses."""
    public_key, a = key
    for r_point in (IDENTITY, ORDER_8, IDENTITY_NONCANONICAL):
        assert zebra_verify(sign_with(r_point, bytes(32), a, public_key, MESSAGE), MESSAGE, public_key)


def test_a_non_canonical_s_is_refused(key: tuple[bytes, bytes]) -> None:
    public_key, _ = key
    signature = SigningKey(SEED).sign(MESSAGE).signature
    s = int.from_bytes(signature[32:], "little") + L
    assert s < 2**256
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert not libsodium(public_key, MESSAGE, malleated)
    assert not ed25519.verify(public_key, MESSAGE, malleated)


def test_torsion_added_to_someone_elses_signature_does_not_verify(key: tuple[bytes, bytes]) -> None:
    """Without the secret key, the cofactored check gives an attacker nothing: a changed R changes k."""
    public_key, _ = key
    signature = SigningKey(SEED).sign(MESSAGE).signature
    shifted = crypto_core_ed25519_add(signature[:32], ORDER_8) + signature[32:]
    assert not zebra_verify(shifted, MESSAGE, public_key)
    assert not ed25519.verify(public_key, MESSAGE, shifted)


def test_the_one_difference_needs_the_secret_key(key: tuple[bytes, bytes]) -> None:
    """What docs/threat-model.md states: a key holder can make an R with a torsion part that ZIP 215 takes and
    libsodium refuses. OpenLedger then takes it (every verifier it runs agrees); a libsodium-based verifier
    does not. If this changes, the threat model changes with it."""
    public_key, a = key
    r = scalar(987654321)
    r_point = crypto_core_ed25519_add(crypto_scalarmult_ed25519_base_noclamp(r), ORDER_8)
    signature = sign_with(r_point, r, a, public_key, MESSAGE)
    assert not libsodium(public_key, MESSAGE, signature)
    assert zebra_verify(signature, MESSAGE, public_key)
    assert ed25519.verify(public_key, MESSAGE, signature)


def test_without_zebra_every_signature_goes_to_libsodium(key: tuple[bytes, bytes],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    public_key, a = key
    monkeypatch.setattr(ed25519, "_fast", None)
    ed25519._key.cache_clear()
    try:
        assert fast_path_of(public_key) is None
        assert ed25519.verify(public_key, MESSAGE, SigningKey(SEED).sign(MESSAGE).signature)
        r = scalar(987654321)
        r_point = crypto_core_ed25519_add(crypto_scalarmult_ed25519_base_noclamp(r), ORDER_8)
        assert not ed25519.verify(public_key, MESSAGE, sign_with(r_point, r, a, public_key, MESSAGE))
    finally:
        ed25519._key.cache_clear()


def test_verify_names_a_record_whose_key_holder_signed_it_with_a_small_order_r(tmp_path: Path) -> None:
    """Through the whole path (envelope, workers, problem): the routing holds in `openledger verify`."""
    seed = bytes([7]) * 32
    signer = make_signer(7, feed="t")
    ledger = Ledger.init(tmp_path / "repo")
    records = [ledger.append(signer, "feedback", {"target": f"model:m/{i}", "label": "ok"}) for i in range(3)]
    assert verify_ledger(ledger, workers=1).errors == []
    public_key = bytes.fromhex(signer.keyid.partition(":")[2])
    payload = records[1].payload_bytes
    message = pae(PAYLOAD_TYPE, payload)
    crafted = sign_with(IDENTITY, bytes(32), secret_scalar(seed), public_key, message)
    assert zebra_verify(crafted, message, public_key)  # ed25519-zebra alone would take it
    path = ledger.root / "objects" / records[1].id[7:9] / records[1].id[9:]
    path.chmod(0o644)
    path.write_bytes(encode_envelope(payload, signer.keyid, crafted))
    report = verify_ledger(ledger, workers=1)
    assert [(p.code, p.record) for p in report.errors] == [("bad-signature", records[1].id)]
