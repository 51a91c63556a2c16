"""Which records each checkpoint commits to, and in which order: the leaves of the ledger's Merkle tree.

Two tree versions exist; a checkpoint's ``version`` field says which one it uses:

* **version 1** (no ``version`` field; written before append-ordered checkpoints): the leaves are the
  sorted ids of every record reachable through ``prev`` from the checkpoint's tips.
* **version 2**: the leaves are the leaves of the ``previous`` checkpoint, in the same order, followed by
  the records new since then, sorted by id. "New" means reachable from the checkpoint's tips and not
  covered by ``previous``. So every checkpoint's tree extends the tree of each checkpoint before it in its
  ``previous`` chain, and any two of them have an RFC 9162 consistency proof.

The covered records of a version 2 checkpoint are its previous checkpoint's covered records plus what its
tips reach, so the walk that finds them stops where the previous checkpoint's coverage begins: checking a
chain of checkpoints costs one walk over the ledger, however many checkpoints there are.

Checkpoints made on two branches that were merged form a tree of ``previous`` links, not a chain: two
checkpoints extend the same one. The next checkpoint extends one tip of that tree (:func:`extension_base`):
the newest tip its own signer made, so a CI key's line of checkpoints on the default branch stays one
chain whatever is merged into it; with none of its own, the newest tip. The other branch's checkpoint
stays valid (its own leaves are recomputed), every record it covers is covered again by the next
checkpoint, but no consistency proof leads from it to the next one.

>>> ids = ["sha256:" + bytes([i]).hex() * 32 for i in range(3)]
>>> prev = {ids[0]: (), ids[1]: (ids[0],), ids[2]: (ids[1],)}
>>> first = CheckpointHead("sha256:" + "a" * 64, 2, 2, "", (ids[1],), None, "k", "t")
>>> second = CheckpointHead("sha256:" + "b" * 64, 2, 3, "", (ids[2],), first.id, "k", "t")
>>> tree = LogTree([first, second], prev.get)
>>> tree.leaves_of(second.id) == tree.leaves_of(first.id) + [ids[2]]
True
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from openledger.errors import BadInputError
from openledger.identity.trust import TrustSource, instant
from openledger.store.merkle import MerkleAccumulator
from openledger.store.note import Note, checkpoint_text, verify_log_signature
from openledger.store.records import public_key_of

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointHead",
    "Finding",
    "LogTree",
    "PrevOf",
    "extension_base",
    "tree_of",
]

CHECKPOINT_VERSION = 2
PrevOf = Callable[[str], "Sequence[str] | None"]  # a record's prev ids, or None when the record is absent
NewRecords = Callable[[str, Sequence[str]], None]
if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison
T = TypeVar("T", bound="SupportsRichComparison")


@dataclass(frozen=True, slots=True)
class Finding:
    """A checkpoint that does not match what it covers (``code`` as :mod:`openledger.store.verify` names it)."""

    code: str
    message: str
    record: str


@dataclass(frozen=True, slots=True)
class CheckpointHead:
    """What the tree needs of a checkpoint record: its claimed size and root, tips and predecessor."""

    id: str
    version: int
    count: int
    root: str
    tips: tuple[str, ...]
    previous: str | None
    signer: str
    time: str
    origin: str | None = None
    signature: str | None = None  # the base64 value of its signed note's signature line (version 2)

    @classmethod
    def from_record(cls, record_id: str, actor: str, time: str, body: Mapping[str, Any]) -> CheckpointHead:
        tips = tuple(tip for feed_tips in body["feeds"].values() for tip in feed_tips)
        return cls(record_id, int(body.get("version", 1)), int(body["count"]), str(body["root"]), tips,
                   body.get("previous"), actor, time, body.get("origin"), body.get("signature"))

    def note_text(self) -> str:
        """The text of its C2SP signed note (version 2 checkpoints only)."""
        if self.origin is None:
            raise ValueError(f"checkpoint {self.id} has no signed note (version {self.version})")
        return checkpoint_text(self.origin, self.count, bytes.fromhex(self.root[7:]))

    def note_signed(self) -> bool:
        """Does its note signature verify with its signer's key (under the origin as key name)?"""
        if self.origin is None or self.signature is None:
            return False
        try:
            note = Note(self.note_text(), ((self.origin, base64.b64decode(self.signature)),))
        except (BadInputError, ValueError):  # an origin no note may carry, a signature that is not base64
            return False
        return verify_log_signature(note, self.origin, public_key_of(self.signer))

    @property
    def order(self) -> tuple[int, str, str]:
        """Newest first when sorted in reverse: by size, then claimed time, then id (a total order)."""
        return (self.count, instant(self.time), self.id)


