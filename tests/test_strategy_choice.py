"""`auto`: the strategy the agent picks for each kind of data and budget, and that it sticks to it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from automl.data.base import Profile
from automl.planning import build_space, choose_families
from automl.plugins import discover
from automl.spec import FamiliesSpec, TaskSpec
from automl.strategy_choice import AUTO, MAX_GP_TRIALS, MIN_MULTI_FIDELITY_TRIALS, SearchFacts, choose_strategy

REGISTRY = discover()
STRATEGIES = REGISTRY.names("strategies")
FAMILIES = {name: REGISTRY.family(name) for name in REGISTRY.names("families")}

PROFILES = {
    "tabular": Profile("t.csv", "tabular", "classification", "y", 1000, 600, 200, 200, (20,), 20, n_classes=2),
    "image": Profile("imgs", "image", "classification", "label", 2000, 1200, 400, 400, (1, 28, 28), 784,
                     n_classes=10),
    "sequence": Profile("s.npz", "sequence", "classification", "y", 800, 480, 160, 160, (60, 1), 60, n_classes=3),
    "text": Profile("t.csv", "text", "classification", "label", 900, 540, 180, 180, (50,), 1, n_classes=2,
                    vocab_size=2000),
}


def space_for(kind: str):
    profile = PROFILES[kind]
    chosen = [c.family for c in choose_families(profile, FAMILIES, FamiliesSpec()) if c.chosen]
    return build_space(profile, FAMILIES, chosen, FamiliesSpec())


def choice(kind: str, *, max_trials=None, max_time=None, max_epochs=20, workers=1):
    facts = SearchFacts.of(space_for(kind), max_trials=max_trials, max_time=max_time, max_epochs=max_epochs,
                           workers=workers)
    return choose_strategy(facts, STRATEGIES)


@pytest.mark.parametrize("kind", sorted(PROFILES))
def test_the_choice_table_on_every_kind_of_data(kind):
    random_start = SearchFacts.of(space_for(kind), max_trials=1, max_time=None, max_epochs=1, workers=1).random_start
    assert choice(kind, max_trials=random_start, max_epochs=20).name == "random"  # a model would never be fitted
    assert choice(kind, max_trials=100, max_epochs=20).name == "asha"  # epochs to climb and trials to promote
    assert choice(kind, max_time=600, max_epochs=27, workers=4).name == "asha"
    few = MIN_MULTI_FIDELITY_TRIALS - 1  # too few trials for a ladder: a model, if it gets past its random start
    assert choice(kind, max_trials=few, max_epochs=20).name == ("bayesian" if few > random_start else "random")
    assert choice(kind, max_trials=100, max_epochs=5).name == "bayesian"  # too few epochs for a ladder
    assert choice(kind, max_time=600, max_epochs=5).name == "bayesian"
    assert choice(kind, max_trials=MAX_GP_TRIALS + 1, max_epochs=5).name == "evolutionary"


def test_the_reason_is_one_sentence_that_names_the_facts():
    picked = choice("tabular", max_trials=100, max_epochs=20, workers=2)
    assert picked.chosen_by == AUTO and picked.reason.count(". ") == 0
    assert "20 epochs" in picked.reason and "100 trials" in picked.reason and "2 slot(s)" in picked.reason


def test_a_missing_strategy_is_skipped():
    facts = SearchFacts.of(space_for("tabular"), max_trials=100, max_time=None, max_epochs=20, workers=1)
    assert choose_strategy(facts, ["random", "bayesian"]).name == "bayesian"
    assert choose_strategy(facts, ["random"]).name == "random"


def test_auto_is_the_default_and_takes_no_options():
    spec = TaskSpec.model_validate({"name": "x", "data": {"source": "builtin", "name": "sklearn:iris"}})
    assert spec.strategy.name == "auto"
    with pytest.raises(ValueError, match="auto picks the strategy and its options itself"):
        TaskSpec.model_validate({"name": "x", "data": {"source": "builtin", "name": "sklearn:iris"},
                                 "strategy": {"options": {"mode": "stopping"}}})


def test_a_run_records_the_choice_and_a_resume_keeps_it(tmp_path):
    from automl.agent import Agent, make_plan
    from automl.spec import load_spec
    from automl.store import TrialStore
    from tests.conftest import write_spec

    spec = load_spec(write_spec(tmp_path, budget={"max_trials": 2, "max_epochs": 3, "patience": None}))
    summary = Agent(spec).run()
    strategy = json.loads((Path(summary["run_dir"]) / "results.json").read_text())["strategy"]
    assert (strategy["name"], strategy["chosen_by"]) == ("random", "auto") and "random search" in strategy["reason"]
    assert "picked by the agent (auto)" in (Path(summary["run_dir"]) / "report.md").read_text()

    # a larger budget would make auto pick a model; the run goes on with the strategy that made its trials
    bigger = load_spec(write_spec(tmp_path, budget={"max_trials": 60, "max_epochs": 3, "patience": None}))
    assert make_plan(bigger).strategy.name == "bayesian"
    store = TrialStore(Path(summary["run_dir"]) / TrialStore.FILENAME)
    try:
        assert Agent._strategy_of_the_first_run(make_plan(bigger), store).strategy.name == "random"
    finally:
        store.close()


def test_validate_states_the_choice_and_its_reason(tmp_path):
    from tests.conftest import write_spec
    from tests.test_cli import invoke

    result = invoke("validate", write_spec(tmp_path, budget={"max_trials": 60, "max_epochs": 27}))
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if l.strip().startswith("strategy"))
    assert line.strip().startswith("strategy asha:") and "27 epochs" in line
