"""``openledger``: verify, inspect and extend the contribution ledger of a repository.

Exit codes are a contract for CI: 0 success; 1 verification or policy failure (tampering, untrusted signer
under --strict); 2 usage or bad input. Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any, NoReturn

import click

from openledger import __version__
from openledger.capture.recorder import ENV_STRICT, Recorder
from openledger.config import LedgerConfig
from openledger.errors import BadInputError, KeyMaterialError, OpenLedgerError
from openledger.store.canonical import tag_nonfinite
from openledger.store.keys import ENV_PASSPHRASE, ENV_SIGNING_KEY, KeyStore, Signer, resolve_keyid, short_keyid
from openledger.store.ledger import LEDGER_DIR, Ledger
from openledger.store.records import KINDS
from openledger_cli import render

# Commands that live in a module of their own, imported only when they run: `dvc record-stage` runs on
# every `dvc repro` and must not pay for report rendering or MLflow lookups. name -> (module, attribute,
# the short help `openledger --help` shows without importing the module). Register a command with one line
# here, in alphabetical order; define it in its module with a plain `@click.command()` / `@click.group()`.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "attribute": ("openledger_cli.attribute", "attribute", "Value each data contributor by re-running without them."),
    "ci": ("openledger_cli.ci", "ci", "Everything a pipeline checks, in one step."),
    "dvc": ("openledger_cli.dvc", "dvc", "Record DVC pipelines and dataset versions as you run DVC."),
    "export": ("openledger_cli.export", "export", "Provenance in standard formats, for other tools."),
    "feedback": ("openledger_cli.review", "feedback", "Record feedback on TARGET (same TARGET forms as `review`)."),
    "gate": ("openledger_cli.review", "gate", "Check the review policy for a model version, run or dataset."),
    "reconcile": ("openledger_cli.reconcile", "reconcile_command", "List what does not fit with MLflow, DVC, git."),
    "report": ("openledger_cli.report", "report", "Provenance of a model version, and credit per contributor."),
    "review": ("openledger_cli.review", "review", "Sign a review of a model version, run, dataset or record."),
}

# Kinds with a command of their own: `record` refuses them so their rules cannot be sidestepped.
_DEDICATED = {"identity": "openledger keys publish / endorse", "revocation": "openledger keys revoke",
              "checkpoint": "openledger checkpoint", "commit": "the post-commit hook (openledger dvc install)",
              "attribution": "openledger attribute"}
FORMAT_TEXT_JSON = click.Choice(["text", "json"])


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
            render.say(f"[red]error:[/red] {render.escape(exc.diagnostics())}")
            ctx.exit(exc.exit_code)

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


def fail(message: str, code: int = 2) -> NoReturn:
    render.say(f"[red]error:[/red] {render.escape(message)}")
    sys.exit(code)


def _ledger(ctx: click.Context) -> Ledger:
    path = ctx.obj.get("ledger_path")
    return Ledger.open(Path(path) if path else None)


def _passphrase_source() -> Callable[[str], str]:
    def ask(keyid: str) -> str:
        env = os.environ.get(ENV_PASSPHRASE)
        if env is not None:
            return env
        if not sys.stdin.isatty():
            raise KeyMaterialError(
                f"key {short_keyid(keyid)} needs its passphrase", hint=f"set {ENV_PASSPHRASE}"
            )
        return getpass.getpass(f"Passphrase for {short_keyid(keyid)}: ")

    return ask


def _signer(key: str | None = None) -> Signer:
    return KeyStore().load_signer(key, _passphrase_source())


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
            record = _publish_identity(ledger, store, None)
        except OpenLedgerError as exc:
            render.say(f"[yellow]warning:[/yellow] could not publish your identity: {exc.diagnostics()}")
            record = None
        if record:
            render.say(f"Published your identity: {record}")
    elif os.environ.get(ENV_SIGNING_KEY):
        render.say("Publish the CI key's identity with `openledger keys publish --name NAME --email EMAIL`.")
    else:
        render.say("Next: openledger keys generate --name NAME --email EMAIL")
    render.say(f"Commit {LEDGER_DIR}/ with your repository.")


def _publish_identity(ledger: Ledger, store: KeyStore, key: str | None, name: str | None = None,
                      email: str | None = None) -> str | None:
    """Append the signer's self-signed identity unless it is published already; returns the record id."""
    signer = _signer(key)
    if any(r.body["key"] == signer.keyid for r in ledger.select(kind="identity", actor=signer.keyid)):
        return None
    info = next((i for i in store.list() if i.keyid == signer.keyid), None)
    name = name or (info.name if info else None)
    email = email or (info.email if info else None)
    if not name or not email:
        raise BadInputError(
            f"key {short_keyid(signer.keyid)} (from {ENV_SIGNING_KEY}) has no stored name and email",
            hint="run `openledger keys publish --name NAME --email EMAIL`",
        )
    body = {"key": signer.keyid, "name": name, "email": email, "git": [f"{name} <{email}>"]}
    return ledger.append(signer, "identity", body).id


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
    render.say(f"Generated {info.keyid}\n  stored in {info.path} (mode 0600)")
    click.echo(info.keyid)
    try:
        ledger = _ledger(ctx)
    except OpenLedgerError:
        render.say("No ledger here: run `openledger init` in your repository to publish this identity.")
        return
    record = _publish_identity(ledger, store, info.keyid)
    if record:
        render.say(f"Published identity record {record}")