def extension_base(heads: Iterable[CheckpointHead], signer: str) -> CheckpointHead | None:
    """The checkpoint a new checkpoint by ``signer`` extends.

    Only tips of the checkpoint tree qualify (checkpoints no other checkpoint names as ``previous``): in one
    linear history there is exactly one, the newest, whoever signs. After a merge there can be several;
    then the newest one ``signer`` made, so that a CI key's line of checkpoints on the default branch stays
    one chain whatever was merged into it, and failing that the newest.
    """
    heads = list(heads)
    extended = {head.previous for head in heads}
    tips = [head for head in heads if head.id not in extended]
    own = [head for head in tips if head.signer == signer]
    pool = own or tips
    return max(pool, key=lambda head: head.order) if pool else None


@dataclass
class _Computed:
    count: int
    root: str | None  # None: records it covers are missing, so there is nothing to compare
    missing: frozenset[str] = frozenset()


def _walk(tips: Iterable[str], covered: set[str] | frozenset[str], prev_of: PrevOf
          ) -> tuple[list[str], set[str]]:
    """The records reachable from ``tips`` that are not in ``covered`` (sorted), and the ids that are missing.
    ``covered`` must be closed under ``prev`` (every checkpoint's coverage is), so the walk stops at it."""
    seen: set[str] = set()
    missing: set[str] = set()
    stack = [tip for tip in tips if tip not in covered]
    push, pop, add = stack.append, stack.pop, seen.add  # the hot loop of every verification: no lookups
    while stack:
        record_id = pop()
        while record_id not in seen:  # along a feed (one prev each) without the stack
            prev = prev_of(record_id)
            if prev is None:
                missing.add(record_id)
                break
            add(record_id)
            if len(prev) != 1:
                for before in prev:
                    if before not in covered and before not in seen:
                        push(before)
                break
            record_id = prev[0]
            if record_id in covered:
                break
    return sorted(seen), missing


