"""The executor contract, shared by every backend.

The driver submits TrialRequests and polls TrialEvents: `started`, `epoch` (which the
driver must answer with `answer(stop)`, so pruning decisions are taken before the
next epoch starts) and `finished` (with the outcome). Failures arrive as outcomes
with status FAILED and the error text, never as exceptions in the driver.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol


@dataclass
class TrialOutcome:
    """How a trial ended, as a worker reports it."""

    status: str  # COMPLETE | PRUNED | FAILED
    loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int = 0
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class TrialRequest:
    trial_id: str
    config: Mapping[str, Any]
    budget: float
    resume_from: str | None = None  # trial id whose checkpoint this trial continues
    time_limit: float | None = None  # seconds; past it the executor kills the trial (reason "timeout")
    overrides: Mapping[str, Any] = field(default_factory=dict)  # training settings for a retry, e.g. batch_size
    attempt: int = 0  # 0 the first time, then 1, 2, ... for retries after a crash or out of memory


@dataclass
class TrialEvent:
    kind: str  # "started" | "epoch" | "finished"
    trial_id: str
    worker: str = ""
    epoch: int | None = None
    metrics: Mapping[str, float] | None = None
    outcome: TrialOutcome | None = None
    _reply: Callable[[bool], None] | None = field(default=None, repr=False)

    def answer(self, stop: bool) -> None:
        """Tell the worker whether to stop after this epoch (epoch events only)."""
        if self._reply is not None:
            reply, self._reply = self._reply, None  # answered once
            reply(stop)


# runner(request, report) -> outcome, where report(epoch, metrics) -> stop?
Runner = Callable[[TrialRequest, Callable[[int, dict], bool]], TrialOutcome]


class Executor(Protocol):
    def capacity(self) -> int: ...  # free slots now
    def submit(self, request: TrialRequest) -> None: ...
    def events(self, timeout: float | None) -> list[TrialEvent]: ...
    def running(self) -> list[str]: ...  # trial ids
    def idle(self) -> bool: ...  # nothing running and no event waiting
    def stop(self, trial_id: str) -> None: ...  # at the next epoch boundary
    def shutdown(self) -> None: ...  # idempotent; nothing left running
