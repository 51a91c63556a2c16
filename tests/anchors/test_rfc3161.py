"""RFC 3161 anchors against a real local timestamp authority (openssl ts), verified offline."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from openledger import Ledger, LedgerConfig, verify_ledger
from openledger.anchors.anchoring import AnchorIndex, anchor_with_tsa, anchored_before, check_anchors
from openledger.anchors.rfc3161 import request_token
from openledger.errors import ServiceError
from openledger.store.checkpoint import append_checkpoint
from tests.anchors.conftest import Authority
from tests.conftest import FixedClock, make_signer
from tests.test_cli import inited, run  # noqa: F401 - inited is a fixture

SIGNER = make_signer(51, feed="ci")


def configure(ledger_root: Path, **anchors: Any) -> Ledger:
    path = ledger_root / "config.yaml"
    config = LedgerConfig.load(path)
    path.write_text(replace(config, anchors=anchors).to_yaml())
    ledger = Ledger.open(ledger_root)
    ledger.clock = FixedClock()
    return ledger


def codes(ledger: Ledger) -> list[tuple[str, str, str | None]]:
    report = verify_ledger(ledger, workers=1)
    return [(p.severity, p.code, p.record) for p in check_anchors(ledger, report)]


def checkpointed(ledger: Ledger, count: int = 3) -> list[str]:
    ids = [ledger.append(SIGNER, "feedback", {"target": f"t{i}", "score": i}).id for i in range(count)]
    return [*ids, append_checkpoint(ledger, SIGNER, verify_ledger(ledger, workers=1)).id]


def test_a_token_from_the_configured_tsa_verifies_offline(ledger: Ledger, tsa: Authority) -> None:
    ledger = configure(ledger.root, tsa=[{"name": "local", "url": tsa.url, "certificate": tsa.root_pem}])
    *records, checkpoint = checkpointed(ledger)
    anchor, check = anchor_with_tsa(ledger, SIGNER, verify_ledger(ledger, workers=1), tsa.url)
    assert check.problem is None and check.time == anchor.body["time"]
    assert anchor.body["checkpoint"] == checkpoint and anchor.links == (checkpoint,)
    assert codes(ledger) == []  # offline: nothing but the ledger and config.yaml is read
    bound = anchored_before(ledger, records[0])
    assert bound is not None and (bound.time, bound.checkpoint, bound.anchor, bound.method) == (
        anchor.body["time"], checkpoint, anchor.id, "rfc3161")
    later = ledger.append(SIGNER, "feedback", {"target": "after", "score": 9}).id
    index = AnchorIndex.load(ledger)
    assert index.anchored_before(later) is None and index.anchored_before(checkpoint) is None
    assert len(index) == 3  # the three records; the checkpoint does not cover itself


def test_a_token_over_another_root_fails(ledger: Ledger, tsa: Authority) -> None:
    ledger = configure(ledger.root, tsa=[{"name": "local", "certificate": tsa.root_pem}])
    first = checkpointed(ledger)[-1]
    second = checkpointed(ledger)[-1]
    report = verify_ledger(ledger, workers=1)
    honest, _ = anchor_with_tsa(ledger, SIGNER, report, tsa.url, checkpoint=first)
    # the first checkpoint's genuine token, presented as the anchor of the second one
    forged = ledger.append(SIGNER, "anchor", dict(honest.body, checkpoint=second,
                                                  root=report.summaries[second].body["root"],
                                                  size=report.summaries[second].body["count"]), [second])
    assert codes(ledger) == [("error", "anchor-root-mismatch", forged.id)]
    # and an anchor whose root is not its checkpoint's
    mislinked = ledger.append(SIGNER, "anchor", dict(honest.body, checkpoint=second), [second])
    assert ("error", "anchor-checkpoint", mislinked.id) in codes(ledger)


def test_a_certificate_that_is_not_configured_fails(ledger: Ledger, tsa: Authority, rogue_tsa: Authority) -> None:
    checkpointed(ledger)
    unconfigured, check = anchor_with_tsa(ledger, SIGNER, verify_ledger(ledger, workers=1), tsa.url)
    assert check.code == "anchor-untrusted"
    assert codes(ledger) == [("error", "anchor-untrusted", unconfigured.id)]  # no TSA configured at all
    ledger = configure(ledger.root, tsa=[{"name": "local", "certificate": tsa.root_pem}])
    assert codes(ledger) == []
    rogue, check = anchor_with_tsa(ledger, SIGNER, verify_ledger(ledger, workers=1), rogue_tsa.url)
    assert check.problem is not None
    assert codes(ledger) == [("error", "anchor-untrusted", rogue.id)]
    # a corrupted token: signed attributes no longer match the signature
    token = bytearray(base64.b64decode(rogue.body["token"]))
    token[len(token) // 2] ^= 1
    broken = ledger.append(SIGNER, "anchor", dict(rogue.body, token=base64.b64encode(bytes(token)).decode()),
                           rogue.links)
    assert ("error", "anchor-untrusted", broken.id) in codes(ledger) or \
        ("error", "anchor-invalid", broken.id) in codes(ledger)


def test_covered_records_that_claim_a_later_time_are_flagged(ledger: Ledger, tsa: Authority) -> None:
    ledger = configure(ledger.root, tsa=[{"name": "local", "certificate": tsa.root_pem}], clock_skew=60)
    honest = ledger.append(SIGNER, "feedback", {"target": "now", "score": 1}).id
    postdated = ledger.append(SIGNER, "feedback", {"target": "future", "score": 2},
                              time=datetime(2099, 1, 1, tzinfo=timezone.utc)).id
    append_checkpoint(ledger, SIGNER, verify_ledger(ledger, workers=1))
    anchor, _ = anchor_with_tsa(ledger, SIGNER, verify_ledger(ledger, workers=1), tsa.url)
    flagged = codes(ledger)
    assert flagged == [("warning", "time-after-anchor", postdated)]
    assert honest not in {record for _, _, record in flagged}
    # through the CLI: a warning, so exit 0, and 1 under --strict (once the signer is trusted)
    repo = ledger.root.parent
    assert run(repo, "keys", "publish", "--name", "CI", "--email", "ci@example.org",
               env={"OPENLEDGER_SIGNING_KEY": base64.b64encode(bytes([51]) * 32).decode(),
                    "OPENLEDGER_FEED": "ci"}).exit_code == 0
    assert run(repo, "verify", "--strict").exit_code == 0
    result = run(repo, "verify", "--anchors", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [(p["code"], p["record"]) for p in json.loads(result.stdout)["problems"]] == [
        ("time-after-anchor", postdated)]
    assert run(repo, "verify", "--anchors", "--strict").exit_code == 1
    assert anchor.body["time"] < "2099"


def test_anchor_command_and_an_unreachable_authority(inited: Path, tsa: Authority) -> None:  # noqa: F811
    configure(inited / ".openledger", tsa=[{"name": "local", "url": tsa.url, "certificate": tsa.root_pem}])
    assert run(inited, "anchor", "--tsa", "local").exit_code == 2  # no checkpoint yet
    assert run(inited, "checkpoint").exit_code == 0
    made = run(inited, "anchor", "--tsa", "local")
    assert made.exit_code == 0, made.output
    shown = json.loads(run(inited, "show", made.stdout.strip(), "--format", "json").stdout)
    assert shown["kind"] == "anchor" and shown["body"]["method"] == "rfc3161" and shown["body"]["tsa"] == tsa.url
    assert run(inited, "verify", "--anchors").exit_code == 0
    closed = run(inited, "anchor", "--tsa", "http://127.0.0.1:9/tsr")
    assert closed.exit_code == 2 and "did not answer" in closed.stderr
    assert run(inited, "anchor", "--tsa", "file:///etc/passwd").exit_code == 2
    assert run(inited, "anchor").exit_code == 2


def test_request_token_checks_the_answer(tsa: Authority) -> None:
    before = len(tsa.requests)
    assert request_token(tsa.url, b"\x01" * 32)  # a fresh request: answered, imprint and nonce checked
    assert len(tsa.requests) == before + 1
    with pytest.raises(ServiceError, match="did not answer"):
        request_token("http://127.0.0.1:9/", b"\x01" * 32)


def test_no_anchor_configured_and_none_recorded(ledger: Ledger) -> None:
    checkpointed(ledger)
    assert codes(ledger) == [] and len(AnchorIndex.load(ledger)) == 0



def test_garbage_tokens_are_reported(ledger: Ledger, tsa: Authority) -> None:
    ledger = configure(ledger.root, tsa=[{"name": "local", "certificate": tsa.root_pem}])
    checkpoint = checkpointed(ledger)[-1]
    honest, _ = anchor_with_tsa(ledger, SIGNER, verify_ledger(ledger, workers=1), tsa.url)
    token = base64.b64decode(honest.body["token"])
    forged = []
    for garbage in (b"\x30\x03\x02\x01\x00", token[:len(token) // 2], token[:-1] + bytes([token[-1] ^ 0xFF]),
                    bytes(200)):
        forged.append(ledger.append(SIGNER, "anchor", dict(honest.body, token=base64.b64encode(garbage).decode()),
                                    [checkpoint]).id)
    found = {record: code for _, code, record in codes(ledger)}
    assert set(forged) <= set(found) and honest.id not in found
    assert all(code.startswith("anchor-") for code in found.values())
    assert AnchorIndex.load(ledger).anchored_before(checkpointed(ledger, 1)[0]) is None
