"""Pausing Python's cyclic garbage collector around bulk work.

Reading or writing a whole ledger allocates hundreds of thousands of small containers that all stay alive
(records, bodies, index entries) and form no reference cycles. The collector is triggered by allocations,
and each of its full passes walks every live object, so midway collections are pure cost, and a growing
one: at 100k records they took about a third of a report's time. Reference counting still frees whatever
is dropped; the collector runs again as usual once the block ends.

What the block allocated and kept would still be walked by the first collection after it (0.5 s after
``verify --since`` at a million records): it is moved to the oldest generation first, as ``gc.freeze()``
then ``gc.unfreeze()`` do without walking anything, unless the process froze objects of its own (a server
that forks) whose freeze must stand. They are still collected by full collections, as everything old is.

>>> with paused_gc():
...     rows = [{"n": i} for i in range(1000)]
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector inside the block (nested use is fine); re-enable it if it was on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()  # every tracked object to the permanent generation, and
                gc.unfreeze()  # back into the oldest one: no collection walks them until a full one
            gc.enable()
