"""The executor contract, shared by every backend.

The driver submits TrialRequests and polls TrialEvents: `started`, `epoch` (which the
driver must answer with `answer(stop)`, so pruning decisions are taken before the
next epoch starts) and `finished` (with the outcome). Failures arrive as outcomes
with status FAILED and the error text, never as exceptions in the driver.
"""
from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol



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


@dataclass
class TrialEvent:
    kind: str  # "started" | "epoch" | "finished"
    trial_id: str
    worker: str = ""
    epoch: int | None = None
    metrics: Mapping[str, float] | None = None
    outcome: TrialOutcome | None = None
    _reply: "queue.Queue[bool] | None" = field(default=None, repr=False)

    def answer(self, stop: bool) -> None:
        """Tell the worker whether to stop after this epoch."""
        if self._reply is not None:
            self._reply.put(stop)


class Executor(Protocol):
    def capacity(self) -> int: ...
    def submit(self, request: TrialRequest) -> None: ...
    def events(self, timeout: float | None) -> list[TrialEvent]: ...
    def stop(self, trial_id: str) -> None: ...
    def shutdown(self) -> None: ...
