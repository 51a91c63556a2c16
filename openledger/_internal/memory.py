"""Pausing Python's cyclic garbage collector around bulk work.

Reading or writing a whole ledger allocates hundreds of thousands of small containers that all stay alive
(records, bodies, index entries) and form no reference cycles. The collector is triggered by allocations,
and each of its full passes walks every live object, so midway collections are pure cost, and a growing
one: at 100k records they took about a third of a report's time. Reference counting still frees whatever
is dropped; the collector runs again as usual once the block ends.

What the block allocated and kept is still walked by the first collection after it (0.5 s after
``verify --since`` at a million records). With ``promote=True`` it is moved to the oldest generation first,
as ``gc.freeze()`` then ``gc.unfreeze()`` do without walking anything; the young generation is collected on
entry, so what is promoted is what the block made (and whatever other threads made meanwhile). Promoted
objects wait for a full collection, so this is for a block that builds a large result which makes no cycles,
not for one that runs often (an append): a host's cycles made around it would wait too. Never done when the
process froze objects of its own (a server that forks), whose freeze must stand.

>>> with paused_gc():
...     rows = [{"n": i} for i in range(1000)]
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc(*, promote: bool = False) -> Iterator[None]:
    """Disable the cyclic collector inside the block (nested use is fine); re-enable it if it was on, first
    promoting what the block kept to the oldest generation if ``promote`` (see the module's docstring)."""
    enabled = gc.isenabled()
    promote = promote and enabled and gc.get_freeze_count() == 0
    if promote:
        gc.collect(0)
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if promote and gc.get_freeze_count() == 0:
                gc.freeze()  # every tracked object to the permanent generation, and
                gc.unfreeze()  # back into the oldest one: no young collection walks them
            gc.enable()
