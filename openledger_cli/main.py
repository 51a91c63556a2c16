"""``openledger``: verify, inspect and extend the contribution ledger of a repository.

Exit codes are a contract for CI: 0 success; 1 verification or policy failure (tampering, untrusted signer
under --strict); 2 usage or bad input. Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import sys
from collections import Counter
from collections.abc import Mapping
from importlib import import_module
from pathlib import Path
from typing import Any

import click

from openledger import __version__
from openledger.capture.manual import DEDICATED_KINDS, record_by_hand
from openledger.capture.recorder import Recorder
from openledger.config import LedgerConfig
from openledger.errors import BadInputError, LedgerNotFoundError, OpenLedgerError
from openledger.identity.identities import endorse_identity, list_identities, publish_identity, revoke_key
from openledger.store.canonical import tag_nonfinite
from openledger.store.keys import ENV_PASSPHRASE, ENV_SIGNING_KEY, KeyStore, resolve_keyid, short_keyid
from openledger.store.ledger import LEDGER_DIR, Ledger
from openledger.store.records import KINDS, Record, format_time
from openledger_cli import render
from openledger_cli._common import FORMAT_TEXT_JSON, fail, load_signer, mlflow_adapter, open_ledger, passphrase_source

# Commands that live in a module of their own, imported only when they run: `dvc record-stage` runs on
# every `dvc repro` and must not pay for report rendering or MLflow lookups. name -> (module, attribute,
# the short help `openledger --help` shows without importing the module). Register a command with one line
# here, in alphabetical order; define it in its module with a plain `@click.command()` / `@click.group()`.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "anchor": ("openledger_cli.anchors", "anchor", "Anchor a checkpoint outside the ledger (RFC 3161, EVM chain)."),
    "attribute": ("openledger_cli.attribute", "attribute", "Value each data contributor by re-running without them."),
    "ci": ("openledger_cli.ci", "ci", "Everything a pipeline checks, in one step."),
    "dvc": ("openledger_cli.dvc", "dvc", "Record DVC pipelines and dataset versions as you run DVC."),
    "export": ("openledger_cli.export", "export", "Provenance in standard formats, for other tools."),
    "feedback": ("openledger_cli.review", "feedback", "Record feedback on TARGET (same TARGET forms as `review`)."),
    "gate": ("openledger_cli.review", "gate", "Check the review policy for a model version, run or dataset."),
    "reconcile": ("openledger_cli.reconcile", "reconcile_command", "List what does not fit with MLflow, DVC, git."),
    "report": ("openledger_cli.report", "report", "Provenance of a model version, and credit per contributor."),
    "review": ("openledger_cli.review", "review", "Sign a review of a model version, run, dataset or record."),
    "witness": ("openledger_cli.anchors", "witness", "Cosign the newest checkpoint if it extends what you cosigned."),
}


class LedgerGroup(click.Group):
    """The root group: maps OpenLedger's errors onto the exit-code contract (anything else is a bug and keeps
    its traceback), and imports each command of ``lazy_commands`` only when it is asked for by name."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, tuple[str, str, str]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpenLedgerError as exc:
            # escaped: a message may hold brackets (pip install 'openledger-mlops[export]') that rich reads as markup
            render.say(exc.diagnostics(), label="error:")
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            raise
        except OSError as exc:  # a full disk, a read-only or vanished directory: the machine's fault, not tampering
            where = f": {exc.filename}" if exc.filename else ""
            render.say(f"{exc.strerror or exc}{where} (nothing half-written: records are written whole or not at "
                       "all)", label="error:")
            ctx.exit(2)
        except sqlite3.Error as exc:  # the index is a cache: rebuildable, never the ledger itself
            render.say(f"the index cache .openledger/local/index.sqlite failed: {exc} (free disk space, or "
                       "`openledger fsck` rebuilds it)", label="error:")
            ctx.exit(2)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            module, attribute, _ = self.lazy_commands[cmd_name]
            command = getattr(import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"LAZY_COMMANDS[{cmd_name!r}]: {module}.{attribute} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with the short help of lazy commands from the table, so `--help` imports none."""
        names = [name for name in self.list_commands(ctx)
                 if name in self.lazy_commands or not self.commands[name].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            # a stand-in command with the table's text: the same shortening as click's own listing
            command = (click.Command(name, help=self.lazy_commands[name][2]) if name in self.lazy_commands
                       else self.commands[name])
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LedgerGroup, lazy_commands=LAZY_COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ledger", "ledger_path", metavar="DIR", envvar="OPENLEDGER_DIR",
              help=f"The {LEDGER_DIR} directory (default: the nearest one above the current directory).")
@click.version_option(__version__, prog_name="openledger")
@click.pass_context
def cli(ctx: click.Context, ledger_path: str | None) -> None:
    """OpenLedger: a signed, append-only record of who contributed what to your ML work.

    \b
    Start:   openledger keys generate --name "Ada" --email ada@example.org
             openledger init
    Check:   openledger verify            (exit 0 ok, 1 tampering/policy, 2 bad input)
    Inspect: openledger log, openledger show ID
    """
    ctx.ensure_object(dict)
    ctx.obj["ledger_path"] = ledger_path


# -- init ------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--trust-root", "roots", multiple=True, metavar="KEYID",
              help="A key trusted to endorse others (repeatable); implies --mode endorsed.")
