"""Keys: storage outside the working tree, 0600 files, passphrases, CI keys from the environment."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from openledger import BadInputError, KeyMaterialError, KeyStore
from openledger.store.keys import resolve_keyid, signer_from_seed


def test_generated_key_file_is_private(isolated_environment: Path) -> None:
    store = KeyStore()
    info = store.generate("Ada", "ada@example.org")
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.keys_dir.stat().st_mode) == 0o700
    assert info.path.is_relative_to(isolated_environment)
    assert store.selected_keyid() == info.keyid
    signer = store.load_signer()
    assert signer.keyid == info.keyid and signer.feed.startswith(info.keyid[8:24])


def test_refuses_to_store_keys_inside_a_working_tree(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLEDGER_HOME", str(repo / "keys-here"))
    with pytest.raises(KeyMaterialError, match="inside the working tree"):
        KeyStore().generate("Ada", "ada@example.org")
    assert not (repo / "keys-here" / "keys").exists()


def test_passphrase_round_trip_and_wrong_passphrase() -> None:
    store = KeyStore()
    info = store.generate("Ada", "ada@example.org", passphrase="correct horse")
    assert "seed" not in info.path.read_text()
    assert store.load_signer(passphrase=lambda _: "correct horse").keyid == info.keyid
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        store.load_signer(passphrase=lambda _: "battery staple")
    with pytest.raises(KeyMaterialError, match="protected by a passphrase"):
        store.load_signer()


def test_environment_key_wins_for_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    KeyStore().generate("Ada", "ada@example.org")
    seed = bytes(range(32))
    monkeypatch.setenv("OPENLEDGER_SIGNING_KEY", base64.b64encode(seed).decode())
    assert KeyStore().load_signer().keyid == signer_from_seed(seed).keyid
    monkeypatch.setenv("OPENLEDGER_SIGNING_KEY", "not base64!")
    with pytest.raises(KeyMaterialError, match="not base64"):
        KeyStore().load_signer()


def test_no_key_and_several_keys_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyMaterialError) as caught:
        KeyStore().load_signer()
    assert "keys generate" in caught.value.diagnostics()
    store = KeyStore()
    first = store.generate("Ada", "ada@example.org")
    second = store.generate("Ada", "ada@work.example.org")
    assert store.selected_keyid() == first.keyid  # the first key became the default
    monkeypatch.setenv("OPENLEDGER_KEY", second.keyid[8:20])
    assert store.load_signer().keyid == second.keyid


def test_prefix_resolution() -> None:
    known = ["ed25519:" + "ab" * 32, "ed25519:" + "ac" * 32]
    assert resolve_keyid("abab", known) == known[0]
    assert resolve_keyid("ed25519:acac", known) == known[1]
    with pytest.raises(BadInputError, match="ambiguous"):
        resolve_keyid("a", known)


def test_damaged_key_file_is_a_clear_error() -> None:
    store = KeyStore()
    info = store.generate("Ada", "ada@example.org")
    os.chmod(info.path, 0o600)
    info.path.write_text("{not json")
    with pytest.raises(KeyMaterialError, match="cannot read key file"):
        store.load_signer()
