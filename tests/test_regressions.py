"""Regression tests for defects found in review; each failed before its fix."""

from __future__ import annotations

import base64
import json
import math
import threading
from pathlib import Path

import pytest

from openledger import Ledger, LedgerConfig, verify_ledger
from openledger.identity.trust import TrustFact, TrustState
from tests.conftest import make_signer, publish
from tests.test_cli import inited, run  # noqa: F401 - the fixture is used by name


def test_nan_metrics_print_as_json(inited: Path) -> None:  # noqa: F811
    body = json.dumps({"run_id": "r", "status": "FINISHED", "metrics": {"loss": {"$float": "NaN"}, "acc": 0.5}})
    record_id = run(inited, "record", "run", "--body", body).stdout.strip()
    ledger = Ledger.open(inited / ".openledger")
    assert math.isnan(ledger.get(record_id).body["metrics"]["loss"])
    listed = run(inited, "log", "--format", "json")
    assert listed.exit_code == 0
    assert json.loads(listed.stdout)[-1]["body"]["metrics"]["loss"] == {"$float": "NaN"}
    assert run(inited, "show", record_id).exit_code == 0
    assert json.loads(run(inited, "show", record_id, "--format", "json").stdout)["body"]["metrics"]["acc"] == 0.5


def test_ci_key_publishes_with_name_and_email(inited: Path) -> None:  # noqa: F811
    env = {"OPENLEDGER_SIGNING_KEY": base64.b64encode(bytes(range(32))).decode()}
    without = run(inited, "keys", "publish", env=env)
    assert without.exit_code == 2 and "--name NAME --email EMAIL" in without.stderr
    published = run(inited, "keys", "publish", "--name", "CI", "--email", "ci@example.org", env=env)
    assert published.exit_code == 0 and "Published" in published.stderr
    assert "already published" in run(inited, "keys", "publish", env=env).stderr
    assert run(inited, "verify", "--strict").exit_code == 0


def test_check_proof_validates_root_and_proof_fields(inited: Path, tmp_path: Path) -> None:  # noqa: F811
    record_id = run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}').stdout.strip()
    run(inited, "checkpoint")
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(run(inited, "prove", record_id).stdout)
    assert run(tmp_path, "check-proof", str(proof_file), "--root", "deadbeef").exit_code == 2
    good_root = json.loads(proof_file.read_text())["root"]
    assert run(tmp_path, "check-proof", str(proof_file), "--root", good_root).exit_code == 0
    lying = json.loads(proof_file.read_text())
    lying["root"] = "sha256:" + "0" * 64
    proof_file.write_text(json.dumps(lying))
    assert run(tmp_path, "check-proof", str(proof_file)).exit_code == 1


def test_damaged_object_is_an_integrity_error_after_index_rebuild(inited: Path) -> None:  # noqa: F811
    record_id = run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}').stdout.strip()
    path = inited / ".openledger" / "objects" / record_id[7:9] / record_id[9:]
    path.chmod(0o644)
    path.write_bytes(b"garbage")
    assert run(inited, "fsck").exit_code == 1  # reports it, rebuilds the index without it
    shown = run(inited, "show", record_id[7:20])
    assert shown.exit_code == 1 and "record" in shown.stderr
    assert run(inited, "show", record_id).exit_code == 1


def test_feed_name_cannot_escape_local(inited: Path) -> None:  # noqa: F811
    result = run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}',
                 env={"OPENLEDGER_FEED": "../../escaped"})
    assert result.exit_code == 2 and "feed name" in result.stderr
    assert not list(inited.rglob("escaped*"))


def test_trust_times_compare_as_instants() -> None:
    key = make_signer(2).keyid
    facts = [
        TrustFact("sha256:" + "1" * 64, "identity", key, "2026-01-01T00:00:00Z",
                  {"key": key, "name": "A", "email": "a@example.org"}),
        TrustFact("sha256:" + "2" * 64, "revocation", key, "2026-02-01T00:00:00Z",
                  {"key": key, "reason": "stolen", "compromised_since": "2026-01-15T00:00:00Z"}),
    ]
    trust = TrustState.evaluate(facts, mode="tofu", roots=())
    assert trust.status(key, "2026-01-15T00:00:00.5Z") == "revoked-key"
    assert trust.status(key, "2026-01-14T23:59:59.999999Z") is None


def test_reusing_someone_elses_feed_name_blames_nobody_else(ledger: Ledger) -> None:
    victim = make_signer(2, feed="shared-name")
    publish(ledger, victim, "Victim")
    first = ledger.append(victim, "feedback", {"target": "x", "label": "mine"})
    intruder = make_signer(3, feed="shared-name")
    ledger.append(intruder, "feedback", {"target": "x", "label": "theirs"})
    after = ledger.append(victim, "feedback", {"target": "x", "label": "mine again"})
    assert after.prev == (first.id,)  # the intruder's record did not become the victim's tip
    report = verify_ledger(ledger, workers=1)
    assert report.errors == []
    assert {p.code for p in report.warnings} == {"unknown-key"}
    assert all(p.record != after.id for p in report.problems)


def test_record_link_accepts_bare_hex_prefix(inited: Path) -> None:  # noqa: F811
    target = run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}').stdout.strip()
    linked = run(inited, "record", "feedback", "--body", '{"target": "x", "label": "z"}', "--link", target[7:19])
    assert linked.exit_code == 0, linked.output
    records = json.loads(run(inited, "log", "--format", "json").stdout)
    assert records[-1]["links"] == [target]


