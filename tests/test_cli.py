"""The CLI through click's CliRunner, and once through the installed entry point as a user runs it."""

from __future__ import annotations

import base64
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from openledger import KeyStore, Ledger
from openledger_cli.main import LAZY_COMMANDS, cli


def run(repo: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    runner = CliRunner()
    old = Path.cwd()
    os.chdir(repo)
    try:
        return runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture
def inited(repo: Path) -> Path:
    assert run(repo, "keys", "generate", "--name", "Ada", "--email", "ada@example.org").exit_code == 0
    result = run(repo, "init")
    assert result.exit_code == 0, result.output
    return repo


def test_init_publishes_identity_and_gitignores_local(inited: Path) -> None:
    root = inited / ".openledger"
    ignored = (root / ".gitignore").read_text().splitlines()
    assert "local/" in ignored and ".tmp-*" in ignored
    assert (root / "config.yaml").exists()
    log = json.loads(run(inited, "log", "--format", "json").stdout)
    assert [r["kind"] for r in log] == ["identity"]
    assert log[0]["body"]["name"] == "Ada"
    assert run(inited, "init").exit_code == 0  # idempotent


def test_record_log_show(inited: Path) -> None:
    created = run(inited, "record", "feedback", "--body", '{"target": "model:iris@1", "label": "mislabelled"}')
    assert created.exit_code == 0, created.output
    record_id = created.stdout.strip()
    body_file = inited / "dataset.json"
    body_file.write_text(json.dumps({"path": "data/iris.csv", "digest": "md5:" + "0" * 32}))
    linked = run(inited, "record", "dataset", "--body", f"@{body_file}", "--link", record_id[:14])
    assert linked.exit_code == 0, linked.output
    records = json.loads(run(inited, "log", "--format", "json").stdout)
    assert [r["kind"] for r in records] == ["identity", "feedback", "dataset"]
    assert set(records[1]) >= {"id", "kind", "actor", "time", "links", "body"}
    assert records[2]["links"] == [record_id]
    only = json.loads(run(inited, "log", "--kind", "dataset", "--format", "json").stdout)
    assert [r["id"] for r in only] == [records[2]["id"]]
    by_actor = json.loads(run(inited, "log", "--actor", records[0]["actor"][8:20], "--format", "json").stdout)
    assert len(by_actor) == 3
    shown = run(inited, "show", record_id[7:19])
    assert shown.exit_code == 0 and "mislabelled" in shown.stdout and "signature valid" in shown.stdout
    assert json.loads(run(inited, "show", record_id, "--format", "json").stdout)["id"] == record_id
    envelope = run(inited, "show", record_id, "--format", "envelope").stdout
    assert json.loads(envelope)["payloadType"] == "application/vnd.openledger.record.v1+json"
    assert "Ada" in run(inited, "log").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["record", "nonsense", "--body", "{}"], "nonsense"),
        (["record", "checkpoint", "--body", "{}"], "checkpoint"),
        (["record", "feedback", "--body", "{not json"], "not valid JSON"),
        (["record", "feedback", "--body", '{"target": 3, "label": "x"}'], "must be string"),
        (["record", "feedback", "--body", "@/nonexistent.json"], "cannot read"),
        (["show", "sha256:ffff"], "no record"),
        (["show", "ab"], "too short"),
        (["verify", "--against", "sha256:1234"], "full checkpoint id"),
    ],
)
def test_bad_input_is_exit_2_without_traceback(inited: Path, args: list[str], message: str) -> None:
    result = run(inited, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.output


def test_malformed_config_and_newer_config(inited: Path) -> None:
    config = inited / ".openledger" / "config.yaml"
    config.write_text("version: 1\ntrust: [unclosed\n")
    result = run(inited, "verify")
    assert result.exit_code == 2 and "config.yaml" in result.stderr and "line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    config.write_text("version: 1\ntrust: {mode: sometimes}\n")
    assert run(inited, "verify").exit_code == 2
    config.write_text("version: 9\n")
    result = run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}')
    assert result.exit_code == 2 and "upgrade" in result.stderr


def test_no_ledger_is_exit_2(tmp_path: Path) -> None:
    result = run(tmp_path, "verify")
    assert result.exit_code == 2 and "openledger init" in result.stderr


def test_verify_exit_codes_and_json(inited: Path) -> None:
    run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}')
    ok = run(inited, "verify", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    objects = sorted((inited / ".openledger" / "objects").glob("*/*"))
    victim = objects[0]
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes().replace(b'"sig":"', b'"sig":"A', 1)[:-6] + b'=="}]}')
    failed = run(inited, "verify", "--format", "json")
    assert failed.exit_code == 1
    problems = json.loads(failed.stdout)["problems"]
    assert problems[0]["record"] == "sha256:" + victim.parent.name + victim.name
    text = run(inited, "verify")
    assert text.exit_code == 1 and victim.parent.name + victim.name in text.stdout