class LogTree:
    """Every checkpoint's leaves recomputed from the records (``prev_of``), checked against what it claims.

    ``damaged`` ids are present but fail their own checks: a checkpoint covering one is not reported (the
    damaged record is, where it is). ``on_new(checkpoint, records)`` is called with the records each
    checkpoint adds to its predecessor's leaves (once per branch of the checkpoint tree they appear in).
    """

    def __init__(self, heads: Iterable[CheckpointHead], prev_of: PrevOf, *, damaged: Iterable[str] = (),
                 on_new: NewRecords | None = None, capture: str | None = None,
                 known: Mapping[str, tuple[list[str], MerkleAccumulator]] | None = None) -> None:
        self.heads: dict[str, CheckpointHead] = {head.id: head for head in heads}
        self.prev_of = prev_of
        # checkpoint -> (the records it adds, the tree after them), already shown to be what it states and
        # present (openledger.store.leaves): taken as they are instead of walked and hashed
        self._known = dict(known or {})
        self.findings: list[Finding] = []
        self.computed: dict[str, _Computed] = {}
        self._capture = capture
        self.captured: frozenset[str] | None = None  # the covered records of ``capture``, found on the way
        self._damaged = set(damaged)
        self._children: dict[str, list[str]] = {}
        roots: list[str] = []
        for head in sorted(self.heads.values(), key=lambda h: h.id):
            if head.version >= 2 and not head.note_signed():
                self.findings.append(Finding(
                    "checkpoint-note-signature", "its signed-note signature does not verify with its signer's key",
                    head.id))
            if head.previous is not None and self.heads.get(head.previous) is None:
                self.findings.append(Finding(
                    "checkpoint-previous-missing", f"previous checkpoint {head.previous} is missing", head.id))
                if head.version >= 2:
                    continue  # its leaves begin with the missing checkpoint's: nothing to recompute
            if head.version >= 2 and head.previous is not None:
                self._children.setdefault(head.previous, []).append(head.id)
            else:
                roots.append(head.id)
        for root in roots:
            self._visit(root, on_new)

    # -- the walk over the tree of checkpoints ---------------------------------------------------------------
    def _visit(self, root: str, on_new: NewRecords | None) -> None:
        """Depth first over ``previous`` links with one shared state (covered set, leaves, accumulator) that
        is extended on the way down and undone on the way back: each record is hashed once per branch."""
        covered: set[str] = set()
        accumulator = MerkleAccumulator()
        inherited: frozenset[str] = frozenset()
        # stack entries: (checkpoint id, None) to enter; (checkpoint id, undo) to leave
        stack: list[tuple[str, tuple[list[str], MerkleAccumulator, frozenset[str]] | None]] = [(root, None)]
        while stack:
            checkpoint_id, undo = stack.pop()
            if undo is not None:
                if stack:  # (after the last checkpoint there is nothing to undo for)
                    added, accumulator, inherited = undo
                    covered.difference_update(added)
                continue
            head = self.heads[checkpoint_id]
            known = self._known.get(checkpoint_id)
            missing: set[str] = set()
            if known is not None and len(covered) + len(known[0]) == known[1].size:
                new = known[0]
                saved = (new, accumulator, inherited)
                covered.update(new)
                accumulator = known[1].copy()
            else:
                new, missing = _walk(head.tips, covered, self.prev_of)
                saved = (new, accumulator.copy(), inherited)
                covered.update(new)
                accumulator.extend(new)
            if on_new is not None and new:
                on_new(checkpoint_id, new)
            inherited = inherited | missing
            self._judge(head, accumulator, inherited)
            if checkpoint_id == self._capture:
                self.captured = frozenset(covered)
            stack.append((checkpoint_id, saved))
            stack.extend((child, None) for child in reversed(self._children.get(checkpoint_id, [])))

    def _judge(self, head: CheckpointHead, accumulator: MerkleAccumulator, missing: frozenset[str]) -> None:
        if missing:
            self.computed[head.id] = _Computed(accumulator.size, None, missing)
            if missing & self._damaged:
                return  # the damaged record is reported where it is; this checkpoint cannot be recomputed
            shown = ", ".join(sorted(missing)[:3]) + (" …" if len(missing) > 3 else "")
            self.findings.append(Finding(
                "checkpoint-missing-records", f"{len(missing)} record(s) this checkpoint covers are gone: {shown}",
                head.id))
            return
        root = "sha256:" + accumulator.root().hex()
        self.computed[head.id] = _Computed(accumulator.size, root)
        if accumulator.size != head.count:
            self.findings.append(Finding(
                "checkpoint-count", f"covers {accumulator.size} records, claims {head.count}", head.id))
        if root != head.root:
            self.findings.append(Finding(
                "checkpoint-root", f"Merkle root is {root}, the checkpoint says {head.root}", head.id))

    # -- questions ---------------------------------------------------------------------------------------
    def sound(self, checkpoint_id: str) -> bool:
        """Does the checkpoint match what it covers (count and root recomputed, nothing missing)?"""
        computed = self.computed.get(checkpoint_id)
        head = self.heads.get(checkpoint_id)
        return (computed is not None and head is not None and computed.root == head.root
                and computed.count == head.count)

    def chain(self, checkpoint_id: str) -> list[str]:
        """The checkpoint and the ones whose leaves its leaves extend, oldest first (one, for version 1)."""
        chain = [checkpoint_id]
        head = self.heads[checkpoint_id]
        while head.version >= 2 and head.previous is not None and head.previous in self.heads:
            head = self.heads[head.previous]
            chain.append(head.id)
        chain.reverse()
        return chain

    def leaves_of(self, checkpoint_id: str) -> list[str]:
        """The checkpoint's leaves in tree order (recomputed along its chain; missing records left out)."""
        return [leaf for _, new, _ in self.increments(checkpoint_id) for leaf in new]

    def increments(self, checkpoint_id: str) -> list[tuple[str, list[str], set[str]]]:
        """Along the checkpoint's chain, oldest first: each checkpoint, the leaves it adds (known ones as they
        are, the others walked), and the records they reach that are missing."""
        covered: set[str] = set()
        found: list[tuple[str, list[str], set[str]]] = []
        for link in self.chain(checkpoint_id):
            known = self._known.get(link)
            missing: set[str] = set()
            if known is not None and len(covered) + len(known[0]) == known[1].size:
                new = known[0]
            else:
                new, missing = _walk(self.heads[link].tips, covered, self.prev_of)
            covered.update(new)
            found.append((link, new, missing))
        return found

    def new_records(self, tips: Iterable[str], covered: set[str]) -> tuple[list[str], set[str]]:
        """What ``tips`` reach beyond ``covered`` (a checkpoint's coverage), sorted; and what is missing."""
        return _walk(tips, covered, self.prev_of)

    def newest(self) -> CheckpointHead | None:
        """The checkpoint covering the most records (then the latest claimed time, then the largest id)."""
        return max(self.heads.values(), key=lambda head: head.order, default=None)

    def earliest_below(self, values: Mapping[str, T]) -> dict[str, T]:
        """For every checkpoint, the least of ``values`` over itself and the checkpoints that extend it (through
        ``previous``, at any depth); checkpoints with none are left out."""
        best: dict[str, T] = {}
        order: list[str] = []  # parents before children
        stack = [head_id for head_id, head in self.heads.items()
                 if head.version < 2 or head.previous is None or head.previous not in self.heads]
        while stack:
            head_id = stack.pop()
            order.append(head_id)
            stack.extend(self._children.get(head_id, []))
        for head_id in reversed(order):
            candidates = [best[child] for child in self._children.get(head_id, []) if child in best]
            if head_id in values:
                candidates.append(values[head_id])
            if candidates:
                best[head_id] = min(candidates)
        return best

    def descendants(self, checkpoint_id: str) -> set[str]:
        """Checkpoints whose ``previous`` chain passes through ``checkpoint_id`` (itself included)."""
        found = {checkpoint_id}
        stack = [checkpoint_id]
        while stack:
            for child in self._children.get(stack.pop(), []):
                found.add(child)
                stack.append(child)
        return found



