"""Any file under `.openledger/` — malformed, oversized, too deeply nested, a symlink, FIFO or device — is a named
bad record for `verify` and `fsck` (exit 1) and is skipped, with one line on stderr, by the read-only commands,
which still do their job on the rest. Nothing hangs, nothing prints a traceback (issue 12, item 1)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openledger import Ledger, signer_from_seed
from openledger.errors import BadInputError, OpenLedgerError
from openledger.store.dsse import PAYLOAD_TYPE, encode_envelope, pae
from openledger.store.files import MAX_PAYLOAD_BYTES, read_lines_starting_in
from openledger.store.records import open_record, record_id_of
from tests.test_cli import run

SEED = bytes([7]) * 32
SIGNER = signer_from_seed(SEED, feed="hostile")
ENV = {"OPENLEDGER_SIGNING_KEY": base64.b64encode(SEED).decode()}
COMMANDS = (["verify"], ["fsck"], ["log"], ["keys", "list"], ["report", "contributors"], ["ci", "--no-checkpoint"])
HOSTILE_NAME = "ab" + "c" * 62  # fan-out directory + name of a loose object no record has
PACK_NAME = "pack-" + "d" * 64 + ".jsonl"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger with Ada's identity and two feedback records: what every command must still show."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    env = ENV | {"OPENLEDGER_HOME": str(repo.parent / "home")}
    for args in (["init"], ["keys", "publish", "--name", "Ada", "--email", "ada@example.org"],
                 ["record", "feedback", "--body", json.dumps({"target": "model:iris@1", "label": "good-one"})],
                 ["record", "feedback", "--body", json.dumps({"target": "model:iris@1", "label": "good-two"})]):
        result = run(repo, *args, env=env)
        assert result.exit_code == 0, result.output
    return repo


def signed(body: bytes) -> tuple[str, bytes]:
    """A validly signed record (id, envelope) whose payload holds ``body`` verbatim: what a key holder can write
    by hand, past every check OpenLedger makes when it appends."""
    payload = (b'{"actor":"' + SIGNER.keyid.encode() + b'","body":' + body + b',"feed":"hostile","kind":"feedback",'
               b'"links":[],"prev":[],"seq":0,"time":"2026-01-01T00:00:00Z","v":1}')
    return record_id_of(payload), encode_envelope(payload, SIGNER.keyid, SIGNER.sign(pae(PAYLOAD_TYPE, payload)))


def put_signed(root: Path, body: bytes) -> Path:
    record_id, envelope = signed(body)
    path = root / "objects" / record_id[7:9] / record_id[9:]
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(envelope)
    return path


def loose(root: Path) -> Path:
    path = root / "objects" / HOSTILE_NAME[:2] / HOSTILE_NAME[2:]
    path.parent.mkdir(exist_ok=True)
    return path


def _at(where: Callable[[Path], Path], make: Callable[[Path], object]) -> Callable[[Path], Path]:
    """A case: the file ``where`` names in the ledger (a loose object, a pack), made by ``make``."""
    def case(root: Path) -> Path:
        path = where(root)
        make(path)
        return path
    return case


def _sparse(path: Path) -> None:
    path.write_bytes(b"")
    os.truncate(path, 100 * 1024 * 1024)


def _outside(root: Path) -> Path:
    """A symlink to a valid record kept outside the ledger: even sound bytes are not read through a link."""
    record_id = next(Ledger.open(root.parent).select(kind="feedback")).id
    good = root / "objects" / record_id[7:9] / record_id[9:]
    outside = root.parent / "elsewhere"
    shutil.copy(good, outside)
    good.unlink()
    good.symlink_to(outside)
    return good


def _pack(root: Path) -> Path:
    (root / "packs").mkdir(exist_ok=True)
    return root / "packs" / PACK_NAME


def _truncated(root: Path) -> Path:
    path = put_signed(root, b'{"label":"cut","target":"x"}')
    path.write_bytes(path.read_bytes()[:100])
    return path


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    # name: (make the hostile file, the problem code `verify --format json` gives it)
    "deeply nested, validly signed": (
        lambda root: put_signed(root, b'{"label":' + b"[" * 50_000 + b'{"$float":"NaN"}' + b"]" * 50_000 + b"}"),
        "too-deep"),
    "65 levels, validly signed": (lambda root: put_signed(root, b'{"label":' + b"[" * 63 + b"]" * 63 + b"}"),
                                  "too-deep"),
    "symlink to /dev/zero": (_at(loose, lambda path: path.symlink_to("/dev/zero")), "not-regular"),
    "FIFO": (_at(loose, os.mkfifo), "not-regular"),
    "symlink to a sound record outside": (_outside, "not-regular"),
    "100 MB sparse file": (_at(loose, _sparse), "oversized"),
    "random bytes": (_at(loose, lambda path: path.write_bytes(os.urandom(4096))), "malformed"),
    "truncated record": (_truncated, "malformed"),
    "FIFO pack": (_at(_pack, os.mkfifo), "not-regular"),
    "pack symlinked to /dev/zero": (_at(_pack, lambda path: path.symlink_to("/dev/zero")), "not-regular"),
    "garbage pack": (_at(_pack, lambda path: path.write_bytes(b"not a record\n" * 3)), "malformed"),
}


def hostile_copy(template: Path, tmp_path: Path, case: str) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    shutil.copytree(template, repo, symlinks=True)
    bad = CASES[case][0](repo / ".openledger")
    return repo, bad


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in its own process: a hang is a failure (timeout), not a stuck suite."""
    env = os.environ | {"OPENLEDGER_HOME": str(repo.parent / "home"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "openledger_cli", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_command_survives_a_hostile_file_and_names_it(template: Path, tmp_path: Path, case: str) -> None:
    repo, bad = hostile_copy(template, tmp_path, case)
    for args in COMMANDS:
        result = cli(repo, *args)
        shown = result.stdout + result.stderr
        assert "Traceback" not in shown, (args, shown)
        if args[0] in ("verify", "fsck", "ci"):
            assert result.returncode == 1, (args, shown)
            assert bad.name in shown, (args, shown)
            continue
        # read-only commands do their job on the rest, and say in one line that something was left out
        assert result.returncode in (0, 1), (args, shown)
        assert bad.name in result.stderr, (args, result.stderr)
        assert "Ada" in result.stdout, (args, shown)
    report = json.loads(cli(repo, "verify", "--format", "json").stdout)
    assert CASES[case][1] in {p["code"] for p in report["problems"]}, report["problems"]


def test_a_hostile_file_name_is_shown_escaped(template: Path, tmp_path: Path) -> None:
    """The name of a bad pack reaches the terminal in problem and warning lines: an OSC title and a line
    separator in it must arrive as visible text, not as a terminal command or a second line."""
    repo = tmp_path / "repo"
    shutil.copytree(template, repo)
    (repo / ".openledger" / "packs").mkdir(exist_ok=True)
    (repo / ".openledger" / "packs" / "pack-\x1b]0;PASSED\x07\u2028x.jsonl").write_bytes(b"garbage\n")
    for args in COMMANDS:
        result = cli(repo, *args)
        shown = result.stdout + result.stderr
        assert result.returncode in (0, 1) and "Traceback" not in shown, (args, shown)
        assert "\x1b" not in shown and "\x07" not in shown and "\u2028" not in shown, (args, shown)
    assert "PASSED" in cli(repo, "verify").stdout  # named, escaped


def test_append_refuses_what_readers_would_refuse(template: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(template, repo)
    ledger = Ledger.open(repo)
    before = len(ledger)
    with pytest.raises(BadInputError, match="larger than"):
        ledger.append(SIGNER, "feedback", {"target": "x", "label": "a" * MAX_PAYLOAD_BYTES})
    nested: object = "deep"
    for _ in range(70):
        nested = [nested]
    with pytest.raises(BadInputError, match="64 levels"):
        ledger.append(SIGNER, "feedback", {"target": "x", "label": "y", "extra": nested})
    assert len(Ledger.open(repo)) == before
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"target": "x", "label": "a" * MAX_PAYLOAD_BYTES}))
    result = run(repo, "record", "feedback", "--body", f"@{huge}", env=ENV | {"OPENLEDGER_HOME": str(tmp_path)})
    assert result.exit_code == 2 and "larger than" in result.stderr and "Traceback" not in result.output
    assert len(Ledger.open(repo)) == before


