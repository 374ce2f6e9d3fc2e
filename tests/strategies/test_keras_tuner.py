"""The keras-tuner strategies: the bridge between search spaces, bayesian, hyperband, replay."""
from __future__ import annotations

import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from automl.space import Choice, Condition, Float, Int, SearchSpace
from automl.strategies.base import Observation, Status
from automl.strategies.bayesian import BayesianStrategy, _lean_gpr_class
from automl.strategies.hyperband import HyperbandStrategy, KerasTunerHyperband
from automl.strategies.kt_bridge import (attach_project, from_kt_values, import_keras_tuner, to_hyperparameters,
                                         to_kt_values)
from automl.strategies.random import RandomStrategy
from automl.testing import MIXED_SPACE, check_strategy, toy_loss

kt = import_keras_tuner()

# every kind of parameter, with conditions on a string choice, on a nested child and on an int
EVERY_KIND = SearchSpace((
    Choice("family", ("mlp", "cnn", "tree")),
    Float("lr", 1e-5, 1e-1, log=True),
    Float("dropout", 0.0, 0.5),
    Int("width", 8, 512, log=True),
    Int("depth", 1, 10, step=3),  # 1, 4, 7, 10
    Choice("batch", (16, 32, 64)),
    Choice("ratio", (0.25, 0.5)),
    Choice("flag", (True, False)),
    Choice("mixed", ("auto", 1, 2.5, False)),
    Int("mlp.layers", 1, 4, condition=Condition("family", ("mlp",))),
    Float("mlp.decay", 0.1, 0.9, condition=Condition("mlp.layers", (2, 3))),  # nested
    Choice("cnn.kernel", (3, 5), condition=Condition("family", ("cnn",))),
    Choice("shuffle", (True, False), condition=Condition("flag", (True,))),
    Float("per_layer", 0.0, 1.0, condition=Condition("depth", (7, 10))),
))


def run(strategy, n, *, workdir=None, loss=toy_loss, status=lambda index: Status.COMPLETE):
    """Ask / tell one trial at a time until n or the end; returns [(suggestion, observation)]."""
    if workdir is not None:
        strategy.workdir = workdir
    history = []
    for index in range(n):
        suggestion = strategy.ask()
        if suggestion is None:
            assert strategy.is_finished()
            break
        value = loss(suggestion.config, suggestion.budget, strategy.max_budget)
        observation = Observation(suggestion.trial_id, status(index), None if status(index) is Status.FAILED else value,
                                  dict(suggestion.config), suggestion.budget)
        strategy.tell(observation)
        history.append((suggestion, observation))
    return history


def key(suggestion):
    return dict(suggestion.config), suggestion.budget, suggestion.resume_from


# -- the bridge ------------------------------------------------------------------------------------

def test_space_round_trips_through_keras_tuner_values():
    hps = to_hyperparameters(EVERY_KIND)
    assert [hp.name for hp in hps.space] == EVERY_KIND.names
    rng = np.random.default_rng(0)
    for _ in range(300):
        config = EVERY_KIND.sample(rng)
        values = to_kt_values(EVERY_KIND, config)
        assert from_kt_values(EVERY_KIND, values) == config
        # keras-tuner's conditions agree with ours on what is active
        hps.values = values
        assert {hp.name for hp in hps.space if hps.is_active(hp)} == set(config)


def test_keras_tuner_values_come_back_inside_the_space():
    """Every value keras-tuner can produce, the range ends included, maps into the space."""
    hps = to_hyperparameters(EVERY_KIND)
    for prob in (0.0, 0.37, 0.5, 1 - 1e-12, 1.0):  # 1.0: where L-BFGS stops at the upper bound
        values = {hp.name: hp.prob_to_value(prob) for hp in hps.space}
        values["tuner/epochs"] = 3  # hyperband's own entries are left out
        config = from_kt_values(EVERY_KIND, values)
        assert EVERY_KIND.problems(config) == [], (prob, config)
        assert "tuner/epochs" not in config
    assert from_kt_values(EVERY_KIND, {"width": 513})["width"] == 512  # log int at prob 1.0
    assert from_kt_values(EVERY_KIND, {"depth": 9})["depth"] == 10  # snapped to the step


