"""What the whole-ledger checks of a verification need of a record that passed its own checks.

Its own module so that :mod:`openledger.store.seals` can build them as it decodes a seal, and
:mod:`openledger.store.verify` file them without making them again.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

__all__ = ["RecordSummary", "as_summary"]


class RecordSummary(NamedTuple):
    """What the whole-ledger checks need of a record that passed its own checks.

    A named tuple rather than a dataclass: workers send one back per record, and tuples pickle small.
    """

    id: str
    kind: str
    actor: str
    feed: str
    seq: int
    prev: tuple[str, ...]
    time: str
    body: Any  # only for identity, revocation, checkpoint, cosignature and anchor records


# A summary from the plain tuple a worker sent (plain tuples pickle in a third of a named tuple's time),
# without a Python frame per record.
as_summary = functools.partial(tuple.__new__, RecordSummary)
