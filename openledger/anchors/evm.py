"""EVM anchors: a checkpoint's root written into a transaction's calldata, re-read from the chain to check.

The transaction is the cheapest thing that puts 54 bytes on a chain: a zero-value EIP-1559 transaction
from the anchoring account to itself whose calldata is ``b"openledger:v1:" || root (32 bytes) || tree size
(8 bytes, big-endian)``. It costs about 21,900 gas and needs no contract: a contract would only add
deployment, an address to trust and more gas per anchor, and emit the same bytes. The anchor record keeps
the signed raw transaction, so its hash, chain id, sender and calldata are checked offline
(:func:`check_offline`); :func:`check_online` re-reads it from a node: still in the recorded block (not
reorged away), that block's time, enough confirmations, the same chain.

Which chain is configuration (``anchors: evm:`` profiles in config.yaml), not code: the OpenLedger chain,
a testnet or a private network are all a ``chain_id`` and an RPC URL. Requires the ``evm`` extra
(``pip install 'openledger-mlops[evm]'``, web3.py), imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from openledger.errors import BadInputError, ServiceError
from openledger.store.records import format_time

__all__ = ["CALLDATA_PREFIX", "EvmAnchor", "anchor_calldata", "check_offline", "check_online", "connect",
           "node_chain_id", "send_anchor"]

CALLDATA_PREFIX = b"openledger:v1:"
ENV_EVM_KEY = "OPENLEDGER_EVM_KEY"


def anchor_calldata(root: bytes, size: int) -> bytes:
    return CALLDATA_PREFIX + root + size.to_bytes(8, "big")


def _web3() -> Any:
    try:
        import web3  # noqa: PLC0415 - an optional extra (and a second of import time), loaded where it is used
    except ImportError:
        raise BadInputError("EVM anchors need web3.py", hint="pip install 'openledger-mlops[evm]'") from None
    return web3


def _network_errors() -> tuple[type[BaseException], ...]:
    web3 = _web3()
    import requests  # noqa: PLC0415 - web3's HTTP client

    return (web3.exceptions.Web3Exception, requests.exceptions.RequestException, OSError, ValueError)


def connect(rpc: Any) -> Any:
    """A Web3 client for an RPC URL (or a Web3 object as given: the tests pass an in-process chain)."""
    web3 = _web3()
    if not isinstance(rpc, str):
        return rpc
    if not rpc.startswith(("http://", "https://")):
        raise BadInputError(f"--evm must be an http(s) RPC URL or a chain profile name, got {rpc[:200]!r}")
    return web3.Web3(web3.Web3.HTTPProvider(rpc, request_kwargs={"timeout": 30}))


def node_chain_id(rpc: Any) -> int:
    """The chain id the node answers for."""
    try:
        return int(connect(rpc).eth.chain_id)
    except _network_errors() as exc:
        raise ServiceError(f"the chain node failed: {exc}") from None


@dataclass(frozen=True, slots=True)
class EvmAnchor:
    chain_id: int
    transaction: str  # 0x + 64 hex
    block: int
    block_hash: str
    time: str  # the block's timestamp, RFC 3339
    sender: str  # 0x + 40 lowercase hex
    raw_transaction: str  # 0x + hex of the signed transaction

    def to_body(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "transaction": self.transaction, "block": self.block,
                "block_hash": self.block_hash, "time": self.time, "from": self.sender,
                "raw_transaction": self.raw_transaction}


def _hex(value: Any) -> str:
    text = value.hex() if isinstance(value, (bytes, bytearray)) else str(value)
    return "0x" + text.removeprefix("0x").lower()


def _block_time(timestamp: int) -> str:
    return format_time(datetime.fromtimestamp(int(timestamp), tz=timezone.utc))


def send_anchor(rpc: Any, *, chain_id: int, private_key: str, root: bytes, size: int,
                timeout: float = 120.0) -> EvmAnchor:
    """Send the anchor transaction, wait for its receipt, and describe where it landed."""
    web3 = _web3()
    from eth_account import Account  # noqa: PLC0415 - part of web3.py

    errors = _network_errors()
    client = connect(rpc)
    try:
        account = Account.from_key(private_key)
    except (ValueError, TypeError, errors[0]):
        raise BadInputError(f"{ENV_EVM_KEY} is not an EVM private key (0x + 64 hex digits)") from None
    try:
        node_chain = int(client.eth.chain_id)
        if node_chain != chain_id:
            raise BadInputError(f"the node is chain {node_chain}, not chain {chain_id}: refusing to anchor "
                                "on another chain than the one named")
        data = anchor_calldata(root, size)
        nonce = client.eth.get_transaction_count(account.address, "pending")
        base_fee = int(client.eth.get_block("latest").get("baseFeePerGas", 0))
        priority = 10**9
        transaction = {"type": 2, "chainId": chain_id, "nonce": nonce, "to": account.address, "value": 0,
                       "data": data, "maxPriorityFeePerGas": priority, "maxFeePerGas": 2 * base_fee + priority}
        transaction["gas"] = int(client.eth.estimate_gas({"from": account.address, "to": account.address,
                                                          "value": 0, "data": data}))
        raw = bytes(account.sign_transaction(transaction).raw_transaction)
        sent = client.eth.send_raw_transaction(raw)
        receipt = client.eth.wait_for_transaction_receipt(sent, timeout=timeout)
        if int(receipt["status"]) != 1:
            raise ServiceError(f"the anchor transaction {_hex(sent)} failed on chain {chain_id}")
        block = client.eth.get_block(receipt["blockNumber"])
    except errors as exc:
        raise ServiceError(f"the chain node failed: {exc}") from None
    tx_hash = _hex(web3.Web3.keccak(raw))
    if tx_hash != _hex(sent):
        raise ServiceError("the node reports another transaction hash than the one signed")
    return EvmAnchor(chain_id, tx_hash, int(receipt["blockNumber"]), _hex(receipt["blockHash"]),
                     _block_time(block["timestamp"]), _hex(account.address), _hex(raw))


def check_offline(body: dict[str, Any], root: bytes, size: int) -> str | None:
    """Why a recorded EVM anchor's own transaction does not commit to ``root`` on its chain, or None:
    the hash of the raw transaction, its type, chain id, recipient, sender and calldata."""
    web3 = _web3()
    from eth_account import Account  # noqa: PLC0415
    from eth_account.typed_transactions.typed_transaction import TypedTransaction  # noqa: PLC0415
    from hexbytes import HexBytes  # noqa: PLC0415 - eth-account's byte type

    raw = bytes.fromhex(body["raw_transaction"][2:])
    if _hex(web3.Web3.keccak(raw)) != body["transaction"]:
        return "the recorded transaction hash is not the hash of the recorded transaction"
    if not raw or raw[0] != 2:
        return "the recorded transaction is not an EIP-1559 (type 2) transaction"
    undecodable = (ValueError, TypeError, KeyError, web3.exceptions.Web3Exception)
    try:
        fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        sender = _hex(Account.recover_transaction(raw))
    except undecodable as exc:
        return f"the recorded transaction does not decode: {exc}"
    if int(fields["chainId"]) != body["chain_id"]:
        return f"the transaction was signed for chain {int(fields['chainId'])}, not chain {body['chain_id']}"
    if sender != body["from"]:
        return f"the transaction was signed by {sender}, not {body['from']}"
    if _hex(fields.get("to") or b"") != sender:
        return "the transaction is not sent by the anchoring account to itself"
    if bytes(fields.get("data", b"")) != anchor_calldata(root, size):
        return "the transaction's calldata is not this checkpoint's root and size"
    return None


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What the chain says about a recorded anchor: ``problem`` (an error), ``pending`` (not final yet)."""

    problem: str | None = None
    code: str = "anchor-invalid"
    pending: str | None = None


