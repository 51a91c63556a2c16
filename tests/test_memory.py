"""paused_gc: what a block made waits for the collector only when the block asks for it (``promote``), so a
host's cycles made around an append are collected as before (a hostile review found them held back)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from openledger._internal.memory import paused_gc  # noqa: TID251 - the collector pause is what these tests watch


class Node:
    def __init__(self) -> None:
        self.me: Any = self


def cycle_after(promote: bool) -> weakref.ref[Node]:
    gc.collect()
    with paused_gc(promote=promote):
        node = Node()
    ref = weakref.ref(node)
    del node
    return ref


@pytest.mark.parametrize("promote", [False, True])
def test_a_cycle_made_in_the_block_is_collected_young_unless_promoted(promote: bool) -> None:
    assert gc.isenabled()
    ref = cycle_after(promote)
    gc.collect(0)
    assert (ref() is None) != promote  # promoted: in the oldest generation, out of a young collection's reach
    gc.collect()
    assert ref() is None  # a full collection frees it either way


def test_a_process_that_froze_objects_keeps_its_freeze() -> None:
    gc.freeze()
    try:
        assert gc.get_freeze_count() > 0
        with paused_gc(promote=True):
            pass
        # promoting would have unfrozen everything (a count of 0); objects freed meanwhile lower it a little
        assert gc.get_freeze_count() > 0 and gc.isenabled()
    finally:
        gc.unfreeze()


def test_nested_blocks_leave_the_collector_as_they_found_it() -> None:
    with paused_gc(promote=True):
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
