"""The botorch engine of `bayesian` (the default): encoding, model, acquisition, the strategy."""
from __future__ import annotations

import math
import statistics
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from automl.space import Choice, Condition, Float, Int, SearchSpace
from automl.strategies.base import Observation, Status
from automl.strategies.bayesian import BayesianStrategy
from automl.strategies.gp_encoding import Encoding
from automl.strategies.gp_search import fit_point
from automl.strategies.random import RandomStrategy
from automl.testing import MIXED_SPACE, check_strategy, toy_loss

QUADRATIC = SearchSpace((Float("x", -1.0, 1.0), Float("y", -1.0, 1.0)))
NESTED = SearchSpace((
    Choice("family", ("mlp", "cnn", "tree")),
    Int("width", 8, 512, log=True),
    Int("depth", 1, 10, step=3),
    Int("mlp.layers", 1, 4, condition=Condition("family", ("mlp",))),
    Float("mlp.decay", 0.1, 0.9, condition=Condition("mlp.layers", (2, 3))),  # nested, on an Int
    Choice("cnn.kernel", (3, 5), condition=Condition("family", ("cnn",))),
    Float("lr", 1e-5, 1e-1, log=True),
))


def quadratic(config, budget=None, max_budget=None):
    return (config["x"] - 0.3) ** 2 + (config["y"] + 0.2) ** 2


def run(strategy, n, loss=toy_loss):
    history = []
    for _ in range(n):
        suggestion = strategy.ask()
        observation = Observation(suggestion.trial_id, Status.COMPLETE, loss(suggestion.config, 1, 1),
                                  dict(suggestion.config), suggestion.budget)
        strategy.tell(observation)
        history.append((suggestion, observation))
    return history


# -- the encoding ----------------------------------------------------------------------------------

@pytest.mark.parametrize("space", [MIXED_SPACE, NESTED])
def test_projected_points_are_configs_of_the_space(space):
    encoding = Encoding(space)
    points = encoding.project(np.random.default_rng(0).random((3000, encoding.dim)))
    for x in points[:500]:
        config = encoding.decode(x)
        assert space.problems(config) == []
        assert np.allclose(encoding.encode(config), x)  # Ints rounded, inactive parameters fixed
    moves, origin = encoding.neighbours(points[:40])
    assert len(moves) and all(space.problems(encoding.decode(x)) == [] for x in moves)


def test_inactive_parameters_add_no_distance():
    encoding = Encoding(NESTED)
    a = encoding.encode({"family": "tree", "width": 8, "depth": 1, "lr": 0.01})
    b = encoding.encode({"family": "tree", "width": 8, "depth": 1, "lr": 0.01})
    c = encoding.encode({"family": "mlp", "width": 8, "depth": 1, "mlp.layers": 1, "lr": 0.01})
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_fit_points():
    assert [fit_point(n, None) for n in (2, 19, 20, 21, 35, 100, 109)] == [2, 19, 20, 20, 33, 100, 100]
    assert [fit_point(n, 5) for n in (4, 5, 9, 10)] == [4, 5, 5, 10]


def test_the_cached_posterior_is_gpytorchs():
    import torch

    from automl.strategies import gp

    rng = np.random.default_rng(0)
    X = rng.random((25, 3))
    y = np.sin(3 * X.sum(1))
    model, _ = gp.fit_model(X, (y - y.mean()) / y.std(), hyper=None, seed=0, maxiter=50)
    test = torch.as_tensor(rng.random((6, 2, 3)))
    with torch.no_grad():
        ours, theirs = gp.cached(model).posterior(test), model.posterior(test)
    assert torch.allclose(ours.mean, theirs.mean, atol=1e-9)
    assert torch.allclose(ours.distribution.covariance_matrix, theirs.distribution.covariance_matrix, atol=1e-8)


# -- the strategy ----------------------------------------------------------------------------------

def test_bayesian_conforms():
    check_strategy(BayesianStrategy)


