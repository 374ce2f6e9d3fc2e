"""The records one trial travels through, frozen, from the strategy to the report.

    strategy.ask()  -> Suggestion         what a strategy wants run
    search loop     -> TrialRequest       what a worker is asked to run (the suggestion plus limits)
    worker          -> TrialEvent         started | epoch (answered: stop or go on) | finished
    worker          -> TrialOutcome       how the trial ended: a Status and, unless it simply
                                          ran its budget, a Reason
    store           -> TrialRecord        (automl.store) the committed row, read by the report
    strategy.tell() <- Observation        what a strategy is told, enough to replay exactly

`Status` and `Reason` are enums from the trainer to the store to the report; both are
`str` enums, so they compare equal to their stored text and serialise as it.
"""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping


class Status(str, enum.Enum):
    PENDING = "PENDING"  # recorded, not started (or interrupted and waiting to run again)
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in (Status.COMPLETE, Status.PRUNED, Status.FAILED)

    def __str__(self) -> str:
        return self.value


class Reason(str, enum.Enum):
    """Why a trial ended other than by training its whole budget."""

    STOPPED = "stopped"  # PRUNED: stopped early by the strategy (pruning) or the driver (out of time)
    EARLY_STOPPED = "early_stopped"  # COMPLETE: no better validation score for `patience` epochs
    EXCEPTION = "exception"  # FAILED: the trial raised
    OOM = "oom"  # FAILED: out of memory (retried once with half the batch)
    DIVERGED = "diverged"  # FAILED: the training loss became NaN or infinite
    NO_SCORE = "no_score"  # FAILED: the validation metric was never finite
    NON_FINITE = "non_finite"  # FAILED: an objective of `automl.optimize` returned NaN or infinity
    TIMEOUT = "timeout"  # FAILED: killed past budget.max_trial_time
    CRASHED = "crashed"  # FAILED: its worker died (signal, exit); retried from the checkpoint

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Suggestion:
    """What a strategy asks to run."""

    trial_id: str
    config: Mapping[str, Any]
    budget: float | None = None  # fidelity in epochs; None means the full budget
    resume_from: str | None = None  # continue that trial's checkpoint (a promotion)


REFIT = "refit"  # TrialRequest.kind of the refit after the search


@dataclass(frozen=True)
class TrialRequest:
    """What a worker is asked to run."""

    trial_id: str
    config: Mapping[str, Any]
    budget: float
    resume_from: str | None = None  # trial id whose checkpoint this trial continues
    time_limit: float | None = None  # seconds; past it the worker is killed (Reason.TIMEOUT)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # training settings for a retry, e.g. batch_size
    attempt: int = 0  # 0 the first time, then 1, 2, ... for retries after a crash or out of memory
    kind: str = "trial"  # "trial", or REFIT: the finished trial `trial_id` trained again on every non-test row
    threads: int | None = None  # torch threads for this request (a refit after the search may use every core)
    # the worker waits for the driver's answer after every epoch (the strategy may prune the trial); else
    # it goes on at once and waits only before a checkpoint, until the driver has committed its epochs
    awaits_answers: bool = True


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended, as its worker (or the pool, for a kill or a crash) reports it."""

    status: Status
    loss: float | None  # always minimised; None when the trial failed
    metrics: Mapping[str, float] = field(default_factory=dict)
    epochs: int = 0
    reason: Reason | None = None
    error: str | None = None  # the traceback or message of a failure

    def __post_init__(self) -> None:
        # strings are accepted and checked: a status or reason nobody knows is a bug, found here
        object.__setattr__(self, "status", Status(self.status))
        if self.reason is not None:
            object.__setattr__(self, "reason", Reason(self.reason))
        if not self.status.finished:
            raise ValueError(f"an outcome is COMPLETE, PRUNED or FAILED, not {self.status.value}")

    @classmethod
    def failed(cls, reason: Reason, error: str, epochs: int = 0) -> "TrialOutcome":
        return cls(Status.FAILED, None, {}, epochs, reason, error)


class Reply:
    """The one answer to an epoch event: stop the trial or let it go on. Answered at most once."""

    def __init__(self, send: Callable[[bool], None] | None = None):
        self._send = send
        self._lock = threading.Lock()

    def __call__(self, stop: bool) -> None:
        with self._lock:
            send, self._send = self._send, None
        if send is not None:
            send(bool(stop))


EventKind = Literal["started", "epoch", "finished"]


@dataclass(frozen=True)
class TrialEvent:
    """What happens to a running trial, in order: started, epoch..., finished."""

    kind: EventKind
    trial_id: str
    worker: str = ""
    epoch: int | None = None  # epoch events
    metrics: Mapping[str, float] | None = None  # epoch events: the epoch's validation metrics
    elapsed: float | None = None  # epoch events: seconds since the trial started, by the worker's clock
    outcome: TrialOutcome | None = None  # finished events
    reply: Reply = field(default_factory=Reply, repr=False, compare=False)

    def answer(self, stop: bool) -> None:
        """Tell the worker whether to stop after this epoch (epoch events; later answers are dropped)."""
        self.reply(stop)


@dataclass(frozen=True)
class Observation:
    """What a strategy is told once a trial has ended; also how a fresh strategy is rebuilt
    on resume, so it carries everything a replay needs."""

    trial_id: str
    status: Status
    loss: float | None  # always minimised; None when the trial failed
    config: Mapping[str, Any] = field(default_factory=dict)
    budget: float | None = None  # the budget the trial was run with (its suggestion's)
    metrics: Mapping[str, float] = field(default_factory=dict)
    resume_from: str | None = None  # the trial whose checkpoint it continued (a promotion)
    # the loss after each epoch, epoch 1 first; filled for strategies that set `wants_history`
    history: tuple[float, ...] = ()
