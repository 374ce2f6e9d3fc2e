"""A conformance suite for strategies: run it on your own plugin.

    from automl.testing import check_strategy
    check_strategy(MyStrategy)                     # raises StrategyConformanceError on a breach

Our own tests run it over every discovered strategy. It checks the contract of
docs/plugins.md: suggestions inside the space and the budget bounds, reproducible for a
seed, COMPLETE / PRUNED / FAILED observations accepted, rebuilt by replay, several
pending trials at once, and a search that runs to its end.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Mapping

from automl.space import Choice, Condition, Float, Int, SearchSpace
from automl.strategies.base import Observation, Status, Strategy, Suggestion
from automl.strategy_builder import StrategySetup, build_strategy

# 6 parameters, mixed kinds, one conditional: the shape of a real search space
MIXED_SPACE = SearchSpace((
    Choice("kind", ("a", "b", "c")),
    Float("lr", 1e-4, 1e-1, log=True),
    Float("dropout", 0.0, 0.5),
    Int("width", 16, 256, log=True),
    Int("depth", 1, 7, step=2),
    Float("momentum", 0.5, 0.99, condition=Condition("kind", ("b",))),
))


class StrategyConformanceError(AssertionError):
    pass


def toy_loss(config: Mapping[str, Any], budget: float | None, max_budget: float) -> float:
    """A smooth function of the mixed space, lower with more budget (like a learning curve)."""
    loss = (math.log10(config["lr"]) + 2.5) ** 2 + (config["dropout"] - 0.1) ** 2
    loss += {"a": 0.3, "b": 0.0, "c": 0.6}[config["kind"]] + abs(math.log2(config["width"]) - 6) / 4
    loss += abs(config["depth"] - 3) / 10 + (abs(config["momentum"] - 0.9) if "momentum" in config else 0)
    fraction = (budget or max_budget) / max_budget
    return loss + 0.5 * (1 - fraction)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise StrategyConformanceError(message)


class _Harness:
    def __init__(self, cls: type[Strategy], options, space: SearchSpace, max_budget: float, workdir: Path,
                 registry=None):
        self.cls, self.options, self.space, self.max_budget, self.workdir = cls, options, space, max_budget, workdir
        self.registry = registry  # where strategies it composes are looked up (None: the installed ones)
        self.made = 0

    def make(self, seed: int) -> Strategy:
        self.made += 1
        return build_strategy(self.cls, self.options, StrategySetup(
            self.space, seed, self.max_budget, self.workdir / f"instance{self.made}", parallelism=4),
            registry=self.registry)

    def ask(self, strategy: Strategy, used: set[str], context: str) -> Suggestion | None:
        suggestion = strategy.ask()
        if suggestion is None:
            return None
        name = self.cls.name
        _check(isinstance(suggestion, Suggestion), f"{name}.ask() returned {suggestion!r} ({context}), not a Suggestion")
        problems = self.space.problems(dict(suggestion.config))
        _check(not problems, f"{name} suggested a config outside the space ({context}): {problems}")
        _check(isinstance(suggestion.trial_id, str) and suggestion.trial_id != "",
               f"{name} suggested an empty or non-string trial id {suggestion.trial_id!r}")
        _check(suggestion.trial_id not in used, f"{name} reused trial id {suggestion.trial_id!r} ({context})")
        budget = suggestion.budget
        _check(budget is None or 0 < budget <= self.max_budget,
               f"{name} suggested budget {budget!r}, outside (0, {self.max_budget}]")
        _check(suggestion.resume_from is None or suggestion.resume_from in used,
               f"{name} asked to resume from {suggestion.resume_from!r}, which is not an earlier trial")
        used.add(suggestion.trial_id)
        return suggestion

    def observe(self, suggestion: Suggestion, status: Status) -> Observation:
        budget = suggestion.budget if suggestion.budget is not None else self.max_budget
        loss = None if status is Status.FAILED else toy_loss(suggestion.config, budget, self.max_budget)
        return Observation(suggestion.trial_id, status, loss, dict(suggestion.config), budget,
                           {} if loss is None else {"loss": loss})


def _finished(strategy: Strategy) -> bool:
    return bool(getattr(strategy, "is_finished", lambda: False)())


def run_search(strategy: Strategy, harness: _Harness, n_trials: int, parallel: int) -> list[tuple[Suggestion, Observation]]:
    """Ask/tell with up to `parallel` pending trials; every 7th trial fails, every 5th is pruned."""
    used: set[str] = set()
    pending: list[Suggestion] = []
    history: list[tuple[Suggestion, Observation]] = []
    while len(history) < n_trials:
        while not _finished(strategy) and len(pending) < parallel and len(pending) + len(history) < n_trials:
            suggestion = harness.ask(strategy, used, f"trial {len(history) + len(pending)}")
            if suggestion is None:  # allowed while trials are pending (e.g. waiting for a rung)
                break
            pending.append(suggestion)
        if not pending:
            _check(_finished(strategy), f"{strategy.name}.ask() returned None with no trial pending and "
                                        "is_finished() False: the search would hang")
            break
        suggestion = pending.pop(0)
        index = len(history)
        status = Status.FAILED if index % 7 == 6 else Status.PRUNED if index % 5 == 4 else Status.COMPLETE
        stop = strategy.should_stop(suggestion.trial_id, 1, 1.0)
        _check(isinstance(stop, bool), f"{strategy.name}.should_stop returned {stop!r}, not a bool")
        observation = harness.observe(suggestion, status)
        strategy.tell(observation)
        history.append((suggestion, observation))
    _check(bool(history), f"{strategy.name} never suggested a trial")
    return history


def check_strategy(cls: type[Strategy], options: Mapping[str, Any] | None = None, *,
                   space: SearchSpace = MIXED_SPACE, max_budget: float = 9.0, n_trials: int = 24) -> None:
    """Raise StrategyConformanceError naming the first breach of the strategy contract."""
    with tempfile.TemporaryDirectory(prefix="automl-conformance-") as tmp:
        harness = _Harness(cls, options, space, max_budget, Path(tmp))
        name = cls.name

        # same seed -> same suggestions; sequential, so both see the same observations
        first = run_search(harness.make(seed=7), harness, n_trials, parallel=1)
        second = run_search(harness.make(seed=7), harness, n_trials, parallel=1)
        _check([(s.config, s.budget) for s, _ in first] == [(s.config, s.budget) for s, _ in second],
               f"{name}: the same seed gave different suggestions")

        # several pending trials at once, all statuses told, runs to its end
        run_search(harness.make(seed=1), harness, n_trials, parallel=4)

        # rebuilt by replay: a fresh instance told the history goes on without reusing ids
        replayed = harness.make(seed=7)
        for _, observation in first[:-2]:
            replayed.tell(observation)
        used = {s.trial_id for s, _ in first}
        for suggestion, _ in first[-2:]:  # interrupted trials: run again under their own id
            getattr(replayed, "resume_pending", lambda s: None)(suggestion)
        for suggestion, _ in first[-2:]:
            replayed.tell(harness.observe(suggestion, Status.COMPLETE))
        for step in range(3):
            suggestion = harness.ask(replayed, used, f"ask {step} after replay")
            if suggestion is None:
                break
            replayed.tell(harness.observe(suggestion, Status.COMPLETE))
