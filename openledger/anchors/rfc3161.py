"""RFC 3161 timestamps of checkpoint roots, requested from a timestamp authority (TSA) and checked offline.

The message timestamped is the checkpoint's 32-byte Merkle root: the token's message imprint is
``SHA-256(root)``. Requests and tokens are built, parsed and verified by ``rfc3161-client`` (Trail of Bits'
library that sigstore uses: the ASN.1 is rust-asn1, the CMS signature and certificate chain are checked by
``cryptography``); this module only moves bytes. Verification needs the TSA's root certificate from
config.yaml and nothing else: no network.

Requires the ``tsa`` extra (``pip install 'openledger-mlops[tsa]'``).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from openledger.errors import BadInputError, ServiceError
from openledger.store.records import format_time

__all__ = ["TokenCheck", "request_token", "verify_token"]

_MAX_RESPONSE = 1 << 20
CONTENT_TYPE = "application/timestamp-query"


def _library() -> Any:
    try:
        import rfc3161_client  # noqa: PLC0415 - an optional extra, imported where it is used
    except ImportError:
        raise BadInputError("RFC 3161 anchors need rfc3161-client",
                            hint="pip install 'openledger-mlops[tsa]'") from None
    return rfc3161_client


def request_token(url: str, message: bytes, *, timeout: float = 30.0) -> bytes:
    """Ask the TSA at ``url`` to timestamp ``message``; the DER TimeStampResp, checked to answer this request
    (status granted, same imprint, same nonce). Its signature is checked later, against configured roots."""
    if not url.startswith(("http://", "https://")):
        raise BadInputError(f"--tsa must be an http(s) URL, got {url[:200]!r}")
    client = _library()
    request = (client.TimestampRequestBuilder().data(message).hash_algorithm(client.HashAlgorithm.SHA256)
               .nonce(nonce=True).cert_request(cert_request=True).build())
    http = urllib.request.Request(url, data=request.as_bytes(), method="POST",  # noqa: S310 - scheme checked above
                                  headers={"Content-Type": CONTENT_TYPE})
    try:
        with urllib.request.urlopen(http, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read(_MAX_RESPONSE + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ServiceError(f"the timestamp authority at {url} did not answer: {exc}") from None
    if len(body) > _MAX_RESPONSE:
        raise ServiceError(f"the timestamp authority at {url} sent more than {_MAX_RESPONSE} bytes")
    try:
        decoded = client.decode_timestamp_response(body)
    except ValueError as exc:
        raise ServiceError(f"the timestamp authority at {url} sent something that is not a timestamp "
                           f"response: {exc}") from None
    if decoded.status not in (0, 1):
        raise ServiceError(f"the timestamp authority at {url} refused: status {decoded.status} "
                           f"{' '.join(decoded.status_string)[:200]}")
    if decoded.tst_info.nonce != request.nonce:
        raise ServiceError(f"the timestamp authority at {url} answered another request (nonce differs)")
    if decoded.tst_info.message_imprint.message != request.message_imprint.message:
        raise ServiceError(f"the timestamp authority at {url} timestamped another message")
    return bytes(decoded.as_bytes())


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """The outcome of :func:`verify_token`: the token's time when it verifies, else why not."""

    time: str | None
    problem: str | None = None
    code: str = "anchor-invalid"


def verify_token(token: bytes, message: bytes, certificates: list[str]) -> TokenCheck:
    """Check a stored TimeStampResp: status granted, imprint over ``message``, a CMS signature by a
    timestamping certificate that chains to one of ``certificates`` (PEM) at the token's time."""
    client = _library()
    from cryptography import x509  # noqa: PLC0415 - rfc3161-client's own dependency

    try:
        response = client.decode_timestamp_response(token)
        # (parts of the token are parsed on first access: a malformed one raises here, not above)
        algorithm = response.tst_info.message_imprint.hash_algorithm.dotted_string
        imprint = response.tst_info.message_imprint.message
    except ValueError as exc:
        return TokenCheck(None, f"the token does not parse: {exc}")
    if algorithm != "2.16.840.1.101.3.4.2.1":  # SHA-256: what every request of ours asks for
        return TokenCheck(None, f"the token's imprint uses {algorithm}, not SHA-256")
    if imprint != hashlib.sha256(message).digest():
        return TokenCheck(None, "the token timestamps another root than its checkpoint's", "anchor-root-mismatch")
    if not certificates:
        return TokenCheck(None, "no TSA certificate is configured (anchors: tsa: in config.yaml)",
                          "anchor-untrusted")
    problems = []
    for pem in certificates:
        try:
            roots = x509.load_pem_x509_certificates(pem.encode())
        except ValueError as exc:
            problems.append(f"a configured certificate does not parse: {exc}")
            continue
        builder = client.VerifierBuilder()
        for root in roots:
            builder = builder.add_root_certificate(root)
        try:
            builder.build().verify_message(response, message)
            moment = response.tst_info.gen_time
        except (client.VerificationError, ValueError) as exc:
            problems.append(str(exc))
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return TokenCheck(format_time(moment))
    shown = "; ".join(sorted(set(problems)))[:300]
    return TokenCheck(None, f"the token does not verify against any configured TSA certificate: {shown}",
                      "anchor-untrusted")


def token_time(token: bytes) -> datetime:
    """The time a token claims (unchecked): for messages."""
    moment: datetime = _library().decode_timestamp_response(token).tst_info.gen_time
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
