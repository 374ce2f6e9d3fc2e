"""The search loop end to end with the random strategy, resume, and plugin failures."""
from __future__ import annotations

import json
import math
import textwrap

import pytest

from automl.agent import Agent
from automl.store import best_trial
from automl.errors import PluginError, RunDirError, SpecError
from automl.spec import load_spec
from automl.store import TrialStore
from tests.conftest import write_spec


def run(path, **kwargs):
    return Agent(load_spec(path), **kwargs).run()


def trials_of(run_dir):
    store = TrialStore(run_dir / "trials.db", readonly=True)
    try:
        return store.trials(with_history=True)
    finally:
        store.close()


def test_run_writes_every_artifact(tiny_spec):
    summary = run(tiny_spec)
    run_dir = tiny_spec.parent / "run"
    trials = trials_of(run_dir)
    assert [t.status for t in trials] == ["COMPLETE"] * 3
    assert all(len(t.history) == 3 and [h["epoch"] for h in t.history] == [1, 2, 3] for t in trials)
    results = json.loads((run_dir / "results.json").read_text())
    best = best_trial(trials)
    assert results["metric"] == "accuracy" and results["direction"] == "maximize"
    assert results["best"]["trial_id"] == best.trial_id == summary["best_trial_id"]
    assert results["best"]["val"]["accuracy"] == pytest.approx(best.metrics["accuracy"])
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
    assert results["trials"]["completed"] == 3 and results["trials"]["failed"] == 0
    assert results["duration_s"] > 0
    for name in ("report.html", "report.md", "model/model.pt", "model/model.json", "tensorboard"):
        assert (run_dir / name).exists(), name


def test_configs_follow_the_space_and_the_seed(tmp_path):
    first = write_spec(tmp_path / "a" if (tmp_path / "a").mkdir() is None else None)
    second = write_spec(tmp_path / "b" if (tmp_path / "b").mkdir() is None else None)
    run(first)
    run(second)
    configs_a = [t.config for t in trials_of(first.parent / "run")]
    configs_b = [t.config for t in trials_of(second.parent / "run")]
    assert configs_a == configs_b  # same seed, same suggestions
    assert all(c["batch_size"] == 32 and 16 <= c["mlp.width"] <= 32 for c in configs_a if c["family"] == "mlp")


def test_rerun_resumes_without_rerunning_and_extends_the_budget(tiny_spec):
    run(tiny_spec)
    run_dir = tiny_spec.parent / "run"
    before = {t.trial_id: t.finished_at for t in trials_of(run_dir)}
    run(tiny_spec)  # budget already spent: nothing new runs
    assert {t.trial_id: t.finished_at for t in trials_of(run_dir)} == before
    spec = json.loads(tiny_spec.read_text())
    spec["budget"]["max_trials"] = 5
    tiny_spec.write_text(json.dumps(spec))
    run(tiny_spec)
    after = trials_of(run_dir)
    assert len(after) == 5
    assert {t.trial_id: t.finished_at for t in after if t.trial_id in before} == before
    assert len({json.dumps(t.config, sort_keys=True) for t in after}) == 5  # the rebuilt strategy did not repeat itself


def test_changed_spec_is_refused_naming_the_change_unless_overwrite(tiny_spec):
    run(tiny_spec)
    spec = json.loads(tiny_spec.read_text())
    spec["budget"]["max_epochs"] = 4
    tiny_spec.write_text(json.dumps(spec))
    with pytest.raises(RunDirError, match=r"budget.max_epochs: 3 -> 4"):
        run(tiny_spec)
    run(tiny_spec, overwrite=True)
    assert all(t.epochs == 4 for t in trials_of(tiny_spec.parent / "run"))


def test_regression_minimises_its_metric(tmp_path):
    path = write_spec(tmp_path, data={"source": "builtin", "name": "sklearn:diabetes"}, metric="rmse")
    summary = run(path)
    trials = trials_of(tmp_path / "run")
    assert summary["direction"] == "minimize"
    best = best_trial(trials)
    assert best.metrics["rmse"] == min(t.metrics["rmse"] for t in trials)
    assert best.loss == pytest.approx(best.metrics["rmse"])  # minimised metrics are the loss as they are
    assert 20 < summary["test"]["rmse"] < 200  # in the target's own units (diabetes progression)


