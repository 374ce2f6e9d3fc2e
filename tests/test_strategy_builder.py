"""One call builds a strategy: options, context, inner strategies and the contract version."""
from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from automl.errors import PluginError, SpecError
from automl.space import Float, SearchSpace
from automl.strategies import Strategy, Suggestion
from automl.strategies.random import RandomStrategy
from automl.strategy_builder import StrategySetup, build_strategy

SPACE = SearchSpace((Float("x", 0.0, 1.0),))


class StepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: float = 0.5


class VersionOne(Strategy):
    """Written against contract 1: four constructor arguments, workdir/parallelism set afterwards."""

    name = "version_one"
    Options = StepOptions

    def __init__(self, space, *, seed, max_budget, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self.n = 0

    def ask(self):
        self.n += 1
        return Suggestion(f"v{self.n}", {"x": self.options.step})

    def tell(self, observation):
        pass


def test_a_strategy_gets_everything_in_one_call(tmp_path):
    strategy = build_strategy(RandomStrategy, {}, StrategySetup(SPACE, 3, 9.0, tmp_path / "strategy", 4))
    assert (strategy.seed, strategy.max_budget, strategy.parallelism) == (3, 9.0, 4)
    assert strategy.workdir == tmp_path / "strategy" and strategy.workdir.is_dir()


def test_a_plugin_written_for_contract_1_keeps_working(tmp_path):
    strategy = build_strategy(VersionOne, {"step": 0.25}, StrategySetup(SPACE, 0, 1.0, tmp_path, 2))
    assert (strategy.workdir, strategy.parallelism, strategy.options.step) == (tmp_path, 2, 0.25)
    assert strategy.ask().config == {"x": 0.25}


def test_a_plugin_for_a_newer_contract_gets_a_clear_error():
    class FromTheFuture(RandomStrategy):
        name = "future"
        api_version = 99

    with pytest.raises(PluginError, match=r"'future'.*contract version 99.*supports versions 1, 2"):
        build_strategy(FromTheFuture, {}, StrategySetup(SPACE, 0, 1.0))


def test_bad_options_name_their_field():
    with pytest.raises(SpecError, match=r"strategy.options.stepp"):
        build_strategy(VersionOne, {"stepp": 1}, StrategySetup(SPACE, 0, 1.0))


def test_inner_strategies_need_a_constructor_that_takes_them():
    class Composer(VersionOne):  # contract 1 constructor, but composes another strategy
        name = "composer"

        @classmethod
        def inner_strategies(cls, options):
            return {"sampler": ("random", {})}

    with pytest.raises(PluginError, match="does not accept `inner`"):
        build_strategy(Composer, {}, StrategySetup(SPACE, 0, 1.0))


def test_no_plugin_may_take_the_name_auto():
    from automl.plugins import Plugin, Registry

    with pytest.raises(PluginError, match="reserved"):
        Registry().add(Plugin("strategies", "auto", "my_plugins/auto.py", lambda: RandomStrategy))