def check_online(rpc: Any, body: dict[str, Any], *, confirmations: int = 1) -> ChainCheck:
    """Re-read the anchor transaction from a node of its chain (which the caller made sure of)."""
    web3 = _web3()
    client = connect(rpc)
    errors = _network_errors()
    try:
        node_chain = int(client.eth.chain_id)
        if node_chain != body["chain_id"]:
            return ChainCheck(f"the node is chain {node_chain}, the anchor says chain {body['chain_id']}",
                              "anchor-wrong-chain")
        try:
            receipt = client.eth.get_transaction_receipt(body["transaction"])
        except web3.exceptions.TransactionNotFound:
            receipt = None
        if receipt is None:
            return ChainCheck(f"transaction {body['transaction']} is not on chain {node_chain}: reorged away, "
                              "or never mined", "anchor-reorged")
        if _hex(receipt["blockHash"]) != body["block_hash"] or int(receipt["blockNumber"]) != body["block"]:
            return ChainCheck(f"transaction {body['transaction']} is now in block {int(receipt['blockNumber'])}, "
                              f"not the recorded block {body['block']}: the chain reorganised", "anchor-reorged")
        if int(receipt["status"]) != 1:
            return ChainCheck("the anchor transaction failed on the chain")
        transaction = client.eth.get_transaction(body["transaction"])
        if _hex(transaction["input"]) != _hex(anchor_calldata_of(body)):
            return ChainCheck("the transaction on the chain carries other calldata than the recorded one")
        block = client.eth.get_block(body["block"])
        if _block_time(block["timestamp"]) != body["time"]:
            return ChainCheck(f"block {body['block']} is dated {_block_time(block['timestamp'])}, the anchor says "
                              f"{body['time']}")
        depth = int(client.eth.block_number) - body["block"] + 1
    except errors as exc:
        raise ServiceError(f"the chain node failed: {exc}") from None
    if depth < confirmations:
        return ChainCheck(pending=f"{depth} confirmation(s) of the {confirmations} the chain profile asks for")
    return ChainCheck()


def anchor_calldata_of(body: dict[str, Any]) -> bytes:
    """The calldata of the recorded raw transaction (already checked offline)."""
    from eth_account.typed_transactions.typed_transaction import TypedTransaction  # noqa: PLC0415
    from hexbytes import HexBytes  # noqa: PLC0415

    raw = HexBytes(bytes.fromhex(body["raw_transaction"][2:]))
    return bytes(TypedTransaction.from_bytes(raw).as_dict()["data"])
