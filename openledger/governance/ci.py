"""One pass for CI pipelines: verify, reconcile, gate the configured models, report credit, and checkpoint.

:func:`run_ci` is what ``openledger ci`` runs. Every step runs even when an earlier one failed, so the job
summary shows everything at once; the exit code is the worst of them (0 ok, 1 tampering, a failed gate or
a reconcile error — or warnings under ``strict`` —, 2 records this version cannot read). A checkpoint is
appended only on the default branch, outside pull requests, with a signing key, and when verification found
no error. Without a key the run is read-only: it writes nothing to the ledger.

What to gate and the defaults come from ``config.yaml``::

    ci:
      models: [wine-classifier@champion]   # NAME@VERSION or NAME@ALIAS, gated by the review policy
      default_branch: main                 # where checkpoints are appended (else CI_DEFAULT_BRANCH, else main)
      strict: false                        # fail on reconcile and verify warnings too
      checkpoint: true                     # append a checkpoint on the default branch
      witness: false                       # cosign the newest checkpoint as a witness (with this job's key)

>>> push = {"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": "main", "GITHUB_EVENT_NAME": "push"}
>>> CiContext.detect(push).on_default_branch
True
>>> CiContext.detect({"GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "7", "CI_DEFAULT_BRANCH": "trunk"}).pull_request
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openledger.errors import IntegrityError, NotFoundError, OpenLedgerError
from openledger.governance.policy import GateResult, gate_subject
from openledger.lineage.git import current_branch
from openledger.lineage.graph import LedgerGraph
from openledger.lineage.reconcile import DvcState, ReconcileReport, TrackingState, reconcile
from openledger.lineage.targets import ModelRegistry, parse_target, resolve_target
from openledger.reports.contributors import ContributorsReport, contributors_report
from openledger.store.checkpoint import append_checkpoint, log_of
from openledger.store.leaves import write_leaves
from openledger.store.ledger import Ledger
from openledger.store.records import Record, RecordSigner
from openledger.store.seals import write_seals
from openledger.store.verify import VerificationReport, verify_ledger
from openledger.store.witness import witness_ledger

__all__ = ["CiContext", "CiRun", "GateOutcome", "ci_settings", "run_ci"]

SCHEMA = "openledger.ci/1"
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class CiContext:
    """Where the job runs: the CI provider, the branch, the default branch, and whether it is a pull or
    merge request (whose changes are not yet the project's history, so nothing is checkpointed)."""

    provider: str
    branch: str | None
    default_branch: str
    pull_request: bool

    @classmethod
    def detect(cls, environ: Mapping[str, str], *, default_branch: str | None = None,
               git_root: Path | None = None) -> CiContext:
        if environ.get("GITHUB_ACTIONS") == "true":
            pull = environ.get("GITHUB_EVENT_NAME", "").startswith("pull_request")
            branch = None if pull else environ.get("GITHUB_REF_NAME") or None
            provider = "github"
        elif environ.get("GITLAB_CI") == "true":
            pull = bool(environ.get("CI_MERGE_REQUEST_IID"))
            branch = environ.get("CI_COMMIT_BRANCH") or None  # unset for tags and merge request pipelines
            provider = "gitlab"
        else:
            pull, branch, provider = False, current_branch(git_root) if git_root else None, "local"
        default = default_branch or environ.get("CI_DEFAULT_BRANCH") or "main"
        return cls(provider, branch, default, pull)

    @property
    def on_default_branch(self) -> bool:
        return not self.pull_request and self.branch == self.default_branch

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "branch": self.branch, "default_branch": self.default_branch,
                "pull_request": self.pull_request}


@dataclass(frozen=True, slots=True)
class CiSettings:
    models: tuple[str, ...] = ()
    default_branch: str | None = None
    strict: bool = False
    checkpoint: bool = True
    witness: bool = False