@keys.command("publish")
@click.option("--key", metavar="KEYID", help="The key to publish (default: your default key).")
@click.option("--name", help="Name for a key that has none stored (a CI key from OPENLEDGER_SIGNING_KEY).")
@click.option("--email", help="Email for a key that has none stored.")
@click.pass_context
def keys_publish(ctx: click.Context, key: str | None, name: str | None, email: str | None) -> None:
    """Append the identity record of your key to this ledger (done by `keys generate` and `init`)."""
    record = _publish_identity(_ledger(ctx), KeyStore(), key, name, email)
    render.say(f"Published identity record {record}" if record else "Your identity is already published.")


@keys.command("list")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def keys_list(ctx: click.Context, fmt: str) -> None:
    """List your keys on this machine and, inside a ledger, every identity it knows."""
    store = KeyStore()
    local = store.list()
    default = store.default_keyid()
    identities: list[dict[str, Any]] = []
    try:
        ledger = _ledger(ctx)
    except OpenLedgerError:
        ledger = None
    if ledger is not None:
        trust = ledger.trust()
        now = ledger.clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for keyid, identity in sorted(trust.identities.items(), key=lambda kv: kv[1].name):
            identities.append({"keyid": keyid, "name": identity.name, "email": identity.email,
                               "endorsed_by": list(identity.endorsed_by),
                               "trust": trust.status(keyid, now) or "trusted",
                               "root": keyid in trust.roots})
    if fmt == "json":
        render.emit_json({"local": [dict(i.to_json(), default=i.keyid == default) for i in local],
                          "ledger": identities})
        return
    from rich.table import Table  # noqa: PLC0415 - tables only for this text output, not every command

    table = Table(title="Keys on this machine", show_edge=False, header_style="bold")
    for column in ("key id", "name", "email", "passphrase", "default"):
        table.add_column(column)
    for info in local:
        table.add_row(short_keyid(info.keyid), info.name, info.email, "yes" if info.encrypted else "no",
                      "*" if info.keyid == default else "")
    render.stdout.print(table)
    if ledger is not None:
        table = Table(title="Identities in this ledger", show_edge=False, header_style="bold")
        for column in ("key id", "name", "email", "trust", "endorsed by"):
            table.add_column(column)
        for row in identities:
            status = "root" if row["root"] else row["trust"]
            table.add_row(short_keyid(row["keyid"]), row["name"], row["email"], status,
                          ", ".join(short_keyid(k) for k in row["endorsed_by"]))
        render.stdout.print(table)


