"""`checkpoint --format note` against the C2SP specifications, read by a parser written here from them.

The parser below follows c2sp.org/signed-note, c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature
(Ed25519) line by line, and verifies signatures with the ``cryptography`` package, not PyNaCl: nothing of
openledger.store.note is used to check what it produced.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from openledger import BadInputError, IntegrityError, Ledger, verify_ledger
from openledger.store.checkpoint import append_checkpoint, check_note, log_of
from openledger.store.note import parse_checkpoint_note, parse_note
from openledger.store.witness import cosign, export_note
from tests.conftest import make_signer
from tests.test_cli import inited, run  # noqa: F401 - inited is a fixture

EM_DASH = "\u2014"


@dataclass
class SpecNote:
    text: str
    signatures: list[tuple[str, bytes]]  # (key name, decoded bytes: 4-byte key id || signature)


def spec_parse(note: str) -> SpecNote:
    """signed-note: text ending in a newline, a blank line, then one or more signature lines
    "— <name> <base64>\\n"; valid UTF-8, no control characters but newline; the text is separated from the
    signatures by the last empty line."""
    assert note.encode("utf-8").decode("utf-8") == note
    assert all(ord(c) >= 0x20 or c == "\n" for c in note)
    assert note.endswith("\n")
    split = note.rindex("\n\n")
    text, block = note[:split + 1], note[split + 2:]
    assert text.endswith("\n")
    signatures = []
    for line in block.split("\n")[:-1]:
        assert line.startswith(EM_DASH + " ")
        name, value = line[2:].split(" ")
        assert name and "+" not in name and not any(c.isspace() for c in name)
        decoded = base64.b64decode(value, validate=True)
        assert base64.b64encode(decoded).decode() == value  # standard base64 with padding
        signatures.append((name, decoded))
    assert signatures
    return SpecNote(text, signatures)


def spec_checkpoint(text: str) -> tuple[str, int, bytes]:
    """tlog-checkpoint: at least three non-empty lines: origin, decimal tree size without leading zeroes,
    base64 root hash."""
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) >= 4 and all(lines[:-1])
    origin, size, root = lines[0], lines[1], lines[2]
    assert size.isdigit() and (size == "0" or not size.startswith("0"))
    assert "+" not in origin and not any(c.isspace() for c in origin)
    decoded_root = base64.b64decode(root, validate=True)
    assert len(decoded_root) == 32
    return origin, int(size), decoded_root


def spec_key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\x0a" + bytes([signature_type]) + public_key).digest()[:4]


def spec_verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def test_checkpoint_note_follows_the_specifications(ledger: Ledger) -> None:
    log_key, witness_key = make_signer(21, feed="ci"), make_signer(22, feed="partner")
    for i in range(5):
        ledger.append(log_key, "feedback", {"target": f"t{i}", "score": i})
    checkpoint = append_checkpoint(ledger, log_key, verify_ledger(ledger, workers=1), origin="example.com/ml-ledger")
    cosigned = cosign(ledger, witness_key, verify_ledger(ledger, workers=1), remembered=[], timestamp=1_790_000_000)
    assert cosigned.record is not None
    note = export_note(ledger, checkpoint.id)

    parsed = spec_parse(note)
    origin, size, root = spec_checkpoint(parsed.text)
    assert (origin, size, "sha256:" + root.hex()) == ("example.com/ml-ledger", checkpoint.body["count"],
                                                     checkpoint.body["root"])
    assert parsed.text == f"example.com/ml-ledger\n{size}\n{base64.b64encode(root).decode()}\n"  # no extensions

    log_public = bytes.fromhex(log_key.keyid[8:])
    witness_public = bytes.fromhex(witness_key.keyid[8:])
    (log_name, log_sig), (witness_name, witness_sig) = parsed.signatures
    # the log's signature: key name = origin, type 0x01, Ed25519 over the note text
    assert log_name == origin
    assert log_sig[:4] == spec_key_id(origin, 0x01, log_public) and len(log_sig) == 68
    assert spec_verify_ed25519(log_public, parsed.text.encode(), log_sig[4:])
    # the witness's cosignature: type 0x04, key id || u64 big-endian timestamp || Ed25519 over
    # "cosignature/v1\ntime <t>\n" + note text
    assert witness_sig[:4] == spec_key_id(witness_name, 0x04, witness_public) and len(witness_sig) == 76
    (timestamp,) = struct.unpack(">Q", witness_sig[4:12])
    assert timestamp == 1_790_000_000
    message = f"cosignature/v1\ntime {timestamp}\n".encode() + parsed.text.encode()
    assert spec_verify_ed25519(witness_public, message, witness_sig[12:])
    # and neither verifies over anything else
    assert not spec_verify_ed25519(log_public, parsed.text.replace(str(size), str(size + 1)).encode(), log_sig[4:])
    assert not spec_verify_ed25519(witness_public, parsed.text.encode(), witness_sig[12:])

    # our own reader agrees, and the vkey convention holds for the log key
    ours = check_note(note, log_key.keyid)
    assert (ours.origin, ours.size, ours.root) == (origin, size, root)


def test_a_tampered_note_is_refused(ledger: Ledger) -> None:
    signer = make_signer(23)
    ledger.append(signer, "feedback", {"target": "t", "score": 1})
    checkpoint = append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1))
    note = export_note(ledger, checkpoint.id)
    lines = note.split("\n")
    grown = "\n".join([lines[0], str(int(lines[1]) + 1), *lines[2:]])
    with pytest.raises(IntegrityError):
        check_note(grown, signer.keyid)
    with pytest.raises(IntegrityError):
        check_note(note, make_signer(24).keyid)  # another key's signature is not there
    broken_notes = (note.replace("\n\n", "\n"), note.replace("\u2014", "-"), note + "trailing",
                    note.replace("\n", "\r\n"), "origin\n01\n" + note.split("\n", 2)[2],
                    "\n".join([lines[0], lines[1], "AAAA", *lines[3:]]))
    for broken in broken_notes:
        with pytest.raises(BadInputError):
            parse_checkpoint_note(broken)
    with pytest.raises(BadInputError):
        parse_note(b"\xff\xfe")


def test_origin_comes_from_config_else_inherits(repo: Path) -> None:
    ledger = Ledger.init(repo)
    signer = make_signer(25)
    ledger.append(signer, "feedback", {"target": "t", "score": 1})
    derived = append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1))
    assert derived.body["origin"].startswith("openledger.local/")
    later = append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1))
    assert later.body["origin"] == derived.body["origin"]  # inherited: one log, one origin
    config = ledger.root / "config.yaml"
    config.write_text(config.read_text() + "checkpoints:\n  origin: example.org/team/ledger\n")
    ledger = Ledger.open(repo)
    configured = append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1))
    assert configured.body["origin"] == "example.org/team/ledger"
    assert log_of(verify_ledger(ledger, workers=1)).newest() is not None
    with pytest.raises(BadInputError, match="origin"):
        append_checkpoint(ledger, signer, verify_ledger(ledger, workers=1), origin="has space")


def test_cli_note_round_trip(inited: Path, tmp_path: Path) -> None:  # noqa: F811
    run(inited, "record", "feedback", "--body", '{"target": "t", "label": "ok"}')
    made = run(inited, "checkpoint", "--format", "note")
    assert made.exit_code == 0, made.output
    parsed = spec_parse(made.stdout)
    origin, size, _ = spec_checkpoint(parsed.text)
    keyid = json.loads(run(inited, "keys", "list", "--format", "json").stdout)["local"][0]["keyid"]
    note_file = tmp_path / "checkpoint.note"
    note_file.write_text(made.stdout)
    assert run(tmp_path, "check-proof", str(note_file), "--key", keyid).exit_code == 0
    assert run(tmp_path, "check-proof", str(note_file), "--key", "ed25519:" + "1" * 64).exit_code == 1
    missing_key = run(tmp_path, "check-proof", str(note_file))
    assert missing_key.exit_code == 2 and "--key" in missing_key.stderr
    assert run(tmp_path, "check-proof", str(note_file), "--key", "ed25519:12").exit_code == 2
    checkpoint_id = json.loads(run(inited, "log", "--kind", "checkpoint", "--format", "json").stdout)[0]["id"]
    shown = run(inited, "checkpoint", "--show", checkpoint_id[:16], "--format", "note")
    assert shown.stdout == made.stdout and size == 2 and origin
    # a record proven against the checkpoint, pinned by the note
    record_id = json.loads(run(inited, "log", "--kind", "feedback", "--format", "json").stdout)[0]["id"]
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(run(inited, "prove", record_id).stdout)
    assert run(tmp_path, "check-proof", str(proof_file), "--checkpoint", str(note_file)).exit_code == 0
    other = tmp_path / "other.note"
    run(inited, "record", "feedback", "--body", '{"target": "u", "label": "ok"}')
    other.write_text(run(inited, "checkpoint", "--format", "note").stdout)
    assert run(tmp_path, "check-proof", str(proof_file), "--checkpoint", str(other)).exit_code == 1