@click.option("--mode", type=click.Choice(["tofu", "endorsed"]), default=None,
              help="tofu: trust any self-declared key; endorsed: only trust roots and keys they endorsed.")
@click.option("--durability", type=click.Choice(["process", "fsync"]), default="process", show_default=True,
              help="fsync also survives power loss, at a large cost per append.")
def init(directory: Path, roots: tuple[str, ...], mode: str | None, durability: str) -> None:
    """Create .openledger/ in DIRECTORY (default: here) and publish your identity if you have a key."""
    store = KeyStore()
    known = [info.keyid for info in store.list()]
    full_roots = tuple(r if len(r) == 72 else resolve_keyid(r, known) for r in roots)
    config = LedgerConfig(trust_mode=mode or ("endorsed" if full_roots else "tofu"), trust_roots=full_roots,
                          durability=durability)
    existed = (directory / LEDGER_DIR / "config.yaml").exists()
    ledger = Ledger.init(directory.absolute(), config)
    if existed:
        render.say(f"{ledger.root} already exists; left unchanged.")
        return
    render.say(f"Created {ledger.root} (trust mode {config.trust_mode}).")
    if store.list():
        try:
            published = _publish(ledger, None)
        except OpenLedgerError as exc:
            render.say(f"could not publish your identity: {exc.diagnostics()}", label="warning:")
            published = None
        if published:
            render.say(f"Published your identity: {published.id}")
    elif os.environ.get(ENV_SIGNING_KEY):
        render.say("Publish the CI key's identity with `openledger keys publish --name NAME --email EMAIL`.")
    else:
        render.say("Next: openledger keys generate --name NAME --email EMAIL")
    render.say(f"Commit {LEDGER_DIR}/ with your repository.")


def _publish(ledger: Ledger, key: str | None, name: str | None = None, email: str | None = None) -> Record | None:
    """Publish the identity of ``key`` (default: yours), named as given or as the key store remembers it."""
    signer = load_signer(key)
    info = next((i for i in KeyStore().list() if i.keyid == signer.keyid), None)
    return publish_identity(ledger, signer, name=name or (info.name if info else None),
                            email=email or (info.email if info else None))


# -- keys ------------------------------------------------------------------------------------------------
@cli.group()
def keys() -> None:
    """Generate, list, publish, endorse and revoke signing keys.

    Private keys live outside any working tree (the user config directory, or OPENLEDGER_HOME), mode 0600.
    In CI, set OPENLEDGER_SIGNING_KEY to a base64 seed (`openledger keys export --secret`).
    """


@keys.command("generate")
@click.option("--name", required=True, help="Your name, as contributors will see it.")
@click.option("--email", required=True, help="Your email address.")
@click.option("--passphrase", is_flag=True, help="Encrypt the key with a passphrase (prompted, or "
              f"{ENV_PASSPHRASE}).")
