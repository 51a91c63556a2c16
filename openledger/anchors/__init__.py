"""Anchors: proof from outside the ledger that a checkpoint's Merkle root existed at a time.

An anchor is an ``anchor`` record that links a checkpoint and carries the evidence: an RFC 3161 timestamp
token over the root (:mod:`~openledger.anchors.rfc3161`), or an EVM transaction whose calldata is the root
(:mod:`~openledger.anchors.evm`). :mod:`~openledger.anchors.anchoring` makes and checks them, and answers
"anchored before what time is this record". Each backend needs an optional extra
(``openledger-mlops[tsa]``, ``openledger-mlops[evm]``) and is imported only where it is used: a ledger with
no anchor needs neither, and nothing here touches the network unless asked to.
"""
