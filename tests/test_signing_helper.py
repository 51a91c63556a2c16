"""Large batches are signed by a helper process (openledger/_internal/signing.py): the same bytes as signing in
process, and any failure of the helper leaves the batch signed in process, never a bad or missing record."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

from openledger import Draft, Ledger, verify_ledger
from openledger._internal.signing import SigningHelper
from openledger.store.ledger import HELPER_THRESHOLD
from tests.conftest import FixedClock, make_signer


def drafts(count: int, start: int = 0) -> list[Draft]:
    return [Draft("feedback", {"target": f"model:iris@{i}", "label": "ok"}) for i in range(start, start + count)]


def fresh(path: Path) -> Ledger:
    ledger = Ledger.init(path)
    ledger.clock = FixedClock()
    return ledger


def assert_whole(ledger: Ledger, count: int) -> None:
    report = verify_ledger(ledger)
    assert report.records == count and report.errors == [], report.errors


def test_a_helper_signs_large_batches_byte_for_byte_as_in_process(tmp_path: Path) -> None:
    """Ed25519 is deterministic: a helper-signed ledger and an in-process-signed one hold the same bytes. The
    helper is started once per ledger and key, and stops when the ledger closes."""
    with_helper, without = fresh(tmp_path / "a"), fresh(tmp_path / "b")
    without._no_helper = True
    signer = make_signer(2)
    batches = [drafts(HELPER_THRESHOLD), drafts(HELPER_THRESHOLD + 37, HELPER_THRESHOLD)]
    helped = [r for batch in batches for r in with_helper.append_many(signer, batch)]
    helper = with_helper._helper
    assert helper is not None and helper._process.poll() is None
    plain = [r for batch in batches for r in without.append_many(signer, batch)]
    assert without._helper is None
    assert [r.envelope for r in helped] == [r.envelope for r in plain]
    assert with_helper._helper is helper  # one helper for both batches
    assert_whole(with_helper, len(helped))
    with_helper.close()
    assert helper._process.poll() == 0  # it read the end of its input and exited
    without.close()


def test_small_batches_start_no_helper(ledger: Ledger) -> None:
    ledger.append_many(make_signer(2), drafts(HELPER_THRESHOLD - 1))
    ledger.append(make_signer(2), "feedback", {"target": "model:iris@1", "label": "ok"})
    assert ledger._helper is None


def test_a_helper_that_dies_leaves_its_batch_signed_in_process(ledger: Ledger) -> None:
    signer = make_signer(2)
    first = ledger.append_many(signer, drafts(HELPER_THRESHOLD))
    assert ledger._helper is not None
    ledger._helper._process.kill()
    ledger._helper._process.wait()
    second = ledger.append_many(signer, drafts(HELPER_THRESHOLD, HELPER_THRESHOLD))
    assert ledger._helper is None and ledger._no_helper  # not tried again
    assert len(second) == HELPER_THRESHOLD and second[0].prev == (first[-1].id,)
    assert_whole(ledger, 2 * HELPER_THRESHOLD)


def test_a_helper_signing_with_another_key_is_caught_before_anything_is_stored(ledger: Ledger) -> None:
    """The parent checks a signature of every chunk against the signer's key: a helper with the wrong key
    (or answering garbage) is dropped and the batch signed in process."""
    signer, other = make_signer(2), make_signer(3)
    wrong = SigningHelper(signer.keyid, other._key)
    wrong._verify = signer._key.verify_key  # the parent expects the signer's key, the child holds another
    ledger._helper = wrong
    records = ledger.append_many(signer, drafts(HELPER_THRESHOLD))
    assert ledger._no_helper and wrong._process.poll() is not None
    assert_whole(ledger, len(records))


def test_no_helper_when_the_interpreter_cannot_be_started(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(ledger.root / "no-such-python"))
    records = ledger.append_many(make_signer(2), drafts(HELPER_THRESHOLD))
    assert ledger._helper is None and ledger._no_helper
    assert_whole(ledger, len(records))


def test_the_seed_is_not_in_the_helpers_arguments_or_environment(ledger: Ledger) -> None:
    signer = make_signer(7)
    ledger.append_many(signer, drafts(HELPER_THRESHOLD))
    assert ledger._helper is not None
    pid = ledger._helper._process.pid
    seed = bytes(signer._key)
    for name in ("cmdline", "environ"):
        exposed = Path(f"/proc/{pid}/{name}").read_bytes()
        assert seed not in exposed and seed.hex().encode() not in exposed


def test_a_forked_child_starts_its_own_helper_and_leaves_its_parents_alone(ledger: Ledger) -> None:
    """After a fork the pipes are shared: the child must neither use nor close its parent's helper."""
    signer = make_signer(2)
    ledger.append_many(signer, drafts(HELPER_THRESHOLD))
    parents = ledger._helper
    assert parents is not None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: append a batch, report whether it used a helper of its own
        try:
            ledger._index._db = None  # a SQLite connection must not cross a fork: the child opens its own
            ledger.append_many(signer, drafts(HELPER_THRESHOLD, HELPER_THRESHOLD))
            ours = ledger._helper
            ok = ours is not None and ours is not parents and ours.pid == os.getpid()
            ledger.close()  # stops the child's helper, not the parent's
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 2)
    os.waitpid(pid, 0)
    assert answer == b"ok"
    assert parents._process.poll() is None  # still the parent's, still running
    more = ledger.append_many(signer, drafts(HELPER_THRESHOLD, 2 * HELPER_THRESHOLD))
    assert ledger._helper is parents
    assert_whole(ledger, 2 * HELPER_THRESHOLD + len(more))


