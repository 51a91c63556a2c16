"""I/O faults are the machine's, not tampering: a full disk or a read-only ledger is one line on stderr and exit 2,
nothing half-written, and the read-only commands work on a read-only ledger (issue 12, item 5).

Real faults, not mocks: a 2 MiB tmpfs filled to the last byte, and a read-only bind mount of `.openledger/`.
Both need mount(2): the suite runs as root in CI (`.ci/run`); elsewhere these tests say why they skip.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openledger import Ledger
from openledger.capture.recorder import Recorder
from openledger.errors import StorageError
from tests.conftest import make_signer

KEY = base64.b64encode(bytes([7]) * 32).decode()


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OPENLEDGER_HOME": str(repo.parent / "home"), "OPENLEDGER_SIGNING_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "openledger_cli", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"needs mount(2), as root: {result.stderr.strip()}")


def new_ledger(repo: Path) -> None:
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for args in (["init"], ["keys", "publish", "--name", "Ada", "--email", "ada@example.org"],
                 ["record", "feedback", "--body", json.dumps({"target": "model:m@1", "label": "kept"})]):
        result = cli(repo, *args)
        assert result.returncode == 0, result.stderr


def one_line_exit_2(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: "), result.stderr


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk))
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_exit_2_in_one_line_and_loses_nothing(small_disk: Path) -> None:
    repo = small_disk / "repo"
    new_ledger(repo)
    before = json.loads(cli(repo, "log", "--format", "json").stdout)
    filler = small_disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True, check=False)  # to ENOSPC
    for _ in range(2):  # the second attempt meets whatever the first left: nothing
        one_line_exit_2(cli(repo, "record", "feedback", "--body", json.dumps({"target": "model:m@1", "label": "x"})))
    # what a training script under OPENLEDGER_STRICT=1 meets: one sentence of OpenLedger's, not a driver's error
    with pytest.raises(StorageError, match=r"^OpenLedger \(mlflow\): could not record: ") as raised:
        Recorder(ledger=Ledger.open(repo), signer=make_signer(7), source="mlflow", strict=True).record(
            "feedback", {"target": "model:m@1", "label": "strict"})
    assert "\n" not in raised.value.diagnostics() and raised.value.exit_code == 2
    filler.unlink()
    assert json.loads(cli(repo, "log", "--format", "json").stdout) == before
    verified = cli(repo, "verify", "--format", "json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["records"] == len(before), verified.stdout
    assert cli(repo, "fsck").returncode == 0
    assert cli(repo, "record", "feedback", "--body", json.dumps({"target": "model:m@1", "label": "after"})
               ).returncode == 0


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    repo = tmp_path / "repo"
    new_ledger(repo)
    ledger = repo / ".openledger"
    subprocess.run(["rm", "-rf", str(ledger / "local")], check=True)  # as in a fresh read-only checkout
    mount("--bind", str(ledger), str(ledger))
    try:
        mount("-o", "remount,ro,bind", str(ledger))
        yield repo
    finally:
        subprocess.run(["umount", str(ledger)], check=True)


def test_read_only_commands_work_on_a_read_only_ledger(read_only: Path) -> None:
    repo = read_only
    assert not os.access(repo / ".openledger", os.W_OK)
    log = cli(repo, "log", "--format", "json")
    assert log.returncode == 0 and [r["body"].get("label") for r in json.loads(log.stdout)] == [None, "kept"], log
    for args, shown in ((["report", "contributors"], "Ada"), (["keys", "list"], "Ada"), (["verify"], "OK"),
                        (["ci", "--no-checkpoint"], "OK"), (["fsck"], "0 damaged")):
        result = cli(repo, *args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (args, result.stderr)
        assert shown in result.stdout + result.stderr, (args, result.stdout)
    refused = cli(repo, "record", "feedback", "--body", json.dumps({"target": "model:m@1", "label": "no"}))
    one_line_exit_2(refused)
    assert "Read-only file system" in refused.stderr
