"""CPU threads per worker: the usable cores (affinity, cgroup quota) split between the slots, a
user's OMP_NUM_THREADS kept, and OpenMP threads that sleep rather than spin while they wait."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from automl.cli import main
from automl.execution.base import TrialOutcome, TrialRequest
from automl.execution.processes import ProcessExecutor
from automl.execution.slots import (
    Slot,
    plan_slots,
    set_thread_env,
    threads_per_worker,
    usable_cores,
)
from tests.execution.test_executor_contract import collect, outcome_of

AFFINITY = len(os.sched_getaffinity(0))


def cgroup(tmp_path, **files):
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize("files, cap", [
    ({"cpu.max": "150000 100000\n"}, 1),  # --cpus=1.5: one thread, not two sharing one and a half
    ({"cpu.max": "400000 100000\n"}, 4),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu__cpu.cfs_quota_us": "200000\n", "cpu__cpu.cfs_period_us": "100000\n"}, 2),  # cgroup v1
    ({"cpu__cpu.cfs_quota_us": "-1\n", "cpu__cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_usable_cores_are_the_affinity_mask_capped_by_a_cgroup_quota(tmp_path, files, cap):
    expected = AFFINITY if cap is None else min(AFFINITY, cap)
    assert usable_cores(cgroup(tmp_path, **files)) == expected


def test_threads_split_the_cores_unless_the_user_set_omp_num_threads():
    assert threads_per_worker(3, 8, {}) == (2, "8 usable cores / 3 workers")
    assert threads_per_worker(4, 2, {})[0] == 1
    assert threads_per_worker(2, 8, {"OMP_NUM_THREADS": "3"}) == (3, "OMP_NUM_THREADS=3")
    for nonsense in ("0", "two", ""):
        assert threads_per_worker(2, 8, {"OMP_NUM_THREADS": nonsense})[0] == 4
    slots = plan_slots("cpu", 2, cpu_count=8, environ={"OMP_NUM_THREADS": "1"})
    assert [s.torch_threads for s in slots] == [1, 1]


def test_openmp_waits_passively_unless_the_user_chose():
    environ = {}
    set_thread_env(environ)
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    set_thread_env(environ)
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_the_command_line_sets_it_before_it_loads_torch(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "")
    monkeypatch.delenv("OMP_WAIT_POLICY")  # restored afterwards
    assert CliRunner().invoke(main, ["schema"]).exit_code == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def report_threads(request: TrialRequest, report) -> TrialOutcome:
    import torch

    passive = os.environ.get("OMP_WAIT_POLICY") == "PASSIVE"
    metrics = {"threads": float(torch.get_num_threads()), "passive": float(passive)}
    return TrialOutcome("COMPLETE", 0.0, metrics, epochs=1)


def threads_setup(slot) -> object:
    import torch  # noqa: F401  loaded by the setup, as a trainer's is

    return report_threads


def test_a_worker_process_trains_with_its_slot_s_threads_and_passive_openmp(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # the worker sets it, before it loads torch
    executor = ProcessExecutor(threads_setup, [Slot(0, "cpu", 3)])
    try:
        executor.submit(TrialRequest("t", {}, 1))
        outcome = outcome_of(collect(executor, ["t"], timeout=60), "t")
    finally:
        executor.shutdown()
    assert outcome.metrics == {"threads": 3.0, "passive": 1.0}