@click.pass_context
def keys_generate(ctx: click.Context, name: str, email: str, passphrase: bool) -> None:
    """Create a signing key and, inside a ledger, publish its identity record."""
    secret = None
    if passphrase:
        secret = os.environ.get(ENV_PASSPHRASE)
        if secret is None:
            if not sys.stdin.isatty():
                fail(f"--passphrase needs a terminal or {ENV_PASSPHRASE}")
            secret = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True)
        if not secret:
            fail("the passphrase is empty")
    store = KeyStore()
    info = store.generate(name, email, secret)
    render.say(f"Generated {info.keyid}")
    render.say(f"  stored in {info.path} (mode 0600)")
    click.echo(info.keyid)
    try:
        ledger = open_ledger(ctx)
    except LedgerNotFoundError:  # a broken config.yaml is an error, not "no ledger"
        render.say("No ledger here: run `openledger init` in your repository to publish this identity.")
        return
    published = _publish(ledger, info.keyid)
    if published:
        render.say(f"Published identity record {published.id}")


@keys.command("publish")
@click.option("--key", metavar="KEYID", help="The key to publish (default: your default key).")
@click.option("--name", help="Name for a key that has none stored (a CI key from OPENLEDGER_SIGNING_KEY).")
@click.option("--email", help="Email for a key that has none stored.")
@click.pass_context
def keys_publish(ctx: click.Context, key: str | None, name: str | None, email: str | None) -> None:
    """Append the identity record of your key to this ledger (done by `keys generate` and `init`)."""
    published = _publish(open_ledger(ctx), key, name, email)
    render.say(f"Published identity record {published.id}" if published else "Your identity is already published.")


@keys.command("list")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def keys_list(ctx: click.Context, fmt: str) -> None:
    """List your keys on this machine and, inside a ledger, every identity it knows."""
    store = KeyStore()
    local = store.list()
    default = store.default_keyid()
    try:
        ledger: Ledger | None = open_ledger(ctx)
    except LedgerNotFoundError:  # outside a repository: only the keys on this machine
        ledger = None
    identities = list_identities(ledger, now=format_time(ledger.clock())) if ledger is not None else []
    if fmt == "json":
        render.emit_json({"local": [dict(i.to_json(), default=i.keyid == default) for i in local],
                          "ledger": [row.to_json() for row in identities]})
        return
    from rich.table import Table  # noqa: PLC0415 - tables only for this text output, not every command

    table = Table(title="Keys on this machine", show_edge=False, header_style="bold")
    for column in ("key id", "name", "email", "passphrase", "default"):
        table.add_column(column)
    for info in local:
        table.add_row(short_keyid(info.keyid), render.cell(info.name), render.cell(info.email),
                      "yes" if info.encrypted else "no", "*" if info.keyid == default else "")
    render.stdout.print(table)
    if ledger is not None:
        table = Table(title="Identities in this ledger", show_edge=False, header_style="bold")
        for column in ("key id", "name", "email", "trust", "endorsed by"):
            table.add_column(column)
        for row in identities:
            table.add_row(short_keyid(row.keyid), render.cell(row.name), render.cell(row.email),
                          "root" if row.root else row.trust, ", ".join(short_keyid(k) for k in row.endorsed_by))
        render.stdout.print(table)


@keys.command("export")
@click.argument("key", required=False, metavar="[KEYID]")
@click.option("--secret", is_flag=True, help="Print the private seed (base64) for a CI secret instead.")
def keys_export(key: str | None, secret: bool) -> None:
    """Print a key's public identity (JSON), or with --secret its private seed for OPENLEDGER_SIGNING_KEY."""
    store = KeyStore()
    info = store.find(key) if key else store.find(store.selected_keyid())
    if secret:
        seed = store.load_seed(info.keyid, passphrase_source())
        render.say("This is your PRIVATE key: store it only in a CI secret, never in a file in the repository.")
        click.echo(base64.b64encode(seed).decode())
        return
    render.emit_json({"keyid": info.keyid, "name": info.name, "email": info.email,
                      "public_key": info.keyid.partition(":")[2]})


@keys.command("endorse")
@click.argument("keyid")
@click.option("--name", help="Name to vouch for (default: the name the key declared).")
@click.option("--email", help="Email to vouch for (default: the email the key declared).")
@click.pass_context
def keys_endorse(ctx: click.Context, keyid: str, name: str | None, email: str | None) -> None:
    """As a trust root, vouch that KEYID belongs to the person it names."""
    endorsement = endorse_identity(open_ledger(ctx), load_signer(), keyid, name=name, email=email)
    if endorsement.git:  # what is endorsed is what credit is matched by: say so
        render.say(f"also vouching for its git identities: {', '.join(endorsement.git)}")
    if not endorsement.by_trust_root:
        render.say("your key is not a trust root in config.yaml; "
                   "this endorsement will not count in endorsed mode.", label="warning:")
    click.echo(endorsement.record.id)


