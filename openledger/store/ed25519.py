"""Ed25519 verification with libsodium's answers, faster where it can be.

libsodium, through PyNaCl, is the reference. ed25519-zebra (Rust, on curve25519-dalek; the
``py-ed25519-zebra-bindings`` wheel) verifies about 1.45x faster on this project's machines: with it a full
``openledger verify`` on two cores went from ~1.15x to 1.6-1.74x single-core libsodium (docs/benchmarks.md).
It follows ZIP 215, whose rules accept every signature libsodium accepts and a few more. :func:`verify` takes
the fast path only where the two can disagree on nothing but what the key's own holder deliberately makes:

- the public key is a canonical point of the prime-order subgroup, not of small order (libsodium's
  ``crypto_core_ed25519_is_valid_point``, once per key, at its second signature: a key's first signature
  goes to libsodium). Any other key is checked by libsodium: ZIP 215 accepts small-order and non-canonical
  keys, for which anyone can make a signature;
- the signature's ``R`` is canonical and not one of libsodium's small-order encodings (its own blacklist,
  the sign bit ignored). Any other ``R`` is checked by libsodium;
- ``S`` must be canonical (below the group order) for both.

What remains: ZIP 215 checks the cofactored equation ``[8][S]B = [8]R + [8][k]A``, libsodium the plain one.
A signature whose ``R`` carries a small torsion component passes the first and fails the second. Making one
takes the secret key (``S`` depends on it), so it lets no one sign for anybody else; it lets a key holder write
a record that OpenLedger accepts and a libsodium-based verifier rejects. docs/threat-model.md says so.

A False from the fast verifier is final: libsodium rejects everything ZIP 215 rejects.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

try:  # a dependency; on a platform without its wheel, libsodium checks every signature
    from ed25519_zebra import ed_verify
except ImportError:  # pragma: no cover
    ed_verify = None

_fast: Callable[[bytes, bytes, bytes], bool] | None = ed_verify

# libsodium's small-order encodings (ge25519_has_small_order), first 31 bytes. The other three on its list
# (p - 1, p, p + 1) end in 0x7f, as every non-canonical encoding does: those are routed by their last byte.
_SMALL_ORDER_PREFIXES = frozenset(bytes.fromhex(h)[:31] for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0100000000000000000000000000000000000000000000000000000000000000",  # the identity
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
))


def fast_available() -> bool:
    """Whether ed25519-zebra is installed (the benchmarks print which path ran)."""
    return _fast is not None


class _Key:
    """A key's libsodium verifier and, from the key's second signature on, the fast verifier when it gives
    libsodium's answers for this key. Deciding costs about one verification (the subgroup check), which a
    key that signs once would not earn back: a ledger of a million one-record keys costs what it did."""

    __slots__ = ("fast", "libsodium", "pending", "seen")

    def __init__(self, public_key: bytes) -> None:
        self.libsodium = VerifyKey(public_key)
        self.fast: Callable[[bytes, bytes, bytes], bool] | None = None
        self.pending = _fast is not None
        self.seen = False

    def settle(self, public_key: bytes) -> None:
        if self.seen:
            self.fast = _fast if crypto_core_ed25519_is_valid_point(public_key) else None
            self.pending = False
        self.seen = True


@lru_cache(maxsize=1 << 16)
def _key(public_key: bytes) -> _Key:
    return _Key(public_key)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``, as libsodium
    decides (see the module's note for the one case it cannot tell apart). Malformed keys and signatures are
    invalid, not errors."""
    if type(public_key) is not bytes or len(public_key) != 32 or type(signature) is not bytes \
            or len(signature) != 64 or type(message) is not bytes:
        return False
    key = _key(public_key)
    if key.pending:
        key.settle(public_key)
    fast = key.fast
    if fast is not None and (signature[31] & 0x7F) != 0x7F and signature[:31] not in _SMALL_ORDER_PREFIXES:
        return fast(signature, message, public_key)
    try:
        key.libsodium.verify(message, signature)
    except BadSignatureError:
        return False
    return True
