"""Verify a ledger: every object's bytes, every signature, every feed, every checkpoint, every signer.

Checking each object (canonical envelope, content hash, Ed25519 signature, schema) is independent work and
runs on all cores; the whole-ledger checks (feed continuity, trust, checkpoints) run afterwards on the
compact summaries the workers return.

Problems are ``error`` (tampering or corruption: exit 1), ``warning`` (an untrusted, unknown or revoked
signer, an email several keys claim, a record dated before one it follows in its feed: exit 1 only under
``--strict``) or ``unsupported`` (validly signed data from a newer OpenLedger: exit 2 unless there are errors).

>>> import tempfile; from openledger.store.keys import generate_signer
>>> ledger = Ledger.init(Path(tempfile.mkdtemp()))
>>> _ = ledger.append(generate_signer(feed="doc"), "feedback", {"target": "x", "label": "ok"})
>>> report = verify_ledger(ledger, workers=1)
>>> report.records, report.exit_code(strict=False), report.exit_code(strict=True)
(1, 0, 1)
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import compress, repeat
from pathlib import Path
from sys import intern
from typing import Any

import orjson

from openledger._internal.index import iter_pack
from openledger._internal.memory import paused_gc
from openledger._internal.parallel import run_chunks
from openledger.errors import BadInputError, IntegrityError, UnsupportedVersionError
from openledger.identity.trust import TrustState, instant
from openledger.store.canonical import _FLOAT_TAG_BYTES, check_depth, parse_canonical
from openledger.store.dsse import envelope_payload_v1
from openledger.store.files import read_lines_starting_in, read_regular
from openledger.store.ledger import Ledger
from openledger.store.logtree import LogTree, tree_of
from openledger.store.records import decode_stored, record_id_of, validate_payload_json
from openledger.store.seals import CHECKED_IN_FULL, SealedPack
from openledger.store.summary import RecordSummary
from openledger.store.summary import as_summary as _as_summary

__all__ = ["Problem", "RecordSummary", "VerificationReport", "judge_ledger", "verify_ledger"]

ERROR, WARNING, UNSUPPORTED = "error", "warning", "unsupported"
_TRUST_KINDS = CHECKED_IN_FULL  # the records that build trust and the checkpoint tree


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong, naming the record (or the file, when the bytes do not make a record)."""

    severity: str
    code: str
    message: str
    record: str | None = None
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "record": self.record,
            "location": self.location,
            "message": self.message,
        }


_first = operator.itemgetter(0)
_PREV, _TIME = operator.attrgetter("prev"), operator.attrgetter("time")
_ACTOR, _FEED, _KIND = operator.attrgetter("actor"), operator.attrgetter("feed"), operator.attrgetter("kind")
_SEQ = operator.attrgetter("seq")
_WRITTEN_LENGTH = 27  # len("2026-01-01T00:00:00.000000Z"), the spelling the ledger writes
_ABSENT = RecordSummary("", "", "", "", -1, (), "", None)  # a prev that is not there: nothing to compare with


def _check_one(data: bytes, expected_id: str | None, location: str) -> RecordSummary | Problem:
    checked = _check_one_raw(data, expected_id, location)
    return checked if isinstance(checked, Problem) else _as_summary(checked)


def _check_one_raw(data: bytes, expected_id: str | None, location: str) -> tuple[Any, ...] | Problem:
    try:
        record_id, _, payload = decode_stored(data, expected_id=expected_id)
        validate_payload_json(payload)
    except UnsupportedVersionError as exc:
        return Problem(UNSUPPORTED, exc.code, exc.diagnostics(), expected_id, location)
    except IntegrityError as exc:  # the code names the kind: hash-mismatch, bad-signature or malformed
        return Problem(ERROR, exc.code, exc.message, expected_id, location)
    except BadInputError as exc:  # a validly signed payload that breaks the schema
        return Problem(ERROR, "malformed", exc.message, expected_id or record_id, location)
    kind = payload["kind"]
    # interned: a chunk's summaries then share one string per signer, feed and kind, which the pipe to the
    # parent carries once (pickle's memo) and the parent keeps once (a million summaries at 1M records)
    return (record_id, intern(kind), intern(payload["actor"]), intern(payload["feed"]), payload["seq"],
            tuple(payload["prev"]), payload["time"], payload["body"] if kind in _TRUST_KINDS else None)