@keys.command("revoke")
@click.argument("keyid")
@click.option("--reason", required=True, help="Why (lost, compromised, left the team…).")
@click.option("--compromised-since", metavar="TIME",
              help="RFC 3339 UTC time from which records by the key are not trusted (default: now).")
@click.pass_context
def keys_revoke(ctx: click.Context, keyid: str, reason: str, compromised_since: str | None) -> None:
    """Revoke KEYID (your own key, or any key if you are a trust root)."""
    revocation = revoke_key(open_ledger(ctx), load_signer(), keyid, reason=reason,
                            compromised_since=compromised_since)
    if not revocation.counts:
        render.say("you are neither the key's owner nor a trust root in config.yaml; this revocation will not count.",
                   label="warning:")
    click.echo(revocation.record.id)


# -- records ---------------------------------------------------------------------------------------------
def _read_body(text: str) -> Any:
    source = "--body"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text("utf-8") if source != "-" else sys.stdin.read()
        except OSError as exc:
            raise BadInputError(f"cannot read {source}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInputError(f"{source} is not valid JSON: {exc}") from None


@cli.command()
@click.argument("kind", type=click.Choice([k for k in KINDS if k not in DEDICATED_KINDS]))
@click.option("--body", "body_text", required=True, metavar="JSON|@FILE",
              help="The record body as JSON, or @file (@- for stdin); checked against the kind's schema.")
@click.option("--link", "links", multiple=True, metavar="ID",
              help="A record id (prefixes resolve) or artifact digest this record builds on (repeatable).")
@click.pass_context
def record(ctx: click.Context, kind: str, body_text: str, links: tuple[str, ...]) -> None:
    """Sign a record by hand, for contributions no adapter captures.

    \b
    Example:
      openledger record feedback --body '{"target": "model:iris@3", "label": "mislabelled", "comment": "row 17"}'
    """
    record = record_by_hand(open_ledger(ctx), load_signer(), kind, _read_body(body_text), links)
    click.echo(record.id)


@cli.command()
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only records of this kind.")
@click.option("--actor", metavar="KEYID", help="Only records signed by this key (prefix).")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def log(ctx: click.Context, kind: str | None, actor: str | None, fmt: str) -> None:
    """List records, oldest first."""
    ledger = open_ledger(ctx, reports_damage=True)
    trust = ledger.trust()
    if actor:
        actor = resolve_keyid(actor, ledger.actors())
    damaged: list[tuple[str, str]] = []
    records = list(ledger.select(kind=kind, actor=actor, damaged=damaged))
    if fmt == "json":
        render.emit_json([r.to_json() for r in records])
    else:
        render.stdout.print(render.records_table(records, trust))
    if damaged:
        for where, problem in damaged:
            render.say(f"{where}: {problem}", label="damaged:")
        render.say(f"{len(damaged)} damaged object(s) left out: run `openledger verify`.")
        ctx.exit(1)


@cli.command()
@click.argument("record_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "envelope"]), default="text",
              show_default=True, help="envelope: the stored DSSE envelope bytes.")
@click.pass_context
def show(ctx: click.Context, record_id: str, fmt: str) -> None:
    """Show one record (its signature and hash are checked first)."""
    ledger = open_ledger(ctx)
    found = ledger.get(ledger.resolve(record_id))
    if fmt == "envelope":
        sys.stdout.write(found.envelope.decode() + "\n")
    elif fmt == "json":
        render.emit_json(found.to_json())
    else:
        trust = ledger.trust()
        status = trust.status(found.actor, found.time) or "trusted"
        render.line((found.id, "bold"), f"  {found.kind}  (signature valid, signer {status})")
        render.line(f"by    {trust.describe(found.actor)}  {found.actor}")
        render.line(f"time  {found.time}   feed {found.feed} #{found.seq}")
        for link in found.links:
            render.line(f"link  {link}")
        # ASCII JSON: a control character in the body is printed as its \u escape, never sent to the terminal
        for text in json.dumps(tag_nonfinite(dict(found.body)), indent=2, ensure_ascii=True).splitlines():
            render.line(text)
        from openledger.credit.contributions import reviews_and_feedback_on  # noqa: PLC0415 - only for the text view

        responses = reviews_and_feedback_on(ledger, found.id)
        if responses:
            render.line("Reviews and feedback on this record:")
            render.stdout.print(render.records_table(responses, trust))


# -- verification ----------------------------------------------------------------------------------------
@cli.command()
@click.option("--strict", is_flag=True, help="Also fail (exit 1) on records by unknown, unendorsed or revoked keys.")
@click.option("--against", metavar="CHECKPOINT",
              help="A checkpoint id kept outside the repository: fail if history was rewritten or truncated.")
@click.option("--since", metavar="CHECKPOINT",
              help="Incremental: trust this checkpoint (signed by a trusted key) for the records it covers: their "
                   "bytes and its Merkle root are checked, their signatures not again. Implies --against.")
@click.option("--witnesses", type=click.IntRange(0), metavar="N",
              help="Require N cosignatures by distinct trusted witness keys on the newest checkpoint.")
@click.option("--witness", "witness_keys", multiple=True, metavar="KEYID",
              help="A witness key whose cosignatures count (repeatable; default: checkpoints: witnesses: in "
                   "config.yaml, else any trusted key).")
@click.option("--anchors", is_flag=True, help="Check every anchor offline, and flag covered records that claim "
              "a time after their anchor.")
@click.option("--evm", metavar="RPC_URL|NAME", help="With --anchors: re-read EVM anchors from this chain node.")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, help="Worker processes (default: all cores).")
@click.pass_context
def verify(ctx: click.Context, *, strict: bool, against: str | None, since: str | None, witnesses: int | None,
           witness_keys: tuple[str, ...], anchors: bool, evm: str | None, fmt: str, jobs: int | None) -> None:
    """Check every record's hash and signature, each feed's continuity, every checkpoint and every signer.

    Exit 0 when the ledger is intact; 1 when anything was tampered with (or, with --strict, a signer is
    not trusted); 2 when the ledger cannot be read as input (e.g. written by a newer OpenLedger).
    """
    from openledger.store.verify import verify_ledger  # noqa: PLC0415 - loads multiprocessing: verify only

    ledger = open_ledger(ctx, reports_damage=True)
    with render.progress_bar("Verifying") as progress:
        report = verify_ledger(ledger, against=against, since=since, workers=jobs, progress=progress)
    if since and report.since is None:
        render.say("Verified in full: the --since checkpoint is missing, or its signer is not trusted.")
    if witnesses is not None or witness_keys:
        from openledger.store.witness import check_witnesses  # noqa: PLC0415 - only for this option

        keys = [resolve_keyid(key, report.trust.identities) if len(key) != 72 else key for key in witness_keys]
        report = report.with_problems(check_witnesses(ledger, report, 1 if witnesses is None else witnesses, keys))
    if anchors or evm:
        from openledger.anchors.anchoring import check_anchors  # noqa: PLC0415 - optional extras

        report = report.with_problems(check_anchors(ledger, report, evm_rpc=evm))
    code = report.exit_code(strict=strict)
    if fmt == "json":
        render.emit_json(report.to_json(strict=strict))
    else:
        _print_verification(report, strict)
    ctx.exit(code)