def test_strict_fails_on_unknown_signer(inited: Path, tmp_path: Path) -> None:
    seed = base64.b64encode(bytes(range(32))).decode()
    run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}',
        env={"OPENLEDGER_SIGNING_KEY": seed})
    assert run(inited, "verify").exit_code == 0
    strict = run(inited, "verify", "--strict")
    assert strict.exit_code == 1 and "unknown-key" in strict.stdout


def test_checkpoint_prove_check_proof(inited: Path, tmp_path: Path) -> None:
    record_id = run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}').stdout.strip()
    checkpoint = run(inited, "checkpoint")
    assert checkpoint.exit_code == 0, checkpoint.output
    checkpoint_id = checkpoint.stdout.strip()
    assert run(inited, "verify", "--against", checkpoint_id).exit_code == 0
    proof = run(inited, "prove", record_id)
    assert proof.exit_code == 0, proof.output
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(proof.stdout)
    assert json.loads(proof.stdout)["checkpoint"] == checkpoint_id
    assert run(tmp_path, "check-proof", str(proof_file)).exit_code == 0
    data = json.loads(proof.stdout)
    data["record"] = data["checkpoint"]
    proof_file.write_text(json.dumps(data))
    assert run(tmp_path, "check-proof", str(proof_file)).exit_code == 1
    proof_file.write_text("[]")
    assert run(tmp_path, "check-proof", str(proof_file)).exit_code == 2


