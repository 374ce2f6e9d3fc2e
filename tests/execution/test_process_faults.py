"""Faults that only worker processes survive: hangs past a time limit, kills, segfaults,
exits, out of memory; and that no worker outlives the executor."""
from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from automl.execution.base import TrialRequest
from automl.execution.processes import ProcessExecutor, Slot, plan_slots
from tests.execution.test_executor_contract import collect, of_trial, outcome_of, setup

log = logging.getLogger(__name__)


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (an orphan's zombie may wait for a lazy init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def failing_setup(slot):
    raise RuntimeError(f"no data for slot {slot.index}")


def exiting_setup(slot):
    os._exit(7)  # dies before it is ready, as a worker that cannot even start would


@pytest.fixture
def executor():
    executor = ProcessExecutor(setup, plan_slots("cpu", 1, cpu_count=1))
    yield executor
    executor.shutdown()


def run_until_started(executor, trial_id: str, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"trial {trial_id} did not start"
        if any(e.kind == "started" and e.trial_id == trial_id for e in executor.events(0.2)):
            return time.monotonic()


@pytest.mark.parametrize("mode", ["hang", "ignore_sigterm", "child"])
def test_a_trial_past_its_time_limit_is_killed_and_its_slot_runs_the_next(executor, mode, tmp_path):
    old_pid = executor.worker_pids()[0]
    pidfile = tmp_path / "child.pid"
    executor.submit(TrialRequest("hung", {"mode": mode, "pidfile": str(pidfile)}, 3, time_limit=1.0))
    started = run_until_started(executor, "hung")
    outcome = outcome_of(collect(executor, ["hung"]), "hung")
    ended = time.monotonic()
    assert (outcome.status, outcome.reason) == ("FAILED", "timeout")
    assert "time limit of 1 s" in outcome.error
    assert 1.0 - 0.05 <= ended - started <= 1.0 + 5.0
    assert not alive(old_pid)
    if mode == "child":  # the kill took the trial's own process too
        assert wait_until(lambda: not alive(int(pidfile.read_text())), timeout=5)
    executor.submit(TrialRequest("next", {"mode": "ok"}, 2))
    next_started = run_until_started(executor, "next")
    assert outcome_of(collect(executor, ["next"]), "next").status == "COMPLETE"
    assert executor.worker_pids()[0] != old_pid
    log.info("%s: limit -> FAILED %.2f s, limit -> next trial started %.2f s", mode, ended - started - 1.0,
             next_started - started - 1.0)
    assert next_started - started <= 1.0 + 5.0


def test_a_worker_killed_from_outside_crashes_its_trial(executor):
    executor.submit(TrialRequest("t1", {"mode": "hang"}, 3))
    run_until_started(executor, "t1")
    os.kill(executor.worker_pids()[0], signal.SIGKILL)
    events = collect(executor, ["t1"], timeout=10)
    outcome = outcome_of(events, "t1")
    assert (outcome.status, outcome.reason) == ("FAILED", "crashed")
    assert "signal SIGKILL" in outcome.error
    executor.submit(TrialRequest("t2", {"mode": "ok"}, 1))
    assert outcome_of(collect(executor, ["t2"]), "t2").status == "COMPLETE"


def test_a_crashed_trial_counts_the_epoch_it_reached_not_its_reports(executor, tmp_path):
    """A trial resumed at epoch 2 reports epochs 3 and 4, then dies: it reached epoch 4 (not 2)."""
    (tmp_path / "crashes").write_text("1")
    executor.submit(TrialRequest("t1", {"mode": "crash_resumed", "counter": str(tmp_path / "crashes")}, 8))
    events = collect(executor, ["t1"])
    assert [e.epoch for e in of_trial(events, "t1") if e.kind == "epoch"] == [3, 4]
    outcome = outcome_of(events, "t1")
    assert (outcome.status, outcome.reason, outcome.epochs) == ("FAILED", "crashed", 4)


@pytest.mark.parametrize("mode, text", [("segfault", "died with signal SIGSEGV"), ("exit", "exited with code 3")])
def test_a_dying_trial_crashes_with_its_cause(executor, mode, text):
    executor.submit(TrialRequest("t1", {"mode": mode}, 3))
    events = collect(executor, ["t1"], timeout=10)
    assert [e.kind for e in of_trial(events, "t1")] == ["started", "finished"]
    outcome = outcome_of(events, "t1")
    assert (outcome.status, outcome.reason) == ("FAILED", "crashed")
    assert text in outcome.error and "trial t1" in outcome.error


def test_torch_out_of_memory_is_reason_oom(executor):
    executor.submit(TrialRequest("t1", {"mode": "oom_torch"}, 3))
    outcome = outcome_of(collect(executor, ["t1"]), "t1")
    assert (outcome.status, outcome.reason) == ("FAILED", "oom")
    assert "OutOfMemoryError" in outcome.error


def test_a_worker_that_died_while_idle_is_replaced(executor):
    old_pid = executor.worker_pids()[0]
    os.kill(old_pid, signal.SIGKILL)
    assert wait_until(lambda: not alive(old_pid))
    executor.submit(TrialRequest("t1", {"mode": "ok"}, 2))
    assert outcome_of(collect(executor, ["t1"]), "t1").status == "COMPLETE"


def test_shutdown_leaves_no_process_alive(tmp_path):
    executor = ProcessExecutor(setup, plan_slots("cpu", 2, cpu_count=2))
    executor.submit(TrialRequest("stubborn", {"mode": "ignore_sigterm"}, 3))
    executor.submit(TrialRequest("with-child", {"mode": "child", "pidfile": str(tmp_path / "child.pid")}, 3))
    run_until_started(executor, "stubborn")
    assert wait_until(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text())
    pids = executor.worker_pids() + [int((tmp_path / "child.pid").read_text())]
    started = time.monotonic()
    executor.shutdown(wait=0.5)
    assert time.monotonic() - started < 5
    assert [pid for pid in pids[:2] if alive(pid)] == []  # workers: reaped before shutdown returns
    assert wait_until(lambda: not alive(pids[2]), timeout=5)  # the orphan: killed, reaped by init
    executor.shutdown()
    assert executor.capacity() == 0
    # what was still unread comes out once; the two cut-off trials send no outcome: they are to resume
    assert {e.kind for e in executor.events(0)} <= {"started"} and executor.events(0) == []


def test_a_dropped_executor_takes_its_workers_along():
    executor = ProcessExecutor(setup, plan_slots("cpu", 2, cpu_count=2))
    pids = executor.worker_pids()
    del executor
    gc.collect()
    assert [pid for pid in pids if alive(pid)] == []


def test_a_failing_setup_fails_each_trial_with_its_traceback():
    executor = ProcessExecutor(failing_setup, [Slot(0, "cpu", 1)])
    try:
        executor.submit(TrialRequest("t1", {}, 1))
        outcome = outcome_of(collect(executor, ["t1"]), "t1")
        assert (outcome.status, outcome.reason) == ("FAILED", "exception")
        assert "setup of worker slot 0 failed" in outcome.error and "no data for slot 0" in outcome.error
    finally:
        executor.shutdown()


def test_a_slot_whose_workers_cannot_start_is_given_up():
    executor = ProcessExecutor(exiting_setup, [Slot(0, "cpu", 1)])
    try:
        executor.submit(TrialRequest("t1", {}, 1))
        events = collect(executor, ["t1"])
        outcome = outcome_of(events, "t1")
        assert (outcome.status, outcome.reason) == ("FAILED", "crashed") and "exited with code 7" in outcome.error
        assert [e.kind for e in events] == ["started", "finished"]
        deadline = time.monotonic() + 30
        with pytest.raises(RuntimeError, match="failed to start"):  # rather than wait forever
            while time.monotonic() < deadline:
                executor.events(0.2)
        assert executor.capacity() == 0
    finally:
        executor.shutdown()


def test_setup_must_pickle():
    with pytest.raises(TypeError, match="picklable"):
        ProcessExecutor(lambda slot: None, [Slot(0, "cpu", 1)])


# -- plan_slots ------------------------------------------------------------------------------------

@pytest.mark.parametrize("workers, cpus, expected", [(None, 8, [8]), (1, 8, [8]), (3, 8, [2, 2, 2]),
                                                     (4, 2, [1, 1, 1, 1])])
def test_cpu_slots_split_the_cores(workers, cpus, expected):
    slots = plan_slots("cpu", workers, cpu_count=cpus, environ={})
    assert [s.torch_threads for s in slots] == expected
    assert [s.index for s in slots] == list(range(len(expected)))
    assert all(s.device == "cpu" and not s.env for s in slots)


def test_cuda_slots_one_per_gpu_times_trials_per_gpu():
    slots = plan_slots("cuda", None, trials_per_gpu=2, cpu_count=16, gpu_count=2, environ={})
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "0", "1"]
    assert all(s.device == "cuda" and s.torch_threads == 4 for s in slots)
    capped = plan_slots("cuda", 3, trials_per_gpu=2, cpu_count=16, gpu_count=2, environ={})
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in capped] == ["0", "1", "0"]  # a cap still spreads


