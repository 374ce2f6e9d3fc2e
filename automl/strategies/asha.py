"""Asynchronous successive halving (ASHA; Li et al. 2020, "A System for Massively
Parallel Hyperparameter Tuning"): many configs get a small budget, the best 1/eta of
each rung go on with eta times more, and nobody waits for a rung to fill up, so every
free worker always has something to do.

Rungs are the budgets min_budget * eta**k below max_budget, then max_budget itself
(eta 3, 1 to 9 epochs: 1, 3, 9; 1 to 10 epochs: 1, 3, 9, 10). Without a min_budget the
bottom rung is max_budget / eta**k, at least 2 epochs where max_budget allows and at most
eta**3 below it, because one epoch of a learning curve ranks configs poorly (27 epochs:
3, 9, 27; 100 epochs: 3.7, 11.1, 33.3, 100; 9 epochs: 3, 9); see
hyperband_native.default_min_budget.

Two modes:

* ``promotion`` (default, the paper's algorithm): each ask promotes a config from the
  highest rung that has one in its top 1/eta not yet promoted. A promotion is a new
  trial at the next rung's budget whose ``resume_from`` is the trial it continues, so it
  trains only the extra epochs. With nothing to promote, a new config starts at the
  bottom rung.
* ``stopping`` (like Ray Tune's ASHA): every trial starts at max_budget and
  ``should_stop`` prunes it at a rung's epoch when its loss there is not in the top 1/eta
  of the losses that rung has seen (itself included; the first one always goes on).

New configs come from another strategy, the *sampler* (``tpe`` by default, a model fitted
on the highest rung with enough results as in BOHB; or ``random``, ``bayesian``, ...): the
agent builds it from ``sampler`` and ``sampler_options`` and hands it in
(``inner["sampler"]``), so ASHA never looks plugins up itself. A sampler that models
budgets (``uses_budgets``, like ``tpe``) is told every outcome with its budget, a
promotion under its own id; any other is told each config it proposed exactly once,
under the id it proposed: in promotion mode the bottom-rung outcome (all at the same
budget, so a model compares like with like); in stopping mode the trial's own outcome.

Resume by replay. The rebuilt strategy is told every finished trial in creation order;
rung membership is keyed by config: a trial at rung k > 0 marks its config as promoted
from rung k - 1, which is all it takes never to promote it twice. New-config trials keep
the sampler's ids, so a rebuilt sampler is told the ids it would have known and goes on
where it stopped. In stopping mode the strategy asks for the epoch history
(``wants_history``): a replayed trial's losses at the milestones it passed come back in
its Observation, and an interrupted trial's recorded epochs are replayed through
``should_stop``. Limits: two trials of the same config at one rung count once (the
better loss); a trial whose budget is not on the ladder is ignored.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from automl.errors import SpecError
from automl.strategies.base import Observation, Status, Strategy, Suggestion, claim_id, config_key
from automl.strategies.hyperband_native import default_min_budget, ladder_cost

log = logging.getLogger(__name__)

class ASHAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reduction_factor: float = Field(3, gt=1, description="eta: a rung keeps its best 1/eta, the next gets eta x the budget")
    min_budget: float | None = Field(None, gt=0, description="epochs of the bottom rung (default: at least 2 where "
                                                             "max_budget allows, at most eta**3 below it)")
    max_budget: float | None = Field(None, gt=0, description="epochs of the top rung (default: the run's max_epochs)")
    mode: Literal["promotion", "stopping"] = "promotion"
    sampler: str = Field("tpe", description="the strategy that proposes new configs")
    sampler_options: dict[str, Any] = Field(default_factory=dict, description="the sampler's own options")

    @field_validator("sampler")
    @classmethod
    def _not_itself(cls, name: str) -> str:
        if name == "asha":
            raise ValueError("asha cannot be its own sampler; use e.g. 'random' or 'bayesian'")
        return name


@dataclass
class _Result:
    """A trial's loss at a rung."""

    trial_id: str
    loss: float
    config: Mapping[str, Any]
    promotable: bool = True  # False for PRUNED: it never reached the rung's budget


