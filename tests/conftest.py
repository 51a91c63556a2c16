"""Shared fixtures: real keys, real git repositories, real ledgers in temporary directories."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from openledger import Ledger, LedgerConfig, Signer, signer_from_seed


def pytest_configure(config: pytest.Config) -> None:
    """Give the tests' child processes Ctrl-C back when the suite was started in the background.

    A non-interactive shell starts a background job (``make test &``, ``nohup … &``) with SIGINT ignored, every
    child inherits that, and Python installs no KeyboardInterrupt handler for an ignored SIGINT: the tests that
    interrupt ``openledger attribute`` would see it run to the end. A Python-level handler here is reset to the
    default across exec, so children start as they would from a terminal.
    """
    del config
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class FixedClock:
    """The only thing we mock: time. Each call advances by one second, so order is deterministic."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        current = self.now
        self.now += timedelta(seconds=1)
        return current


def make_signer(number: int, feed: str | None = None) -> Signer:
    return signer_from_seed(bytes([number]) * 32, feed=feed or f"feed-{number}")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own key home outside any working tree and no ambient OpenLedger settings."""
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith("OPENLEDGER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENLEDGER_HOME", str(home))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "author@example.org")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Author")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "author@example.org")
    return home


def run_openledger(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user or a hook runs it: ``python -m openledger_cli`` in a subprocess, in ``cwd``, with ``env``
    (default: this process's environment). The caller reads the exit code."""
    return subprocess.run([sys.executable, "-m", "openledger_cli", *args], cwd=cwd,
                          env=dict(env) if env is not None else None, capture_output=True, text=True, check=False)


def packages_loaded_by(imports: str, packages: set[str]) -> list[str]:
    """Which modules of ``packages`` a fresh interpreter has loaded after ``import <imports>``."""
    code = (f"import sys, {imports}\n"
            f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(packages)!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parent.parent)
    return [name for name in result.stdout.strip().split(",") if name]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def ledger(repo: Path, clock: FixedClock) -> Iterator[Ledger]:
    created = Ledger.init(repo)
    created.clock = clock
    yield created
    created.close()


@pytest.fixture
def endorsed_ledger(repo: Path, clock: FixedClock) -> Iterator[Ledger]:
    root = make_signer(1)
    created = Ledger.init(repo, LedgerConfig(trust_mode="endorsed", trust_roots=(root.keyid,)))
    created.clock = clock
    yield created
    created.close()


def store_newer_version_object(ledger_root: Path, signer: Signer) -> str:
    """Store a validly signed object written by a (hypothetical) newer OpenLedger; returns its id."""
    import base64
    import hashlib
    import json

    from openledger.store.dsse import pae

    payload = b'{"v":2,"kind":"hologram"}'
    newer = "application/vnd.openledger.record.v2+json"
    envelope = json.dumps({"payload": base64.b64encode(payload).decode(), "payloadType": newer,
                           "signatures": [{"keyid": signer.keyid,
                                           "sig": base64.b64encode(signer.sign(pae(newer, payload))).decode()}]})
    digest = hashlib.sha256(payload).hexdigest()
    path = ledger_root / "objects" / digest[:2] / digest[2:]
    path.parent.mkdir(exist_ok=True)
    path.write_text(envelope)
    return "sha256:" + digest


def publish(ledger: Ledger, signer: Signer, name: str) -> str:
    body = {"key": signer.keyid, "name": name, "email": f"{name.lower()}@example.org"}
    return ledger.append(signer, "identity", body).id


ROOT = Path(__file__).resolve().parents[1]


def _demo_module() -> Any:
    spec = importlib.util.spec_from_file_location("openledger_demo", ROOT / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["openledger_demo"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    project = _demo_module().build(tmp_path_factory.mktemp("demo"), show=False)
    yield project


def damage_signature(path: Path) -> None:
    """Flip a bit of a loose object's signature: the payload, and so the record id, stay the same."""
    envelope = json.loads(path.read_bytes())
    signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    signature[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(signature)).decode()
    path.chmod(0o644)
    path.write_bytes(json.dumps(envelope, separators=(",", ":")).encode())