def test_bad_strategy_options_name_the_field(tmp_path):
    path = write_spec(tmp_path, strategy={"name": "random", "options": {"bogus": 1}})
    with pytest.raises(SpecError, match=r"strategy.options.bogus"):
        run(path)
    assert not (tmp_path / "run").exists()


BROKEN = {
    "hangs": "def ask(self):\n        import time\n        time.sleep(30)",
    "raises": "def ask(self):\n        raise RuntimeError('boom')",
    "outside": "def ask(self):\n        self.n += 1\n        return Suggestion(str(self.n), {'family': 'nope'})",
    "not_a_suggestion": "def ask(self):\n        return {'family': 'mlp'}",
    "late_raise": ("def ask(self):\n        self.n += 1\n        if self.n > 2:\n            raise ValueError('third ask')\n"
                   "        return Suggestion(str(self.n), self.space.sample(np.random.default_rng(self.n)))"),
}


# what the PluginError says the plugin did, after naming it
BROKEN_DID = {
    "hangs": "did not return from ask() within 1 s",
    "raises": "raised in ask(): RuntimeError: boom",
    "outside": "suggested a config outside the search space (",
    "not_a_suggestion": "returned {'family': 'mlp'} from ask(), not a Suggestion or None",
    "late_raise": "raised in ask(): ValueError: third ask",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_strategy_stops_the_run_naming_the_plugin_and_keeps_finished_trials(tmp_path, kind):
    write_broken_plugin(tmp_path, kind)
    path = write_spec(tmp_path, strategy={"name": "broken", "timeout": 1}, plugins_dirs=["plugins"])
    with pytest.raises(PluginError) as info:
        run(path)
    message = str(info.value)
    plugin = (tmp_path / "plugins" / "broken.py").resolve()
    assert message.startswith(f"strategy 'broken' from {plugin} {BROKEN_DID[kind]}"), message
    assert message.endswith(f"; the trials finished so far are kept in {(tmp_path / 'run' / 'trials.db').resolve()}")
    trials = trials_of(tmp_path / "run")
    if kind == "late_raise":
        assert [t.status for t in trials] == ["COMPLETE", "COMPLETE"]
    else:
        assert trials == []
    if kind == "outside":
        assert "'family': 'nope'" in message


def test_a_broken_strategy_falls_back_to_random_when_the_spec_says_so(tmp_path):
    write_broken_plugin(tmp_path, "late_raise")
    path = write_spec(tmp_path, strategy={"name": "broken", "fallback": "random"}, plugins_dirs=["plugins"],
                      budget={"max_trials": 5, "max_epochs": 2})
    run(path)
    trials = trials_of(tmp_path / "run")
    assert [t.status for t in trials] == ["COMPLETE"] * 5
    assert [t.trial_id for t in trials[:2]] == ["1", "2"]  # the plugin's own, then random's
    store = TrialStore(tmp_path / "run" / "trials.db", readonly=True)
    fallback = store.get_meta("strategy_fallback")
    store.close()
    assert fallback["after_trials"] == 2 and "third ask" in fallback["error"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["strategy_fallback"]["fallback"] == "random"
    assert "went on with the random strategy" in (tmp_path / "run" / "report.md").read_text()


def write_broken_plugin(tmp_path, kind):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text(textwrap.dedent("""\
        import numpy as np
        from automl.strategies import Strategy, Suggestion

        class Broken(Strategy):
            name = "broken"

            def __init__(self, space, *, seed, max_budget, options=None):
                super().__init__(space, seed=seed, max_budget=max_budget, options=options)
                self.n = 0

            def tell(self, observation):
                pass

            """) + "    " + BROKEN[kind] + "\n")


def test_failed_trials_are_data_and_max_failed_stops_the_search(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "exploding.py").write_text(textwrap.dedent("""\
        from automl.families.mlp import MLPFamily

        class Exploding(MLPFamily):
            name = "exploding"

            def build(self, config, profile):
                raise RuntimeError("this family always fails")
        """))
    path = write_spec(tmp_path, plugins_dirs=["plugins"], families={"include": ["exploding"]},
                      budget={"max_trials": 10, "max_epochs": 2, "max_failed": 2})
    with pytest.raises(Exception, match="no trial finished with a usable score"):
        run(path)
    trials = trials_of(tmp_path / "run")
    assert [t.status for t in trials] == ["FAILED", "FAILED"]
    assert "this family always fails" in trials[0].error and "Traceback" in trials[0].error
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["trials"]["failed"] == 2


def test_time_budget_stops_the_search(tmp_path):
    path = write_spec(tmp_path, budget={"max_trials": None, "max_time": 3, "max_epochs": 200, "patience": None})
    summary = run(path)
    assert summary["stopped_because"].startswith("max_time")
    trials = trials_of(tmp_path / "run")
    assert trials and all(t.finished for t in trials)
    assert summary["timings"]["search"] < 3 + 5  # the whole run's duration_s adds the refit, baselines, export
    assert not math.isnan(summary["test"]["accuracy"])


def test_tensorboard_logs_of_a_real_run_read_back(tiny_spec):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(tiny_spec)
    run_dir = tiny_spec.parent / "run"
    trials = trials_of(run_dir)
    for trial in trials:
        events = EventAccumulator(str(run_dir / "tensorboard" / "trials" / f"{trial.trial_id}-{trial.family}"))
        events.Reload()
        val = events.Scalars("loss/val")
        assert [e.step for e in val] == [1, 2, 3]
        assert val[-1].value == pytest.approx(trial.history[-1]["val_loss"], rel=1e-5)
        assert "metric/accuracy" in events.Tags()["scalars"]
    study = EventAccumulator(str(run_dir / "tensorboard" / "study"))
    study.Reload()
    best = [e.value for e in study.Scalars("best_so_far/accuracy")]
    assert best == sorted(best) and best[-1] == pytest.approx(best_trial(trials).metrics["accuracy"])


OOM_FAMILY = """
import torch
from automl.families.mlp import MLPFamily


class Greedy(torch.nn.Module):
    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, x):
        if self.training and len(x) > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory (a batch of {len(x)} rows)")
        return self.inner(x)


class Oomy(MLPFamily):
    name = "oomy"

    def build(self, config, profile):
        return Greedy(super().build(config, profile), LIMIT)
"""


@pytest.mark.parametrize("limit, status", [(16, "COMPLETE"), (8, "FAILED")])
def test_out_of_memory_is_retried_once_with_half_the_batch(tmp_path, limit, status):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "oomy.py").write_text(OOM_FAMILY.replace("LIMIT", str(limit)))
    path = write_spec(tmp_path, plugins_dirs=["plugins"], budget={"max_trials": 1, "max_epochs": 2},
                      families={"include": ["oomy"], "overrides": {"batch_size": {"choices": [32]},
                                                                   "optimizer": {"choices": ["adam"]}}})
    if status == "FAILED":
        with pytest.raises(Exception, match="no trial finished"):
            run(path)
    else:
        run(path)
    store = TrialStore(tmp_path / "run" / "trials.db", readonly=True)
    (trial,), attempts = store.trials(), store.attempts()
    store.close()
    assert trial.status == status
    assert [(a["reason"], a["overrides"]) for a in attempts] == [("oom", {})]  # the first try, with batch 32
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    if status == "FAILED":
        assert trial.reason == "oom"
        assert results["memory_infeasible"][0]["trial_id"] == trial.trial_id
        assert results["memory_infeasible"][0]["batch_sizes"] == [32, 16]
        assert "Memory-infeasible" in (tmp_path / "run" / "report.md").read_text()
    else:
        assert results["memory_infeasible"] == []


def test_trials_failing_in_a_row_abort_the_search_with_the_last_error(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "exploding.py").write_text(textwrap.dedent("""\
        from automl.families.mlp import MLPFamily

        class Exploding(MLPFamily):
            name = "exploding"

            def build(self, config, profile):
                raise RuntimeError("this family always fails")
        """))
    path = write_spec(tmp_path, plugins_dirs=["plugins"], families={"include": ["exploding"]},
                      budget={"max_trials": 20, "max_epochs": 2, "max_failed": 20, "max_consecutive_failures": 3})
    with pytest.raises(Exception, match=r"aborted: max_consecutive_failures \(3\).*this family always fails"):
        run(path)
    assert len(trials_of(tmp_path / "run")) == 3


def test_ray_backend_without_ray_is_a_spec_error_before_anything_is_written(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    path = write_spec(tmp_path, execution={"backend": "ray"})
    with pytest.raises(SpecError, match=r"execution.backend: 'ray' needs Ray installed: pip install 'automl\[ray\]'"):
        run(path)
    assert not (tmp_path / "run").exists()