def test_a_batch_refused_midway_leaves_nothing_behind_in_the_helper(ledger: Ledger) -> None:
    """A body that fails its schema is refused after earlier records of the batch went to the helper: the next
    batch must not get their signatures, and the helper stays in use."""
    from openledger import BadInputError

    signer = make_signer(2)
    bad = [*drafts(HELPER_THRESHOLD), Draft("feedback", {"target": 7})]
    with pytest.raises(BadInputError):
        ledger.append_many(signer, bad)
    helper = ledger._helper
    assert helper is not None and not helper.idle and len(ledger) == 0
    records = ledger.append_many(signer, drafts(HELPER_THRESHOLD, 5))
    assert ledger._helper is not None and ledger._helper is not helper and not ledger._no_helper
    assert helper._process.poll() is not None  # the tangled one was stopped, a new one signed
    assert_whole(ledger, len(records))


@pytest.mark.parametrize("label", [1, 6000])
def test_a_stopped_helper_does_not_hang_the_append(ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
                                                   label: int) -> None:
    """Waiting for its answer, and (records of 6 kB: a chunk is more than the pipe holds) for it to take a
    chunk, both give up after the patience."""
    import signal

    from openledger._internal import signing

    signer = make_signer(2)
    ledger.append_many(signer, drafts(HELPER_THRESHOLD))
    assert ledger._helper is not None
    process = ledger._helper._process
    monkeypatch.setattr(signing, "_PATIENCE", 0.5)
    os.kill(process.pid, signal.SIGSTOP)
    big = [Draft("feedback", {"target": f"model:iris@{i}", "label": "x" * label}) for i in range(HELPER_THRESHOLD)]
    seen: list[int] = []
    sent = SigningHelper._send

    def spy(self: SigningHelper, data: bytes) -> None:
        seen.append(len(data))
        sent(self, data)

    monkeypatch.setattr(SigningHelper, "_send", spy)
    try:
        records = ledger.append_many(signer, big)
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed and reaped already, as it should be
            os.kill(process.pid, signal.SIGCONT)
    assert ledger._no_helper and len(records) == HELPER_THRESHOLD
    assert (seen[0] > signing._PIPE_BYTES) == (label > 1)  # the large chunk could not fit: the write waited
    assert_whole(ledger, 2 * HELPER_THRESHOLD)