# -- the fuzz -------------------------------------------------------------------------------------------------

_record_like = st.builds(lambda body: signed(body)[1], st.sampled_from([
    b'{"label":"x","target":"y"}', b"[" * 70 + b"]" * 70, b'{"label":' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"label":{"$float":"NaN"},"target":"y"}', b'"\\u0000"', b"null"]))
_contents = st.one_of(st.binary(max_size=2048), _record_like,
                      _record_like.flatmap(lambda data: st.integers(0, len(data)).map(lambda n: data[:n])),
                      st.builds(lambda n: b"[" * n, st.integers(1, 200_000)))
_kinds = st.sampled_from(["file", "file", "file", "fifo", "symlink-zero", "symlink-null", "symlink-dangling",
                          "directory"])


def _drop(root: Path, where: str, kind: str, data: bytes, name: str) -> Path:
    if where == "pack":
        (root / "packs").mkdir(exist_ok=True)
        path = root / "packs" / f"pack-{name}.jsonl"
    else:
        path = root / "objects" / name[:2] / name[2:]
        path.parent.mkdir(exist_ok=True)
    if kind == "file":
        path.write_bytes(data)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to({"symlink-zero": "/dev/zero", "symlink-null": "/dev/null",
                         "symlink-dangling": str(root / "nowhere")}[kind])
    return path


@pytest.mark.timeout(600)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.tuples(st.sampled_from(["loose", "pack"]), _kinds, _contents,
                                st.text("0123456789abcdef", min_size=64, max_size=64)),
                      min_size=1, max_size=3, unique_by=lambda f: (f[0], f[3])))