def rung_budgets(min_budget: float, max_budget: float, eta: float) -> list[float]:
    budgets: list[float] = []
    budget, max_budget = float(min_budget), float(max_budget)
    while budget < max_budget and not math.isclose(budget, max_budget):
        budgets.append(budget)
        budget *= eta
    return budgets + [max_budget]


def _as_loss(value: float) -> float:
    return value if value == value else math.inf  # NaN ranks last, like the agent's inf


class ASHAStrategy(Strategy):
    name = "asha"
    Options = ASHAOptions
    partial_trials = True

    @classmethod
    def inner_strategies(cls, options: ASHAOptions) -> Mapping[str, tuple[str, Mapping[str, Any]]]:
        return {"sampler": (options.sampler, options.sampler_options)}

    def __init__(self, space, **context):
        super().__init__(space, **context)
        opts = self.options
        max_budget = self.max_budget
        if "sampler" not in self.inner:
            raise ValueError("asha needs its sampler handed in (inner={'sampler': ...}); build it with "
                             "automl.strategy_builder.build_strategy")
        top = opts.max_budget if opts.max_budget is not None else max_budget
        if top > max_budget:
            raise SpecError([("strategy.options.max_budget",
                              f"{top:g} epochs is more than the run's budget.max_epochs ({max_budget:g})")])
        min_budget = opts.min_budget if opts.min_budget is not None else default_min_budget(top, opts.reduction_factor)
        if min_budget > top:
            raise SpecError([("strategy.options.min_budget", f"{min_budget:g} epochs is more than the top "
                                                             f"rung's {top:g}")])
        self.eta = opts.reduction_factor
        self.mode = opts.mode
        self.wants_history = self.mode == "stopping"  # the milestone losses of replayed trials
        self.rungs = rung_budgets(min_budget, top, self.eta)
        # per rung: promotion mode keys results by config (replay cannot see lineage), stopping mode by trial id
        self._results: list[dict[str, _Result]] = [{} for _ in self.rungs]
        self._promoted: list[set[str]] = [set() for _ in self.rungs]  # config keys sent on from each rung
        # stopping mode: the epoch at which each rung below the top is judged
        self._milestones = {max(1, round(b)): k for k, b in enumerate(self.rungs[:-1])}
        self._known: set[str] = set()  # every id asked, told or pending: never handed out again
        self._sampler: Strategy = self.inner["sampler"]
        self._sampler_ids: dict[str, str] = {}  # our id -> the sampler's, only where they had to differ
        self._told_budgets = getattr(self._sampler, "uses_budgets", False)  # a sampler that models every rung

    def full_trainings_per_round(self) -> float:
        """eta**k bottom-rung configs carry one to the top rung (k rungs above the bottom)."""
        k = len(self.rungs) - 1
        return ladder_cost(self.rungs, [max(1, round(self.eta ** (k - i))) for i in range(k + 1)])

    # -- the contract --------------------------------------------------------------------------
    def ask(self) -> Suggestion | None:
        if self.mode == "stopping":
            return self._new_config(self.rungs[-1])
        for k in reversed(range(len(self.rungs) - 1)):  # the highest rung first: finish good configs early
            found = self._candidate(k)
            if found is not None:
                return self._promote(k, *found)
        return self._new_config(self.rungs[0])

    def tell(self, observation: Observation) -> None:
        self._known.add(observation.trial_id)
        if self.mode == "stopping":
            self._restore_milestones(observation)
            self._tell_sampler(observation)
            return
        k = self._rung_of(observation.budget)
        if k is None:
            log.warning("asha: trial %s ran %s epochs, not a rung of %s; ignored", observation.trial_id,
                        observation.budget, self.rungs)
            return
        key = config_key(observation.config)
        if k > 0:  # on replay this is the only trace of the promotion that started it
            self._promoted[k - 1].add(key)
        if observation.status is not Status.FAILED and observation.loss is not None:
            result = _Result(observation.trial_id, _as_loss(float(observation.loss)), dict(observation.config),
                             promotable=observation.status is Status.COMPLETE)
            best = self._results[k].get(key)
            if best is None or result.loss < best.loss:
                self._results[k][key] = result
        if k == 0 or self._told_budgets:
            self._tell_sampler(observation)

    def resume_pending(self, suggestion: Suggestion) -> None:
        self._known.add(suggestion.trial_id)
        k = self._rung_of(suggestion.budget)
        if self.mode == "promotion" and k is not None and k > 0:
            self._promoted[k - 1].add(config_key(suggestion.config))
        if self.mode == "stopping" or k == 0:  # the sampler proposed it: it is pending there too
            getattr(self._sampler, "resume_pending", lambda s: None)(suggestion)

    def should_stop(self, trial_id: str, step: int, loss: float) -> bool:
        k = self._milestones.get(step)
        if self.mode != "stopping" or k is None:
            return False
        loss = _as_loss(float(loss))
        results = self._results[k]
        results[trial_id] = _Result(trial_id, loss, {})
        keep = max(1, int(len(results) / self.eta))
        better = sum(1 for r in results.values() if r.loss < loss)  # a tie goes to the trial asking
        if better >= keep:
            log.debug("asha: stopping trial %s at epoch %d (loss %.4g, %d of %d better)", trial_id, step, loss,
                      better, len(results))
            return True
        return False

    # -- promotion -----------------------------------------------------------------------------
    def _candidate(self, k: int) -> tuple[str, _Result] | None:
        """The best config in rung k's top 1/eta not yet promoted, or None."""
        results = self._results[k]
        ranked = sorted(results.items(), key=lambda item: item[1].loss)  # stable: a tie goes to the earlier trial
        for key, result in ranked[:int(len(results) / self.eta)]:
            if result.promotable and key not in self._promoted[k]:
                return key, result
        return None

    def _promote(self, k: int, key: str, result: _Result) -> Suggestion:
        self._promoted[k].add(key)
        root = self._results[0].get(key, result).trial_id
        trial_id = claim_id(self._known, f"{root}-r{k + 1}")  # the id shows the lineage: 0007, 0007-r1, 0007-r2
        log.debug("asha: promoting %s (loss %.4g) to rung %d (%g epochs) as %s", result.trial_id, result.loss, k + 1,
                  self.rungs[k + 1], trial_id)
        return Suggestion(trial_id, dict(result.config), budget=self.rungs[k + 1], resume_from=result.trial_id)

    def _rung_of(self, budget: float | None) -> int | None:
        budget = self.max_budget if budget is None else budget
        return next((k for k, b in enumerate(self.rungs) if math.isclose(budget, b, rel_tol=1e-9)), None)

    # -- the sampler ---------------------------------------------------------------------------
    def _new_config(self, budget: float) -> Suggestion | None:
        proposal = self._sampler.ask()
        if proposal is None:  # the sampler waits for results or has nothing left
            return None
        trial_id = claim_id(self._known, proposal.trial_id)  # keep its id, so a replayed sampler is told ids it knows
        if trial_id != proposal.trial_id:
            self._sampler_ids[trial_id] = proposal.trial_id
        return Suggestion(trial_id, dict(proposal.config), budget=budget)

    def _tell_sampler(self, observation: Observation) -> None:
        sampler_id = self._sampler_ids.pop(observation.trial_id, observation.trial_id)
        self._sampler.tell(dataclasses.replace(observation, trial_id=sampler_id))

    # -- stopping mode: the milestones of replayed trials ----------------------------------------
    def _restore_milestones(self, observation: Observation) -> None:
        """Put back a replayed trial's losses at the milestones it passed (its epoch history)."""
        for epoch, k in self._milestones.items():
            if epoch <= len(observation.history):
                self._results[k].setdefault(observation.trial_id, _Result(
                    observation.trial_id, _as_loss(float(observation.history[epoch - 1])), {}))