def test_cuda_slots_follow_our_own_visible_devices():
    slots = plan_slots("cuda", None, cpu_count=4, gpu_count=2, environ={"CUDA_VISIBLE_DEVICES": "3,5"})
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["3", "5"]
    one = plan_slots("cuda:1", None, trials_per_gpu=2, cpu_count=4, gpu_count=2, environ={})
    assert [(s.device, s.env["CUDA_VISIBLE_DEVICES"]) for s in one] == [("cuda", "1"), ("cuda", "1")]


def test_cuda_slots_need_a_gpu():
    with pytest.raises(ValueError, match="no CUDA device"):
        plan_slots("cuda", None, gpu_count=0, environ={})
    with pytest.raises(ValueError, match="only 1"):
        plan_slots("cuda:1", None, gpu_count=1, environ={})


def test_mps_is_one_slot():
    assert plan_slots("mps", 4, cpu_count=8) == [Slot(0, "mps", 8)]


DRIVER = """
import sys, time
from automl.execution.base import TrialRequest
from automl.execution.processes import ProcessExecutor, plan_slots
from tests.execution.test_executor_contract import setup
executor = ProcessExecutor(setup, plan_slots("cpu", 1, cpu_count=1))
executor.submit(TrialRequest("t1", {"mode": sys.argv[2]}, 3))
while not any(e.kind == "started" for e in executor.events(0.2)):
    pass
print(executor.worker_pids()[0], flush=True)
if sys.argv[1] == "raise":
    raise RuntimeError("the driver failed")
time.sleep(60)
"""


@pytest.mark.parametrize("end, mode", [("raise", "ignore_sigterm"), ("sigkill", "ignore_sigterm"),
                                       ("sigkill", "hold_gil")])
def test_no_worker_outlives_its_driver(end, mode):
    """A driver that dies of an exception (exit hooks) or of SIGKILL (the kernel's parent-death
    signal on Linux, the worker's watch elsewhere) leaves nothing. A worker whose trial holds the
    GIL can only be killed from outside: on Linux it still follows its driver at once."""
    if mode == "hold_gil" and not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux only")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, end, mode], cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        worker = int(driver.stdout.readline())
        if end == "sigkill":
            driver.kill()
            killed = time.monotonic()
        driver.wait(timeout=20)
        assert wait_until(lambda: not alive(worker), timeout=10)
        if end == "sigkill" and sys.platform.startswith("linux"):  # generous: the kernel takes milliseconds
            assert time.monotonic() - killed < 3.0, "the worker outlived its driver by seconds"
    finally:
        if worker is not None and alive(worker):  # a failed test leaves no worker spinning, holding our pipes
            os.kill(worker, signal.SIGKILL)
        driver.kill()
        driver.communicate(timeout=20)
    if end == "raise":
        assert driver.returncode == 1