def test_fuzz_random_files_never_crash_hang_or_pass_verify(template: Path, tmp_path_factory: pytest.TempPathFactory,
                                                           files: list[tuple[str, str, bytes, str]]) -> None:
    repo = tmp_path_factory.mktemp("fuzz") / "repo"
    shutil.copytree(template, repo, symlinks=True)
    for where, kind, data, name in files:
        _drop(repo / ".openledger", where, kind, data, name)
    env = ENV | {"OPENLEDGER_HOME": str(repo.parent / "home")}
    FUZZ["examples"] += 1
    for args in COMMANDS:
        FUZZ["runs"] += 1
        result = run_caught(repo, *args, env=env)
        if result[0] is not None:
            FUZZ["tracebacks"] += 1
        assert result[0] is None, (args, files, result[0])
        code = result[1]
        if args[0] in ("verify", "fsck", "ci"):
            # a verdict of "OK" is right only when every file dropped is a pack of sound records (the fuzz signs
            # some with Ada's key, and a pack of them is a pack like any other)
            sound = all(where == "pack" and kind == "file" and _sound_pack(data) for where, kind, data, _ in files)
            allowed = ({0, 1} if args[0] == "fsck" else {0}) if sound else {1}  # fsck also checks pack names
        else:
            allowed = {0, 1}
        if code not in allowed:
            FUZZ["wrong exit"] += 1
        assert code in allowed, (args, files, code)


def _sound_pack(data: bytes) -> bool:
    try:
        for line in data.split(b"\n"):  # a pack is one envelope a line
            if line:
                open_record(line)
    except OpenLedgerError:
        return False
    return True


FUZZ = {"examples": 0, "runs": 0, "tracebacks": 0, "wrong exit": 0}


def run_caught(repo: Path, *args: str, env: dict[str, str]) -> tuple[BaseException | None, int]:
    """(an exception that escaped the CLI, exit code): in-process, for speed; pytest-timeout guards hangs."""
    from click.testing import CliRunner

    from openledger_cli.main import cli as command

    old = Path.cwd()
    os.chdir(repo)
    try:
        result = CliRunner().invoke(command, list(args), env=env, catch_exceptions=True)
    finally:
        os.chdir(old)
    escaped = result.exception if result.exception and not isinstance(result.exception, SystemExit) else None
    return escaped, result.exit_code


def test_fuzz_counts_are_reported() -> None:
    """Printed with `pytest -s`: how many hostile inputs the fuzz tried and how many went wrong."""
    print(f"\nhostile-file fuzz: {FUZZ}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x")), max_size=12),
       newline_at_end=st.booleans(), chunk=st.integers(1, 50))
def test_ranges_that_tile_a_pack_give_each_line_once_at_its_offset(tmp_path_factory: pytest.TempPathFactory,
                                                                   lines: list[bytes], newline_at_end: bool,
                                                                   chunk: int) -> None:
    """verify splits a pack by its size alone; each worker reads the lines that start in its range."""
    data = b"\n".join(lines) + (b"\n" if newline_at_end and lines else b"")
    path = tmp_path_factory.mktemp("pack") / "pack.jsonl"
    path.write_bytes(data)
    expected, offset = [], 0
    for line in data.split(b"\n"):
        if line:
            expected.append((offset, line))
        offset += len(line) + 1
    found = []
    for start in range(0, len(data), chunk):
        first, part = read_lines_starting_in(path, start, min(start + chunk, len(data)), len(data))
        position = 0
        for line in part.split(b"\n"):
            if line:
                found.append((first + position, line))
            position += len(line) + 1
    assert found == expected


def test_a_pack_that_grows_after_it_was_split_is_read_as_it_was(tmp_path: Path) -> None:
    """Bytes appended after the split (no newline at the end before) do not join the last line."""
    path = tmp_path / "pack.jsonl"
    path.write_bytes(b"first\nlast")
    size = path.stat().st_size
    with path.open("ab") as handle:
        handle.write(b"-appended\n")
    assert read_lines_starting_in(path, 0, size, size) == (0, b"first\nlast")
    assert read_lines_starting_in(path, 3, size, size) == (6, b"last")


def test_a_pack_removed_after_it_was_split_is_a_problem_of_its_range(tmp_path: Path) -> None:
    from openledger.store.verify import check_pack_range

    path = tmp_path / "pack.jsonl"
    path.write_bytes(b"x\n")
    path.unlink()
    (_, problems) = check_pack_range(str(path), 0, 2, 2)
    assert [(p.code, p.location) for p in problems] == [("unreadable", f"{path}@0")]
    os.mkfifo(path)
    (_, problems) = check_pack_range(str(path), 0, 2, 2)
    assert [p.code for p in problems] == ["not-regular"]
