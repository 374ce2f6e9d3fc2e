"""The nevergrad-backed evolutionary strategy: conformance, options, search quality, replay."""
from __future__ import annotations

import math
import statistics
import subprocess
import sys

import pydantic
import pytest

from automl.space import Choice, Condition, Float, Int, SearchSpace
from automl.strategies.base import Observation, Status, Suggestion
from automl.strategies.evolutionary import FAILED_LOSS, EvolutionaryStrategy
from automl.testing import check_strategy

QUADRATIC_SPACE = SearchSpace((
    Float("x", -5.0, 5.0),
    Float("y", -5.0, 5.0),
    Int("k", 0, 20, step=2),
    Choice("c", ("p", "q")),
))


def quadratic(config) -> float:
    return (config["x"] - 1) ** 2 + (config["y"] + 2) ** 2 + (config["k"] - 8) ** 2 / 10 + (config["c"] == "p")


def make(space=QUADRATIC_SPACE, seed=0, parallelism=4, **options) -> EvolutionaryStrategy:
    strategy = EvolutionaryStrategy(space, seed=seed, max_budget=3.0,
                                    options=EvolutionaryStrategy.Options.model_validate(options))
    strategy.parallelism = parallelism
    return strategy


def complete(suggestion: Suggestion, loss: float | None = None) -> Observation:
    loss = quadratic(suggestion.config) if loss is None else loss
    return Observation(suggestion.trial_id, Status.COMPLETE, loss, dict(suggestion.config), suggestion.budget)


@pytest.mark.parametrize("options", [None, {"optimizer": "TwoPointsDE"}, {"optimizer": "DE"},
                                     {"optimizer": "OnePlusOne"}])
def test_conformance(options):
    check_strategy(EvolutionaryStrategy, options)


def test_a_sequential_only_optimizer_conforms_and_waits_for_each_result():
    check_strategy(EvolutionaryStrategy, {"optimizer": "Powell"})
    strategy = make(optimizer="Powell")
    first = strategy.ask()
    assert first is not None and strategy.ask() is None  # nevergrad refuses parallel workers for Powell
    strategy.tell(complete(first))
    assert strategy.ask() is not None


def test_default_options():
    options = EvolutionaryStrategy.Options()
    assert (options.optimizer, options.budget) == ("CMA", 100)


def test_an_unknown_optimizer_is_a_validation_error_naming_close_names():
    with pytest.raises(pydantic.ValidationError) as caught:
        EvolutionaryStrategy.Options(optimizer="TwoPointDE")
    assert "unknown nevergrad optimizer 'TwoPointDE'" in str(caught.value)
    assert "TwoPointsDE" in str(caught.value)
    with pytest.raises(pydantic.ValidationError, match="CMA"):
        EvolutionaryStrategy.Options(optimizer="cma")  # the registry is case-sensitive


def test_unknown_options_and_a_zero_budget_are_refused():
    with pytest.raises(pydantic.ValidationError):
        EvolutionaryStrategy.Options(population=10)
    with pytest.raises(pydantic.ValidationError):
        EvolutionaryStrategy.Options(budget=0)


def test_importing_the_module_does_not_import_nevergrad():
    code = "import sys, automl.strategies.evolutionary; assert 'nevergrad' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _losses(strategy, batches: int = 15, nan_first: bool = False) -> list[float]:
    """Batches of 4 parallel trials on the quadratic; every loss in order (the first trial NaN if asked)."""
    losses = []
    for _ in range(batches):
        batch = [strategy.ask() for _ in range(4)]
        for suggestion in batch:
            loss = math.nan if nan_first and not losses else quadratic(suggestion.config)
            losses.append(loss)
            strategy.tell(complete(suggestion, loss))
    return losses


def _best_of(strategy, batches: int = 15, nan_first: bool = False) -> float:
    """The lowest finite loss of `_losses`."""
    return min(loss for loss in _losses(strategy, batches, nan_first) if math.isfinite(loss))


def _random_bests(seeds) -> list[float]:
    from automl.strategies.random import RandomStrategy
    from automl.strategy_builder import StrategySetup, build_strategy

    return [_best_of(build_strategy(RandomStrategy, {}, StrategySetup(QUADRATIC_SPACE, seed, 3.0, parallelism=4)))
            for seed in seeds]


SEEDS = range(5)


def test_the_default_beats_random_search_on_a_smooth_function():
    # 60 evaluations: random search's best is ~2.7 (median over seeds); CMA-ES gets to ~0.05, TwoPointsDE ~1.8
    random_median = statistics.median(_random_bests(SEEDS))
    bests = [_best_of(make(seed=seed, budget=60)) for seed in SEEDS]
    assert max(bests) < random_median
    assert statistics.median(bests) < random_median / 10


def test_after_a_nan_the_search_still_converges():
    random_median = statistics.median(_random_bests(SEEDS))
    runs = [_losses(make(seed=seed, budget=60), nan_first=True) for seed in SEEDS]
    bests = [min(loss for loss in losses if math.isfinite(loss)) for losses in runs]
    assert max(bests) < random_median and statistics.median(bests) < random_median / 4
    # the optimizer kept learning from the results after the NaN: its last 20 trials sit near the
    # optimum (median loss 1.8-4.5 over the seeds), where a random config scores ~20 and CMA-ES's
    # first, unlearned samples around the centre of the box ~10 (what it asks when no result after
    # the NaN reaches it); "best" alone does not tell these apart
    assert max(statistics.median(losses[-20:]) for losses in runs) < 6


