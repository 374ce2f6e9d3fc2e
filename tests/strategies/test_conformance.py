"""The conformance suite over every strategy we discover: built-ins and the example plugins."""
from __future__ import annotations

from pathlib import Path

import pytest

from automl.plugins import discover
from automl.testing import StrategyConformanceError, check_strategy
from automl.strategies import Strategy, Suggestion

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
REGISTRY = discover([PLUGINS])
# the GP is the slow part: mostly random points, still enough GP suggestions to exercise it
FAST_OPTIONS = {"bayesian": {"num_initial_points": 16}}


@pytest.mark.parametrize("name", REGISTRY.names("strategies"))
def test_every_strategy_conforms(name):
    check_strategy(REGISTRY.strategy(name), FAST_OPTIONS.get(name))


class Repeats(Strategy):
    name = "repeats"

    def ask(self):
        return Suggestion("same-id", self.space.sample(__import__("numpy").random.default_rng(0)))

    def tell(self, observation):
        pass


class Outside(Strategy):
    name = "outside"

    def ask(self):
        return Suggestion(str(id(object())), {"kind": "z"})

    def tell(self, observation):
        pass


@pytest.mark.parametrize("cls, message", [(Repeats, "reused trial id 'same-id'"),
                                          (Outside, "config outside the space")])
def test_the_suite_catches_a_broken_strategy(cls, message):
    with pytest.raises(StrategyConformanceError, match=message):
        check_strategy(cls)
