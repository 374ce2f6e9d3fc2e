"""Native hyperband and the tpe sampler: conformance, iterations without end, the first
rung, replay exactness, and the model against random search."""
from __future__ import annotations

import random
import statistics

import pytest

from automl.space import Choice, Float, SearchSpace
from automl.strategies.asha import ASHAStrategy
from automl.strategies.base import Observation, Status, Suggestion
from automl.strategies.hyperband import HyperbandStrategy
from automl.strategies.hyperband_native import default_min_budget, ladder
from automl.strategies.random import RandomStrategy
from automl.strategies.tpe import TPEStrategy
from automl.strategy_builder import StrategySetup, build_strategy
from automl.testing import MIXED_SPACE, check_strategy, toy_loss

SPACE = SearchSpace((Float("x", 0.0, 1.0), Float("y", 0.0, 1.0), Choice("kind", ("a", "b", "c"))))


def objective(config, budget, max_budget=9.0) -> float:
    """Best near x = 0.2, y = 0.7, kind b; more epochs lower everyone's loss."""
    base = (config["x"] - 0.2) ** 2 + (config["y"] - 0.7) ** 2 + {"a": 0.3, "b": 0.0, "c": 0.15}[config["kind"]]
    return base + 0.5 * (1 - (budget or max_budget) / max_budget)


def make(cls, options=None, space=SPACE, budget=9.0, seed=0):
    return build_strategy(cls, options or {}, StrategySetup(space, seed, budget, None, parallelism=4))


def observe(s: Suggestion, max_budget: float = 9.0) -> Observation:
    return Observation(s.trial_id, Status.COMPLETE, objective(s.config, s.budget, max_budget), dict(s.config),
                       s.budget, resume_from=s.resume_from)


# -- conformance -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, options", [
    (TPEStrategy, {}), (TPEStrategy, {"random_fraction": 0.0, "min_points": 2}),
    (HyperbandStrategy, {}), (HyperbandStrategy, {"sampler": "random", "min_budget": 1}),
    (HyperbandStrategy, {"hyperband_iterations": 1}), (ASHAStrategy, {}),
])
def test_conformance(cls, options):
    check_strategy(cls, options)


# -- the ladder and the first rung ---------------------------------------------------------------------
def test_default_min_budget_skips_single_epochs():
    assert default_min_budget(27, 3) == 3 and ladder(3, 27, 3) == [3, 9, 27]
    assert ladder(default_min_budget(100, 3), 100, 3) == pytest.approx([100 / 27, 100 / 9, 100 / 3, 100])
    assert default_min_budget(9, 3) == 3 and default_min_budget(3, 3) == 1 and default_min_budget(1, 3) == 1
    assert make(ASHAStrategy, budget=27.0).rungs == [3, 9, 27]


def test_hyperband_keeps_suggesting_after_its_first_iteration():
    strategy = make(HyperbandStrategy, {"min_budget": 1})  # 1, 3, 9: three brackets an iteration
    budgets, parents = [], {}
    for _ in range(120):
        s = strategy.ask()
        assert s is not None and not strategy.is_finished()
        if s.resume_from is not None:
            assert parents[s.resume_from].config == s.config and parents[s.resume_from].budget < s.budget
        parents[s.trial_id] = s
        budgets.append(s.budget)
        strategy.tell(observe(s))
    # one iteration: 9 x 1 -> 3 x 3 -> 1 x 9, 5 x 3 -> 1 x 9, 3 x 9 (the first ones of the next follow)
    assert budgets[:22] == [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] + [9] * 3
    assert budgets[22:31] == [1] * 9
    assert len(strategy._impl.brackets) > 10


def test_hyperband_with_an_iteration_limit_finishes():
    strategy = make(HyperbandStrategy, {"min_budget": 1, "hyperband_iterations": 1})
    n = 0
    while (s := strategy.ask()) is not None:
        strategy.tell(observe(s))
        n += 1
    assert n == 22 and strategy.is_finished()


def test_parallel_workers_never_wait():
    strategy = make(HyperbandStrategy, {"min_budget": 1})
    pending = [strategy.ask() for _ in range(12)]  # more than a bracket's bottom rung: the next one starts
    assert all(s is not None for s in pending)
    assert len({s.trial_id for s in pending}) == 12


# -- replay ----------------------------------------------------------------------------------------
def _interrupted_run(strategy, n, workers=4, seed=0):
    """Trials finish in a random order; stops with trials pending. Returns (created, told)."""
    order = random.Random(seed)
    created, told, pending = [], {}, []
    while len(created) < n:
        while len(pending) < workers:
            s = strategy.ask()
            created.append(s)
            pending.append(s)
        done = pending.pop(order.randrange(len(pending)))
        told[done.trial_id] = observe(done)
        strategy.tell(told[done.trial_id])
    return created, told


@pytest.mark.parametrize("cls, options", [(HyperbandStrategy, {}), (HyperbandStrategy, {"min_budget": 1}),
                                          (ASHAStrategy, {}), (TPEStrategy, {"min_points": 2})])
def test_replay_continues_identically(cls, options):
    original = make(cls, options, seed=3)
    created, told = _interrupted_run(original, 60)
    fresh = make(cls, options, seed=3)
    for s in created:  # the database's creation order
        if s.trial_id in told:
            fresh.tell(told[s.trial_id])
    for s in created:
        if s.trial_id not in told:
            fresh.resume_pending(s)
    for _ in range(8):
        a, b = original.ask(), fresh.ask()
        assert (a.trial_id, a.config, a.budget, a.resume_from) == (b.trial_id, b.config, b.budget, b.resume_from)
        original.tell(observe(a))
        fresh.tell(observe(b))


# -- the model ----------------------------------------------------------------------------------------
def _best(strategy, n, loss, max_budget):
    values = []
    for _ in range(n):
        s = strategy.ask()
        values.append(loss(s.config, s.budget, max_budget))
        strategy.tell(Observation(s.trial_id, Status.COMPLETE, values[-1], dict(s.config), s.budget))
    return min(values)


def test_tpe_beats_random_on_a_toy_problem():
    best = {"tpe": [], "random": []}
    for seed in range(5):
        best["tpe"].append(_best(make(TPEStrategy, space=MIXED_SPACE, seed=seed), 60, toy_loss, 9.0))
        best["random"].append(_best(make(RandomStrategy, space=MIXED_SPACE, seed=seed), 60, toy_loss, 9.0))
    assert statistics.median(best["tpe"]) < statistics.median(best["random"]), best


def test_tpe_models_the_highest_budget_with_enough_results():
    strategy = make(TPEStrategy, {"min_points": 2})  # a budget needs 4 results
    rng = random.Random(0)
    for i, budget in enumerate([1.0] * 6 + [3.0] * 4 + [9.0] * 3):
        config = {"x": rng.random(), "y": rng.random(), "kind": "a"}
        strategy.tell(Observation(f"t{i}", Status.COMPLETE, objective(config, budget), config, budget))
    assert strategy.model_budget() == 3.0
    strategy.tell(Observation("failed", Status.FAILED, None, {"x": 0.5, "y": 0.5, "kind": "c"}, 9.0))
    assert strategy.model_budget() == 9.0
