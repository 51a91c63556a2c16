"""Witnesses cosign consistent extensions only; a rewritten history is refused and fails `verify --witnesses`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from openledger import Ledger, verify_ledger
from openledger.store.checkpoint import append_checkpoint
from openledger.store.witness import check_witnesses, cosign
from tests.conftest import FixedClock, make_signer
from tests.test_cli import run

CI_SEED, WITNESS_SEED, OTHER_SEED = bytes([31]) * 32, bytes([32]) * 32, bytes([33]) * 32


def env_for(seed: bytes, home: Path, feed: str) -> dict[str, str]:
    return {"OPENLEDGER_SIGNING_KEY": base64.b64encode(seed).decode(), "OPENLEDGER_HOME": str(home),
            "OPENLEDGER_FEED": feed}


@pytest.fixture
def parties(repo: Path, tmp_path: Path) -> dict[str, dict[str, str]]:
    Ledger.init(repo)
    parties = {"ci": env_for(CI_SEED, tmp_path / "ci-home", "ci"),
               "witness": env_for(WITNESS_SEED, tmp_path / "witness-home", "witness"),
               "other": env_for(OTHER_SEED, tmp_path / "other-home", "other")}
    for name, env in parties.items():  # tofu: a published identity makes a key trusted, witnesses included
        published = run(repo, "keys", "publish", "--name", name, "--email", f"{name}@example.org", env=env)
        assert published.exit_code == 0, published.output
    return parties


def records(repo: Path, env: dict[str, str], *targets: str) -> list[str]:
    made = []
    for target in targets:
        result = run(repo, "record", "feedback", "--body", json.dumps({"target": target, "label": "ok"}), env=env)
        assert result.exit_code == 0, result.output
        made.append(result.stdout.strip())
    return made


def checkpoint(repo: Path, env: dict[str, str]) -> str:
    result = run(repo, "checkpoint", env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def object_path(repo: Path, record_id: str) -> Path:
    return repo / ".openledger" / "objects" / record_id[7:9] / record_id[9:]


def kinds(repo: Path, kind: str) -> list[dict[str, object]]:
    return [r for r in json.loads(run(repo, "log", "--format", "json").stdout) if r["kind"] == kind]


def test_witness_cosigns_extensions_and_refuses_a_rewritten_history(repo: Path,
                                                                    parties: dict[str, dict[str, str]]) -> None:
    ci, witness = parties["ci"], parties["witness"]
    records(repo, ci, "a", "b", "c")
    first = checkpoint(repo, ci)
    cosigned = run(repo, "witness", env=witness)
    assert cosigned.exit_code == 0, cosigned.output
    assert run(repo, "verify", "--witnesses", "1", env=ci).exit_code == 0

    newer = records(repo, ci, "d", "e")
    second = checkpoint(repo, ci)
    assert run(repo, "verify", "--witnesses", "1", env=ci).exit_code == 1  # the newest is not cosigned yet
    again = run(repo, "witness", "--format", "json", env=witness)
    assert again.exit_code == 0, again.output
    outcome = json.loads(again.stdout)
    assert outcome["outcome"] == "cosigned" and outcome["checkpoint"] == second
    assert {w["checkpoint"] for w in outcome["checked_against"]} == {first}
    assert run(repo, "verify", "--witnesses", "1", env=ci).exit_code == 0
    unchanged = run(repo, "witness", env=witness)
    assert unchanged.exit_code == 0 and "Already cosigned" in unchanged.stderr

    # The rewrite: the newest records, the checkpoint over them and its cosignature are deleted, other
    # records are appended in their place, and the checkpoint is signed again. Verify alone cannot tell.
    cosignature = [c for c in kinds(repo, "cosignature") if c["body"]["checkpoint"] == second]  # type: ignore[index]
    for record_id in [newer[1], second, str(cosignature[0]["id"])]:
        object_path(repo, record_id).unlink()
    records(repo, ci, "e-rewritten")
    rewritten = checkpoint(repo, ci)
    assert run(repo, "verify", env=ci).exit_code == 0
    before = len(kinds(repo, "cosignature"))

    refused = run(repo, "witness", env=witness)
    assert refused.exit_code == 1, refused.output
    assert "does not extend" in refused.stderr and "nothing was signed" in refused.stderr
    assert len(kinds(repo, "cosignature")) == before
    failed = run(repo, "verify", "--witnesses", "1", "--format", "json", env=ci)
    assert failed.exit_code == 1
    assert [(p["code"], p["record"]) for p in json.loads(failed.stdout)["problems"]] == [
        ("witnesses-missing", rewritten)]

    # A witness that lost its state file but pinned what it cosigned outside the repository refuses too
    forgetful = dict(witness, OPENLEDGER_HOME=str(Path(witness["OPENLEDGER_HOME"]).parent / "fresh-home"))
    pinned = run(repo, "witness", "--from", second, env=forgetful)
    assert pinned.exit_code == 1 and "not in the ledger" in pinned.stderr


def test_witness_refuses_a_fork_its_own_checkpoints_and_a_damaged_ledger(repo: Path,
                                                                          parties: dict[str, dict[str, str]]) -> None:
    ci, witness = parties["ci"], parties["witness"]
    records(repo, ci, "a", "b")
    first = checkpoint(repo, ci)
    records(repo, ci, "c")
    second = checkpoint(repo, ci)
    assert run(repo, "witness", env=witness).exit_code == 0
    # a fork: a larger checkpoint that extends the first, not the cosigned second. Its new leaves are sorted by id,
    # so by chance (the ids hold real times) it can still extend the second, when the second's new leaves sort first
    # among them: then it is no fork, and more records are added until it is one.
    records(repo, ci, "d", "e")
    for attempt in range(20):
        records(repo, ci, f"f{attempt}")
        fork = run(repo, "checkpoint", "--extends", first, env=ci)
        assert fork.exit_code == 0, fork.output
        if run(repo, "prove", "--consistency", second, fork.stdout.strip(), env=ci).exit_code == 2:
            break
    else:
        pytest.fail("every checkpoint over the first extended the second")
    refused = run(repo, "witness", env=witness)
    assert refused.exit_code == 1 and second in refused.stderr
    own = run(repo, "witness", "--checkpoint", fork.stdout.strip(), env=ci)
    assert own.exit_code == 2 and "its own checkpoints" in own.stderr
    other_origin = run(repo, "witness", "--checkpoint", second, "--origin", "example.com/another-log",
                       env=parties["other"])
    assert other_origin.exit_code == 1 and "origin" in other_origin.stderr
    damaged = object_path(repo, records(repo, ci, "g")[0])
    damaged.chmod(0o644)
    damaged.write_bytes(damaged.read_bytes().replace(b'"sig":"', b'"sig":"A'))
    assert run(repo, "witness", env=parties["other"]).exit_code == 1


def test_which_cosignatures_count(ledger: Ledger) -> None:
    ledger.clock = FixedClock()
    log, trusted, stranger = make_signer(41, feed="ci"), make_signer(42, feed="w1"), make_signer(43, feed="w2")
    ledger.append(log, "feedback", {"target": "t", "score": 1})
    head = append_checkpoint(ledger, log, verify_ledger(ledger, workers=1))
    for witness in (trusted, stranger):
        cosign(ledger, witness, verify_ledger(ledger, workers=1), remembered=[], timestamp=1_800_000_000)
    report = verify_ledger(ledger, workers=1)
    assert check_witnesses(ledger, report, 2, [trusted.keyid, stranger.keyid]) == []
    assert [p.code for p in check_witnesses(ledger, report, 2, [trusted.keyid])] == ["witnesses-missing"]
    assert check_witnesses(ledger, report, 1, [trusted.keyid]) == []
    assert [p.code for p in check_witnesses(ledger, report, 1, [log.keyid])] == ["witnesses-missing"]
    # no identities published, tofu: no key is trusted unless listed
    assert [p.code for p in check_witnesses(ledger, report, 1)] == ["witnesses-missing"]
    config = ledger.root / "config.yaml"
    config.write_text(config.read_text() + f"checkpoints:\n  witnesses: [{stranger.keyid}]\n")
    assert check_witnesses(Ledger.open(ledger.root), report, 1) == []
    # a cosignature whose signature does not match the checkpoint is an error wherever it is
    body = {"checkpoint": head.id, "origin": head.body["origin"], "size": head.body["count"], "root": head.body["root"],
            "name": "openledger.witness/forged", "timestamp": 1, "signature": base64.b64encode(bytes(76)).decode(),
            "previous": None}
    forged = ledger.append(trusted, "cosignature", body, [head.id])
    problems = check_witnesses(ledger, verify_ledger(ledger, workers=1), 0)
    assert [(p.code, p.record) for p in problems] == [("cosignature-invalid", forged.id)]


def test_record_refuses_the_dedicated_kinds(repo: Path, parties: dict[str, dict[str, str]]) -> None:
    for kind in ("cosignature", "anchor"):
        result = run(repo, "record", kind, "--body", "{}", env=parties["ci"])
        assert result.exit_code == 2