def _print_verification(report: Any, strict: bool) -> None:
    for problem in report.problems[:200]:
        colour = {"error": "red", "warning": "yellow", "unsupported": "magenta"}[problem.severity]
        where = problem.record or problem.location or ""
        render.line((f"{problem.severity:<7}", colour), f" {problem.code:<26} {where}  {problem.message}")
    if len(report.problems) > 200:
        counts = Counter(p.code for p in report.problems[200:])
        render.line(f"… and {len(report.problems) - 200} more: "
                    + ", ".join(f"{n} {c}" for c, n in counts.most_common()))
    summary = (f"{report.records} records in {report.feeds} feeds, {report.checkpoints} checkpoints; "
               f"{len(report.errors)} errors, {len(report.warnings)} warnings")
    code = report.exit_code(strict=strict)
    verdict = {0: ("OK", "green"), 1: ("FAILED", "red"), 2: ("CANNOT VERIFY", "magenta")}[code]
    render.line(verdict, f": {summary}" + (" (strict)" if strict else ""))
    if code == 0 and report.warnings:
        render.say("Warnings do not fail without --strict.")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["id", "note"]), default="id", show_default=True,
              help="note: the checkpoint as a C2SP tlog-checkpoint signed note, with its witnesses' cosignatures.")
@click.option("--show", "show_id", metavar="ID", help="Print this existing checkpoint instead of signing one.")
@click.option("--extends", metavar="ID", help="The checkpoint to extend (default: the newest you signed, else "
              "the newest).")