def test_the_default_engine_is_botorch_and_options_are_checked():
    assert BayesianStrategy.Options().engine == "botorch"
    with pytest.raises(ValidationError, match="beta"):
        BayesianStrategy.Options(beta=1.0)
    with pytest.raises(ValidationError, match="raw_samples"):
        BayesianStrategy.Options(engine="keras-tuner", raw_samples=64)


def test_importing_automl_does_not_import_botorch():
    code = ("import sys, automl, automl.strategies.bayesian, automl.strategies.gp, automl.strategies.gp_search; "
            "assert not {'botorch', 'gpytorch', 'keras_tuner'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bayesian_beats_random_on_a_quadratic():
    best = {"bayesian": [], "random": []}
    for seed in range(3):
        bayes = [o.loss for _, o in run(BayesianStrategy(QUADRATIC, seed=seed, max_budget=1), 20, quadratic)]
        assert min(bayes[5:]) < min(bayes[:5])  # the GP improved on its Sobol start
        best["bayesian"].append(min(bayes))
        best["random"].append(min(o.loss for _, o in run(RandomStrategy(QUADRATIC, seed=seed, max_budget=1), 20,
                                                         quadratic)))
    assert statistics.median(best["bayesian"]) < statistics.median(best["random"]) / 20, best


def test_suggestions_on_a_mixed_conditional_space_are_valid():
    history = run(BayesianStrategy(NESTED, seed=3, max_budget=1), 16,
                  lambda c, b, m: math.log(c["lr"]) ** 2 / 10 + c["width"] / 512 + (c["family"] != "mlp"))
    assert all(NESTED.problems(s.config) == [] for s, _ in history)
    assert len({tuple(sorted(s.config.items())) for s, _ in history}) == 16  # never the same config twice


def test_replay_is_exact():
    options = BayesianStrategy.Options(refit_every=None)
    uninterrupted = run(BayesianStrategy(MIXED_SPACE, seed=4, max_budget=1, options=options), 14)
    resumed = BayesianStrategy(MIXED_SPACE, seed=4, max_budget=1, options=options)
    for _, observation in uninterrupted[:11]:
        resumed.tell(observation)
    continued = run(resumed, 3)
    assert [s.config for s, _ in continued] == [s.config for s, _ in uninterrupted[11:]]
    assert {s.trial_id for s, _ in continued}.isdisjoint(s.trial_id for s, _ in uninterrupted[:11])


def test_pending_trials_get_distinct_suggestions_and_failures_count_as_the_worst():
    strategy = BayesianStrategy(QUADRATIC, seed=0, max_budget=1)
    strategy.parallelism = 4
    history = run(strategy, 6, quadratic)
    failed = strategy.ask()
    strategy.tell(Observation(failed.trial_id, Status.FAILED, None, failed.config))
    pruned = strategy.ask()
    strategy.tell(Observation(pruned.trial_id, Status.PRUNED, 0.9, pruned.config))
    engine = strategy._engine
    assert engine.losses[-2] is None and engine._targets(engine.losses)[-2] == engine._targets(engine.losses).min()
    pending = [strategy.ask() for _ in range(4)]  # the GP, with the earlier ones still running
    points = {(s.config["x"], s.config["y"]) for s in pending}
    assert len(points) == 4 and len(engine.pending) == 4
    assert min(math.dist(a, b) for a in points for b in points if a != b) > 1e-3
    assert all(QUADRATIC.contains(s.config) for s in pending) and len(history) == 6


def test_failures_before_any_result_still_leave_the_gp_a_fit():
    strategy = BayesianStrategy(QUADRATIC, seed=1, max_budget=1, options=BayesianStrategy.Options(refit_every=4))
    for index in range(7):
        suggestion = strategy.ask()
        failed = index < 3
        strategy.tell(Observation(suggestion.trial_id, Status.FAILED if failed else Status.COMPLETE,
                                  None if failed else quadratic(suggestion.config), suggestion.config))
    assert QUADRATIC.contains(strategy.ask().config)
    assert strategy._engine._hyper[0] == 7  # fitted on all 7 (the fit point, 4, holds one result only)
