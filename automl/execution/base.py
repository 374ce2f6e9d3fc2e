"""The executor contract, shared by every backend.

The driver submits TrialRequests and polls TrialEvents: `started`, `epoch` (which the
driver must answer with `answer(stop)`, so pruning decisions are taken before the
next epoch starts) and `finished` (with the outcome). Failures arrive as outcomes
with status FAILED and the error text, never as exceptions in the driver.
"""
from __future__ import annotations

from typing import Callable, Protocol

from automl.records import Reply, TrialEvent, TrialOutcome, TrialRequest

__all__ = ["Executor", "Reply", "Runner", "TrialEvent", "TrialOutcome", "TrialRequest"]


# runner(request, report) -> outcome, where report(epoch, metrics) -> stop?
Runner = Callable[[TrialRequest, Callable[[int, dict], bool]], TrialOutcome]


class Executor(Protocol):
    def capacity(self) -> int: ...  # free slots now
    def submit(self, request: TrialRequest) -> None: ...
    def events(self, timeout: float | None) -> list[TrialEvent]: ...
    def running(self) -> list[str]: ...  # trial ids
    def idle(self) -> bool: ...  # nothing running and no event waiting
    def stop(self, trial_id: str) -> None: ...  # at the next epoch boundary
    def shutdown(self, wait: float = 5.0) -> None: ...  # idempotent; after `wait` s what still runs is killed
