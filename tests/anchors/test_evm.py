"""EVM anchors on an in-process chain (web3's tester backend, py-evm): anchored, re-read, and every way
an anchor can be wrong is caught: another root, another chain id, a reorged-away transaction."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from openledger import BadInputError, Ledger, verify_ledger
from openledger.anchors.anchoring import AnchorIndex, anchor_on_chain, check_anchors
from openledger.anchors.evm import anchor_calldata, check_offline
from openledger.store.checkpoint import append_checkpoint
from tests.anchors.test_rfc3161 import configure
from tests.conftest import make_signer

web3 = pytest.importorskip("web3", reason="the evm extra (web3.py) is installed by `make` (openledger-mlops[all])")
SIGNER = make_signer(61, feed="ci")
ACCOUNT_KEY = "0x" + "4f" * 32


@pytest.fixture
def chain() -> Any:
    """A fresh in-process chain with the anchoring account funded."""
    from eth_account import Account

    client = web3.Web3(web3.EthereumTesterProvider())
    funded = client.eth.send_transaction({"from": client.eth.accounts[0], "to": Account.from_key(ACCOUNT_KEY).address,
                                          "value": 10**18})
    client.eth.wait_for_transaction_receipt(funded)
    return client


def problems(ledger: Ledger, rpc: Any = None) -> list[tuple[str, str, str | None]]:
    report = verify_ledger(ledger, workers=1)
    return [(p.severity, p.code, p.record) for p in check_anchors(ledger, report, evm_rpc=rpc)]


def checkpointed(ledger: Ledger, label: str = "t") -> str:
    for i in range(3):
        ledger.append(SIGNER, "feedback", {"target": f"{label}{i}", "score": i})
    return append_checkpoint(ledger, SIGNER, verify_ledger(ledger, workers=1)).id


def test_an_anchor_is_recorded_and_reread(ledger: Ledger, chain: Any) -> None:
    postdated = ledger.append(SIGNER, "feedback", {"target": "future", "score": 1},
                              time=datetime(2099, 1, 1, tzinfo=timezone.utc)).id
    checkpoint = checkpointed(ledger)
    anchor = anchor_on_chain(ledger, SIGNER, verify_ledger(ledger, workers=1), chain, chain_id=chain.eth.chain_id,
                             private_key=ACCOUNT_KEY)
    body = anchor.body
    assert body["checkpoint"] == checkpoint and body["chain_id"] == chain.eth.chain_id
    transaction = chain.eth.get_transaction(body["transaction"])
    assert bytes(transaction["input"]) == anchor_calldata(bytes.fromhex(body["root"][7:]), body["size"])
    assert transaction["to"] == transaction["from"]
    assert problems(ledger) == []  # offline: the transaction itself commits to the root; time not proven
    # with the chain: confirmed, and the postdated record is flagged against the block's time
    assert problems(ledger, chain) == [("warning", "time-after-anchor", postdated)]
    bound = AnchorIndex.load(ledger).anchored_before(postdated)
    assert bound is not None and (bound.method, bound.time, bound.anchor) == ("evm", body["time"], anchor.id)


def test_an_anchor_over_the_wrong_root_fails(ledger: Ledger, chain: Any) -> None:
    first = checkpointed(ledger, "a")
    second = checkpointed(ledger, "b")
    report = verify_ledger(ledger, workers=1)
    honest = anchor_on_chain(ledger, SIGNER, report, chain, chain_id=chain.eth.chain_id, private_key=ACCOUNT_KEY,
                             checkpoint=first)
    target = report.summaries[second].body
    forged = ledger.append(SIGNER, "anchor", dict(honest.body, checkpoint=second, root=target["root"],
                                                  size=target["count"]), [second])
    assert problems(ledger) == [("error", "anchor-invalid", forged.id)]
    assert problems(ledger, chain) == [("error", "anchor-invalid", forged.id)]


def test_a_transaction_on_another_chain_id_fails(ledger: Ledger, chain: Any) -> None:
    checkpointed(ledger)
    report = verify_ledger(ledger, workers=1)
    with pytest.raises(BadInputError, match="not chain 1"):
        anchor_on_chain(ledger, SIGNER, report, chain, chain_id=1, private_key=ACCOUNT_KEY)
    honest = anchor_on_chain(ledger, SIGNER, report, chain, chain_id=chain.eth.chain_id, private_key=ACCOUNT_KEY)
    # a record claiming chain 1 for a transaction signed for the tester's chain
    relabelled = ledger.append(SIGNER, "anchor", dict(honest.body, chain_id=1), honest.links)
    body = dict(relabelled.body)
    assert "signed for chain" in str(check_offline(body, bytes.fromhex(body["root"][7:]), body["size"]))
    assert problems(ledger) == [("error", "anchor-invalid", relabelled.id)]
    assert problems(ledger, chain) == [("error", "anchor-invalid", relabelled.id)]
    # (a node of another chain id: tests/anchors/test_anvil.py, the tester's chain id is fixed)


def test_a_reorged_away_transaction_fails(ledger: Ledger, chain: Any) -> None:
    checkpointed(ledger)
    snapshot = chain.testing.snapshot()
    anchor = anchor_on_chain(ledger, SIGNER, verify_ledger(ledger, workers=1), chain, chain_id=chain.eth.chain_id,
                             private_key=ACCOUNT_KEY)
    assert problems(ledger, chain) == []
    chain.testing.revert(snapshot)  # the chain forgets the block the anchor was in
    chain.testing.mine(3)
    assert problems(ledger, chain) == [("error", "anchor-reorged", anchor.id)]
    assert problems(ledger) == []  # offline the transaction still commits to the root: only the chain can tell


def test_confirmations_come_from_the_chain_profile(ledger: Ledger, chain: Any) -> None:
    ledger = configure(ledger.root, evm=[{"name": "tester", "chain_id": chain.eth.chain_id, "confirmations": 3}])
    checkpointed(ledger)
    anchor = anchor_on_chain(ledger, SIGNER, verify_ledger(ledger, workers=1), chain, chain_id=chain.eth.chain_id,
                             private_key=ACCOUNT_KEY)
    assert problems(ledger, chain) == [("warning", "anchor-pending", anchor.id)]
    chain.testing.mine(2)
    assert problems(ledger, chain) == []


def test_bad_keys_and_missing_extras_are_bad_input(ledger: Ledger, chain: Any) -> None:
    checkpointed(ledger)
    with pytest.raises(BadInputError, match="private key"):
        anchor_on_chain(ledger, SIGNER, verify_ledger(ledger, workers=1), chain, chain_id=chain.eth.chain_id,
                        private_key="not a key")
    with pytest.raises(BadInputError, match="RPC URL"):
        anchor_on_chain(ledger, SIGNER, verify_ledger(ledger, workers=1), "ftp://x", chain_id=1,
                        private_key=ACCOUNT_KEY)


def test_garbage_transactions_are_reported(ledger: Ledger, chain: Any) -> None:
    checkpoint = checkpointed(ledger)
    honest = anchor_on_chain(ledger, SIGNER, verify_ledger(ledger, workers=1), chain, chain_id=chain.eth.chain_id,
                             private_key=ACCOUNT_KEY)
    raw = honest.body["raw_transaction"]
    forged = [ledger.append(SIGNER, "anchor", dict(honest.body, raw_transaction=bad), [checkpoint]).id
              for bad in ("0x02", "0x" + "ff" * 40, raw[:-2] + ("00" if raw[-2:] != "00" else "01"), "0x" + raw[4:])]
    found = {record: code for _, code, record in problems(ledger, chain)}
    assert set(forged) == set(found) and all(code == "anchor-invalid" for code in found.values())