@keys.command("export")
@click.argument("key", required=False, metavar="[KEYID]")
@click.option("--secret", is_flag=True, help="Print the private seed (base64) for a CI secret instead.")
def keys_export(key: str | None, secret: bool) -> None:
    """Print a key's public identity (JSON), or with --secret its private seed for OPENLEDGER_SIGNING_KEY."""
    store = KeyStore()
    info = store.find(key) if key else store.find(store.selected_keyid())
    if secret:
        seed = store.load_seed(info.keyid, _passphrase_source())
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
    ledger = _ledger(ctx)
    trust = ledger.trust()
    target = resolve_keyid(keyid, set(trust.identities) | ({keyid} if len(keyid) == 72 else set()))
    declared = trust.identities.get(target)
    name = name or (declared.name if declared else None)
    email = email or (declared.email if declared else None)
    if not name or not email:
        fail(f"{short_keyid(target)} has published no identity: give --name and --email")
    signer = _signer()
    if signer.keyid not in ledger.config.trust_roots:
        render.say("[yellow]warning:[/yellow] your key is not a trust root in config.yaml; "
                   "this endorsement will not count in endorsed mode.")
    record = ledger.append(signer, "identity", {"key": target, "name": name, "email": email})
    click.echo(record.id)


@keys.command("revoke")
@click.argument("keyid")
@click.option("--reason", required=True, help="Why (lost, compromised, left the team…).")
@click.option("--compromised-since", metavar="TIME",
              help="RFC 3339 UTC time from which records by the key are not trusted (default: now).")
@click.pass_context
def keys_revoke(ctx: click.Context, keyid: str, reason: str, compromised_since: str | None) -> None:
    """Revoke KEYID (your own key, or any key if you are a trust root)."""
    ledger = _ledger(ctx)
    trust = ledger.trust()
    target = resolve_keyid(keyid, set(trust.identities) | ({keyid} if len(keyid) == 72 else set()))
    body: dict[str, Any] = {"key": target, "reason": reason}
    if compromised_since:
        body["compromised_since"] = compromised_since
    signer = _signer()
    if signer.keyid != target and signer.keyid not in ledger.config.trust_roots:
        render.say("[yellow]warning:[/yellow] you are neither the key's owner nor a trust root in config.yaml; "
                   "this revocation will not count.")
    record = ledger.append(signer, "revocation", body)
    click.echo(record.id)


# -- records ---------------------------------------------------------------------------------------------
@cli.command()
@click.argument("kind", type=click.Choice([k for k in KINDS if k not in _DEDICATED]))
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
    ledger = _ledger(ctx)
    body = _read_body(body_text)
    resolved = [_resolve_link(ledger, link) for link in links]
    record = ledger.append(_signer(), kind, body, resolved)
    click.echo(record.id)


def _resolve_link(ledger: Ledger, link: str) -> str:
    """A full record id for an id prefix (with or without ``sha256:``); other digests pass unchanged."""
    if link.startswith("sha256:") and len(link) == 71:
        return link
    if link.startswith("sha256:") or all(c in "0123456789abcdef" for c in link):
        return ledger.resolve(link)
    return link


@cli.command()
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only records of this kind.")
@click.option("--actor", metavar="KEYID", help="Only records signed by this key (prefix).")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def log(ctx: click.Context, kind: str | None, actor: str | None, fmt: str) -> None:
    """List records, oldest first."""
    ledger = _ledger(ctx)
    trust = ledger.trust()
    if actor:
        ledger.index.sync()
        actors = {row[0] for row in ledger.index.db.execute("SELECT DISTINCT actor FROM records")}
        actor = resolve_keyid(actor, actors)
    damaged: list[tuple[str, str]] = []
    records = list(ledger.select(kind=kind, actor=actor, damaged=damaged))
    if fmt == "json":
        render.emit_json([r.to_json() for r in records])
    else:
        render.stdout.print(render.records_table(records, trust))
    if damaged:
        for where, problem in damaged:
            render.say(f"[red]damaged:[/red] {where}: {problem}")
        render.say(f"{len(damaged)} damaged object(s) left out: run `openledger verify`.")
        ctx.exit(1)


@cli.command()
@click.argument("record_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "envelope"]), default="text",
              show_default=True, help="envelope: the stored DSSE envelope bytes.")
