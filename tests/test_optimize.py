"""automl.optimize: the ask/tell loop and store over any Python objective."""
from __future__ import annotations

import math

import shutil
import sqlite3

import pytest

from automl import optimize
from automl.errors import PluginError, RunDirError
from automl.space import Choice, Float, Int, SearchSpace
from automl.store import TrialStore
from automl.strategies.random import RandomStrategy

SPACE = SearchSpace((Float("x", -5.0, 5.0), Int("n", 1, 10), Choice("kind", ("a", "b"))))


def quadratic(config, budget):
    return (config["x"] - 1) ** 2 + config["n"] + (config["kind"] == "b")


def test_minimises_and_reports_the_best_trial():
    result = optimize(quadratic, SPACE, max_trials=40, seed=1)
    assert len(result.trials) == 40 and result.stopped_because == "max_trials (40) reached"
    values = [t.metrics["loss"] for t in result.trials]
    assert result.best_value == min(values)
    assert quadratic(result.best_config, 1.0) == result.best_value
    assert result.storage is None


def test_maximise_a_metric_from_a_dict():
    result = optimize(lambda c, b: {"score": -quadratic(c, b), "other": 1.0}, SPACE, max_trials=20,
                      metric="score", direction="maximize")
    assert result.best_value == max(t.metrics["score"] for t in result.trials)
    assert all(t.loss == -t.metrics["score"] for t in result.trials)


def test_failures_are_recorded_and_the_search_goes_on():
    def sometimes_fails(config, budget):
        if config["kind"] == "b":
            raise ValueError("kind b is broken")
        return float("nan") if config["n"] == 10 else quadratic(config, budget)

    result = optimize(sometimes_fails, SPACE, max_trials=30, seed=0)
    failed = [t for t in result.trials if t.status == "FAILED"]
    assert failed and len(result.trials) == 30
    assert any("kind b is broken" in (t.error or "") for t in failed)
    assert result.best_config["kind"] == "a" and math.isfinite(result.best_value)


def test_budget_reaches_the_objective_and_a_class_can_be_passed():
    seen = []
    optimize(lambda c, b: seen.append(b) or 0.0, SPACE, RandomStrategy, max_trials=3, max_budget=7)
    assert seen == [7.0, 7.0, 7.0]


def test_storage_keeps_the_database_and_resumes(tmp_path):
    first = optimize(quadratic, SPACE, max_trials=10, seed=2, storage=tmp_path)
    assert first.storage == tmp_path / "trials.db"
    second = optimize(quadratic, SPACE, max_trials=15, seed=2, storage=tmp_path)
    assert len(second.trials) == 15
    assert [t.trial_id for t in second.trials[:10]] == [t.trial_id for t in first.trials]
    assert len({t.trial_id for t in second.trials}) == 15
    store = TrialStore(tmp_path / "trials.db", readonly=True)
    assert store.counts()["COMPLETE"] == 15
    store.close()
    with pytest.raises(RunDirError, match="another space"):
        optimize(quadratic, SearchSpace((Float("y", 0, 1),)), max_trials=1, storage=tmp_path)


def test_unknown_strategy_name():
    with pytest.raises(PluginError, match="no strategy named 'nope'"):
        optimize(quadratic, SPACE, "nope", max_trials=1)


def test_parallel_workers_run_every_trial_once():
    result = optimize(quadratic, SPACE, max_trials=24, workers=4, seed=3)
    assert len({t.trial_id for t in result.trials}) == 24
    assert all(t.status == "COMPLETE" for t in result.trials)


def test_auto_picks_a_strategy_for_the_budget():
    result = optimize(quadratic, SPACE, strategy="auto", max_trials=4, seed=1)
    assert len(result.trials) == 4  # 4 trials: no model would be fitted, random search runs them
    with pytest.raises(ValueError, match="picks its own options"):
        optimize(quadratic, SPACE, strategy="auto", options={"x": 1}, max_trials=2)


def test_auto_killed_and_resumed_suggests_what_an_uninterrupted_search_did(tmp_path):
    whole = optimize(quadratic, SPACE, strategy="auto", max_trials=8, seed=3, storage=tmp_path / "whole")
    # what a kill after the fifth trial leaves: the database with the first five
    shutil.copytree(tmp_path / "whole", tmp_path / "killed")
    with sqlite3.connect(tmp_path / "killed" / "trials.db") as db:
        db.execute("DELETE FROM trials WHERE seq >= 5")
    resumed = optimize(quadratic, SPACE, strategy="auto", max_trials=8, seed=3, storage=tmp_path / "killed")
    assert [t.config for t in resumed.trials] == [t.config for t in whole.trials]
    # a larger budget on resume keeps the strategy that began the search, not the one it would pick now
    optimize(quadratic, SPACE, strategy="auto", max_trials=3, seed=3, storage=tmp_path / "small")
    grown = optimize(quadratic, SPACE, strategy="auto", max_trials=8, seed=3, storage=tmp_path / "small")
    assert grown.trials[-1].config == optimize(quadratic, SPACE, strategy="random", max_trials=8, seed=3).trials[-1].config
