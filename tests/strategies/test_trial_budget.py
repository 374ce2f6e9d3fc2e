"""max_trials under a rung-ladder strategy counts full trainings, and validate says when it is too small."""
from __future__ import annotations

from click.testing import CliRunner

from automl import optimize
from automl.cli import main
from automl.plugins import discover
from automl.space import Float, SearchSpace
from automl.strategy_builder import StrategySetup, build_strategy
from automl.strategy_choice import trial_budget_note
from tests.conftest import write_spec

SPACE = SearchSpace((Float("x", -5, 5),))


def _epochs_trained(trials, max_budget):
    budgets = {t.trial_id: t.budget for t in trials}
    return sum(t.budget - (budgets[t.resume_from] if t.resume_from else 0) for t in trials) / max_budget


def test_hyperband_and_asha_spend_max_trials_as_full_trainings_and_promote():
    for strategy in ("hyperband", "asha"):
        result = optimize(lambda config, budget: (config["x"] - 1) ** 2 + 1 / budget, SPACE, strategy=strategy,
                          max_trials=5, max_budget=9, seed=0)
        promoted = [t for t in result.trials if t.resume_from and t.budget == 9]
        assert promoted, f"{strategy}: no configuration was trained to the full 9 epochs"
        assert len(result.trials) > 5  # short trainings count a third each
        used = _epochs_trained(result.trials, 9)
        assert 5 <= used < 6 + 1e-9, (strategy, used)  # the last trial may go past max_trials by under one training
        assert "full trainings" in result.stopped_because


def _note(strategy, max_trials, max_epochs=30.0):
    registry = discover(())
    built = build_strategy(registry.strategy(strategy), {}, StrategySetup(SPACE, 0, max_epochs), registry=registry)
    return trial_budget_note(built, max_trials, max_epochs)


def test_the_budget_note_names_the_trials_a_first_bracket_needs():
    note, too_small = _note("hyperband", 2)  # 30 epochs: rungs 3.3, 10, 30; the first bracket takes 2.3 trainings
    assert too_small and "at least 3" in note and "full trainings" in note
    note, too_small = _note("asha", 20)
    assert not too_small and "600 epochs" in note
    assert _note("random", 2) == ("", False)  # plain trials: nothing to say


def test_validate_warns_when_hyperband_cannot_finish_a_bracket(tmp_path):
    spec = write_spec(tmp_path, strategy={"name": "hyperband"}, budget={"max_trials": 2, "max_epochs": 30})
    result = CliRunner().invoke(main, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert "warning: budget: max_trials 2 counts full trainings" in result.output
    assert "set max_trials to at least 3" in result.output
