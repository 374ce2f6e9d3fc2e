"""The minimal plugin printed in docs/plugins.md works as documented."""
from __future__ import annotations

import re
from pathlib import Path

from automl.plugins import discover
from automl.strategies import Observation, Status
from tests.test_cli import invoke

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def minimal_example() -> str:
    section = DOC.read_text().split("## A minimal strategy", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_minimal_strategy_from_the_docs_runs(tmp_path, tiny_spec):
    folder = tmp_path / "my_plugins"
    folder.mkdir()
    (folder / "coin.py").write_text(minimal_example())
    cls = discover([folder]).strategy("coin")
    strategy = cls(None, seed=0, max_budget=3, options=cls.Options())
    assert strategy.options.prefix == "coin"
    result = invoke("run", tiny_spec, "--quiet", "--plugins-dir", folder, "--strategy", "coin")
    assert result.exit_code == 0, result.output
    assert "best trial coin" in result.output
    # resumed with a larger budget: replay keeps the ids unique
    result = invoke("run", tiny_spec, "--quiet", "--plugins-dir", folder, "--strategy", "coin", "--max-trials", 5)
    assert result.exit_code == 0, result.output


def test_minimal_strategy_counts_replayed_trials():
    namespace: dict = {}
    exec(compile(minimal_example(), str(DOC), "exec"), namespace)
    from automl.space import Float, SearchSpace

    strategy = namespace["Coin"](SearchSpace((Float("x", 0, 1),)), seed=0, max_budget=1)
    strategy.tell(Observation("coin0", Status.COMPLETE, 0.5, {"x": 0.3}))
    assert strategy.ask().trial_id == "coin1"
