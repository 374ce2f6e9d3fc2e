"""The observer contract: the agent calls these, in its own thread, as a run goes.

Observers never change the run; an observer that raises is logged and dropped by
the agent rather than ending the search.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from automl.store import TrialRecord

log = logging.getLogger(__name__)


class RunObserver:
    def run_started(self, info: Mapping[str, Any]) -> None:
        """info: name, metric, direction, strategy, families (list), max_trials (int | None),
        trials_unit ("trials", or "full trainings" for a rung-ladder strategy: what max_trials counts),
        max_time (s | None), max_epochs, device, workers, already_finished (trials replayed on resume)."""

    def trial_started(self, trial_id: str, config: Mapping[str, Any], budget: float | None) -> None:
        """A trial was handed to a worker. config holds the active parameters, `family` among them."""

    def epoch(self, trial_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        """One epoch done. metrics: train_loss, val_loss and each validation metric by name
        (e.g. accuracy), epochs counted from 1."""

    def trial_finished(self, record: TrialRecord, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        """A trial ended (record.status COMPLETE / PRUNED / FAILED). best: the best trial so
        far (lowest loss), n_finished: trials finished in this run directory, elapsed: seconds since start."""

    def phase(self, name: str, seconds: float | None) -> None:
        """A step after the search started (seconds None) or finished (seconds it took), e.g.
        "refit on train+validation (3 epochs)"; steps may take long."""

    def run_finished(self, summary: Mapping[str, Any]) -> None:
        """summary: best_trial_id, best (validation metrics), test (test metrics), duration_s, stopped_because."""

    def close(self) -> None:
        """Release files and terminals; called once, also after an error."""


class Observers:
    """Fan events out to observers; one that raises is switched off, never the run."""

    def __init__(self, observers: Sequence[RunObserver]):
        self.observers = list(observers)

    def __getattr__(self, method: str):
        def call(*args, **kwargs):
            for observer in list(self.observers):
                try:
                    getattr(observer, method, lambda *a, **k: None)(*args, **kwargs)  # an event it predates
                except Exception:
                    log.warning("observer %s failed in %s; it is switched off", type(observer).__name__, method,
                                exc_info=True)
                    self.observers.remove(observer)
        return call
