"""Reading every object of a ledger on all cores: loose objects in chunks of paths, packs in ranges of lines.

``verify`` checks every object; the work per object is independent, so it runs in worker processes, each
given a chunk: a list of loose object paths, or a byte range of a pack, whose lines (those that start in it)
the worker reads. A worker returns its chunk's results; the parent receives them in the order of the chunks (loose
objects first, then the packs in order), so what it builds does not depend on the number of workers.

Small ledgers, one worker, and processes that run other threads (a server: forking one can deadlock the
child) work in-process, through the same functions.

(The reports' scan was tried on it too: at 1M records the parent, parsing what the workers sent, stayed the
bottleneck, 20.5 s against 24.8 s in one process, and the results waiting in the parent's memory raised
`report contributors`' peak from 3.7 to 4.7 GB; it stays in one process.)

>>> import tempfile; from pathlib import Path
>>> pack = Path(tempfile.mkdtemp()) / "pack.jsonl"; _ = pack.write_bytes(b"a\\nbb\\nccc\\n")
>>> [(start, end) for _, start, end, _ in pack_ranges(pack, 4)]
[(0, 4), (4, 8), (8, 9)]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from openledger.errors import IntegrityError
from openledger.store.files import MAX_PACK_BYTES, regular_size

__all__ = ["CHUNK", "CHUNK_BYTES", "PARALLEL_THRESHOLD", "pack_ranges", "run_chunks"]

PARALLEL_THRESHOLD = 4000  # below this, starting worker processes costs more than it saves
CHUNK = 2000  # loose objects per task
RECORD_BYTES = 1200  # about one record's line in a pack: sizes the packs' ranges, estimates progress
CHUNK_BYTES = CHUNK * RECORD_BYTES
R = TypeVar("R")
T = TypeVar("T")


def pack_ranges(path: Path, chunk_bytes: int) -> list[tuple[str, int, int, int]]:
    """``(path, start, end, size)`` byte ranges of ``chunk_bytes`` each that tile the pack of that size, from
    its size alone: a worker takes the lines that start in its range
    (:func:`~openledger.store.files.read_lines_starting_in`).
    Finding line boundaries here meant reading every pack in the parent before any worker started: 1.4 s
    of a million-record verify."""
    size = regular_size(path, MAX_PACK_BYTES)
    return [(str(path), start, min(start + chunk_bytes, size), size) for start in range(0, size, chunk_bytes)]


def run_chunks(loose: Sequence[str], packs: Iterable[Path], loose_task: Callable[..., R],
               pack_task: Callable[..., R], args: tuple[Any, ...], *, workers: int | None,
               on_chunk: Callable[[R, int], None], on_unreadable: Callable[[Path, str, str], None]) -> None:
    """``loose_task(paths, *args)`` for each chunk of ``loose`` paths and
    ``pack_task(path, start, end, size, *args)`` for each range of each pack (:func:`pack_ranges`), on
    ``workers`` processes (default: one per core); ``on_chunk(result,
    estimated_total)`` gets each result in chunk order. A pack that cannot be read at all goes to
    ``on_unreadable(pack, code, message)``."""
    ranges: list[tuple[str, int, int, int]] = []
    for pack in packs:
        try:
            ranges += pack_ranges(pack, CHUNK_BYTES)
        except IntegrityError as exc:  # a symlink, FIFO, device or oversized file: never read
            on_unreadable(pack, exc.code, exc.message)
        except OSError as exc:
            on_unreadable(pack, "unreadable", str(exc))
    tasks: list[tuple[Callable[..., R], tuple[Any, ...]]] = [
        (loose_task, (loose[i:i + CHUNK], *args)) for i in range(0, len(loose), CHUNK)
    ]
    tasks += [(pack_task, (*r, *args)) for r in ranges]
    total_estimate = len(loose) + sum(end - start for _, start, end, _ in ranges) // RECORD_BYTES
    workers = workers or os.cpu_count() or 1
    if workers == 1 or total_estimate < PARALLEL_THRESHOLD or threading.active_count() > 1:
        for function, task_args in tasks:
            on_chunk(function(*task_args), total_estimate)
        return
    # fork: spawn and forkserver re-import the caller's __main__, which breaks scripts without a main guard.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(function, *task_args) for function, task_args in tasks]
        for future in futures:
            on_chunk(future.result(), total_estimate)


_SWITCH_LOCK = threading.Lock()
_switch_users = 0
_switch_saved = 0.005


@contextlib.contextmanager
def _short_switches() -> Iterator[None]:
    """The interpreter's switch interval at 0.2 ms inside the block (nested and concurrent blocks share one
    saved value, restored when the last one ends)."""
    global _switch_users, _switch_saved  # noqa: PLW0603 - one process-wide setting, counted
    with _SWITCH_LOCK:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, 0.0002))
        _switch_users += 1
    try:
        yield
    finally:
        with _SWITCH_LOCK:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


def read_ahead(task: Callable[[T], R], items: Iterable[T], depth: int = 1) -> Iterator[tuple[T, R | Exception]]:
    """``(item, task(item))`` in order, each task run in one worker thread up to ``depth`` items ahead of the
    caller: for reading and hashing (which let go of the GIL) while the caller decodes (which holds it).
    A task's exception is yielded in its result's place. At most ``depth + 1`` results wait in memory.

    The interpreter's switch interval is shortened meanwhile (0.2 ms instead of 5): the worker gives the GIL
    up and takes it back several times per item (open, read, hash), and each time waited up to 5 ms for the
    caller, which left a million-record scan slower with the thread than without it."""
    items = iter(items)
    pending: deque[tuple[T, Future[R]]] = deque()
    with _short_switches(), ThreadPoolExecutor(max_workers=1) as pool:
        while True:
            pending.extend((item, pool.submit(task, item)) for item in islice(items, depth + 1 - len(pending)))
            if not pending:
                return
            item, future = pending.popleft()
            try:
                result: R | Exception = future.result()
            except Exception as exc:  # handed to the caller, who knows what it expects
                result = exc
            yield item, result
