"""Coalition runs: what an executor is asked to run, what it gives back, and the table of results.

A **run** is one pipeline execution on one coalition's data with one seed. Its **key** names its inputs — the
code commit, the coalition's data (as a content digest) and the param overrides — so a run whose inputs were
already run is never run again, by any executor: the key is the reuse key, and the experiment name executors
give the run is derived from it.

An :class:`Executor` runs requests and reports each finished run once; the :class:`CoalitionTable` keeps the
first result per key, so a run reported twice (a retried task, a resumed attribution) is never counted twice.

>>> from openledger.attribution.players import DatasetSubset
>>> request = RunRequest.make(coalition=(0, 2), seed=None, params={}, data=(DatasetSubset("data", ()),),
...                           commit="0" * 40)
>>> request.key.startswith("attrrun:") and experiment_name(request.key).startswith("ol-")
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from openledger.attribution.players import DatasetSubset, data_digest
from openledger.lineage.joins import join_key
from openledger.store.canonical import canonical_bytes, tag_nonfinite

__all__ = ["CoalitionTable", "Executor", "RunRequest", "RunResult", "experiment_name", "run_key"]


def run_key(commit: str, data: str, params: Mapping[str, Any]) -> str:
    """The reuse key of a run: its code commit, its data's content digest and its param overrides."""
    return join_key("attrrun", commit, data, canonical_bytes(dict(params)).decode("utf-8"))


def experiment_name(key: str) -> str:
    """The name a run's experiment gets (a valid git ref component and DVC experiment name)."""
    return "ol-" + key.partition(":")[2][:16]


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One run to make: the coalition (indices into the game's players), the seed (``None``: the pipeline's
    own), the param overrides that set it, the coalition's data, and the commit to run at."""

    key: str
    coalition: tuple[int, ...]
    seed: int | None
    params: Mapping[str, Any]
    data: tuple[DatasetSubset, ...]
    commit: str

    @classmethod
    def make(cls, *, coalition: tuple[int, ...], seed: int | None, params: Mapping[str, Any],
             data: tuple[DatasetSubset, ...], commit: str) -> RunRequest:
        return cls(run_key(commit, data_digest(data), params), coalition, seed, dict(params), data, commit)

    @property
    def experiment(self) -> str:
        return experiment_name(self.key)


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished run. ``ok`` is False when the pipeline failed (the run then counts as the empty coalition's
    value). ``metrics`` are every numeric metric the run produced; ``records`` the signed stage records of the
    run; ``data`` the executor's own digest of each dataset it built (DVC's ``.dir`` hash); ``signer`` the key
    that signed the stage records; ``reused`` whether it was found rather than run now."""

    key: str
    ok: bool
    metrics: Mapping[str, float] = field(default_factory=dict)
    experiment: str | None = None
    rev: str | None = None
    data: tuple[tuple[str, str], ...] = ()
    records: tuple[str, ...] = ()
    signer: str | None = None
    seconds: float = 0.0
    error: str | None = None
    reused: bool = False
    evidence: Mapping[str, Any] = field(default_factory=dict)  # executor-specific (a metrics file's digest)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "status": "ok" if self.ok else "failed",
                                "experiment": self.experiment, "rev": self.rev,
                                "data": [{"path": p, "digest": d} for p, d in self.data],
                                "records": list(self.records), "signer": self.signer,
                                "seconds": round(self.seconds, 3)}
        if self.error:
            data["error"] = self.error
        if self.evidence:
            data["evidence"] = tag_nonfinite(dict(self.evidence))
        return data


class Executor(Protocol):
    """Runs coalition runs somewhere (local DVC experiments, a Ray cluster) and says which already exist.

    ``completed`` returns the results of the requests whose runs exist already (found through the executor's
    own evidence, checked: the signed stage records of the run, its experiment). ``run`` makes the rest, in
    parallel as configured, calling ``done`` once per finished run in the caller's thread; on
    ``KeyboardInterrupt`` it stops its workers and re-raises, every run reported before that is kept. Results
    are keyed by :attr:`RunRequest.key`: the same key reported twice is counted once. An executor may say how
    many runs it makes at a time (``parallelism``, default 1): the first wave of an attribution is that wide.
    """

    def completed(self, requests: Sequence[RunRequest]) -> Mapping[str, RunResult]: ...

    def run(self, requests: Sequence[RunRequest], done: Callable[[RunResult], None]) -> None: ...


class CoalitionTable:
    """Coalition -> its runs, one per seed: the one table every value is computed from."""

    def __init__(self) -> None:
        self.requests: dict[str, RunRequest] = {}
        self.results: dict[str, RunResult] = {}

    def add(self, request: RunRequest, result: RunResult) -> bool:
        """Keep ``result`` unless its key already has one (then False: a run is never counted twice)."""
        if result.key != request.key:
            raise ValueError(f"result for {result.key} given for request {request.key}")
        if request.key in self.results:
            return False
        self.requests[request.key] = request
        self.results[request.key] = result
        return True

    def __contains__(self, key: object) -> bool:
        return key in self.results

    def __len__(self) -> int:
        return len(self.results)

    def rows(self) -> list[tuple[RunRequest, RunResult]]:
        """Every run, by coalition size, coalition, then seed."""
        keyed = [(self.requests[k], r) for k, r in self.results.items()]
        return sorted(keyed, key=lambda item: (len(item[0].coalition), item[0].coalition,
                                               -1 if item[0].seed is None else item[0].seed))


Done = Callable[[RunResult], None]
