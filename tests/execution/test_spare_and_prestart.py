"""A warm spare worker takes over a killed or dead worker's slot; workers started before their
setup; neither leaves a process behind."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import time

import pytest

from automl.execution.base import TrialOutcome, TrialRequest
from automl.execution.processes import ProcessExecutor, Slot, plan_slots
from tests.execution.test_executor_contract import DEADLINE, REPO, collect, outcome_of, setup
from tests.execution.test_process_faults import alive, wait_until


def preload_trial(request: TrialRequest, report) -> TrialOutcome:
    """Says whether the worker had imported the module named by the config before any trial."""
    found = float(request.config["module"] in PRELOADED)
    return TrialOutcome("COMPLETE", found, {"loss": found}, epochs=1)


PRELOADED: set[str] = set()


def preload_setup(slot) -> object:
    PRELOADED.update(sys.modules)  # what the worker holds when its setup arrives
    return preload_trial


def ready_spares(executor, count: int = 1) -> list[int]:
    """The pids of the spares once `count` of them are set up (events() drives the pool)."""
    deadline = time.monotonic() + DEADLINE
    while len(executor.spare_pids(ready=True)) < count:
        assert time.monotonic() < deadline, "no spare got ready"
        executor.events(0.2)
    return executor.spare_pids(ready=True)


def workers_of(events, trial_id: str) -> set[str]:
    return {e.worker for e in events if e.trial_id == trial_id}


@pytest.mark.parametrize("mode, reason", [("hang", "timeout"), ("exit", "crashed")])
def test_the_next_trial_of_a_killed_or_dead_worker_runs_on_the_spare(mode, reason):
    executor = ProcessExecutor(setup, plan_slots("cpu", 1, cpu_count=1), spare=True)
    try:
        [spare] = ready_spares(executor)
        [old] = executor.worker_pids()
        assert spare != old and alive(spare)
        executor.submit(TrialRequest("t1", {"mode": mode}, 3, time_limit=0.5 if mode == "hang" else None))
        assert outcome_of(collect(executor, ["t1"]), "t1").reason == reason
        assert executor.worker_pids() == [spare]  # the process that was waiting, not a fresh spawn
        assert wait_until(lambda: not alive(old), timeout=DEADLINE)
        executor.submit(TrialRequest("t2", {"mode": "ok"}, 2))
        events = collect(executor, ["t2"])
        assert outcome_of(events, "t2").status == "COMPLETE"
        assert workers_of(events, "t2") == {f"process-0:{spare}"}  # named for the slot it took over
        [new_spare] = ready_spares(executor)  # and another spare waits in its place
        assert new_spare not in (old, spare)
    finally:
        executor.shutdown()


def test_a_spare_replaces_only_a_seat_of_its_own_environment():
    """On CUDA a worker's device is fixed by its environment before CUDA starts: one spare per
    environment, and a seat gets the spare of its own."""
    slots = [Slot(0, "cpu", 1, {"AUTOML_TEST_DEVICE": "a"}), Slot(1, "cpu", 1, {"AUTOML_TEST_DEVICE": "b"})]
    executor = ProcessExecutor(setup, slots, spare=True)
    try:
        ready_spares(executor, 2)
        spare_of = {worker.slot.env["AUTOML_TEST_DEVICE"]: worker.process.pid for worker in executor.spares()}
        assert len(spare_of) == 2
        executor.submit(TrialRequest("t0", {"mode": "ok"}, 1))
        executor.submit(TrialRequest("t1", {"mode": "hang"}, 3, time_limit=0.5))
        events = collect(executor, ["t0", "t1"])
        assert outcome_of(events, "t1").reason == "timeout"
        assert executor.worker_pids()[1] == spare_of["b"]
        assert spare_of["a"] in executor.spare_pids()  # the other environment's spare still waits
    finally:
        executor.shutdown()


def test_shutdown_with_a_spare_leaves_no_process():
    executor = ProcessExecutor(setup, plan_slots("cpu", 2, cpu_count=2), spare=True)
    ready_spares(executor)
    executor.submit(TrialRequest("t1", {"mode": "hang"}, 3))
    pids = executor.worker_pids() + executor.spare_pids()
    executor.shutdown(wait=0.5)
    assert [pid for pid in pids if alive(pid)] == []
    assert executor.spare_pids() == []


def test_a_dropped_executor_takes_its_spare_along():
    executor = ProcessExecutor(setup, plan_slots("cpu", 1, cpu_count=1), spare=True)
    pids = executor.worker_pids() + ready_spares(executor)
    del executor
    gc.collect()
    assert [pid for pid in pids if alive(pid)] == []


def test_prestarted_workers_become_the_executors_workers():
    prestarted = ProcessExecutor.prestart(plan_slots("cpu", 2, cpu_count=2), preload=("colorsys",))
    pids = prestarted.pids()
    executor = prestarted.ready(preload_setup)
    try:
        prestarted.close()  # the executor owns them now: nothing is killed
        assert executor.worker_pids() == pids
        executor.submit(TrialRequest("t1", {"module": "colorsys"}, 1))
        executor.submit(TrialRequest("t2", {"module": "no_such_module"}, 1))
        events = collect(executor, ["t1", "t2"])
        assert (outcome_of(events, "t1").loss, outcome_of(events, "t2").loss) == (1.0, 0.0)
        assert {w.rsplit(":", 1)[1] for w in workers_of(events, "t1") | workers_of(events, "t2")} <= set(map(str, pids))
    finally:
        executor.shutdown()
    with pytest.raises(RuntimeError, match="handed to an executor"):
        prestarted.ready(setup)


@pytest.mark.parametrize("end", ["close", "collect", "unpicklable_setup"])
def test_prestarted_workers_whose_setup_never_comes_leave_no_process(end):
    prestarted = ProcessExecutor.prestart(plan_slots("cpu", 2, cpu_count=2), preload=())
    pids = prestarted.pids()
    assert all(alive(pid) for pid in pids)
    if end == "close":
        prestarted.close()
        prestarted.close()
    elif end == "collect":
        del prestarted
        gc.collect()
    else:
        with pytest.raises(TypeError, match="picklable"):
            prestarted.ready(lambda slot: None)
        prestarted.close()
    assert wait_until(lambda: not any(alive(pid) for pid in pids), timeout=DEADLINE)


DRIVER = """
import sys, time
from automl.execution.processes import ProcessExecutor, plan_slots
from tests.execution.test_executor_contract import setup
prestarted = ProcessExecutor.prestart(plan_slots("cpu", 1, cpu_count=1), preload=())
pids = prestarted.pids()
if sys.argv[2] == "spare":
    executor = prestarted.ready(setup, spare=True)
    while not executor.spare_pids(ready=True):
        executor.events(0.2)
    pids += executor.spare_pids()
print(*pids, flush=True)
if sys.argv[1] == "raise":
    raise RuntimeError("the plan failed")
time.sleep(60)
"""


@pytest.mark.parametrize("end", ["raise", "sigkill"])
@pytest.mark.parametrize("what", ["prestarted", "spare"])
def test_no_prestarted_worker_or_spare_outlives_its_driver(end, what):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, end, what], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    pids = []
    try:
        pids = [int(pid) for pid in driver.stdout.readline().split()]
        assert pids, driver.stderr.read()
        if end == "sigkill":
            driver.kill()
        driver.wait(timeout=DEADLINE)
        assert wait_until(lambda: not any(alive(pid) for pid in pids), timeout=DEADLINE)
    finally:
        for pid in pids:  # a failed test leaves nothing running
            if alive(pid):
                os.kill(pid, 9)
        driver.kill()
        driver.communicate(timeout=DEADLINE)
