"""Hyperband in our own code (Li et al. 2018), with its configs from a sampler strategy
(`tpe` by default, which makes it BOHB, Falkner et al. 2018).

An iteration is a set of brackets of successive halving, from the most aggressive down.
With s_max = floor(log_eta(max_budget / min_budget)), bracket s (s_max, ..., 0) starts
n = ceil((s_max + 1) / (s + 1) * eta**s) configs at max_budget / eta**s and sends the best
floor(n / eta**i) on to rung i at max_budget / eta**(s - i). A promotion is a new trial with
the same config whose `resume_from` is the trial it continues, so it trains only the extra
epochs. Iterations repeat as long as the strategy is asked (`hyperband_iterations`: a limit).

Asynchronous: each ask goes through the open brackets oldest first and takes the first
thing one of them can do (promote from a finished rung, start a config in its bottom
rung); when every open bracket waits for running trials, the next bracket starts, so every
worker stays busy. With one worker this is plain Hyperband. A FAILED trial counts as
finished and is never promoted; a PRUNED one ranks by its loss but is not promoted.

Resume by replay: a new config's id is `b<bracket>-<sampler id>` and a promotion's
`b<bracket>-<sampler id>-r<rung>`, so each told trial finds its bracket; its rung follows
from its budget, the config it continues from its config. The state is a function of the
set of trials told and pending (ties in a rung go to the earlier trial), and the sampler is
told the same set under its own ids, so a fresh instance told the trials in creation
order, plus `resume_pending` for the interrupted ones, continues identically.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from automl.strategies.base import Observation, Status, Strategy, Suggestion, claim_id, config_key

log = logging.getLogger(__name__)

_ID = re.compile(r"^b(\d+)-(.+)$")


def default_min_budget(max_budget: float, eta: float) -> float:
    """The bottom rung when none is given: max_budget / eta**k for the largest k that keeps it
    at or above max(min(2, max_budget / eta), max_budget / eta**3, min(1, max_budget)): at least
    2 epochs where the budget allows (one epoch of a learning curve ranks configs poorly), never
    under one epoch, and at most four rungs. 27 epochs, eta 3: 3, 9, 27; 100 epochs: 3.7, 11.1,
    33.3, 100; 9 epochs: 3, 9; 3 epochs: 1, 3."""
    floor = max(min(2.0, max_budget / eta), max_budget / eta**3, min(1.0, max_budget))
    k = 0
    while max_budget / eta ** (k + 1) >= floor * (1 - 1e-9):
        k += 1
    return max_budget / eta**k


def ladder(min_budget: float, max_budget: float, eta: float) -> list[float]:
    """The budgets of the most aggressive bracket: max_budget / eta**s_max, ..., max_budget."""
    s_max = int(math.floor(math.log(max_budget / min_budget) / math.log(eta) + 1e-9))
    return [max_budget / eta ** (s_max - i) for i in range(s_max + 1)]


def ladder_cost(budgets: list[float], sizes: list[int]) -> float:
    """Full trainings (of budgets[-1] epochs) that rungs of `sizes` configs at `budgets` cost,
    a promotion training only the epochs it adds."""
    below = [0.0] + budgets[:-1]
    return sum(n * (b - a) for n, b, a in zip(sizes, budgets, below)) / budgets[-1]


def first_bracket_cost(min_budget: float, max_budget: float, eta: float) -> float:
    """Full trainings of Hyperband's first (most aggressive) bracket."""
    budgets = ladder(min_budget, max_budget, eta)
    n = math.ceil(eta ** (len(budgets) - 1))
    return ladder_cost(budgets, [max(1, int(n / eta**i + 1e-9)) for i in range(len(budgets))])


@dataclass
class _Trial:
    trial_id: str
    config: dict[str, Any]
    seq: int  # creation order, for ties
    loss: float | None = None  # None: running
    done: bool = False
    promotable: bool = False


@dataclass
class _Bracket:
    index: int
    budgets: list[float]  # one per rung
    sizes: list[int]  # the most configs each rung gets
    rungs: list[dict[str, _Trial]] = field(default_factory=list)  # config key -> trial
    promoted: list[set[str]] = field(default_factory=list)  # config keys sent on from each rung

    def __post_init__(self):
        self.rungs = [{} for _ in self.budgets]
        self.promoted = [set() for _ in self.budgets]

    def rung_done(self, i: int) -> bool:
        rung = self.rungs[i]
        if not all(t.done for t in rung.values()):
            return False
        if i == 0:
            return len(rung) >= self.sizes[0]
        below = self.rungs[i - 1]
        return self.rung_done(i - 1) and len(rung) >= min(self.sizes[i], sum(t.promotable for t in below.values()))

    def candidate(self, i: int) -> _Trial | None:
        """The next config rung i sends on (it is finished and its quota is not used up)."""
        if len(self.promoted[i]) >= self.sizes[i + 1] or not self.rung_done(i):
            return None
        ranked = sorted(self.rungs[i].items(), key=lambda kv: (kv[1].loss, kv[1].seq))
        return next((t for key, t in ranked if t.promotable and key not in self.promoted[i]), None)

    def finished(self) -> bool:
        return self.rung_done(len(self.rungs) - 1)