@click.pass_context
def checkpoint(ctx: click.Context, fmt: str, show_id: str | None, extends: str | None) -> None:
    """Verify the ledger, then sign a checkpoint over all of it; prints the checkpoint id.

    Keep the id outside the repository (CI variable, release note) and later run
    `openledger verify --against ID` to detect rewritten or truncated history.
    """
    from openledger.store.checkpoint import append_checkpoint  # noqa: PLC0415 - see `verify`
    from openledger.store.verify import verify_ledger  # noqa: PLC0415
    from openledger.store.witness import export_note  # noqa: PLC0415

    ledger = open_ledger(ctx)
    if show_id is None:
        with render.progress_bar("Verifying") as progress:
            report = verify_ledger(ledger, progress=progress)
        made = append_checkpoint(ledger, load_signer(), report, extends=ledger.resolve(extends) if extends else None)
        render.say(f"Checkpoint over {made.body['count']} records, Merkle root {made.body['root']}")
        show_id = made.id
    else:
        show_id = ledger.resolve(show_id)
    click.echo(export_note(ledger, show_id) if fmt == "note" else show_id, nl=fmt != "note")


@cli.command()
@click.argument("record_id", metavar="ID", required=False)
@click.option("--checkpoint", "checkpoint_id", metavar="ID", help="The checkpoint to prove against "
              "(default: the newest that covers the record).")
@click.option("--consistency", nargs=2, metavar="OLD NEW", help="Instead: prove that checkpoint NEW extends "
              "checkpoint OLD (an RFC 9162 consistency proof).")
@click.pass_context
def prove(ctx: click.Context, record_id: str | None, checkpoint_id: str | None,
          consistency: tuple[str, str] | None) -> None:
    """Print a JSON inclusion proof that record ID is covered by a checkpoint (RFC 6962 audit path), or with
    --consistency OLD NEW a consistency proof between two checkpoints."""
    from openledger.store.checkpoint import prove_consistency, prove_inclusion  # noqa: PLC0415 - see `verify`
    from openledger.store.verify import verify_ledger  # noqa: PLC0415

    if (record_id is None) == (consistency is None):
        raise click.UsageError("give a record ID, or --consistency OLD NEW")
    ledger = open_ledger(ctx)
    if consistency:
        old, new = (ledger.resolve(text) for text in consistency)
    else:
        assert record_id is not None
        full_id = ledger.resolve(record_id)
    full_checkpoint = ledger.resolve(checkpoint_id) if checkpoint_id else None
    report = verify_ledger(ledger)
    if report.errors:
        fail(f"the ledger has {len(report.errors)} integrity error(s): run `openledger verify`", 1)
    render.emit_json(prove_consistency(ledger, old, new, report) if consistency
                     else prove_inclusion(ledger, full_id, report, full_checkpoint))


@cli.command("check-proof")
@click.argument("proof_file", type=click.File("rb"), metavar="PROOF.json|NOTE")
@click.option("--root", metavar="sha256:HEX", help="Trust this Merkle root instead of the signed checkpoint "
              "carried in the proof.")
@click.option("--checkpoint", "notes", type=click.File("rb"), multiple=True, metavar="NOTE",
              help="A signed note (checkpoint --format note) pinning a tree head of the proof (repeatable).")
