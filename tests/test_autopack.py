"""Packing without anyone remembering: the append that makes ``auto_pack`` records loose packs them all."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

import openledger.store.ledger as ledger_module
from openledger import Ledger, verify_ledger
from openledger._internal.index import LedgerIndex  # noqa: TID251 - the index is what these tests watch
from openledger.config import AUTO_PACK, LedgerConfig
from openledger.errors import ConfigError
from tests.conftest import FixedClock, damage_signature, git, make_signer
from tests.test_ledger import _spawn_appender, appended_by


def _ledger(directory: Path, threshold: int) -> Ledger:
    ledger = Ledger.init(directory, LedgerConfig(auto_pack=threshold))
    ledger.clock = FixedClock()
    return ledger


def _feedback(ledger: Ledger, number: int, count: int, start: int = 0) -> list[str]:
    signer = make_signer(number)
    return [ledger.append(signer, "feedback", {"target": f"t{start + i}", "label": "x"}).id for i in range(count)]


def test_the_append_that_reaches_the_threshold_packs_every_loose_object(repo: Path) -> None:
    ledger = _ledger(repo, 20)
    first = _feedback(ledger, 2, 19)
    assert len(ledger.loose_paths()) == 19 and ledger.pack_paths() == []
    last = _feedback(ledger, 3, 1)  # another feed's append counts too: the threshold is the ledger's
    assert ledger.loose_paths() == [] and len(ledger.pack_paths()) == 1
    assert len(ledger.pack_paths()[0].read_bytes().splitlines()) == 20
    assert [r.id for r in ledger.select()] == [*first, *last]  # the index moved them; nothing re-read
    assert ledger.get(first[0]).id == first[0]
    # reopened from the disk alone, every record is where the index says, and the feed goes on
    ledger.close()
    reopened = Ledger.open(repo, clock=FixedClock())
    assert sorted(r.id for r in reopened.select()) == sorted([*first, *last])
    follow = reopened.append(make_signer(2), "feedback", {"target": "after", "label": "x"})
    assert follow.prev == (first[-1],) and follow.seq == 19
    assert verify_ledger(reopened, workers=1).errors == []


def test_two_people_reaching_the_threshold_with_the_same_records_write_the_same_pack(repo: Path,
                                                                                    tmp_path: Path) -> None:
    ledger = _ledger(repo, 10)
    _feedback(ledger, 2, 9)
    ledger.close()
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, symlinks=True)
    names = []
    for root in (repo, clone):
        copy = Ledger.open(root, clock=FixedClock(start=None))
        copy.append(make_signer(4), "feedback", {"target": "same", "label": "x"})  # same key, time, body
        names.append([p.name for p in copy.pack_paths()])
        copy.close()
    assert names[0] == names[1] and len(names[0]) == 1


def test_auto_pack_zero_never_packs_and_the_default_is_documented(repo: Path) -> None:
    ledger = _ledger(repo, 0)
    _feedback(ledger, 2, 30)
    assert len(ledger.loose_paths()) == 30 and ledger.pack_paths() == []
    assert LedgerConfig().auto_pack == AUTO_PACK == 10_000
    assert "auto_pack: 0" in (ledger.root / "config.yaml").read_text()
    default = (Ledger.init(repo.parent / "other").root / "config.yaml").read_text()
    assert "auto_pack" not in default  # the default is not written out


@pytest.mark.parametrize("value", ["-1", "many", "true", "1.5"])
def test_a_bad_auto_pack_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="auto_pack"):
        LedgerConfig.from_yaml(f"version: 1\nauto_pack: {value}\n")


def test_a_pack_that_cannot_be_written_leaves_the_records_loose_and_the_append_succeeds(repo: Path) -> None:
    ledger = _ledger(repo, 5)
    packs = ledger.root / "packs"
    shutil.rmtree(packs)
    packs.write_text("not a directory")  # as a full disk would, the pack write fails
    ids = _feedback(ledger, 2, 8)
    assert len(ledger.loose_paths()) == 8 and [r.id for r in ledger.select()] == ids
    packs.unlink()
    ids += _feedback(ledger, 2, 1, start=8)  # the next append packs all nine
    assert ledger.loose_paths() == [] and len(ledger.pack_paths()) == 1
    assert verify_ledger(ledger, workers=1).errors == []


def test_appenders_racing_across_the_threshold_lose_nothing(repo: Path) -> None:
    ledger = _ledger(repo, 150)
    written = appended_by([_spawn_appender(ledger.root, 200) for _ in range(4)])
    assert len(written) == 800
    report = verify_ledger(ledger, workers=1)
    assert report.errors == [] and set(report.summaries) == written
    assert sorted(s.seq for s in report.summaries.values()) == list(range(800))  # one chain
    assert len(ledger.loose_paths()) < 150 and ledger.pack_paths()
    assert {r.id for r in ledger.select()} == written


def test_branches_that_each_pack_the_same_base_records_merge_cleanly(repo: Path) -> None:
    """Both sides pack the records they share with others of their own: the base records end in two packs.
    git merges the deletions and the two new files without a conflict, and each record is one record."""
    ledger = _ledger(repo, 10)
    base = _feedback(ledger, 2, 8)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "feature")
    feature = _feedback(ledger, 3, 2)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feature work")
    git(repo, "checkout", "-q", "main")
    main = _feedback(ledger, 4, 2)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "main work")
    git(repo, "merge", "-q", "--no-edit", "feature")
    assert git(repo, "status", "--porcelain") == ""
    assert len(ledger.pack_paths()) == 2 and ledger.loose_paths() == []
    report = verify_ledger(ledger, workers=1)
    assert report.errors == [] and report.records == len(base) + len(feature) + len(main)
    assert sorted(r.id for r in ledger.select()) == sorted([*base, *feature, *main])
    log = subprocess.run(["git", "log", "--oneline"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert len(log.splitlines()) == 4


def test_damaged_loose_records_do_not_make_every_append_pack(repo: Path) -> None:
    """They stay loose for verify to name, and are not counted towards the next pack."""
    ledger = _ledger(repo, 5)
    _feedback(ledger, 2, 4)
    for path in ledger.loose_paths():
        damage_signature(path)
    _feedback(ledger, 3, 1)  # five loose: a pack of the one sound record
    assert len(ledger.pack_paths()) == 1 and len(ledger.loose_paths()) == 4
    _feedback(ledger, 3, 4, start=1)
    assert len(ledger.pack_paths()) == 1  # four sound ones loose: below the threshold
    _feedback(ledger, 3, 1, start=5)
    assert len(ledger.pack_paths()) == 2 and len(ledger.loose_paths()) == 4
    assert {p.code for p in verify_ledger(ledger, workers=1).errors} == {"bad-signature"}


def test_pulling_another_clones_pack_moves_the_records_without_rebuilding_the_index(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = _ledger(repo, 10)
    base = _feedback(ledger, 2, 8)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, capture_output=True)
    theirs = Ledger.open(clone / ".openledger", clock=FixedClock())
    more = _feedback(theirs, 3, 2)  # their tenth loose record: they pack all ten
    assert len(theirs.pack_paths()) == 1 and theirs.loose_paths() == []
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "their pack")
    rebuilt: list[int] = []
    clear = LedgerIndex._clear

    def counted(db: sqlite3.Connection) -> None:
        rebuilt.append(1)
        clear(db)

    monkeypatch.setattr(LedgerIndex, "_clear", staticmethod(counted))
    assert len(list(ledger.select())) == 8
    git(repo, "pull", "-q", "--no-rebase", str(clone), "main")
    assert sorted(r.id for r in ledger.select()) == sorted([*base, *more]) and not rebuilt
    assert all(ledger.get(i).id == i for i in [*base, *more])
    assert verify_ledger(ledger, workers=1).errors == []


def test_an_index_busy_during_the_pack_does_not_fail_the_append(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the index's write lock (a long rebuild) while an append packs: the append
    returns, and nothing is lost (the pack is written, the loose files stay: the records are in both)."""
    ledger = _ledger(repo, 5)
    ids = _feedback(ledger, 2, 4)
    ledger._index.db.execute("PRAGMA busy_timeout=200")  # the 60 s timeout running out, quickly
    other = sqlite3.connect(ledger._index.path, isolation_level=None)
    repacked = LedgerIndex.repacked

    def busy(self: LedgerIndex, *args: Any, **kwargs: Any) -> bool:
        other.execute("BEGIN IMMEDIATE")
        return repacked(self, *args, **kwargs)

    monkeypatch.setattr(LedgerIndex, "repacked", busy)
    ids += _feedback(ledger, 2, 1, start=4)
    other.execute("ROLLBACK")
    other.close()
    monkeypatch.setattr(LedgerIndex, "repacked", repacked)
    assert len(ledger.loose_paths()) == 5 and len(ledger.pack_paths()) == 1
    assert [r.id for r in ledger.select()] == ids
    assert verify_ledger(ledger, workers=1).errors == []
    ids += _feedback(ledger, 2, 1, start=5)  # the index finds them in the pack: one loose record counts
    assert ledger.pack()[1] == 6  # by hand: the five again (a pack may hold a record another holds) and the new one
    assert ledger.loose_paths() == [] and [r.id for r in ledger.select()] == ids
    assert verify_ledger(ledger, workers=1).errors == []


def test_packs_split_at_a_size_and_the_split_is_the_same_for_everyone(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "PACK_BYTES", 1_500)  # a few records each
    ledger = _ledger(repo, 0)
    ids = _feedback(ledger, 2, 15)
    ledger.close()
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, symlinks=True)
    names = []
    for root in (repo, clone):
        copy = Ledger.open(root, clock=FixedClock())
        name, count = copy.pack()
        assert count == 15 and name in {p.name for p in copy.pack_paths()} and copy.loose_paths() == []
        assert all(p.stat().st_size < 1_500 + 1_000 for p in copy.pack_paths())
        assert sorted(r.id for r in copy.select()) == sorted(ids)
        names.append(sorted(p.name for p in copy.pack_paths()))
        copy.close()
    assert names[0] == names[1] and len(names[0]) >= 3
