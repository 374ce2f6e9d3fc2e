"""The refit trained by a worker of the search, not by the driver.

When the search ends its workers are idle and set up: torch and torch._dynamo imported (the
driver's first optimizer step would import the latter, 0.8-1.2 s), the data on the slot's
device. One of them trains the refit on every core while the driver builds the ensemble and
fits the baselines in parallel: two processes, no interpreter lock shared between the refit's
training loop and scikit-learn's. The worker saves the refit as a checkpoint
(training/runner.py, `run_refit`); the driver reads it back with weights only and deletes it.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

from torch import nn

from automl.errors import CheckpointError
from automl.records import REFIT, Status, TrialRequest
from automl.training.runner import refit_path

WAIT_SLICE_S = 0.5  # Ctrl-C reaches the caller at least this often while it waits


class WorkerRefit:
    """Submits the refit of `trial_id` to `executor` at once; `result()` waits for the model, like
    `Background.result()`: a refit that failed in the worker (it diverged, the worker died) raises
    RuntimeError with the worker's last line."""

    def __init__(self, executor, trial_id: str, config: dict, epochs: int, threads: int | None,
                 checkpoint_dir: Path, load: Callable[[Path], nn.Module]):
        self.seconds = 0.0  # how long the worker trained and saved it
        self.worker = ""
        self._executor, self._load = executor, load
        self._path = refit_path(checkpoint_dir, trial_id)
        # the trial's own id: the worker seeds the refit by it, as the driver's `Trainer.fit_full` would
        self._request = TrialRequest(trial_id, config, float(epochs), kind=REFIT, threads=threads)
        self._started = time.monotonic()
        executor.submit(self._request)  # RuntimeError when no worker is free or the executor is shut down

    def result(self) -> nn.Module:
        while True:
            for event in self._executor.events(WAIT_SLICE_S):
                if event.kind != "finished" or event.trial_id != self._request.trial_id:
                    continue
                outcome = event.outcome
                self.worker = event.worker
                self.seconds = float(outcome.metrics.get("seconds", time.monotonic() - self._started))
                if outcome.status is not Status.COMPLETE:  # the error's last line, without its class
                    last = ((outcome.error or "").strip().splitlines() or [str(outcome.reason)])[-1]
                    raise RuntimeError(re.sub(r"^[\w.]*(Error|Exception): ", "", last))
                try:
                    return self._load(self._path)
                except CheckpointError as error:  # written by a worker of this run: damaged, not hostile
                    raise RuntimeError(f"the refit's checkpoint cannot be read: {error}") from error
                finally:
                    self._path.unlink(missing_ok=True)  # the export holds the model now