def _light_raw(data: bytes, expected_id: str | None, location: str) -> tuple[Any, ...] | Problem:
    """The bytes of a record a trusted checkpoint covers: a canonical v1 envelope whose payload hashes to
    the record's id, read into a summary's fields; its signature and schema are not checked again. Anything
    unusual gets the full check (:func:`_check_one_raw`), so only well-formed records take this path."""
    # The payload is parsed without the canonical-form check: a covered record's bytes are the ones its
    # checkpoint's signer verified (its id is a leaf of the recomputed root), and every record the checkpoint
    # does not cover is checked again in full. Still, the fields must have their types (a summary crosses a
    # pipe and feeds the tree walk before the full checks), and the records that build the checkpoint tree
    # and trust (few) are checked in full here: a hostile checkpoint body must be a problem, not a crash.
    try:
        payload_bytes, keyid = envelope_payload_v1(data)
    except IntegrityError:
        return _check_one_raw(data, expected_id, location)
    record_id = record_id_of(payload_bytes)
    if expected_id is not None and record_id != expected_id:
        return Problem(ERROR, "hash-mismatch", f"content hash is {record_id}, not the id it is stored under",
                       expected_id, location)
    try:
        check_depth(payload_bytes)  # cheap (a bracket count first); orjson alone would nest 1,023 deep
        payload = parse_canonical(payload_bytes) if _FLOAT_TAG_BYTES in payload_bytes else orjson.loads(payload_bytes)
        kind, actor, feed, seq, prev, time = (payload["kind"], payload["actor"], payload["feed"], payload["seq"],
                                              payload["prev"], payload["time"])
        if (type(kind) is not str or kind in _TRUST_KINDS or type(actor) is not str or actor.encode() != keyid
                or type(feed) is not str or type(seq) is not int or type(time) is not str or type(prev) is not list
                or not all(type(before) is str for before in prev)):
            return _check_one_raw(data, expected_id, location)  # says what is wrong, or which key signed it
    except (ValueError, KeyError, TypeError):  # UnicodeEncodeError (a lone surrogate) is a ValueError
        return _check_one_raw(data, expected_id, location)
    return (record_id, intern(kind), intern(actor), intern(feed), seq, tuple(prev), time, None)


Checked = tuple[Any, ...] | Problem  # a record's result: a summary's fields, or a problem
Chunk = tuple[list[tuple[Any, ...]], list[Problem]]  # what a worker sends back: summaries' fields, problems