class NativeHyperband:
    """The engine behind `hyperband` with `engine: "native"` (built by HyperbandStrategy)."""

    def __init__(self, owner: Strategy, sampler: Strategy, eta: float, min_budget: float,
                 iterations: int | None):
        self.owner, self.sampler, self.eta, self.iterations = owner, sampler, eta, iterations
        self.top = ladder(min_budget, float(owner.max_budget), eta)
        self.s_max = len(self.top) - 1
        self.brackets: dict[int, _Bracket] = {}
        self._closed: set[int] = set()
        self._known: set[str] = set()
        self._seq = 0
        self._told_budgets = getattr(sampler, "uses_budgets", False)

    def _bracket(self, index: int) -> _Bracket:
        if index not in self.brackets:
            s = self.s_max - index % (self.s_max + 1)
            n = math.ceil((self.s_max + 1) / (s + 1) * self.eta**s)
            self.brackets[index] = _Bracket(index, self.top[self.s_max - s:],
                                            [max(1, int(n / self.eta**i + 1e-9)) for i in range(s + 1)])
        return self.brackets[index]

    def first_bracket_cost(self) -> float:
        return first_bracket_cost(self.top[0], self.top[-1], self.eta)

    def _limit(self) -> int | None:
        return None if self.iterations is None else self.iterations * (self.s_max + 1)

    # -- ask -------------------------------------------------------------------------------------
    def ask(self) -> Suggestion | None:
        for index in sorted(self.brackets):
            bracket = self.brackets[index]
            if index in self._closed:
                continue
            suggestion = self._next_in(bracket)
            if suggestion is not None:
                return suggestion
            if bracket.finished():
                self._closed.add(index)  # only skipped from now on: the decisions stay the same
        index = max(self.brackets, default=-1) + 1
        limit = self._limit()
        if limit is not None and index >= limit:
            return None
        suggestion = self._next_in(self._bracket(index))
        if suggestion is None and not any(self.brackets[index].rungs[0].values()):
            del self.brackets[index]  # the sampler had nothing: the bracket has not started
        return suggestion

    def _next_in(self, bracket: _Bracket) -> Suggestion | None:
        for i in reversed(range(len(bracket.rungs) - 1)):  # the highest rung first: finish configs early
            parent = bracket.candidate(i)
            if parent is not None:
                key = config_key(parent.config)
                bracket.promoted[i].add(key)
                root = re.sub(r"-r\d+(\.\d+)?$", "", parent.trial_id)
                trial_id = claim_id(self._known, f"{root}-r{i + 1}")
                self._add(bracket, i + 1, trial_id, parent.config)
                return Suggestion(trial_id, dict(parent.config), budget=bracket.budgets[i + 1],
                                  resume_from=parent.trial_id)
        if len(bracket.rungs[0]) < bracket.sizes[0]:
            proposal = self.sampler.ask()
            if proposal is None:
                return None
            trial_id = claim_id(self._known, f"b{bracket.index}-{proposal.trial_id}")
            config = dict(proposal.config)
            if config_key(config) in bracket.rungs[0]:  # a repeat within the bracket runs outside it
                return Suggestion(trial_id, config, budget=bracket.budgets[0])
            self._add(bracket, 0, trial_id, config)
            return Suggestion(trial_id, config, budget=bracket.budgets[0])
        return None

    def _add(self, bracket: _Bracket, rung: int, trial_id: str, config: Mapping[str, Any]) -> _Trial:
        trial = _Trial(trial_id, dict(config), self._seq)
        self._seq += 1
        bracket.rungs[rung][config_key(config)] = trial
        return trial

    # -- tell and replay ---------------------------------------------------------------------------
    def _locate(self, trial_id: str, config: Mapping[str, Any],
                budget: float | None) -> tuple[_Bracket, int, _Trial] | None:
        """The bracket, rung and trial record of one of our trials (made on the way for a replayed one)."""
        match = _ID.match(trial_id)
        limit = self._limit()
        if match is None or (limit is not None and int(match.group(1)) >= limit):
            return None
        bracket = self._bracket(int(match.group(1)))
        budget = float(self.owner.max_budget if budget is None else budget)
        rung = next((i for i, b in enumerate(bracket.budgets) if math.isclose(b, budget, rel_tol=1e-9)), None)
        if rung is None:
            return None
        key = config_key(config)
        trial = bracket.rungs[rung].get(key)
        if trial is None or trial.trial_id != trial_id:
            if trial is not None or (rung == 0 and len(bracket.rungs[0]) >= bracket.sizes[0]):
                return None  # a repeat: counted outside the brackets
            trial = self._add(bracket, rung, trial_id, config)
            if rung > 0:
                bracket.promoted[rung - 1].add(key)
        return bracket, rung, trial

    def tell(self, observation: Observation) -> None:
        self._known.add(observation.trial_id)
        found = self._locate(observation.trial_id, observation.config, observation.budget)
        if found is not None:
            _, _, trial = found
            trial.done = True
            if observation.status is not Status.FAILED and observation.loss is not None:
                loss = float(observation.loss)
                trial.loss = loss if loss == loss else math.inf
                trial.promotable = observation.status is Status.COMPLETE
            else:
                trial.loss = math.inf
        new_config = found is None or found[1] == 0
        if self._told_budgets or new_config:
            self.sampler.tell(dataclasses.replace(observation, trial_id=self._sampler_id(observation.trial_id)))

    def resume_pending(self, suggestion: Suggestion) -> None:
        self._known.add(suggestion.trial_id)
        found = self._locate(suggestion.trial_id, suggestion.config, suggestion.budget)
        if found is None or found[1] == 0:
            getattr(self.sampler, "resume_pending", lambda s: None)(
                dataclasses.replace(suggestion, trial_id=self._sampler_id(suggestion.trial_id)))

    @staticmethod
    def _sampler_id(trial_id: str) -> str:
        match = _ID.match(trial_id)
        return match.group(2) if match else trial_id

    def is_finished(self) -> bool:
        limit = self._limit()
        return limit is not None and len(self.brackets) >= limit and all(b.finished() for b in self.brackets.values())