def test_keras_tuner_draws_come_back_inside_the_space():
    options = BayesianStrategy.Options(engine="keras-tuner", num_initial_points=50)
    strategy = BayesianStrategy(EVERY_KIND, seed=3, max_budget=1, options=options)
    seen = set()
    for suggestion, _ in run(strategy, 40, loss=lambda c, b, m: len(c)):
        assert EVERY_KIND.problems(dict(suggestion.config)) == []
        seen.update((name, repr(value)) for name, value in suggestion.config.items())
    assert {("flag", "True"), ("flag", "False"), ("mixed", "1"), ("mixed", "'auto'"), ("family", "'tree'")} <= seen


def test_attach_project_is_the_private_call_that_places_the_files(tmp_path):
    oracle = kt.oracles.HyperbandOracle(objective=kt.Objective("loss", "min"), max_epochs=3,
                                        hyperparameters=to_hyperparameters(MIXED_SPACE), seed=1)
    oracle.verbose = 0
    attach_project(oracle, tmp_path, "project")
    trial = oracle.create_trial("worker")
    assert trial.status == "RUNNING"
    assert (tmp_path / "project" / "oracle.json").is_file()
    assert (tmp_path / "project" / f"trial_{trial.trial_id}" / "trial.json").is_file()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lean_gp_predicts_what_scikit_learn_predicts():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(12, 3)), rng.normal(size=12)
    lean = _lean_gpr_class()(normalize_y=True, alpha=1e-4, random_state=0).fit(x, y)
    for point in rng.uniform(size=(5, 1, 3)):
        mean, std = lean.predict(point, return_std=True)
        expected_mean, expected_std = super(type(lean), lean).predict(point, return_std=True)
        np.testing.assert_allclose([mean, std], [expected_mean, expected_std], rtol=1e-7, atol=1e-10)


# -- conformance -----------------------------------------------------------------------------------

def test_bayesian_conforms():
    # the Gaussian process costs about 0.3 s a suggestion: keep most of the 24 trials random
    check_strategy(BayesianStrategy, {"engine": "keras-tuner", "num_initial_points": 16})


def test_hyperband_conforms():
    check_strategy(HyperbandStrategy, {"engine": "keras-tuner"})


