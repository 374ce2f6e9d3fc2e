"""Hyperband: keras-tuner's HyperbandOracle through kt_bridge.

Brackets of successive halving, from the most aggressive one down: a bracket starts many
random configs on a small budget and promotes the best 1/factor of each round to `factor`
times the budget, up to max_epochs (the run's max_budget). With factor 3 and 9 epochs:
9 trials x 1 epoch -> 3 x 3 -> 1 x 9, then 5 x 3 -> 2 x 9, then 3 x 9. Budgets are
cumulative epochs: a promoted suggestion carries `resume_from`, the trial whose checkpoint
it continues, with the same config; keras-tuner's tuner/* entries never reach our config.
While the next trial waits on the results of running ones (a round to fill, the last
bracket to finish), ask() returns None; once all brackets are done is_finished() is True.

keras-tuner promotes only trials that completed: a failed trial costs its round one
promotion (that round then never fills and the bracket stops there).

Resume: the fresh oracle (same seed) recreates the replayed trials in creation order. For
each it is asked for its next trial, which must be that very trial (same config and budget,
and for an interrupted one the same trial continued); that trial is then ended with its
stored result, an interrupted one stays running until it is told. Ending each trial before
the next is created is what happened in a run whose trials ran one at a time (workers = 1):
brackets, promotions and random draws come back exactly and the resumed run goes on as if
it had never stopped. With parallel workers trials may have finished in another order, and
the oracle may make another trial than the stored one. Recreating stops there: the trial the
oracle made is a valid suggestion in its bracket and is handed out first, while that replayed
trial and every later one are added outside the brackets with their results, counted as
tried (their configs are not drawn again) but never promoted. Ids never repeat either way.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from automl.strategies.base import Observation, Suggestion
from automl.strategies.kt_bridge import RUNNING, OracleStrategy, from_kt_values, with_given_trials

log = logging.getLogger(__name__)


class HyperbandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factor: int = Field(3, ge=2, description="reduction factor: a round keeps 1/factor of its trials and "
                                             "gives them factor times the budget")
    hyperband_iterations: int = Field(1, ge=1, description="how many times the whole set of brackets is run")


class HyperbandStrategy(OracleStrategy):
    name = "hyperband"
    Options = HyperbandOptions

    def __init__(self, space, *, seed, max_budget, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self._recreating = True  # replayed trials are recreated until the first ask or a divergence
        self._queued: list = []  # a trial the oracle made during a replay instead of a replayed one

    def _new_oracle(self, kt, **common):
        return with_given_trials(kt.oracles.HyperbandOracle)(
            max_epochs=max(1, int(self.max_budget)), factor=self.options.factor,
            hyperband_iterations=self.options.hyperband_iterations, **common)

    def _suggestion(self, trial_id: str, trial) -> Suggestion:
        values = trial.hyperparameters.values
        return Suggestion(trial_id, from_kt_values(self.space, values), budget=float(values["tuner/epochs"]),
                          resume_from=self._resumes(values))

    def _resumes(self, values: Mapping[str, Any]) -> str | None:
        """Our id of the trial a promotion continues."""
        parent = values.get("tuner/trial_id")
        return None if parent is None else self._ours.get(parent)

    def ask(self) -> Suggestion | None:
        self._recreating = False  # from here on the oracle's state is this run's own
        return super().ask()

    def _next_trial(self):
        return self._queued.pop(0) if self._queued else super()._next_trial()

    def _replay(self, trial_id: str, config: Mapping[str, Any], budget: float | None,
                observation: Observation | None, resume_from: str | None) -> None:
        if self._recreating:
            trial = self._next_trial()
            if trial.status == RUNNING and self._same(trial, config, budget, observation, resume_from):
                self._bind(trial_id, trial.trial_id)
                if observation is not None:
                    self._end(trial.trial_id, observation)
                return
            self._recreating = False
            if trial.status == RUNNING:
                self._queued.append(trial)
            log.info("hyperband replay: the oracle does not recreate trial %s (trials probably finished out "
                     "of order); %d trial(s) were recreated in its brackets, the rest are kept outside them",
                     trial_id, len(self._kt))
        self._add(trial_id, config, observation)

    def _same(self, trial, config, budget, observation, resume_from) -> bool:
        values = trial.hyperparameters.values
        if from_kt_values(self.space, values) != dict(config):
            return False
        if float(values["tuner/epochs"]) != (budget if budget is not None else self.max_budget):
            return False
        # a pending trial's suggestion says which trial it continued; an observation does not
        return observation is not None or self._resumes(values) == resume_from