def ci_settings(config: Mapping[str, Any]) -> CiSettings:
    """``ci:`` from config.yaml (its shape is checked when the file is read)."""
    models = tuple(str(m) for m in config.get("models") or ())
    for model in models:
        parse_target(f"model:{model}")  # a malformed entry is bad input now, not a failed gate later
    return CiSettings(models, config.get("default_branch"), bool(config.get("strict", False)),
                      bool(config.get("checkpoint", True)), bool(config.get("witness", False)))


@dataclass(frozen=True, slots=True)
class GateOutcome:
    """The gate of one configured model: its result, or why it could not be evaluated (a failure too)."""

    model: str
    result: GateResult | None
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "passed": self.passed, "problem": self.problem,
                "gate": self.result.to_json() if self.result else None}


@dataclass(frozen=True, slots=True)
class CiRun:
    """Everything one CI run checked and decided; :meth:`exit_code` is the job's verdict."""

    context: CiContext
    strict: bool
    verification: VerificationReport
    reconciliation: ReconcileReport
    gates: tuple[GateOutcome, ...]
    contributors: ContributorsReport
    registry: str  # "mlflow" or "ledger": where model versions and aliases were resolved
    checkpoint: str | None = None
    notes: tuple[str, ...] = ()
    read_only: bool = False
    cosignature: str | None = None  # the cosignature record this job appended as a witness
    witness_refused: bool = False  # as a witness, it found history inconsistent with what it cosigned

    @property
    def ok(self) -> bool:
        return self.exit_code() == 0

    def exit_code(self) -> int:
        verified = self.verification.exit_code(strict=self.strict)
        if verified == 2:
            return 2
        failed = (verified == 1 or self.reconciliation.exit_code(strict=self.strict) == 1
                  or not all(g.passed for g in self.gates) or self.witness_refused)
        return 1 if failed else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "ok": self.exit_code() == 0,
            "exit_code": self.exit_code(),
            "strict": self.strict,
            "context": self.context.to_json(),
            "read_only": self.read_only,
            "checkpoint": self.checkpoint,
            "cosignature": self.cosignature,
            "notes": list(self.notes),
            "verify": self.verification.to_json(strict=self.strict),
            "reconcile": self.reconciliation.to_json(strict=self.strict),
            "registry": self.registry,
            "gates": [g.to_json() for g in self.gates],
            "contributors": self.contributors.to_json(),
        }


def _gate(ledger: Ledger, model: str, registry: ModelRegistry) -> GateOutcome:
    try:
        return GateOutcome(model, gate_subject(ledger, resolve_target(ledger, f"model:{model}", registry)))
    except NotFoundError as exc:  # no such version, or no record of it: the gate cannot pass
        return GateOutcome(model, None, exc.message)


def _witness(ledger: Ledger, signer: RecordSigner, verification: VerificationReport, context: CiContext, *,
             home: Path | None, pinned: str | None, notes: list[str]) -> tuple[str | None, bool]:
    """As a witness: cosign the newest checkpoint if it extends what this key cosigned (and the pinned
    checkpoint); (the cosignature, whether it refused). Runs before this job's own checkpoint: a witness never
    cosigns its own. A refusal fails the job."""
    if context.pull_request:
        notes.append("no cosignature: a pull/merge request is not the project's history yet")
        return None, False
    if home is None or verification.errors:
        notes.append("no cosignature: verification failed" if verification.errors
                     else "no cosignature: no place to keep the witness's state")
        return None, False
    try:
        outcome = witness_ledger(ledger, signer, verification, home=home, pinned=pinned)
    except IntegrityError as exc:
        notes.append(f"witness refused: {exc.message}")
        return None, True
    except OpenLedgerError as exc:  # nothing to cosign yet, or only the job's own checkpoints
        notes.append(f"no cosignature: {exc.message}")
        return None, False
    if outcome.record is None:
        notes.append(f"witness: checkpoint {outcome.checkpoint.id} was already cosigned")
        return None, False
    notes.append(f"witness: cosigned checkpoint {outcome.checkpoint.id}")
    return outcome.record.id, False


