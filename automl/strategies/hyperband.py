"""Hyperband, by `engine`:

* ``native`` (default): our own Hyperband (hyperband_native.py) with its new configs from a
  sampler strategy, ``tpe`` by default (a model on the highest rung with enough results:
  BOHB) or ``random``; iterations repeat as long as it is asked (``hyperband_iterations``
  limits them); the bottom rung is ``min_budget`` epochs, by default at least 2 epochs
  (where max_epochs allows) and at most factor**3 below max_epochs (one epoch of a learning
  curve ranks configs poorly): 27 epochs -> 3, 9, 27; 100 -> 3.7, 11.1, 33.3, 100.
* ``keras-tuner``: keras-tuner's HyperbandOracle through kt_bridge (random configs, one
  iteration unless ``hyperband_iterations`` says more), described below.

keras-tuner's engine: brackets of successive halving, from the most aggressive one down: a bracket starts many
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
import math
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from automl.errors import SpecError
from automl.strategies.base import Observation, Strategy, Suggestion
from automl.strategies.hyperband_native import NativeHyperband, default_min_budget, first_bracket_cost
from automl.strategies.kt_bridge import RUNNING, OracleStrategy, from_kt_values, with_given_trials
from automl.strategies.random import RandomStrategy
from automl.strategies.tpe import TPEStrategy

log = logging.getLogger(__name__)


class HyperbandOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: Literal["native", "keras-tuner"] = Field("native", description="native: our Hyperband, iterations "
                                                     "repeated while budget is left, configs from the sampler; "
                                                     "keras-tuner: its HyperbandOracle (random configs)")
    factor: int = Field(3, ge=2, description="reduction factor: a round keeps 1/factor of its trials and "
                                             "gives them factor times the budget")
    hyperband_iterations: int | None = Field(None, ge=1, description="how many times the whole set of brackets "
                                                                     "is run (default: native without end, "
                                                                     "keras-tuner once)")
    min_budget: float | None = Field(None, gt=0, description="epochs of the bottom rung (native; default: see "
                                                             "hyperband_native.default_min_budget)")
    sampler: str = Field("tpe", description="native: the strategy that proposes new configs")
    sampler_options: dict[str, Any] = Field(default_factory=dict, description="the sampler's own options")

    @model_validator(mode="after")
    def _native_only(self) -> "HyperbandOptions":
        if self.engine == "keras-tuner" and (self.min_budget is not None or self.sampler != "tpe"
                                             or self.sampler_options):
            raise ValueError("min_budget, sampler and sampler_options apply to engine 'native' only")
        if self.sampler == "hyperband":
            raise ValueError("hyperband cannot be its own sampler; use e.g. 'tpe' or 'random'")
        return self


class HyperbandStrategy(Strategy):
    """`hyperband`: the native engine (default) or keras-tuner's oracle, by `options.engine`."""

    name = "hyperband"
    Options = HyperbandOptions
    partial_trials = True

    @classmethod
    def inner_strategies(cls, options: HyperbandOptions) -> Mapping[str, tuple[str, Mapping[str, Any]]]:
        return {"sampler": (options.sampler, options.sampler_options)} if options.engine == "native" else {}

    def __init__(self, space, **context):
        super().__init__(space, **context)
        opts = self.options
        if opts.engine == "keras-tuner":
            self._impl = KerasTunerHyperband(space, seed=self.seed, max_budget=self.max_budget, options=opts)
            self._impl.workdir, self._impl.parallelism = self.workdir, self.parallelism
            return
        sampler = self.inner.get("sampler") or _default_sampler(self, opts)
        min_budget = opts.min_budget if opts.min_budget is not None else default_min_budget(
            float(self.max_budget), opts.factor)
        if min_budget > self.max_budget:
            raise SpecError([("strategy.options.min_budget", f"{min_budget:g} epochs is more than the run's "
                                                             f"budget.max_epochs ({self.max_budget:g})")])
        self._impl = NativeHyperband(self, sampler, opts.factor, min_budget, opts.hyperband_iterations)

    def ask(self) -> Suggestion | None:
        return self._impl.ask()

    def tell(self, observation: Observation) -> None:
        self._impl.tell(observation)

    def resume_pending(self, suggestion: Suggestion) -> None:
        self._impl.resume_pending(suggestion)

    def is_finished(self) -> bool:
        return self._impl.is_finished()

    def full_trainings_per_round(self) -> float:
        if isinstance(self._impl, NativeHyperband):
            return self._impl.first_bracket_cost()
        eta = self.options.factor  # keras-tuner's ladder: max_epochs / factor**s_max, ..., max_epochs
        top = max(1, int(self.max_budget))
        return first_bracket_cost(top / eta ** int(math.log(top) / math.log(eta) + 1e-9), top, eta)


def _default_sampler(owner: Strategy, opts: HyperbandOptions) -> Strategy:
    """The sampler when none was handed in (a direct construction): tpe or random only."""
    classes = {"tpe": TPEStrategy, "random": RandomStrategy}
    if opts.sampler not in classes:
        raise ValueError(f"hyperband needs its sampler {opts.sampler!r} handed in (inner={{'sampler': ...}}); "
                         "build it with automl.strategy_builder.build_strategy")
    cls = classes[opts.sampler]
    return cls(owner.space, seed=owner.seed, max_budget=owner.max_budget,
               options=cls.Options.model_validate(opts.sampler_options))


class KerasTunerHyperband(OracleStrategy):
    """keras-tuner's HyperbandOracle: `hyperband` with `engine: "keras-tuner"`."""

    name = "hyperband"
    Options = HyperbandOptions

    def __init__(self, space, *, seed, max_budget, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self._recreating = True  # replayed trials are recreated until the first ask or a divergence
        self._queued: list = []  # a trial the oracle made during a replay instead of a replayed one

    def _new_oracle(self, kt, **common):
        return with_given_trials(kt.oracles.HyperbandOracle)(
            max_epochs=max(1, int(self.max_budget)), factor=self.options.factor,
            hyperband_iterations=self.options.hyperband_iterations or 1, **common)

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

