"""`auto`: the agent picks the search strategy from what it knows before the first trial.

The inputs are the budget (trials and/or seconds), the epochs a trial may train (the
fidelity a multi-fidelity strategy can use), the parallel slots and the search space.
The rules are a table, in order, the first that applies wins; docs/strategies.md gives
the same table with the benchmark figure behind each row. The choice is recorded in the
run's meta documents and reused on resume, so a run resumed with a larger budget goes on
with the strategy it started with (resume by replay stays exact).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping

from automl.space import Choice, SearchSpace

AUTO = "auto"
MIN_LADDER_EPOCHS = 9  # rungs at 3 and 9 epochs (eta 3, a bottom rung of at least 2): a screening at a third of the cost
MIN_MULTI_FIDELITY_TRIALS = 30  # below this a rung ladder keeps too few configurations to promote from
MAX_GP_TRIALS = 200  # past this the GP's cost per ask grows (cubic in trials); CMA-ES scales


@dataclass(frozen=True)
class SearchFacts:
    """What the choice is made from."""

    n_params: int
    n_choices: int  # categorical parameters
    n_conditional: int
    max_trials: int | None
    max_time: float | None
    max_epochs: float  # the full budget of a trial (its fidelity)
    workers: int

    @classmethod
    def of(cls, space: SearchSpace, *, max_trials: int | None, max_time: float | None, max_epochs: float,
           workers: int) -> "SearchFacts":
        params = list(space)
        return cls(len(params), sum(isinstance(p, Choice) for p in params),
                   sum(getattr(p, "condition", None) is not None for p in params), max_trials, max_time,
                   float(max_epochs), max(1, int(workers)))

    @property
    def random_start(self) -> int:
        """Trials a model-based strategy draws at random before its model is fitted."""
        return max(5, self.n_params + 1)


@dataclass(frozen=True)
class StrategyChoice:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""  # one sentence, for the report and `automl validate`
    chosen_by: str = "spec"  # "spec" (named there) or "auto"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options), "reason": self.reason, "chosen_by": self.chosen_by}


@dataclass(frozen=True)
class Rule:
    name: str  # the strategy
    applies: Callable[[SearchFacts], bool]
    reason: Callable[[SearchFacts], str]
    options: Callable[[SearchFacts], Mapping[str, Any]] = lambda facts: {}


def _budget(facts: SearchFacts) -> str:
    parts = [f"{facts.max_trials} trials"] if facts.max_trials is not None else []
    parts += [f"{facts.max_time:g} s"] if facts.max_time is not None else []
    return " and ".join(parts) or "no limit"


def _ladder_fits(facts: SearchFacts) -> bool:
    enough_trials = facts.max_trials is None or facts.max_trials >= MIN_MULTI_FIDELITY_TRIALS
    return facts.max_epochs >= MIN_LADDER_EPOCHS and enough_trials


RULES: tuple[Rule, ...] = (
    Rule("random",
         lambda f: f.max_trials is not None and f.max_trials <= f.random_start,
         lambda f: f"{f.max_trials} trials are no more than a model-based search draws at random before its "
                   f"model is fitted ({f.random_start} for {f.n_params} parameters), so random search does the same "
                   "for less"),
    Rule("asha",
         _ladder_fits,
         lambda f: f"trials train up to {f.max_epochs:g} epochs and the budget ({_budget(f)}) fits a rung ladder, so "
                   "ASHA spends short trainings on many configurations (drawn from a model of the best rung) and "
                   f"continues only the best; it keeps all {f.workers} slot(s) busy without waiting for a rung"),
    Rule("bayesian",
         lambda f: f.max_trials is not None and f.max_trials <= MAX_GP_TRIALS,
         lambda f: f"{f.max_trials} full trainings are a small budget: a Gaussian process learns the most from each "
                   f"(its cost per ask stays small beside a trial's up to {MAX_GP_TRIALS} trials)"),
    Rule("bayesian",
         lambda f: f.max_trials is None,
         lambda f: f"the budget is {_budget(f)} of full trainings (too few epochs for a rung ladder), so a Gaussian "
                   "process learns the most from each trial"),
    Rule("evolutionary",
         lambda f: True,
         lambda f: f"{f.max_trials} trials are many: CMA-ES (nevergrad) scales to them where a Gaussian process's "
                   f"cost per ask grows with every trial past {MAX_GP_TRIALS}"),
)


def choose_strategy(facts: SearchFacts, available: Collection[str]) -> StrategyChoice:
    """The first rule that applies and whose strategy is installed."""
    for rule in RULES:
        if rule.name in available and rule.applies(facts):
            return StrategyChoice(rule.name, dict(rule.options(facts)), rule.reason(facts), chosen_by=AUTO)
    return StrategyChoice("random", {}, "no other strategy is installed", chosen_by=AUTO)


def trial_budget_note(strategy, max_trials: int | None, max_epochs: float) -> tuple[str, bool]:
    """How max_trials counts for this (built) strategy, in one sentence, and whether it is too
    small for the strategy's first round ("" when max_trials counts plain trials)."""
    if max_trials is None or not getattr(strategy, "partial_trials", False):
        return "", False
    note = (f"max_trials {max_trials} counts full trainings for {strategy.name}: its trials train part of the "
            f"{max_epochs:g} epochs, so the search spends {max_trials * max_epochs:g} epochs in all")
    per_round = strategy.full_trainings_per_round()
    if per_round is None or max_trials >= per_round:
        return note, False
    needed = math.ceil(per_round - 1e-9)
    return (note + f"; but its first round of rungs alone takes {per_round:.1f} full trainings, so no configuration "
                   f"would train all {max_epochs:g} epochs: set max_trials to at least {needed}"), True