def _without_gc(function: Callable[..., list[Checked]]) -> Callable[..., Chunk]:
    """Checking allocates many short-lived objects and no cycles: collecting midway is pure cost. The results
    go back split, summaries' fields (plain tuples) apart from problems, so the parent files them without a
    loop of its own in Python."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> Chunk:
        with paused_gc():
            results = function(*args)
        return [r for r in results if type(r) is tuple], [r for r in results if isinstance(r, Problem)]

    return wrapper


@_without_gc
def check_loose(paths: Sequence[str], light: bool = False) -> list[Checked]:
    """Worker: check loose objects named by path (their expected id comes from the path); ``light``: the
    bytes only (:func:`_light_raw`)."""
    check = _light_raw if light else _check_one_raw
    results: list[Checked] = []
    for path in paths:
        directory, name = os.path.split(path)
        expected = f"sha256:{os.path.basename(directory)}{name}"
        try:
            data = read_regular(path)
        except IntegrityError as exc:  # a symlink, FIFO, device or oversized file: never read
            results.append(Problem(ERROR, exc.code, exc.message, expected, path))
            continue
        except OSError as exc:
            results.append(Problem(ERROR, "unreadable", str(exc), expected, path))
            continue
        results.append(check(data, expected, path))
    return results


@_without_gc
def check_pack_range(path: str, start: int, end: int, size: int, light: bool = False) -> list[Checked]:
    """Worker: check the lines of a pack (of ``size`` bytes when it was split) that start between two byte
    offsets. A pack replaced or removed since it was split is a problem of the range, not a crash."""
    check = _light_raw if light else _check_one_raw
    try:
        first, data = read_lines_starting_in(path, start, end, size)
    except IntegrityError as exc:
        return [Problem(ERROR, exc.code, exc.message, None, f"{path}@{start}")]
    except OSError as exc:
        return [Problem(ERROR, "unreadable", str(exc), None, f"{path}@{start}")]
    return [check(line, None, f"{path}@{first + offset}") for offset, line in iter_pack(data)]


@dataclass(frozen=True)
class VerificationReport:
    """The outcome of :func:`verify_ledger`."""

    records: int
    feeds: int
    checkpoints: int
    problems: tuple[Problem, ...]
    trust: TrustState
    summaries: dict[str, RecordSummary] = field(repr=False, compare=False)
    against: str | None = None
    log: LogTree | None = field(default=None, repr=False, compare=False)  # every checkpoint's recomputed tree
    since: str | None = None  # incremental: the trusted checkpoint whose records' signatures were not re-checked
    sealed: int = 0  # incremental: records read from their packs' seals (openledger.store.seals), not decoded
    listed: int = 0  # incremental: the pinned checkpoint's leaves, taken from its leaves files (store.leaves)

    def with_problems(self, extra: Iterable[Problem]) -> VerificationReport:
        """This report with more problems (checks run after :func:`verify_ledger`: witnesses, anchors)."""
        return replace(self, problems=_in_order([*self.problems, *extra]))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    def exit_code(self, *, strict: bool) -> int:
        if self.errors or (strict and self.warnings):
            return 1
        if any(p.severity == UNSUPPORTED for p in self.problems):
            return 2
        return 0

    def to_json(self, *, strict: bool = False) -> dict[str, Any]:
        return {
            "ok": self.exit_code(strict=strict) == 0,
            "strict": strict,
            "records": self.records,
            "feeds": self.feeds,
            "checkpoints": self.checkpoints,
            "against": self.against,
            "since": self.since,
            "sealed": self.sealed,
            "listed": self.listed,
            "trust_mode": self.trust.mode,
            "problems": [p.to_json() for p in self.problems],
        }


Progress = Callable[[int, int], None]


def _check_objects(ledger: Ledger, workers: int | None, progress: Progress | None, *, light: bool = False,
                   sealed: Mapping[Path, SealedPack] | None = None
                   ) -> tuple[dict[str, RecordSummary], list[Problem], list[RecordSummary] | None]:
    """Every object checked (on all cores when there are enough): the summaries of the records that pass,
    by id (a record stored twice, loose and packed, once), and the problems of the objects that do not.

    ``sealed`` packs (incremental verification: :mod:`openledger.store.seals`) are not read again: their
    records' fields come from their seals, and only the records that build trust are checked, in full. Then
    the third item lists the records whose time order is still to compare (None: all of them): not the rows
    of a sealed pack that follow a row of the same pack dated no later (:attr:`SealedPack.unordered`)."""
    sealed = sealed or {}
    summaries: dict[str, RecordSummary] = {}
    problems: list[Problem] = []
    done = 0

    def collect(chunk: Chunk, total_estimate: int) -> None:
        nonlocal done
        fields, found = chunk
        # a record stored twice (loose and packed) has one summary: the same payload makes the same one
        summaries.update(zip(map(_first, fields), map(_as_summary, fields), strict=True))
        problems.extend(found)
        done += len(fields) + len(found)
        if progress:
            progress(done, max(total_estimate, done))

    def unreadable(pack: Path, code: str, message: str) -> None:
        problems.append(Problem(ERROR, code, message, None, str(pack)))

    with paused_gc():  # a million summaries stay alive and make no cycles: collections midway are pure cost
        run_chunks([str(p) for p in ledger.loose_paths()], [p for p in ledger.pack_paths() if p not in sealed],
                   check_loose, check_pack_range, (light,), workers=workers, on_chunk=collect,
                   on_unreadable=unreadable)
        time_among = list(summaries.values()) if sealed else []  # the loose records and unsealed packs'
        for pack in sealed.values():
            full = [_check_one_raw(line, None, f"{pack.path}@{offset}") for offset, line in pack.full]
            sound = [r for r in full if type(r) is tuple]
            # a record met before (loose, or in another pack) is compared there already: once each
            fresh = dict.fromkeys(record_id for record_id in (*(pack.rows[i][0] for i in pack.unordered),
                                                              *map(_first, sound)) if record_id not in summaries)
            summaries.update(zip(map(_first, pack.rows), pack.rows, strict=True))  # summaries already: as they are
            done += len(pack.rows)
            collect((sound, [r for r in full if isinstance(r, Problem)]), done + len(full))
            time_among += map(summaries.__getitem__, fresh)
    return summaries, problems, time_among if sealed else None


def closure_of(tips: Iterable[str], summaries: dict[str, RecordSummary]) -> tuple[set[str], set[str]]:
    """Every record reachable from ``tips`` through ``prev``, and the ids that were referenced but missing."""
    seen: set[str] = set()
    missing: set[str] = set()
    stack = list(tips)
    while stack:
        record_id = stack.pop()
        if record_id in seen or record_id in missing:
            continue
        summary = summaries.get(record_id)
        if summary is None:
            missing.add(record_id)
            continue
        seen.add(record_id)
        stack.extend(summary.prev)
    return seen, missing


Split = tuple[list[RecordSummary], list[RecordSummary], list[RecordSummary]]  # what _with_one_prior returns


def _with_one_prior(summaries: dict[str, RecordSummary], among: Iterable[RecordSummary]) -> Split:
    """``among`` split for the checks along ``prev``, with C-level maps: the records with one ``prev`` and
    that record (``_ABSENT`` when it is missing), and the others (roots and merges)."""
    among = list(among)
    prev_counts = list(map(len, map(_PREV, among)))
    singles = list(compress(among, map((1).__eq__, prev_counts)))
    priors = list(map(summaries.get, map(_first, map(_PREV, singles)), repeat(_ABSENT)))
    return singles, priors, list(compress(among, map((1).__ne__, prev_counts)))


def _check_feeds(summaries: dict[str, RecordSummary], damaged: set[str], split: Split) -> list[Problem]:
    """Each record (of ``split``) follows its own feed: a feed is one key on one device, (actor, feed name).

    The usual record (one ``prev``, present, of the same actor and feed, one ``seq`` before it) is cleared by
    C-level maps, as in :func:`_check_time_order`; the others are looked at one by one. ``split``: the records
    to check, split by :func:`_with_one_prior`."""
    singles, priors, others = split
    usual = map(all, zip(map(operator.eq, map(_ACTOR, singles), map(_ACTOR, priors)),
                         map(operator.eq, map(_FEED, singles), map(_FEED, priors)),
                         map(operator.eq, map(_SEQ, singles), map(operator.add, map(_SEQ, priors), repeat(1))),
                         strict=True))
    suspects = list(compress(singles, map(operator.not_, usual)))
    suspects += others  # a feed's first record (no prev) is usual when its seq is 0: the loop says so quickly
    problems = []
    for summary in suspects:
        expected_seq = 0
        for prev_id in summary.prev:
            before = summaries.get(prev_id)
            if before is None and prev_id in damaged:
                continue  # present but damaged: reported once, where it is
            if before is None:
                problems.append(Problem(
                    ERROR, "missing-prev",
                    f"the record before it in feed {summary.feed} ({prev_id}) is missing: deleted or never "
                    "committed", summary.id,
                ))
                continue
            if (before.actor, before.feed) != (summary.actor, summary.feed):
                problems.append(Problem(
                    ERROR, "feed-mismatch",
                    f"prev {prev_id} belongs to another feed ({before.feed} of {before.actor[:20]})", summary.id,
                ))
            expected_seq = max(expected_seq, before.seq + 1)
        if all(p in summaries for p in summary.prev) and summary.seq != expected_seq:
            problems.append(Problem(
                ERROR, "bad-seq", f"sequence number {summary.seq}, expected {expected_seq}", summary.id
            ))
    return problems


def _check_time_order(summaries: dict[str, RecordSummary], split: Split) -> list[Problem]:
    """A record dated before a record its ``prev`` names in its own feed. A feed is one key on one device,
    appending in order, so its times go backwards only by a clock jump or a backdated record. Compared along
    ``prev``, not by ``seq``: the two branches of a feed forked across a git merge are each their own line.

    Every record is compared, a million at a time in CI: the usual one (one ``prev``, both times in the spelling
    the ledger writes, in order) is cleared by C-level maps, and only the others are looked at one by one.
    ``split``: the records to compare, split by :func:`_with_one_prior`."""
    singles, priors, others = split
    times, prior_times = list(map(_TIME, singles)), list(map(_TIME, priors))
    in_order = map(all, zip(map(operator.ge, times, prior_times), map(_WRITTEN_LENGTH.__eq__, map(len, times)),
                            map(_WRITTEN_LENGTH.__eq__, map(len, prior_times)), strict=True))
    suspects = list(compress(singles, map(operator.not_, in_order)))
    suspects += (summary for summary in others if summary.prev)  # merges: two or more prev
    problems = []
    for summary in suspects:
        for prev_id in summary.prev:
            prior = summaries.get(prev_id)
            if prior is None or (prior.actor, prior.feed) != (summary.actor, summary.feed):
                continue  # missing-prev / feed-mismatch, reported by _check_feeds
            # the ledger writes one spelling (27 characters); others are compared as instants
            same = len(summary.time) == len(prior.time) == _WRITTEN_LENGTH
            if (summary.time < prior.time) if same else (instant(summary.time) < instant(prior.time)):
                problems.append(Problem(
                    WARNING, "time-order",
                    f"dated {summary.time}, before {prior.time} of {prev_id}, which it follows in feed {summary.feed}",
                    summary.id,
                ))
    return problems


def _trust_of(ledger: Ledger, summaries: dict[str, RecordSummary]) -> TrustState:
    return ledger.trust_of(summaries.values())


def _contested_emails(trust: TrustState) -> list[Problem]:
    """One warning per contested email (look-alike spellings together), on the first claimant's identity."""
    contests = {id(contest): contest for contest in trust.contested.values()}
    return [Problem(WARNING, "email-contested", contest.reason, contest.claims[0].record_id)
            for contest in contests.values()]


