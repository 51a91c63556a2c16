"""``openledger witness`` and ``openledger anchor``: cosign checkpoints as a second party, anchor them outside.

Both verify the ledger first and sign nothing unless it is intact. The logic lives in the core
(:mod:`openledger.store.witness`, :mod:`openledger.anchors.anchoring`); this module parses and prints.
"""

from __future__ import annotations

import os

import click

from openledger.errors import BadInputError
from openledger.store.keys import KeyStore
from openledger.store.ledger import Ledger
from openledger.store.verify import VerificationReport
from openledger_cli import render
from openledger_cli._common import FORMAT_TEXT_JSON, load_signer, open_ledger

__all__ = ["anchor", "witness"]

ENV_EVM_KEY = "OPENLEDGER_EVM_KEY"


def _verified(ledger: Ledger) -> VerificationReport:
    from openledger.store.verify import verify_ledger  # noqa: PLC0415 - loads multiprocessing: only when run

    with render.progress_bar("Verifying") as progress:
        return verify_ledger(ledger, progress=progress)


def _full_id(ledger: Ledger, text: str | None) -> str | None:
    """A checkpoint id from a prefix; a full id passes unchanged (it may name a checkpoint that is gone)."""
    if text is None or (text.startswith("sha256:") and len(text) == 71):
        return text
    return ledger.resolve(text)


@click.command("witness")
@click.option("--from", "pinned", metavar="CHECKPOINT", envvar="OPENLEDGER_WITNESS_FROM", show_envvar=True,
              help="The checkpoint this witness last cosigned, kept outside the repository: the newest checkpoint "
                   "must extend it.")
@click.option("--checkpoint", "checkpoint_id", metavar="ID", help="Cosign this checkpoint (default: the newest).")
@click.option("--origin", metavar="ORIGIN", help="Refuse checkpoints of another origin (the log this witness "
              "watches).")
@click.option("--key", metavar="KEYID", help="The witness key (default: your default key, or "
              "OPENLEDGER_SIGNING_KEY).")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def witness(ctx: click.Context, *, pinned: str | None, checkpoint_id: str | None, origin: str | None, key: str | None,
            fmt: str) -> None:
    """Cosign the newest checkpoint if it extends the last one this key cosigned.

    Verifies the ledger, proves that the newest checkpoint's tree extends the tree of every checkpoint this
    witness cosigned before (the --from checkpoint, its state file outside the repository, its cosignature
    records) and appends a cosignature record (a C2SP tlog-cosignature over the checkpoint's signed note).
    Exit 1, nothing signed, when the ledger is damaged or history was rewritten, truncated or forked.
    """
    from openledger.store.witness import witness_ledger  # noqa: PLC0415 - see _verified

    ledger = open_ledger(ctx)
    signer = load_signer(key)
    report = _verified(ledger)
    outcome = witness_ledger(ledger, signer, report, home=KeyStore().home, pinned=_full_id(ledger, pinned or None),
                             checkpoint=_full_id(ledger, checkpoint_id), origin=origin)
    if fmt == "json":
        render.emit_json(outcome.to_json())
        return
    for before in outcome.checked_against:
        render.say(f"extends {before.checkpoint} (size {before.size}, from the {before.source})")
    if outcome.record is None:
        render.say(f"Already cosigned {outcome.checkpoint.id}; nothing to do.")
        return
    render.say(f"Cosigned checkpoint {outcome.checkpoint.id} ({outcome.checkpoint.count} records, origin "
               f"{outcome.checkpoint.origin})")
    click.echo(outcome.record.id)


@click.command("anchor")
@click.option("--tsa", metavar="URL|NAME", help="Timestamp the root at this RFC 3161 timestamp authority (a URL, "
              "or a name under anchors: tsa: in config.yaml).")
@click.option("--evm", metavar="RPC_URL|NAME", help="Write the root into a transaction on this EVM chain (an RPC "
              "URL, or a chain profile under anchors: evm: in config.yaml).")
@click.option("--chain-id", type=click.IntRange(1), help="The chain the --evm node must be (from the profile when "
              "--evm names one).")
@click.option("--checkpoint", "checkpoint_id", metavar="ID", help="Anchor this checkpoint (default: the newest).")
@click.option("--key", metavar="KEYID", help="The key that signs the anchor record.")
@click.option("--timeout", type=click.FloatRange(1), default=60.0, show_default=True,
              help="Seconds to wait for the timestamp authority or the transaction's receipt.")
@click.pass_context
def anchor(ctx: click.Context, *, tsa: str | None, evm: str | None, chain_id: int | None, checkpoint_id: str | None,
           key: str | None, timeout: float) -> None:
    """Anchor a checkpoint outside the ledger and record the evidence; prints the anchor record id.

    \b
    --tsa URL      an RFC 3161 token over the checkpoint's Merkle root; checked offline by
                   `verify --anchors` against the TSA certificate in config.yaml.
    --evm RPC_URL  a transaction carrying the root, signed by the account in OPENLEDGER_EVM_KEY;
                   `verify --anchors --evm RPC_URL` re-reads it from the chain.
    """
    from openledger.anchors.anchoring import anchor_on_chain, anchor_with_tsa  # noqa: PLC0415 - optional extras
    from openledger.anchors.profiles import AnchorProfiles  # noqa: PLC0415

    if bool(tsa) == bool(evm):
        raise click.UsageError("give exactly one of --tsa or --evm")
    ledger = open_ledger(ctx)
    profiles = AnchorProfiles.from_config(ledger.config.anchors)
    signer = load_signer(key)
    checkpoint = _full_id(ledger, checkpoint_id)
    if tsa:
        named = profiles.tsa_named(tsa)
        url = named.url if named is not None and named.url else tsa
        record, check = anchor_with_tsa(ledger, signer, _verified(ledger), url, checkpoint=checkpoint,
                                        timeout=timeout)
        render.say(f"Timestamped checkpoint {record.body['checkpoint']} at {record.body['time']} ({url})")
        if check.problem:
            render.say(f"{check.problem}; `verify --anchors` fails until the TSA's root certificate is configured "
                       "under anchors: tsa: in config.yaml", label="warning:")
        click.echo(record.id)
        return
    assert evm is not None
    rpc: str = evm
    if not evm.startswith(("http://", "https://")):
        profile = profiles.chain(evm)
        if profile.rpc_url is None:
            raise BadInputError(f"the chain profile {evm} has no rpc_url: give the RPC URL with --evm")
        rpc, chain_id = profile.rpc_url, chain_id or profile.chain_id
    if chain_id is None:
        raise click.UsageError("--evm RPC_URL needs --chain-id (the chain the node must be)")
    private_key = os.environ.get(ENV_EVM_KEY)
    if not private_key:
        raise BadInputError(f"set {ENV_EVM_KEY} to the private key of the account that pays for the anchor")
    record = anchor_on_chain(ledger, signer, _verified(ledger), rpc, chain_id=chain_id, private_key=private_key,
                             checkpoint=checkpoint, timeout=timeout)
    body = record.body
    render.say(f"Anchored checkpoint {body['checkpoint']} on chain {body['chain_id']}: transaction "
               f"{body['transaction']} in block {body['block']} ({body['time']})")
    click.echo(record.id)
