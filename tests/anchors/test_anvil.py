"""EVM anchors against a real JSON-RPC node: anvil (Foundry's development node, from the npm registry:
`npm install -g @foundry-rs/anvil`, which .ci/run does), started on 127.0.0.1 by the test."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import inited, run  # noqa: F401 - inited is a fixture

web3 = pytest.importorskip("web3", reason="the evm extra (web3.py) is installed by `make` (openledger-mlops[all])")
# anvil's first development account, funded at genesis (a published test key)
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(chain_id: int) -> Iterator[str]:
    binary = shutil.which("anvil")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("anvil is missing: .ci/run installs it (npm install -g @foundry-rs/anvil)")
        pytest.skip("anvil is not installed (npm install -g @foundry-rs/anvil)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
                                "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = web3.Web3(web3.Web3.HTTPProvider(url, request_kwargs={"timeout": 5}))
        deadline = time.monotonic() + 30
        while not client.is_connected():
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"anvil did not start on {url}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def node() -> Iterator[str]:
    yield from _start(4242)


@pytest.fixture
def other_node() -> Iterator[str]:
    yield from _start(4343)


def rpc(url: str, method: str, *params: Any) -> Any:
    client = web3.Web3(web3.Web3.HTTPProvider(url))
    return client.provider.make_request(method, list(params))["result"]


def test_anchor_and_verify_against_anvil(inited: Path, node: str, other_node: str) -> None:  # noqa: F811
    env = {"OPENLEDGER_EVM_KEY": ANVIL_KEY}
    run(inited, "record", "feedback", "--body", '{"target": "t", "label": "ok"}')
    assert run(inited, "checkpoint").exit_code == 0
    made = run(inited, "anchor", "--evm", node, "--chain-id", "4242", env=env)
    assert made.exit_code == 0, made.output
    anchor = json.loads(run(inited, "show", made.stdout.strip(), "--format", "json").stdout)
    assert anchor["body"]["chain_id"] == 4242 and anchor["body"]["method"] == "evm"
    assert run(inited, "verify", "--anchors").exit_code == 0  # offline
    checked = run(inited, "verify", "--anchors", "--evm", node, "--format", "json")
    assert checked.exit_code == 0 and json.loads(checked.stdout)["problems"] == [], checked.output

    # a node of another chain cannot confirm it (a warning), and refuses to be anchored on as chain 4242
    elsewhere = run(inited, "verify", "--anchors", "--evm", other_node, "--format", "json")
    assert [p["code"] for p in json.loads(elsewhere.stdout)["problems"]] == ["anchor-unchecked"]
    wrong_chain = run(inited, "anchor", "--evm", other_node, "--chain-id", "4242", env=env)
    assert wrong_chain.exit_code == 2 and "is chain 4343" in wrong_chain.stderr

    # a profile in config.yaml names the chain: `--evm NAME`
    config = inited / ".openledger" / "config.yaml"
    config.write_text(config.read_text() + f"anchors:\n  evm:\n    - name: dev\n      chain_id: 4242\n"
                                            f"      rpc_url: {node}\n")
    assert run(inited, "verify", "--anchors", "--evm", "dev").exit_code == 0

    # the anchor's block is reorganised away
    snapshot = rpc(node, "evm_snapshot")
    assert run(inited, "checkpoint").exit_code == 0
    reorged = run(inited, "anchor", "--evm", "dev", env=env)
    assert reorged.exit_code == 0, reorged.output
    assert run(inited, "verify", "--anchors", "--evm", node).exit_code == 0
    assert rpc(node, "evm_revert", snapshot) is True
    rpc(node, "anvil_mine", "0x3")
    failed = run(inited, "verify", "--anchors", "--evm", node, "--format", "json")
    assert failed.exit_code == 1
    assert [(p["code"], p["record"]) for p in json.loads(failed.stdout)["problems"]] == [
        ("anchor-reorged", reorged.stdout.strip())]


def test_an_unreachable_node_is_a_service_error(inited: Path) -> None:  # noqa: F811
    assert run(inited, "checkpoint").exit_code == 0
    down = run(inited, "anchor", "--evm", "http://127.0.0.1:9", "--chain-id", "4242",
               env={"OPENLEDGER_EVM_KEY": ANVIL_KEY})
    assert down.exit_code == 2 and "node" in down.stderr
    no_key = run(inited, "anchor", "--evm", "http://127.0.0.1:9", "--chain-id", "4242")
    assert no_key.exit_code == 2 and "OPENLEDGER_EVM_KEY" in no_key.stderr