def test_revocation_by_an_outsider_warns(inited: Path, tmp_path: Path) -> None:  # noqa: F811
    ada = json.loads(run(inited, "keys", "list", "--format", "json").stdout)["local"][0]["keyid"]
    outsider = {"OPENLEDGER_HOME": str(tmp_path / "outsider")}
    run(inited, "keys", "generate", "--name", "Eve", "--email", "eve@example.org", env=outsider)
    result = run(inited, "keys", "revoke", ada[8:20], "--reason", "spite", env=outsider)
    assert result.exit_code == 0 and "will not count" in result.stderr
    assert run(inited, "verify", "--strict").exit_code == 1  # the ignored revocation is reported


def test_verify_in_a_threaded_process_does_not_fork(repo: Path) -> None:
    ledger = Ledger.init(repo, LedgerConfig())
    signer = make_signer(2)
    from openledger import Draft

    ledger.append_many(signer, [Draft("feedback", {"target": f"t{i}", "score": i}) for i in range(4500)])
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(verify_ledger(ledger).records))
    worker.start()
    worker.join()
    assert results == [4500]


def test_fsck_cleans_temp_files_of_atomic_writes_in_the_ledger_root(ledger: Ledger) -> None:
    leftover = ledger.root / ".tmp-999999999-abc"
    leftover.write_text("config being written when the machine died")
    assert str(leftover) in ledger.fsck().removed
    assert not leftover.exists()




def test_log_reports_damaged_objects_and_fails(inited: Path) -> None:  # noqa: F811
    ids = [run(inited, "record", "feedback", "--body", json.dumps({"target": f"t{i}", "label": "x"})).stdout.strip()
           for i in range(3)]
    assert run(inited, "log").exit_code == 0  # indexed while intact
    path = inited / ".openledger" / "objects" / ids[1][7:9] / ids[1][9:]
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"sig":"', b'"sig":"AAAA', 1))
    result = run(inited, "log", "--format", "json")
    assert result.exit_code == 1 and ids[1] in result.stderr
    assert ids[1] not in {r["id"] for r in json.loads(result.stdout)}
    run(inited, "fsck")  # rebuilt index skips it entirely: log must still say so
    again = run(inited, "log")
    assert again.exit_code == 1 and "damaged" in again.stderr


@pytest.mark.parametrize("field", ["checkpoint", "record", "checkpoint_envelope"])
def test_malformed_proof_fields_are_bad_input(inited: Path, tmp_path: Path, field: str) -> None:  # noqa: F811
    record_id = run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}').stdout.strip()
    run(inited, "checkpoint")
    proof = json.loads(run(inited, "prove", record_id).stdout)
    proof[field] = None
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proof))
    result = run(tmp_path, "check-proof", str(proof_file))
    assert result.exit_code == 2 and "malformed proof" in result.stderr


def test_short_writes_never_leave_a_truncated_object(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import os as real_os

    original = real_os.write
    monkeypatch.setattr(real_os, "write", lambda fd, data: original(fd, bytes(data[:7])))
    record = ledger.append(make_signer(2), "feedback", {"target": "x", "label": "y"})
    monkeypatch.undo()
    assert ledger.get(record.id) == record


def test_a_record_does_not_share_the_callers_body(ledger: Ledger) -> None:
    """Changing the dict given to append afterwards cannot make the record disagree with its signed bytes, and
    the record's own body cannot be changed at all."""
    from openledger.store.canonical import parse_canonical

    body = {"target": "model:iris@1", "label": "ok", "tags": ["a"]}
    record = ledger.append(make_signer(2), "feedback", body)
    body["label"] = "changed"
    body["tags"].append("b")  # type: ignore[attr-defined]
    assert record.body == parse_canonical(record.payload_bytes)["body"] == {"target": "model:iris@1", "label": "ok",
                                                                             "tags": ["a"]}
    with pytest.raises(TypeError):
        record.body["label"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        record.body["tags"].append("x")
    assert ledger.get(record.id) == record


def test_keys_list_with_a_broken_config_is_a_config_error_not_no_ledger(inited: Path) -> None:  # noqa: F811
    (inited / ".openledger" / "config.yaml").write_text("trust_mode: [unclosed\n")
    for args in (("keys", "list"), ("keys", "generate", "--name", "Bo", "--email", "bo@example.org")):
        result = run(inited, *args)
        assert result.exit_code == 2, result.output
        assert "config.yaml" in result.stderr and "No ledger here" not in result.stderr


def test_fail_open_capture_keeps_the_traceback_of_a_bug_in_the_debug_log(
        ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from openledger.capture.recorder import Recorder

    class BrokenSigner:
        keyid, feed = make_signer(3).keyid, "broken"

        def sign(self, message: bytes) -> bytes:
            raise ZeroDivisionError("a bug, not a recording problem")

    recorder = Recorder(ledger=ledger, signer=BrokenSigner(), source="test", strict=False)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="openledger"):
        assert recorder.record("feedback", {"target": "t", "label": "l"}) is None
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "ZeroDivisionError" in warning.getMessage()
    [debug] = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug.exc_info is not None and debug.exc_info[0] is ZeroDivisionError
    with pytest.raises(ZeroDivisionError):
        Recorder(ledger=ledger, signer=BrokenSigner(), strict=True).record(  # type: ignore[arg-type]
            "feedback", {"target": "t", "label": "l"})


def test_verify_codes_come_from_the_exception_not_its_message() -> None:
    from openledger.errors import HashMismatchError, IntegrityError, SignatureError

    assert HashMismatchError("anything").code == "hash-mismatch"
    assert SignatureError("content hash is wrong (a message that once fooled the code)").code == "bad-signature"
    assert IntegrityError("content hash", code="custom").code == "custom"