@click.option("--key", metavar="KEYID", help="For a note given as the file: the key whose signature it must carry.")
def check_proof_command(proof_file: Any, root: str | None, notes: tuple[Any, ...], key: str | None) -> None:
    """Check a proof made by `openledger prove` (inclusion or consistency), or the signature of a checkpoint
    note (with --key). Exit 0 valid, 1 invalid. Needs no ledger."""
    from openledger.store.checkpoint import check_note, check_proof  # noqa: PLC0415 - see `verify`

    data = proof_file.read()
    try:
        proof = json.loads(data)
    except ValueError as exc:
        if key is None:
            hint = " (to check a signed note, give --key KEYID)" if "\n\n\u2014 ".encode() in data else ""
            raise BadInputError(f"{proof_file.name} is not JSON: {exc}{hint}") from None
        note = check_note(data, key if len(key) == 72 else "ed25519:" + key.removeprefix("ed25519:"))
        render.say(f"checkpoint note of {note.origin}, size {note.size}, root {note.root_id}, signed by {key}",
                   label="valid:")
        sys.exit(0)
    if not isinstance(proof, dict):
        raise BadInputError(f"{proof_file.name} is not a proof")
    result = check_proof(proof, root=root, notes=[note.read() for note in notes])
    if result["valid"] and result["kind"] == "consistency":
        render.say(f"tree {result['new_size']} ({result['new_checkpoint']}) extends tree "
                   f"{result['old_size']} ({result['old_checkpoint']})", label="valid:")
        render.say(f"  signed by {result['old_signer']} and {result['new_signer']}")
        sys.exit(0)
    if result["valid"]:
        render.say(f"{result['record']} is included under root {result['root']}", label="valid:")
        if result["checkpoint_signer"]:
            render.say(f"  checkpoint {result['checkpoint']} signed by {result['checkpoint_signer']}")
        sys.exit(0)
    render.say(str(result["reason"]), label="invalid:")
    sys.exit(1)


# -- capture -------------------------------------------------------------------------------------------------
@cli.group()
def capture() -> None:
    """Attest work that was done before OpenLedger was installed."""


@capture.command("mlflow")
@click.option("--tracking-uri", required=True, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="The MLflow store to read (sqlite:///mlflow.db, postgresql://…; a ledger+ prefix is ignored).")
@click.option("--experiment", metavar="NAME", help="Only this experiment's runs (and their model versions).")
@click.option("--run", "run_id", metavar="ID", help="Only this run (and its model versions).")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def capture_mlflow(ctx: click.Context, tracking_uri: str, experiment: str | None, run_id: str | None,
                   fmt: str) -> None:
    """Record finished MLflow runs and model versions that have no record yet.

    Each record is marked "captured": "after-the-fact": you attest what the store holds now. Runs and
    versions already in the ledger are never recorded twice; runs still in progress are skipped.
    """
    capture_history = mlflow_adapter("backfill").capture_history
    if run_id and experiment:
        raise click.UsageError("give --run or --experiment, not both")
    recorder = Recorder(source="capture", ledger=open_ledger(ctx), signer=load_signer(), strict=True)
    with render.progress_bar("Capturing runs") as progress:
        result = capture_history(tracking_uri, recorder, experiment=experiment, run_id=run_id, progress=progress)
    if fmt == "json":
        render.emit_json(result.to_json())
        return
    render.say(f"Recorded {len(result.runs_recorded)} runs and {len(result.versions_recorded)} model versions "
               f"({result.runs_already} runs and {result.versions_already} versions were already recorded; "
               f"{result.runs_in_progress} runs still in progress).")


# -- maintenance -----------------------------------------------------------------------------------------
@cli.command()
@click.pass_context
def pack(ctx: click.Context) -> None:
    """Fold loose objects into immutable pack files (fewer files in git; reads are unchanged). Appends do this on
    their own once `auto_pack` records (config.yaml, default 10,000) are loose."""
    ledger = open_ledger(ctx)
    before = set(ledger.pack_paths())
    name, count = ledger.pack()
    more = len(set(ledger.pack_paths()) - before) - 1
    also = f" and {more} more pack{'s' if more > 1 else ''} (each at most 50 MiB)" if more > 0 else ""
    render.say(f"Packed {count} records into packs/{name}{also}" if name else "Nothing to pack.")


@cli.command()
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def fsck(ctx: click.Context, fmt: str) -> None:
    """Remove leftovers of interrupted writes (never a record), report damaged objects, rebuild the index.

    Exit 0 when no object is damaged, 1 otherwise (then `openledger verify` says which records).
    """
    report = open_ledger(ctx, reports_damage=True).fsck()
    if fmt == "json":
        render.emit_json(report.to_json())
    else:
        for path in report.removed:
            render.line(f"removed  {path}")
        for path, problem in report.corrupt:
            render.line(("damaged", "red"), f"  {path}: {problem}")
        for path in report.unexpected:
            render.line(("unexpected", "yellow"), f" {path} (left in place)")
        render.line(f"{report.objects} objects checked, {len(report.removed)} leftovers removed, "
                            f"{len(report.corrupt)} damaged")
    ctx.exit(1 if report.corrupt else 0)


def main() -> None:
    cli(prog_name="openledger")
