"""`automl run` on Ray: the whole search through the Ray backend, the database on the driver."""
from __future__ import annotations

import json

import pytest

from automl.agent import Agent
from automl.errors import SpecError
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


class Started(Exception):
    """Raised by a RayExecutor stand-in once it has seen its arguments."""


def test_the_spec_s_ray_options_reach_ray_init(tmp_path, monkeypatch):
    from automl.execution import ray_backend

    seen = {}

    def executor(setup, **options):
        seen.update(options)
        raise Started

    monkeypatch.setattr(ray_backend, "RayExecutor", executor)
    spec = write_spec(tmp_path, execution={"backend": "ray", "namespace": "automl-tiny", "node_ip_address": "10.0.0.5",
                                           "runtime_env": {"env_vars": {"A": "1"}}})
    with pytest.raises(Started):
        Agent(load_spec(spec)).run()
    assert (seen["namespace"], seen["runtime_env"], seen["node_ip_address"]) == \
        ("automl-tiny", {"env_vars": {"A": "1"}}, "10.0.0.5")


def test_a_ray_started_here_listens_on_loopback_unless_told_otherwise(monkeypatch):
    from automl.execution.ray_backend import init_arguments

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    local = {"address": None, "include_dashboard": False, "_node_ip_address": "127.0.0.1",
             "_system_config": {"worker_niceness": 0}}
    assert init_arguments(None, None) == local
    assert init_arguments(None, {"_node_ip_address": "10.0.0.5", "namespace": "n"}) == \
        {**local, "_node_ip_address": "10.0.0.5", "namespace": "n"}
    assert init_arguments(None, {"_system_config": {"object_timeout_milliseconds": 5}})["_system_config"] == \
        {"worker_niceness": 0, "object_timeout_milliseconds": 5}  # the user's entries join ours
    assert init_arguments("auto", {"namespace": "n"}) == {"address": "auto", "namespace": "n"}  # a cluster's own
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # ray.init joins that cluster: no defaults of ours
    assert init_arguments(None, None) == {"address": None}


@pytest.mark.parametrize("execution, problem", [
    ({"namespace": "n"}, "namespace only apply to backend 'ray'"),
    ({"backend": "ray", "node_ip_address": "my-host"}, "'my-host' is not an IP address"),
    ({"backend": "ray", "address": "ray://head:10001", "node_ip_address": "10.0.0.5"},
     "node_ip_address does not apply with a 'ray://' address"),
    ({"backend": "ray", "runtime_env": ["pip"]}, "execution.runtime_env"),
])
def test_ray_options_are_checked_in_the_spec(tmp_path, execution, problem):
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path, execution=execution))
    assert problem in str(info.value)
