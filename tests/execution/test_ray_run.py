"""`automl run` on Ray: the whole search through the Ray backend, the database on the driver."""
from __future__ import annotations

import json

import pytest

from automl.agent import Agent
from automl.spec import load_spec
from automl.store import TrialStore
from tests.conftest import write_spec
from tests.execution.test_executor_contract import start_local_ray


@pytest.fixture(scope="module")
def local_ray():
    yield from start_local_ray()


def test_a_search_runs_on_ray(tmp_path, local_ray):
    spec = write_spec(tmp_path, execution={"backend": "ray", "workers": 2, "cpus_per_trial": 1},
                      budget={"max_trials": 4, "max_epochs": 3})
    summary = Agent(load_spec(spec)).run()
    store = TrialStore(tmp_path / "run" / "trials.db", readonly=True)
    trials, run = store.trials(with_history=True), store.get_meta("run")
    store.close()
    assert [t.status for t in trials] == ["COMPLETE"] * 4
    assert all(t.worker.startswith("ray-") and len(t.history) == 3 for t in trials)
    assert run["isolation"] == "ray" and run["workers"] == 2
    assert json.loads((tmp_path / "run" / "results.json").read_text())["best"]["trial_id"] == summary["best_trial_id"]
    assert (tmp_path / "run" / "model" / "model.pt").exists()