def verify_ledger(
    ledger: Ledger,
    *,
    against: str | None = None,
    since: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> VerificationReport:
    """Check every object and the ledger as a whole; ``against`` names a checkpoint that must be present.

    ``since`` names a checkpoint signed by a trusted key (the CI key): the records it covers get their bytes
    checked (their hash) and its Merkle root recomputed, but not their signatures and schemas again
    (:mod:`openledger.store.incremental`); ``since`` is also checked as ``against`` is.
    """
    if since is not None:
        from openledger.store.incremental import verify_since  # noqa: PLC0415 - it builds on this module

        return verify_since(ledger, since, workers=workers, progress=progress)
    summaries, problems, _ = _check_objects(ledger, workers, progress)
    with paused_gc():
        return judge_ledger(ledger, summaries, problems, against=against)


def judge_ledger(ledger: Ledger, summaries: dict[str, RecordSummary], problems: list[Problem], *,
                 against: str | None = None, log: LogTree | None = None, since: str | None = None,
                 covered: frozenset[str] = frozenset(), uncovered: Sequence[str] | None = None,
                 time_among: Sequence[RecordSummary] | None = None) -> VerificationReport:
    """The whole-ledger checks (feeds, checkpoints, trust, the pinned checkpoint) over checked records.

    ``covered``: records a trusted checkpoint covers, whose place in their feeds was checked when it was
    signed (incremental verification); a record's feed checks read only it and the records before it, which
    it covers too, and a checkpoint is never signed over a feed error, so they are not checked again (time
    order is: its warnings do not stop a checkpoint)."""
    # Ids of objects that are present but fail their own checks: their neighbours are not "missing" them.
    damaged = {p.record for p in problems if p.record} - summaries.keys()
    every = uncovered is None and not covered  # the feed checks look at every record
    among: Iterable[RecordSummary] = summaries.values()
    if uncovered is not None:  # incremental verification found them already (some may have failed since)
        among = [summaries[i] for i in uncovered if i in summaries]
    elif covered:
        among = [summaries[i] for i in summaries.keys() - covered]
    split = _with_one_prior(summaries, among)
    problems += _check_feeds(summaries, damaged, split)
    # time order for every record: its warnings may stand in a checkpoint (only errors stop one), and --strict
    # must fail on them as a full verification does; the feed checks' split serves when they saw every record
    if time_among is not None:
        split = _with_one_prior(summaries, [s for s in time_among if s.id in summaries])  # some may have failed since
    elif not every:
        split = _with_one_prior(summaries, summaries.values())
    problems += _check_time_order(summaries, split)
    if log is None:
        log = tree_of(summaries, damaged)
    problems += [Problem(ERROR, finding.code, finding.message, finding.record) for finding in log.findings]
    trust = _trust_of(ledger, summaries)
    for record_id, why in trust.ignored:
        problems.append(Problem(WARNING, "ignored-trust-record", why, record_id))
    problems += _contested_emails(trust)
    # a key's status depends on the time only once it is revoked: the other keys are asked once each, and only
    # the records of keys that are not trusted at some time are looked at one by one
    signers = {actor: (trust.status(actor, "") if actor not in trust.revoked_from else "revoked")
               for actor in set(map(_ACTOR, summaries.values()))}
    doubtful = {actor for actor, status in signers.items() if status is not None}
    for summary in compress(summaries.values(), map(doubtful.__contains__, map(_ACTOR, summaries.values()))):
        if summary.kind == "revocation" and summary.body["key"] == summary.actor:
            continue  # a key's own revocation is the one record it must be able to sign at that moment
        status = trust.status(summary.actor, summary.time)
        if status is not None:
            why = f" ({trust.conflicts[summary.actor]})" if status == "identity-conflict" else ""
            problems.append(Problem(WARNING, status, f"signed by {trust.describe(summary.actor)}: {status}{why}",
                                    summary.id))
    if against is not None:
        if not against.startswith("sha256:") or len(against) != 71:
            matches = [i for i in summaries if i.startswith(against if against.startswith("sha256:")
                                                             else "sha256:" + against)]
            if len(matches) != 1:
                raise BadInputError(f"--against needs a full checkpoint id (sha256:<64 hex>), got {against!r}")
            against = matches[0]
        pinned = summaries.get(against)
        if pinned is None:
            problems.append(Problem(
                ERROR, "checkpoint-not-found",
                "the pinned checkpoint is not in the ledger: history was rewritten or truncated", against,
            ))
        elif pinned.kind != "checkpoint":
            raise BadInputError(f"--against {against} is a {pinned.kind} record, not a checkpoint")
    feeds = len(set(zip(map(_ACTOR, summaries.values()), map(_FEED, summaries.values()), strict=True)))
    checkpoints = list(map(_KIND, summaries.values())).count("checkpoint")
    return VerificationReport(len(summaries), feeds, checkpoints, _in_order(problems), trust, summaries, against,
                              log, since)


def _in_order(problems: Iterable[Problem]) -> tuple[Problem, ...]:
    order = {ERROR: 0, UNSUPPORTED: 1, WARNING: 2}
    return tuple(sorted(problems, key=lambda p: (order[p.severity], p.record or "", p.code)))