@click.pass_context
def show(ctx: click.Context, record_id: str, fmt: str) -> None:
    """Show one record (its signature and hash are checked first)."""
    ledger = _ledger(ctx)
    found = ledger.get(ledger.resolve(record_id))
    if fmt == "envelope":
        sys.stdout.write(found.envelope.decode() + "\n")
    elif fmt == "json":
        render.emit_json(found.to_json())
    else:
        trust = ledger.trust()
        status = trust.status(found.actor, found.time) or "trusted"
        render.stdout.print(f"[bold]{found.id}[/bold]  {found.kind}  (signature valid, signer {status})")
        render.stdout.print(f"by    {trust.describe(found.actor)}  {found.actor}")
        render.stdout.print(f"time  {found.time}   feed {found.feed} #{found.seq}")
        for link in found.links:
            render.stdout.print(f"link  {link}")
        render.stdout.print_json(json.dumps(tag_nonfinite(dict(found.body))))
        from openledger.credit.contributions import reviews_and_feedback_on  # noqa: PLC0415 - only for the text view

        responses = reviews_and_feedback_on(ledger, found.id)
        if responses:
            render.stdout.print("Reviews and feedback on this record:")
            render.stdout.print(render.records_table(responses, trust))


# -- verification ----------------------------------------------------------------------------------------
@cli.command()
@click.option("--strict", is_flag=True, help="Also fail (exit 1) on records by unknown, unendorsed or revoked keys.")
@click.option("--against", metavar="CHECKPOINT",
              help="A checkpoint id kept outside the repository: fail if history was rewritten or truncated.")
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, help="Worker processes (default: all cores).")
@click.pass_context
def verify(ctx: click.Context, strict: bool, against: str | None, fmt: str, jobs: int | None) -> None:
    """Check every record's hash and signature, each feed's continuity, every checkpoint and every signer.

    Exit 0 when the ledger is intact; 1 when anything was tampered with (or, with --strict, a signer is
    not trusted); 2 when the ledger cannot be read as input (e.g. written by a newer OpenLedger).
    """
    from openledger.store.verify import verify_ledger  # noqa: PLC0415 - loads multiprocessing: verify only

    ledger = _ledger(ctx)
    with render.progress_bar("Verifying") as progress:
        report = verify_ledger(ledger, against=against, workers=jobs, progress=progress)
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
        render.stdout.print(f"[{colour}]{problem.severity:<7}[/{colour}] {problem.code:<26} {where}  "
                            f"{problem.message}", highlight=False)
    if len(report.problems) > 200:
        counts = Counter(p.code for p in report.problems[200:])
        render.stdout.print(f"… and {len(report.problems) - 200} more: "
                            + ", ".join(f"{n} {c}" for c, n in counts.most_common()))
    summary = (f"{report.records} records in {report.feeds} feeds, {report.checkpoints} checkpoints; "
               f"{len(report.errors)} errors, {len(report.warnings)} warnings")
    code = report.exit_code(strict=strict)
    verdict = {0: "[green]OK[/green]", 1: "[red]FAILED[/red]", 2: "[magenta]CANNOT VERIFY[/magenta]"}[code]
    render.stdout.print(f"{verdict}: {summary}" + (" (strict)" if strict else ""))
    if code == 0 and report.warnings:
        render.say("Warnings do not fail without --strict.")


@cli.command()
@click.pass_context
def checkpoint(ctx: click.Context) -> None:
    """Verify the ledger, then sign a checkpoint over all of it; prints the checkpoint id.

    Keep the id outside the repository (CI variable, release note) and later run
    `openledger verify --against ID` to detect rewritten or truncated history.
    """
    from openledger.store.checkpoint import append_checkpoint  # noqa: PLC0415 - see `verify`
    from openledger.store.verify import verify_ledger  # noqa: PLC0415

    ledger = _ledger(ctx)
    with render.progress_bar("Verifying") as progress:
        report = verify_ledger(ledger, progress=progress)
    made = append_checkpoint(ledger, _signer(), report)
    render.say(f"Checkpoint over {made.body['count']} records, Merkle root {made.body['root']}")
    click.echo(made.id)


@cli.command()
@click.argument("record_id", metavar="ID")
@click.option("--checkpoint", "checkpoint_id", metavar="ID", help="The checkpoint to prove against "
              "(default: the newest that covers the record).")
