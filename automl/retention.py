"""Which trial checkpoints a run keeps (spec `execution.keep_checkpoints`), and the disk a run uses.

Under "best" (the default), after each trial's outcome is committed to the store:

- a trial not finished (running, or interrupted and resumed later) is never touched: a worker
  writes its checkpoint, a resume reads it;
- a finished trial a promotion may still continue keeps its whole checkpoint, optimizer state
  included: one below the full budget that no trial continues yet (asha and hyperband may
  promote it later; a strategy that never promotes suggests no such budget), and one that a
  trial not yet finished continues (that trial starts from it until it has a checkpoint of its own);
- of the others, the best k (k = `ensemble.candidates`: the model of the run, the ensemble's
  candidates and the next best, should one be unreadable) keep their best epoch alone
  (`drop_training_state`): the refit and the ensemble read nothing else;
- any other checkpoint is deleted. The ranking only gets harder as trials finish, so a trial
  outside the best k never comes back into it, and one that nothing may continue is never resumed.

A crash between the commit and the cleanup leaves a file too many, which the next pass removes;
never a needed one missing. Problems are logged, never the run's failure.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from automl.errors import CheckpointError, DiskFullError
from automl.store import TrialRecord, ranked_trials

log = logging.getLogger(__name__)


class Retention:
    """Called with every trial of the store (`SearchLoop(after_outcome=...)`)."""

    def __init__(self, checkpoint_dir: Path, keep_best: int, max_budget: float):
        self.dir = Path(checkpoint_dir)
        self.keep_best = keep_best
        self.max_budget = max_budget
        self._deleted: set[str] = set()  # handled once per driver: no unlink per trial per pass
        self._lean: set[str] = set()  # already without training state (no reload to find out)

    def needed_whole(self, trials: Sequence[TrialRecord]) -> set[str]:
        """Finished trials whose checkpoint a promotion may resume from."""
        continued = {t.resume_from for t in trials if t.resume_from}
        in_flight = {t.resume_from for t in trials if t.resume_from and not t.finished}
        below_full = {t.trial_id for t in trials
                      if t.finished and (t.budget or self.max_budget) < self.max_budget - 1e-9}
        return in_flight | (below_full - continued)

    def __call__(self, trials: Sequence[TrialRecord]) -> None:
        whole = self.needed_whole(trials)
        best = {t.trial_id for t in ranked_trials(trials)[:self.keep_best]}
        for trial in trials:
            trial_id = trial.trial_id
            if not trial.finished or trial_id in whole or trial_id in self._deleted:
                continue
            path = self.dir / f"{trial_id}.pt"
            try:
                if trial_id not in best:
                    path.unlink(missing_ok=True)
                    self._deleted.add(trial_id)
                elif trial_id not in self._lean:
                    if path.exists():
                        from automl.training.checkpoints import drop_training_state  # torch, once a trial ended

                        drop_training_state(path)
                    self._lean.add(trial_id)
            except CheckpointError as error:  # damaged: the final models pass over it, as without retention
                self._lean.add(trial_id)
                log.debug("retention leaves %s as it is: %s", path, error)
            except (DiskFullError, OSError) as error:  # the previous file stays whole; the next pass tries again
                log.warning("retention could not shrink or delete %s: %s", path, error)


def directory_bytes(folder: Path) -> int:
    """The bytes of the files under `folder` (links not followed; a file removed meanwhile counts nothing)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