def test_several_pending_asks_then_tells_in_any_order_with_any_status():
    strategy = make(parallelism=4)
    batch = [strategy.ask() for _ in range(4)]
    assert len({s.trial_id for s in batch}) == 4
    assert all(not QUADRATIC_SPACE.problems(dict(s.config)) and s.budget == 3.0 for s in batch)
    statuses = [Status.FAILED, Status.PRUNED, Status.COMPLETE, Status.FAILED]
    for suggestion, status in zip(reversed(batch), statuses):
        loss = None if status is Status.FAILED else quadratic(suggestion.config)
        strategy.tell(Observation(suggestion.trial_id, status, loss, dict(suggestion.config)))
    more = [strategy.ask() for _ in range(4)]
    assert not {s.trial_id for s in more} & {s.trial_id for s in batch}


def test_non_finite_losses_are_told_as_a_penalty_worse_than_every_loss(monkeypatch):
    strategy = make()
    told = []
    optimizer = strategy._get_optimizer()
    tell = optimizer.tell
    monkeypatch.setattr(optimizer, "tell", lambda candidate, loss: (told.append(loss), tell(candidate, loss)))
    first = strategy.ask()
    strategy.tell(Observation(first.trial_id, Status.COMPLETE, math.nan, dict(first.config)))
    assert told == [FAILED_LOSS]  # before any finite loss: the fixed penalty
    batch = [strategy.ask() for _ in range(3)]
    for suggestion, loss in zip(batch, (2.0, 5.0, math.inf)):
        strategy.tell(Observation(suggestion.trial_id, Status.COMPLETE, loss, dict(suggestion.config)))
    assert told[1:] == [2.0, 5.0, 5.0 + (5.0 - 2.0)]  # worst + max(1, worst - best)
    assert strategy.ask() is not None


def test_conditions_constants_and_log_ints_give_valid_configs():
    space = SearchSpace((
        Choice("family", ("a", "b")),
        Float("fixed", 0.5, 0.5),
        Int("one", 3, 4, step=5),  # a single value: 3
        Int("width", 16, 256, log=True),
        Float("lr", 1e-5, 1e-1, log=True, condition=Condition("family", ("b",))),
        Choice("act", (True, False, 1), condition=Condition("family", ("a",))),
    ))
    strategy = make(space)
    for _ in range(30):
        suggestion = strategy.ask()
        assert space.problems(dict(suggestion.config)) == []
        assert suggestion.config["fixed"] == 0.5 and suggestion.config["one"] == 3
        strategy.tell(Observation(suggestion.trial_id, Status.COMPLETE, math.log(suggestion.config["width"]),
                                  dict(suggestion.config)))


def test_a_space_with_nothing_to_optimize_still_suggests():
    space = SearchSpace((Float("fixed", 1.0, 1.0),))
    suggestion = make(space).ask()
    assert suggestion.config == {"fixed": 1.0}


def test_replay_continues_with_new_ids():
    first = make(seed=5)
    history = []
    for _ in range(3):
        batch = [first.ask() for _ in range(4)]
        history += [complete(s) for s in batch]
        for observation in history[-4:]:
            first.tell(observation)
    interrupted = first.ask()

    replayed = make(seed=5)
    for observation in history:
        replayed.tell(observation)
    replayed.resume_pending(interrupted)
    replayed.tell(complete(interrupted))
    used = {o.trial_id for o in history} | {interrupted.trial_id}
    new = [replayed.ask() for _ in range(6)]
    assert len({s.trial_id for s in new}) == 6 and not {s.trial_id for s in new} & used
    assert all(not QUADRATIC_SPACE.problems(dict(s.config)) for s in new)


def test_replayed_trials_are_not_asked_again_nor_crash_on_foreign_ids():
    strategy = make()
    strategy.tell(Observation("ev0000", Status.COMPLETE, 1.0, {"x": 0.0, "y": 0.0, "k": 8, "c": "q"}))
    strategy.tell(Observation("0007", Status.FAILED, None, {"x": 4.0, "y": 4.0, "k": 20, "c": "p"}))
    strategy.tell(Observation("odd", Status.COMPLETE, 2.0, {"x": 0.0, "y": 0.0, "k": 8, "c": "zzz"}))  # not in space
    assert strategy.ask().trial_id == "ev0001"


def _mean_distance_to(target, strategy, n=8) -> float:
    configs = [strategy.ask().config for _ in range(n)]
    return sum(math.hypot(c["x"] - target[0], c["y"] - target[1]) for c in configs) / n


def test_a_replayed_best_point_steers_later_asks():
    # OnePlusOne mutates its best point: told a replayed incumbent, it searches around it
    best = {"x": 4.0, "y": -4.0, "k": 8, "c": "q"}
    told = make(seed=3, optimizer="OnePlusOne")
    told.tell(Observation("old0", Status.COMPLETE, 0.0, best))
    told.tell(Observation("old1", Status.COMPLETE, 5.0, {"x": -4.0, "y": 4.0, "k": 0, "c": "p"}))
    told.ask()  # OnePlusOne's first ask is always the parametrization's centre
    fresh = make(seed=3, optimizer="OnePlusOne")
    fresh.ask()
    assert _mean_distance_to((4.0, -4.0), told) < 0.75 * _mean_distance_to((4.0, -4.0), fresh)


def test_an_optimizer_failure_is_a_runtime_error_naming_it(monkeypatch):
    strategy = make(optimizer="DE")
    optimizer = strategy._get_optimizer()

    def broken_ask():
        raise TypeError("only 0-dimensional arrays can be converted to Python scalars")

    monkeypatch.setattr(optimizer, "ask", broken_ask)
    with pytest.raises(RuntimeError, match="nevergrad's DE failed to suggest a config .TypeError"):
        strategy.ask()