@click.pass_context
def prove(ctx: click.Context, record_id: str, checkpoint_id: str | None) -> None:
    """Print a JSON inclusion proof that record ID is covered by a checkpoint (RFC 6962 audit path)."""
    from openledger.store.checkpoint import prove_inclusion  # noqa: PLC0415 - see `verify`
    from openledger.store.verify import verify_ledger  # noqa: PLC0415

    ledger = _ledger(ctx)
    full_id = ledger.resolve(record_id)
    full_checkpoint = ledger.resolve(checkpoint_id) if checkpoint_id else None
    report = verify_ledger(ledger)
    if report.errors:
        fail(f"the ledger has {len(report.errors)} integrity error(s): run `openledger verify`", 1)
    render.emit_json(prove_inclusion(ledger, full_id, report, full_checkpoint))


@cli.command("check-proof")
@click.argument("proof_file", type=click.File("r"), metavar="PROOF.json")
@click.option("--root", metavar="sha256:HEX", help="Trust this Merkle root instead of the signed checkpoint "
              "carried in the proof.")
def check_proof_command(proof_file: Any, root: str | None) -> None:
    """Check an inclusion proof made by `openledger prove` (exit 0 valid, 1 invalid). Needs no ledger."""
    from openledger.store.checkpoint import check_proof  # noqa: PLC0415 - see `verify`

    try:
        proof = json.load(proof_file)
    except ValueError as exc:
        raise BadInputError(f"{proof_file.name} is not JSON: {exc}") from None
    if not isinstance(proof, dict):
        raise BadInputError(f"{proof_file.name} is not an inclusion proof")
    result = check_proof(proof, root=root)
    if result["valid"]:
        render.say(f"[green]valid[/green]: {result['record']} is included under root {result['root']}")
        if result["checkpoint_signer"]:
            render.say(f"  checkpoint {result['checkpoint']} signed by {result['checkpoint_signer']}")
        sys.exit(0)
    render.say(f"[red]invalid[/red]: {result['reason']}")
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
    try:
        from mlflow_plugin.backfill import capture_history  # noqa: PLC0415 - MLflow is an optional extra
    except ImportError:
        raise BadInputError("MLflow is not installed", hint="pip install 'openledger-mlops[mlflow]'") from None
    if run_id and experiment:
        raise click.UsageError("give --run or --experiment, not both")
    recorder = Recorder(source="capture", ledger=_ledger(ctx), signer=_signer())
    with strict_recording(), render.progress_bar("Capturing runs") as progress:
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
    """Fold loose objects into one immutable pack file (fewer files in git; reads are unchanged)."""
    name, count = _ledger(ctx).pack()
    render.say(f"Packed {count} records into packs/{name}" if name else "Nothing to pack.")


@cli.command()
@click.option("--format", "fmt", type=FORMAT_TEXT_JSON, default="text", show_default=True)
@click.pass_context
def fsck(ctx: click.Context, fmt: str) -> None:
    """Remove leftovers of interrupted writes (never a record), report damaged objects, rebuild the index.

    Exit 0 when no object is damaged, 1 otherwise (then `openledger verify` says which records).
    """
    report = _ledger(ctx).fsck()
    if fmt == "json":
        render.emit_json(report.to_json())
    else:
        for path in report.removed:
            render.stdout.print(f"removed  {path}")
        for path, problem in report.corrupt:
            render.stdout.print(f"[red]damaged[/red]  {path}: {problem}")
        for path in report.unexpected:
            render.stdout.print(f"[yellow]unexpected[/yellow] {path} (left in place)")
        render.stdout.print(f"{report.objects} objects checked, {len(report.removed)} leftovers removed, "
                            f"{len(report.corrupt)} damaged")
    ctx.exit(1 if report.corrupt else 0)


@contextmanager
def strict_recording() -> Iterator[None]:
    """An explicit command must not fail open: recording problems become errors with exit codes."""
    previous = os.environ.get(ENV_STRICT)
    os.environ[ENV_STRICT] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV_STRICT, None)
        else:
            os.environ[ENV_STRICT] = previous


def main() -> None:
    cli(prog_name="openledger")