def test_importing_the_strategies_does_not_import_keras():
    code = ("import sys, automl.strategies.bayesian, automl.strategies.hyperband; "
            "assert not {'keras', 'keras_tuner', 'sklearn'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_options_are_checked():
    with pytest.raises(ValidationError):
        BayesianStrategy.Options(num_iterations=3)
    with pytest.raises(ValidationError):
        HyperbandStrategy.Options(factor=1)
    assert HyperbandStrategy.Options().factor == 3
    with pytest.raises(ValidationError):  # the sampler and min_budget are the native engine's
        HyperbandStrategy.Options(engine="keras-tuner", min_budget=2)


# -- bayesian --------------------------------------------------------------------------------------

QUADRATIC = SearchSpace((Float("x", -1.0, 1.0), Float("y", -1.0, 1.0)))


def quadratic(config, budget, max_budget):
    return (config["x"] - 0.3) ** 2 + (config["y"] + 0.2) ** 2


def test_bayesian_beats_random_on_a_quadratic():
    best = {"bayesian": [], "random": []}
    for seed in range(3):
        options = BayesianStrategy.Options(engine="keras-tuner", num_initial_points=4)
        bayes = [o.loss for _, o in run(BayesianStrategy(QUADRATIC, seed=seed, max_budget=1, options=options), 14,
                                        loss=quadratic)]
        assert min(bayes[4:]) < min(bayes[:4])  # the GP improved on its random start
        best["bayesian"].append(min(bayes))
        best["random"].append(min(o.loss for _, o in run(RandomStrategy(QUADRATIC, seed=seed, max_budget=1), 14,
                                                         loss=quadratic)))
    # over 10 seeds: the GP's best is 0.001-0.03 after 14 trials, random search's 0.03-0.3
    assert statistics.median(best["bayesian"]) < statistics.median(best["random"]) / 4, best


def test_nearby_seeds_draw_unrelated_configs():
    # keras-tuner seeds its n-th draw with seed + n: seeds 0 and 1 would share all but one value
    drawn = [{v for s, _ in run(KerasTunerHyperband(QUADRATIC, seed=seed, max_budget=1), 5, loss=quadratic)
              for v in s.config.values()} for seed in (0, 1)]
    assert not drawn[0] & drawn[1]


def test_bayesian_finishes_when_the_space_is_exhausted():
    strategy = BayesianStrategy(SearchSpace((Choice("c", ("a", "b")),)), seed=0, max_budget=1,
                                options=BayesianStrategy.Options(engine="keras-tuner"))
    configs = [s.config["c"] for s, _ in run(strategy, 5, loss=lambda c, b, m: 1.0)]
    assert sorted(configs) == ["a", "b"] and strategy.is_finished()


def test_bayesian_handles_pending_trials_and_failures(tmp_path):
    options = BayesianStrategy.Options(engine="keras-tuner", num_initial_points=3)
    strategy = BayesianStrategy(QUADRATIC, seed=0, max_budget=5, options=options)
    strategy.workdir = tmp_path
    first = [strategy.ask() for _ in range(3)]
    strategy.tell(Observation(first[0].trial_id, Status.FAILED, None, first[0].config))
    strategy.tell(Observation(first[1].trial_id, Status.COMPLETE, math.inf, first[1].config))  # read as a failure
    strategy.tell(Observation(first[2].trial_id, Status.PRUNED, 0.5, first[2].config))
    pending = [strategy.ask() for _ in range(4)]  # 3 completed needed before the GP: still random
    for suggestion in pending:
        strategy.tell(Observation(suggestion.trial_id, Status.COMPLETE, quadratic(suggestion.config, 1, 1),
                                  suggestion.config))
    more = [strategy.ask() for _ in range(3)]  # GP suggestions while the others are still running
    assert len({s.trial_id for s in first + pending + more}) == 10
    assert all(s.budget is None and QUADRATIC.contains(s.config) for s in more)
    statuses = {t.trial_id: t.status for t in strategy.oracle.trials.values()}
    assert list(statuses.values()).count("FAILED") == 2 and list(statuses.values()).count("RUNNING") == 3


def test_bayesian_replay_continues_the_random_phase_exactly(tmp_path):
    options = BayesianStrategy.Options(engine="keras-tuner", num_initial_points=40)
    uninterrupted = run(BayesianStrategy(MIXED_SPACE, seed=5, max_budget=9, options=options), 30)
    stopped = run(BayesianStrategy(MIXED_SPACE, seed=5, max_budget=9, options=options), 25)
    resumed = BayesianStrategy(MIXED_SPACE, seed=5, max_budget=9, options=options)
    resumed.workdir = tmp_path
    stale = tmp_path / "keras_tuner" / "trial_9999" / "trial.json"  # the files of the interrupted run
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    for _, observation in stopped[:-1]:
        resumed.tell(observation)
    resumed.resume_pending(stopped[-1][0])  # interrupted: it runs again and is told later
    resumed.tell(stopped[-1][1])
    # 25 replayed configs are re-drawn and skipped first: more than keras-tuner's 20 collisions per try
    continued = [s for s, _ in run(resumed, 5, workdir=tmp_path)]
    assert [key(s) for s in continued] == [key(s) for s, _ in uninterrupted[25:]]
    assert {s.trial_id for s in continued}.isdisjoint(s.trial_id for s, _ in stopped)
    assert not stale.exists() and len(list(stale.parent.parent.glob("trial_*"))) == 30


def test_bayesian_replay_feeds_the_gaussian_process():
    options = BayesianStrategy.Options(engine="keras-tuner", num_initial_points=5)
    history = run(RandomStrategy(QUADRATIC, seed=1, max_budget=1), 8, loss=quadratic)
    resumed = BayesianStrategy(QUADRATIC, seed=1, max_budget=1, options=options)
    for _, observation in history:
        resumed.tell(observation)
    suggestion = resumed.ask()  # straight to the GP: 8 completed trials replayed
    assert suggestion.trial_id not in {s.trial_id for s, _ in history}
    assert len(resumed.oracle.trials) == 9 and resumed.oracle.gpr.X_train_.shape == (8, 2)


# -- hyperband -------------------------------------------------------------------------------------

def test_hyperband_budgets_follow_the_ladder_and_promotions_resume(tmp_path):
    strategy = KerasTunerHyperband(MIXED_SPACE, seed=0, max_budget=9)
    history = run(strategy, 100, workdir=tmp_path)
    assert strategy.is_finished() and strategy.ask() is None
    budgets = [s.budget for s, _ in history]
    # brackets from the most aggressive: 9 x 1 epoch -> 3 x 3 -> 1 x 9, then 5 x 3 -> 2 x 9, then 3 x 9
    assert budgets == [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] * 2 + [9] * 3
    earlier = {}
    for suggestion, _ in history:
        if suggestion.resume_from is not None:
            parent = earlier[suggestion.resume_from]
            assert parent.config == suggestion.config and parent.budget < suggestion.budget
        earlier[suggestion.trial_id] = suggestion
    assert sum(s.resume_from is not None for s, _ in history) == 3 + 1 + 2
    # keras-tuner's own files live in the workdir
    assert (tmp_path / "keras_tuner" / "oracle.json").is_file()
    assert len(list((tmp_path / "keras_tuner").glob("trial_*/trial.json"))) == len(history)


def test_without_a_workdir_files_go_to_a_temporary_folder():
    strategy = KerasTunerHyperband(MIXED_SPACE, seed=0, max_budget=9)
    assert strategy.ask() is not None
    assert (Path(strategy._tmp.name) / "keras_tuner" / "oracle.json").is_file()


def test_hyperband_waits_for_results_and_then_finishes():
    options = HyperbandStrategy.Options(engine="keras-tuner", factor=3)
    strategy = KerasTunerHyperband(MIXED_SPACE, seed=0, max_budget=3, options=options)
    pending = []
    while (suggestion := strategy.ask()) is not None:
        pending.append(suggestion)
    assert pending and not strategy.is_finished()  # the first round waits for its results
    for suggestion in pending:
        strategy.tell(Observation(suggestion.trial_id, Status.COMPLETE, 1.0, suggestion.config, suggestion.budget))
    run(strategy, 100)
    assert strategy.is_finished()


def test_hyperband_replay_recreates_its_brackets(tmp_path):
    failing = lambda index: Status.FAILED if index == 4 else Status.COMPLETE
    uninterrupted = run(KerasTunerHyperband(MIXED_SPACE, seed=2, max_budget=9), 100, status=failing)
    stopped = run(KerasTunerHyperband(MIXED_SPACE, seed=2, max_budget=9), 11, status=failing)
    resumed = KerasTunerHyperband(MIXED_SPACE, seed=2, max_budget=9)
    resumed.workdir = tmp_path
    for _, observation in stopped[:-1]:
        resumed.tell(observation)
    resumed.resume_pending(stopped[-1][0])  # a promotion, interrupted
    assert stopped[-1][0].resume_from is not None
    resumed.tell(stopped[-1][1])
    continued = run(resumed, 100, workdir=tmp_path, status=lambda index: failing(index + 11))
    assert resumed.is_finished()
    assert [key(s) for s, _ in continued] == [key(s) for s, _ in uninterrupted[11:]]
    assert {s.trial_id for s, _ in continued}.isdisjoint(s.trial_id for s, _ in stopped)


def test_hyperband_replay_of_a_parallel_run_goes_on(caplog):
    """Trials finished in reverse order: the oracle cannot recreate them all, the run still goes on."""
    strategy = KerasTunerHyperband(MIXED_SPACE, seed=4, max_budget=9)
    history, pending = [], []
    while len(history) < 20:
        while len(pending) < 4 and (suggestion := strategy.ask()) is not None:
            pending.append(suggestion)
        suggestion = pending.pop()  # the newest finishes first
        loss = toy_loss(suggestion.config, suggestion.budget, 9)
        observation = Observation(suggestion.trial_id, Status.COMPLETE, loss, dict(suggestion.config), suggestion.budget)
        strategy.tell(observation)
        history.append((suggestion, observation))
    created = sorted([s for s, _ in history] + pending, key=lambda s: s.trial_id)  # the database's order
    told = {s.trial_id: o for s, o in history}
    resumed = KerasTunerHyperband(MIXED_SPACE, seed=4, max_budget=9)
    with caplog.at_level("INFO", logger="automl.strategies.hyperband"):
        for suggestion in created:
            if suggestion.trial_id in told:
                resumed.tell(told[suggestion.trial_id])
            else:
                resumed.resume_pending(suggestion)
    assert "the oracle does not recreate trial" in caplog.text
    used = {s.trial_id for s in created}
    for suggestion in pending:
        resumed.tell(Observation(suggestion.trial_id, Status.COMPLETE, 1.0, dict(suggestion.config), suggestion.budget))
    for suggestion, _ in run(resumed, 100):
        assert suggestion.trial_id not in used and MIXED_SPACE.contains(suggestion.config)
        assert suggestion.resume_from is None or suggestion.resume_from in used
        used.add(suggestion.trial_id)
    assert resumed.is_finished()
