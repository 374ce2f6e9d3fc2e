"""`automl bench`: a strategy against the built-ins on known-optimum problems, through click's CliRunner."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from automl.bench_functions import (
    FUNCTIONS,
    MF_PROBLEMS,
    hartmann3_vector,
    hartmann6_vector,
)
from automl.benchmark import mean_ranks
from automl.cli import main

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_example_plugin_against_random_search_on_both_suites(tmp_path):
    result = invoke("bench", "local_search", "--plugins-dir", PLUGINS, "--quick", "--against", "random",
                    "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert result.exception is None
    out = result.stdout
    assert "blackbox: median regret (mean rank; 1 = best) after 12 evaluations, 2 seed(s)" in out
    assert "multifidelity: median regret" in out
    assert out.count("| problem | local_search | random |") == 2
    for problem in ("branin", "hartmann6_mixed", "mfh3_good", "mean rank"):
        assert f"| {problem} |" in out
    document = json.loads((tmp_path / "out" / "bench.json").read_text())
    blackbox, multifidelity = document["suites"]
    assert blackbox["contenders"] == ["local_search", "random"] and not blackbox["failures"]
    regrets = blackbox["regrets"]["branin"]["local_search"]
    assert len(regrets) == 2 and all(r >= 0 for r in regrets)
    for suite in (blackbox, multifidelity):  # two contenders: the mean ranks add up to 3
        assert all(math.isclose(sum(ranks.values()), 3.0) for ranks in suite["ranks"].values())
    assert (tmp_path / "out" / "bench.md").read_text().startswith("# automl bench local_search")


def test_an_unknown_strategy_is_a_clear_error():
    result = invoke("bench", "no_such_search", "--quick", "--suite", "blackbox")
    assert result.exit_code == 1
    assert "error: no strategy named 'no_such_search'; known:" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_a_plugin_that_fails_to_load_is_a_clear_error(tmp_path):
    (tmp_path / "broken.py").write_text("import no_such_module_anywhere\n")
    result = invoke("bench", "broken", "--plugins-dir", tmp_path, "--quick")
    assert result.exit_code == 1
    assert "broken.py failed to import: ModuleNotFoundError" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_a_strategy_that_raises_is_reported_and_exits_1(tmp_path):
    (tmp_path / "crashing.py").write_text(
        "from automl.strategies import Strategy\n\n"
        "class Crashing(Strategy):\n"
        "    name = 'crashing'\n\n"
        "    def ask(self):\n"
        "        raise ValueError('boom')\n\n"
        "    def tell(self, observation):\n"
        "        pass\n")
    result = invoke("bench", "crashing", "--plugins-dir", tmp_path, "--quick", "--suite", "multifidelity",
                    "--against", "random", "--seeds", "1")
    assert result.exit_code == 1
    assert "| mfh3_good | failed (2.00, 1 failed) |" in result.stdout
    assert "failed: multifidelity mfh3_good crashing seed 0: ValueError: boom" in result.output
    assert "error: crashing failed in 1 run(s)" in result.output


def test_mean_ranks_share_ties_and_put_failures_last():
    assert mean_ranks([[0.1, 0.2, None], [0.3, 0.3, 0.0]]) == [(1 + 2.5) / 2, (2 + 2.5) / 2, (3 + 1) / 2]


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_each_function_reaches_its_optimum_at_its_argmin(name):
    function = FUNCTIONS[name]
    assert function.space.problems(dict(function.argmin)) == []
    assert abs(function(function.argmin) - function.optimum) < 1e-6


@pytest.mark.parametrize("name", list(MF_PROBLEMS))
def test_mf_problems_are_the_noiseless_hartmann_function_at_full_fidelity(name):
    problem = MF_PROBLEMS[name]
    hartmann = hartmann3_vector if len(problem.space) == 3 else hartmann6_vector
    rng = np.random.default_rng(0)
    for _ in range(5):
        config = problem.space.sample(rng)
        point = [config[n] for n in problem.space.names]
        assert math.isclose(problem.value(config, 100), hartmann(point), rel_tol=1e-12)
        assert problem.value(config, 1) != problem.value(config, 100)  # bias and noise below full fidelity
    assert abs(problem.optimum - FUNCTIONS[f"hartmann{len(problem.space)}"].optimum) < 1e-4  # mfpbench's value