def _seal(ledger: Ledger, signer: RecordSigner, verification: VerificationReport, checkpoint: Record) -> str | None:
    """Seal the packs this key has not sealed (what the verification found sound) and list the checkpoint's
    leaves, for the next incremental verifications: they read a sealed pack by its hash
    (:mod:`openledger.store.seals`) and take the pinned checkpoint's leaves from a file
    (:mod:`openledger.store.leaves`)."""
    try:
        written = write_seals(ledger, signer, verification.summaries)
        write_leaves(ledger, log_of(verification), checkpoint)
    except OSError as exc:  # a full disk: the checkpoint stands, the next run seals them
        return f"packs not sealed: {exc.strerror or exc}"
    return f"sealed {len(written)} pack(s) for incremental verification" if written else None


def run_ci(ledger: Ledger, *, context: CiContext, settings: CiSettings, registry: ModelRegistry,
           registry_name: str, signer: RecordSigner | None, against: str | None = None,
           tracking: TrackingState | None = None, dvc: DvcState | None = None, git_root: Path | None = None,
           skipped: Sequence[str] = (), progress: Progress | None = None, witness_home: Path | None = None,
           witness_from: str | None = None, incremental: bool = True) -> CiRun:
    # With a pinned checkpoint (signed by a trusted key), what it covers was verified when it was signed:
    # check those records by their bytes and the rest in full (docs/threat-model.md, incremental verification).
    since = against if incremental and against else None
    verification = verify_ledger(ledger, against=against, since=since, progress=progress)
    graph = LedgerGraph.load(ledger)
    reconciliation = reconcile(graph, tracking=tracking, dvc=dvc, git_root=git_root, skipped=skipped)
    gates = tuple(_gate(ledger, model, registry) for model in settings.models)
    names = sorted({model.rpartition("@")[0] for model in settings.models})
    contributors = contributors_report(graph, model=names[0] if len(names) == 1 else None)
    notes: list[str] = []
    if verification.since:
        from_seals = f"; {verification.sealed:,} of them read from sealed packs" if verification.sealed else ""
        listed = " (its leaves from their files)" if verification.listed else ""
        notes.append(f"incremental verification: the records checkpoint {verification.since}{listed} covers were "
                     f"checked by their hashes{from_seals}, the others in full (--full-verify to check every "
                     "signature)")
    elif since:
        notes.append("verified in full: the pinned checkpoint is missing or its signer is not trusted")
    cosignature, refused = None, False
    if settings.witness and signer is not None:
        cosignature, refused = _witness(ledger, signer, verification, context, home=witness_home,
                                        pinned=witness_from or against, notes=notes)
    checkpoint = None
    if signer is None:
        notes.append("read-only: no signing key (set OPENLEDGER_SIGNING_KEY from the CI's secrets to "
                     "checkpoint); nothing was written to the ledger")
    elif not settings.checkpoint:
        notes.append("no checkpoint: turned off (--no-checkpoint, or ci.checkpoint: false in config.yaml)")
    elif context.pull_request:
        notes.append("no checkpoint: a pull/merge request is not the project's history yet")
    elif not context.on_default_branch:
        notes.append(f"no checkpoint: branch {context.branch or '(detached)'} is not the default branch "
                     f"{context.default_branch}")
    elif verification.exit_code(strict=settings.strict) != 0:
        notes.append("no checkpoint: verification failed" + (" (strict)" if not verification.errors else ""))
    else:
        try:
            appended = append_checkpoint(ledger, signer, verification)
        except OpenLedgerError as exc:
            notes.append(f"no checkpoint: {exc.message}")
        else:
            checkpoint = appended.id
            sealed = _seal(ledger, signer, verification, appended)
            notes += [sealed] if sealed else []
    return CiRun(context, settings.strict, verification, reconciliation, gates, contributors, registry_name,
                 checkpoint, tuple(notes), read_only=signer is None, cosignature=cosignature,
                 witness_refused=refused)
