"""Time order inside a feed (issue 12, item 6): a record dated before a record it follows in its own feed is a
``time-order`` warning (``--strict`` fails), compared along ``prev`` so a feed forked across a git merge is
two lines, not one sequence."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from openledger import Ledger, verify_ledger
from openledger.identity.trust import in_time_order, instant
from openledger.store.records import Payload, Record, sign_record
from openledger_cli.main import cli
from tests.conftest import git, make_signer, publish

START = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
ADA, ROOT = make_signer(2, feed="ada-laptop"), make_signer(1, feed="root")


def at(days: float) -> datetime:
    return START + timedelta(days=days)


def strict_verify(repo: Path) -> tuple[int, list[dict[str, str]]]:
    old = Path.cwd()
    os.chdir(repo)
    try:
        result = CliRunner().invoke(cli, ["verify", "--strict", "--format", "json"], catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, json.loads(result.stdout)["problems"]


def test_a_stolen_key_backdating_an_approval_after_its_revocation(repo: Path, ledger: Ledger) -> None:
    """Ada revokes her stolen key from day 5; the thief, holding her laptop's feed, signs an approval dated
    day 4 after the revocation: before the compromise by its claimed time, so trust alone accepts it."""
    publish(ledger, ADA, "Ada")
    ledger.append(ADA, "review", {"decision": "approve", "target": "run:1"}, time=at(1))
    revocation = ledger.append(ADA, "revocation", {"key": ADA.keyid, "reason": "laptop stolen",
                                                   "compromised_since": at(5).strftime("%Y-%m-%dT%H:%M:%SZ")},
                               time=at(6))
    assert strict_verify(repo)[0] == 0
    forged = ledger.append(ADA, "review", {"decision": "approve", "target": "run:2"}, time=at(4))
    assert ledger.trust().status(ADA.keyid, forged.time) is None  # what made it pass before
    code, problems = strict_verify(repo)
    assert code == 1
    assert [(p["code"], p["record"], p["severity"]) for p in problems] == [("time-order", forged.id, "warning")]
    assert revocation.id in problems[0]["message"] and forged.time in problems[0]["message"]
    assert verify_ledger(ledger, workers=1).exit_code(strict=False) == 0  # a warning, not an error


def test_parallel_branches_of_a_feed_are_compared_along_prev(repo: Path, ledger: Ledger) -> None:
    publish(ledger, ADA, "Ada")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "feature")
    late = ledger.append(ADA, "feedback", {"target": "f", "label": "on feature"}, time=at(10))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feature work")
    git(repo, "checkout", "-q", "main")
    # on main, the same feed goes on with earlier dates than the feature branch's record, and more of them:
    # by seq these follow `late`; along prev they do not
    main = [ledger.append(ADA, "feedback", {"target": "m", "label": str(n)}, time=at(n)) for n in (1, 2)]
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "main work")
    git(repo, "merge", "-q", "--no-edit", "feature")
    assert main[-1].seq > late.seq
    assert strict_verify(repo) == (0, [])
    # the record after the merge follows both branches: it must not be dated before either
    joined = ledger.append(ADA, "feedback", {"target": "j", "label": "after the merge"}, time=at(5))
    assert set(joined.prev) == {late.id, main[-1].id}
    code, problems = strict_verify(repo)
    assert code == 1 and [(p["code"], p["record"]) for p in problems] == [("time-order", joined.id)]
    assert late.id in problems[0]["message"]


def test_equal_times_are_in_order_and_each_record_is_compared_with_the_one_it_follows(ledger: Ledger) -> None:
    ledger.append(ADA, "feedback", {"target": "x", "label": "a"}, time=at(3))
    same = ledger.append(ADA, "feedback", {"target": "x", "label": "b"}, time=at(3))
    back = ledger.append(ADA, "feedback", {"target": "x", "label": "c"}, time=at(1))
    ledger.append(ADA, "feedback", {"target": "x", "label": "d"}, time=at(2))  # after `back`: the break is one
    problems = [p for p in verify_ledger(ledger, workers=1).problems if p.code == "time-order"]
    assert [p.record for p in problems] == [back.id] and same.id in problems[0].message


def test_other_spellings_of_a_time_are_compared_as_instants(ledger: Ledger) -> None:
    """Times the ledger does not write itself (a record signed elsewhere): ``.5Z`` is ``.500000Z``."""
    first = ledger.append(ADA, "feedback", {"target": "x", "label": "a"}, time=at(0) + timedelta(microseconds=500000))

    def signed_after(prev: Record, time: str) -> Record:
        payload = Payload(kind="feedback", actor=ADA.keyid, feed=ADA.feed, seq=prev.seq + 1, prev=(prev.id,),
                          time=time, links=(), body={"target": "x", "label": time})
        record = sign_record(payload, ADA)
        ledger._write_loose(record)
        return record

    equal = signed_after(first, "2026-11-01T12:00:00.5Z")
    earlier = signed_after(equal, "2026-11-01T12:00:00.49Z")
    assert [p.record for p in verify_ledger(ledger, workers=1).problems if p.code == "time-order"] == [earlier.id]


def test_other_feeds_and_other_keys_do_not_order_each_other(ledger: Ledger) -> None:
    ledger.append(ADA, "feedback", {"target": "x", "label": "a"}, time=at(3))
    ledger.append(make_signer(2, feed="ada-desktop"), "feedback", {"target": "x", "label": "b"}, time=at(1))
    ledger.append(ROOT, "feedback", {"target": "x", "label": "c"}, time=at(0))
    assert not [p for p in verify_ledger(ledger, workers=1).problems if p.code == "time-order"]


class _Timed(NamedTuple):
    id: str
    time: str


_SECONDS = st.sampled_from(["2026-01-01T00:00:00", "2026-01-01T00:00:01", "2025-12-31T23:59:59"])
_FRACTIONS = st.sampled_from(["", ".5", ".500000", ".499999", ".1234567", ".000001", ".0"])


@given(st.lists(st.tuples(_SECONDS, _FRACTIONS, st.sampled_from("abc")), max_size=12), st.booleans())
def test_time_order_is_the_instants_order_whatever_the_spelling(rows: list[tuple[str, str, str]],
                                                                reverse: bool) -> None:
    """Records sort by the instant of their time, then id, whether or not every time has the ledger's own
    spelling (the fast path compares the strings; ``.5Z`` and ``.500000Z`` are one instant)."""
    items = [_Timed(f"sha256:{letter}{n}", f"{seconds}{fraction}Z") for n, (seconds, fraction, letter) in
             enumerate(rows)]
    expected = sorted(items, key=lambda item: (instant(item.time), item.id), reverse=reverse)
    assert in_time_order(items, reverse=reverse) == expected
    written = [item._replace(time=instant(item.time)) for item in items]  # every time as the ledger writes it
    assert in_time_order(written, reverse=reverse) == sorted(written, key=lambda item: (item.time, item.id),
                                                             reverse=reverse)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@example({"type": float("nan")}, {"type": None})  # orjson writes both as null
@example([float("inf")], [None])
@example("null", None)
@example(1, 1.0)
@example(True, 1)
@example(2**70, 2**70 + 1)  # past orjson's 64 bits
@given(_JSON, _JSON)
def test_a_feedback_source_memo_key_never_merges_two_sources_repr_tells_apart(a: object, b: object) -> None:
    """The report memoises who a feedback source credits by a spelling of the source; two sources share a
    spelling only if they print alike (NaN is not null, the string "null" is not None, 1 is not 1.0)."""
    from openledger.lineage.graph import _spelled

    if _spelled(a) == _spelled(b):
        assert repr(a) == repr(b)