class _Summary(TrustSource, Protocol):
    """What :func:`tree_of` reads of a verified record (:class:`openledger.store.verify.RecordSummary`)."""

    @property
    def prev(self) -> tuple[str, ...]: ...


def tree_of(summaries: Mapping[str, _Summary], damaged: Iterable[str] = (),
            on_new: NewRecords | None = None, capture: str | None = None,
            known: Mapping[str, tuple[list[str], MerkleAccumulator]] | None = None) -> LogTree:
    """The log tree of verified records (their bodies kept for checkpoints); ``known``: see :class:`LogTree`."""
    kinds = map(attrgetter("kind"), summaries.values())
    heads = [CheckpointHead.from_record(s.id, s.actor, s.time, s.body)
             for s in compress(summaries.values(), map("checkpoint".__eq__, kinds))]
    if known or not heads:  # the walk visits only the records the known leaves do not list, or none (no
        get = summaries.get  # checkpoint: only `ci`'s first asks, later): look them up when asked

        def prev_of(record_id: str) -> Sequence[str] | None:
            summary = get(record_id)
            return None if summary is None else summary.prev

        return LogTree(heads, prev_of, damaged=damaged, on_new=on_new, capture=capture, known=known)
    prevs = {record_id: summary.prev for record_id, summary in summaries.items()}  # a lookup without a frame
    return LogTree(heads, prevs.get, damaged=damaged, on_new=on_new, capture=capture)
