"""The example plugins in plugins/ load from the folder and drive a real run."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from automl.plugins import discover
from automl.space import Choice, Condition, Float, Int, SearchSpace
from automl.strategies import Observation, Status
from tests.test_cli import invoke

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
SPACE = SearchSpace((Choice("kind", ("a", "b")), Float("x", 1e-3, 1.0, log=True), Int("n", 1, 9, step=2),
                     Float("y", -1, 1, condition=Condition("kind", ("b",)))))


def test_local_search_moves_towards_the_optimum():
    cls = discover([PLUGINS]).strategy("local_search")
    strategy = cls(SPACE, seed=3, max_budget=10, options=cls.Options(n_initial=5))
    losses = []
    for _ in range(60):
        s = strategy.ask()
        assert SPACE.problems(dict(s.config)) == []
        loss = abs(np.log10(s.config["x"]) + 2) + (s.config["kind"] == "a") + abs(s.config.get("y", 1) - 0.5)
        losses.append(loss)
        strategy.tell(Observation(s.trial_id, Status.COMPLETE, loss, s.config, 10))
    assert min(losses[30:]) < min(losses[:5])  # later moves beat the random start


def test_local_search_runs_from_the_cli(tiny_spec):
    result = invoke("run", tiny_spec, "--quiet", "--plugins-dir", PLUGINS, "--strategy", "local_search")
    assert result.exit_code == 0, result.output
    assert "best trial ls" in result.output