@pytest.mark.parametrize("squeeze", ["no backlog", "a tiny pipe"])
def test_chunks_held_back_from_a_busy_helper_are_signed_in_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, squeeze: str) -> None:
    """A child that has enough in hand, or whose pipe may be full, gets no more chunks; the parent signs those
    at the end. With no backlog allowed, the parent signs every chunk; with a pipe of one byte, the child gets
    only a chunk at a time. Same bytes either way."""
    from openledger._internal import signing

    if squeeze == "no backlog":
        monkeypatch.setattr(signing, "_BACKLOG", 0)
    else:
        monkeypatch.setattr(signing, "_pipe_size", lambda fd: 1)
    shared, alone = fresh(tmp_path / "a"), fresh(tmp_path / "b")
    alone._no_helper = True
    signer = make_signer(4)
    held: list[int] = []
    in_flight: list[int] = []
    collect, send = SigningHelper.collect, SigningHelper._send

    def spy_collect(self: SigningHelper, sign: object) -> list[bytes]:
        held.append(len(self._held))
        return collect(self, sign)  # type: ignore[arg-type]

    def spy_send(self: SigningHelper, data: bytes) -> None:
        in_flight.append(len(self._sent))
        send(self, data)

    monkeypatch.setattr(SigningHelper, "collect", spy_collect)
    monkeypatch.setattr(SigningHelper, "_send", spy_send)
    records = shared.append_many(signer, drafts(HELPER_THRESHOLD + 100))
    assert [r.envelope for r in records] == [r.envelope for r in alone.append_many(signer, drafts(
        HELPER_THRESHOLD + 100))]
    chunks = -(-(HELPER_THRESHOLD + 100) // signing.CHUNK)
    if squeeze == "no backlog":
        assert held == [chunks - 1]  # all but the first, which goes when nothing is in flight
    else:
        assert max(in_flight) == 0  # never a second chunk in the pipe
    assert shared._helper is not None and not shared._no_helper
    assert_whole(shared, len(records))
    shared.close()
    alone.close()


def test_descriptors_above_1023_are_no_problem(ledger: Ledger) -> None:
    """select() refuses descriptors above 1023, which a server with many connections hands out; poll does not."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the open-file limit ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200) if hard == resource.RLIM_INFINITY
                                                 else min(max(soft, 1200), hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        records = ledger.append_many(make_signer(2), drafts(HELPER_THRESHOLD))
        assert ledger._helper is not None and ledger._helper._out > 1023 and not ledger._no_helper
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert_whole(ledger, len(records))


def test_without_fcntl_the_helper_keeps_to_a_plain_pipe(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fcntl", None)  # as where there is no fcntl: importing it fails
    records = ledger.append_many(make_signer(2), drafts(HELPER_THRESHOLD))
    assert ledger._helper is not None and ledger._helper._capacity == 65536 and not ledger._no_helper
    assert_whole(ledger, len(records))


def test_no_helper_in_a_frozen_application(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """There sys.executable is the application itself: it must not be started with the seed on its stdin."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    records = ledger.append_many(make_signer(2), drafts(HELPER_THRESHOLD))
    assert ledger._helper is None and ledger._no_helper
    assert_whole(ledger, len(records))


def test_the_helper_is_in_its_own_session_and_exits_at_the_end_of_its_input_despite_a_fork(ledger: Ledger) -> None:
    """Ctrl-C in a terminal goes to the foreground process group: not to the helper. A forked copy of the
    parent (a worker pool, a pre-fork server) closes its copies of the helper's pipes, so the helper still
    sees the end of its input when the parent closes the ledger, and exits by itself (code 0, not killed)."""
    import time

    ledger.append_many(make_signer(2), drafts(HELPER_THRESHOLD))
    helper = ledger._helper
    assert helper is not None
    assert os.getsid(helper._process.pid) != os.getsid(0)
    pid = os.fork()
    if pid == 0:
        time.sleep(8)
        os._exit(0)
    try:
        ledger.close()
        assert helper._process.returncode == 0
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_signing_helper_false_in_config_yaml_keeps_the_key_in_the_appending_process(repo: Path) -> None:
    from openledger.config import LedgerConfig

    ledger = Ledger.init(repo, LedgerConfig(signing_helper=False))
    assert "signing_helper: false" in (ledger.root / "config.yaml").read_text()
    reopened = Ledger.open(repo)
    assert reopened.config.signing_helper is False
    records = reopened.append_many(make_signer(2), drafts(HELPER_THRESHOLD))
    assert reopened._helper is None
    assert_whole(reopened, len(records))
    reopened.close()
    ledger.close()
    (ledger.root / "config.yaml").write_text("version: 1\nsigning_helper: sometimes\n")
    from openledger import ConfigError

    with pytest.raises(ConfigError, match="signing_helper"):
        Ledger.open(repo)