def test_keys_commands(inited: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listing = json.loads(run(inited, "keys", "list", "--format", "json").stdout)
    ada = listing["local"][0]["keyid"]
    assert listing["ledger"][0]["trust"] == "trusted"
    exported = json.loads(run(inited, "keys", "export").stdout)
    assert exported["keyid"] == ada and "seed" not in json.dumps(exported)
    secret = run(inited, "keys", "export", "--secret")
    assert secret.exit_code == 0 and "PRIVATE" in secret.stderr
    assert base64.b64decode(secret.stdout.strip()) == KeyStore().load_seed(ada)
    # Bob joins; Ada (made a trust root) endorses him, then revokes him.
    bob_home = tmp_path / "bob-home"
    bob_env = {"OPENLEDGER_HOME": str(bob_home)}
    bob = run(inited, "keys", "generate", "--name", "Bob", "--email", "bob@example.org", env=bob_env)
    bob_id = bob.stdout.strip()
    config = inited / ".openledger" / "config.yaml"
    config.write_text(config.read_text().replace("mode: tofu", "mode: endorsed").replace(
        "roots: []", f"roots: [{ada}]"))
    assert run(inited, "verify", "--strict").exit_code == 1  # Bob is not endorsed yet
    assert run(inited, "keys", "endorse", bob_id[8:20]).exit_code == 0
    assert run(inited, "verify", "--strict").exit_code == 0
    assert run(inited, "keys", "revoke", bob_id[8:20], "--reason", "left the team").exit_code == 0
    run(inited, "record", "feedback", "--body", '{"target": "x", "label": "late"}', env=bob_env)
    late = run(inited, "verify", "--strict")
    assert late.exit_code == 1 and "revoked-key" in late.stdout
    assert "Bob" in run(inited, "keys", "list").stdout


def test_wrong_passphrase_is_exit_2_one_line(repo: Path) -> None:
    env = {"OPENLEDGER_PASSPHRASE": "right"}
    assert run(repo, "keys", "generate", "--name", "Ada", "--email", "a@example.org", "--passphrase",
               env=env).exit_code == 0
    assert run(repo, "init", env=env).exit_code == 0
    result = run(repo, "record", "feedback", "--body", '{"target": "x", "label": "y"}',
                 env={"OPENLEDGER_PASSPHRASE": "wrong"})
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "wrong passphrase" in result.stderr
    assert "Traceback" not in result.output


def test_pack_and_fsck(inited: Path) -> None:
    for i in range(3):
        run(inited, "record", "feedback", "--body", json.dumps({"target": f"t{i}", "label": "x"}))
    assert "Packed 4 records" in run(inited, "pack").stderr
    leftover = inited / ".openledger" / "packs" / ".tmp-999999999-ab"
    leftover.write_text("partial")
    result = run(inited, "fsck", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["removed"] == [str(leftover)]
    assert run(inited, "verify").exit_code == 0


def test_no_private_key_material_under_the_working_tree(inited: Path) -> None:
    run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}')
    run(inited, "checkpoint")
    seed = KeyStore().load_seed(KeyStore().selected_keyid())
    needles = [seed, base64.b64encode(seed), seed.hex().encode()]
    for path in inited.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(needle in data for needle in needles), path


def test_every_command_has_help(inited: Path) -> None:
    for command in ["init", "keys", "keys generate", "keys list", "keys export", "keys endorse", "keys revoke",
                    "keys publish", "record", "log", "show", "verify", "checkpoint", "prove", "check-proof",
                    "pack", "fsck"]:
        result = run(inited, *command.split(), "--help")
        assert result.exit_code == 0 and "Usage:" in result.stdout, command


def test_help_lists_every_command_without_importing_the_lazy_ones() -> None:
    """`openledger --help` shows each command of LAZY_COMMANDS from the table, importing none of them."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from openledger_cli.main import LAZY_COMMANDS, cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.stdout)\n"
        "print('imported:', sorted({m for m, _, _ in LAZY_COMMANDS.values()} & set(sys.modules)))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "imported: []" in output
    listed = {line.split()[0] for line in output.partition("Commands:")[2].splitlines() if line.strip()}
    assert set(LAZY_COMMANDS) | {"init", "keys", "verify", "log"} <= listed


def test_each_lazy_command_loads_the_command_its_table_line_describes(inited: Path) -> None:
    for name, (module, attribute, short_help) in LAZY_COMMANDS.items():
        command = cli.get_command(click.Context(cli), name)
        assert isinstance(command, click.Command), name
        assert command is getattr(importlib.import_module(module), attribute)
        # the table's text stands in for the docstring in `openledger --help`: it must say the same thing
        assert short_help.rstrip(".").split()[:3] == (command.help or "").split()[:3], name
        result = run(inited, name, "--help")
        assert result.exit_code == 0 and "Usage:" in result.stdout, name


def test_installed_entry_point(inited: Path) -> None:
    """As a user runs it: the console script on PATH, in a subprocess."""
    script = shutil.which("openledger", path=str(Path(sys.executable).parent))
    assert script is not None
    version = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert "openledger" in version.stdout
    result = subprocess.run([script, "verify", "--format", "json"], cwd=inited, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and json.loads(result.stdout)["records"] == 1
    missing = subprocess.run([script, "show", "sha256:0000"], cwd=inited, capture_output=True, text=True,
                             check=False)
    assert missing.returncode == 2 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
    assert Ledger.open(inited / ".openledger").config.trust_mode == "tofu"


def _ledger_files(repo: Path) -> list[str]:
    root = repo / ".openledger"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and "local" not in p.relative_to(root).parts)


@pytest.mark.parametrize(
    "args",
    [
        ["record", "nonsense", "--body", "{}"],
        ["record", "feedback", "--body", '{"target": 3}'],
        ["record", "feedback", "--body", "{not json"],
        ["keys", "revoke", "ffff", "--reason", "x"],
    ],
)
def test_bad_input_writes_nothing(inited: Path, args: list[str]) -> None:
    before = _ledger_files(inited)
    assert run(inited, *args).exit_code == 2
    assert _ledger_files(inited) == before


def test_object_that_is_not_json(inited: Path) -> None:
    record_id = run(inited, "record", "feedback", "--body", '{"target": "x", "label": "y"}').stdout.strip()
    path = inited / ".openledger" / "objects" / record_id[7:9] / record_id[9:]
    path.chmod(0o644)
    path.write_text("this is not JSON at all")
    before = _ledger_files(inited)
    result = run(inited, "verify")
    assert result.exit_code == 1  # a corrupt object is tampering or damage, never "bad input"
    assert record_id in result.stdout and "not JSON" in result.stdout
    assert "Traceback" not in result.output
    assert _ledger_files(inited) == before


def test_newer_schema_version_object_is_exit_2(inited: Path) -> None:
    from openledger import signer_from_seed
    from tests.conftest import store_newer_version_object

    signer = signer_from_seed(KeyStore().load_seed(KeyStore().selected_keyid()))
    store_newer_version_object(inited / ".openledger", signer)
    result = run(inited, "verify")
    assert result.exit_code == 2 and "upgrade" in result.stdout


def test_node_proof_verifier_in_docs(inited: Path, tmp_path: Path) -> None:
    """The ~30-line verifier in another language documented in docs/ agrees with `check-proof`."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = Path(__file__).parent.parent / "docs" / "verify-proof.js"
    ids = [run(inited, "record", "feedback", "--body", json.dumps({"target": f"t{i}", "label": "x"})).stdout.strip()
           for i in range(5)]
    run(inited, "checkpoint")
    for record_id in ids:
        proof_file = tmp_path / "proof.json"
        proof_file.write_text(run(inited, "prove", record_id).stdout)
        ok = subprocess.run([node, str(script), str(proof_file)], capture_output=True, text=True, check=False)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        bad = json.loads(proof_file.read_text())
        bad["leaf_index"] = (bad["leaf_index"] + 1) % bad["tree_size"]
        proof_file.write_text(json.dumps(bad))
        rejected = subprocess.run([node, str(script), str(proof_file)], capture_output=True, text=True, check=False)
        assert rejected.returncode == 1, rejected.stdout + rejected.stderr
