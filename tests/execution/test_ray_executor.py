"""What only the Ray backend has to show: hung and crashing actors, fractional GPUs in Ray's
accounting, a setup that fails, the agent's real runner in an actor, and who owns Ray.

The contract itself runs against RayExecutor in test_executor_contract.py. Here the private
local Ray has one logical GPU (no CUDA needed: Ray only counts it), so fractional
gpus_per_trial can be placed for real.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest
import torch

from automl.execution.base import TrialOutcome, TrialRequest
from tests.execution.test_executor_contract import (REPO, collect, is_loopback, of_trial, outcome_of, run_trial,
                                                    setup, start_local_ray)
from tests.execution.test_process_faults import alive, wait_until

pytest.importorskip("ray")
from automl.execution.ray_backend import RayExecutor  # noqa: E402


@pytest.fixture(scope="module")
def ray_with_a_gpu():
    yield from start_local_ray(num_gpus=1)


@pytest.fixture
def make(ray_with_a_gpu):
    made = []

    def make_executor(setup_function=setup, **options):
        executor = RayExecutor(setup_function, **{"workers": 1, **options})
        made.append(executor)
        return executor

    yield make_executor
    for executor in made:
        executor.shutdown()
    assert ray_with_a_gpu.is_initialized(), "an executor shut down a Ray it did not start"


def stubborn_setup(slot):
    # setup runs in the actor's main thread, where Python may set signal handlers
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return run_trial


def pid_of(worker: str) -> int:
    return int(worker.rsplit(":", 1)[1])  # "ray-<slot>:<host>:<pid>"


def started(executor, trial_id: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"trial {trial_id} did not start"
        for event in executor.events(0.2):
            if event.kind == "started" and event.trial_id == trial_id:
                return event


def test_time_limit_kills_a_trial_that_ignores_sigterm_and_the_slot_goes_on(make, tmp_path):
    executor = make(stubborn_setup)
    pidfile = tmp_path / "child.pid"  # the trial also starts a process of its own, then hangs
    executor.submit(TrialRequest("hung", {"mode": "child", "pidfile": str(pidfile)}, 3, time_limit=1.5))
    event = started(executor, "hung")
    begun, pid = time.monotonic(), pid_of(event.worker)
    os.kill(pid, signal.SIGTERM)  # the premise: a polite kill does nothing to this trial
    time.sleep(0.3)
    assert alive(pid)
    outcome = outcome_of(collect(executor, ["hung"]), "hung")
    assert (outcome.status, outcome.reason) == ("FAILED", "timeout")
    assert "time limit of 1.5 s" in outcome.error
    assert 1.5 <= time.monotonic() - begun <= 1.5 + 5.0
    assert wait_until(lambda: not alive(pid), timeout=10)
    assert wait_until(lambda: not alive(int(pidfile.read_text())), timeout=10)  # Ray's cleanup of a dead worker
    executor.submit(TrialRequest("next", {"mode": "ok"}, 2))  # on a fresh actor
    events = collect(executor, ["next"])
    assert outcome_of(events, "next").status == "COMPLETE"
    assert pid_of(events[0].worker) != pid


def test_a_worker_that_exits_fails_its_trial_as_crashed(make):
    executor = make()
    executor.submit(TrialRequest("t1", {"mode": "exit"}, 3))
    events = collect(executor, ["t1"])
    assert [e.kind for e in events] == ["started", "finished"]
    outcome = outcome_of(events, "t1")
    assert (outcome.status, outcome.reason) == ("FAILED", "crashed")
    assert "died" in outcome.error and "t1" in outcome.error
    assert executor.capacity() == 1
    executor.submit(TrialRequest("t2", {"mode": "ok"}, 1))
    assert outcome_of(collect(executor, ["t2"]), "t2").status == "COMPLETE"


def report_gpu(slot, request: TrialRequest, report) -> TrialOutcome:
    import ray

    report(1, {"loss": 1.0})  # held by the test until both trials have reached it
    gpus = ray.get_gpu_ids()
    return TrialOutcome("COMPLETE", 1.0, {"gpus": float(len(gpus)), "gpu": float(gpus[0])},
                        epochs=1, error=f"{slot.device}:{os.environ.get('CUDA_VISIBLE_DEVICES')}")


def gpu_setup(slot):
    return functools.partial(report_gpu, slot)


def test_half_a_gpu_per_trial_puts_two_trials_on_one_gpu(make):
    executor = make(gpu_setup, workers=2, gpus_per_trial=0.5, cpus_per_trial=1)
    assert executor.actor_options["num_gpus"] == 0.5 and executor.actor_options["num_cpus"] == 1
    assert [s.device for s in executor.slots] == ["cuda", "cuda"]
    executor.submit(TrialRequest("a", {}, 1))
    executor.submit(TrialRequest("b", {}, 1))
    held, deadline = [], time.monotonic() + 180  # a generous deadline: Ray is slow to start under load
    while len(held) < 2:  # both hold half of the one GPU at the same time
        assert time.monotonic() < deadline, "the two half-GPU trials did not run side by side"
        held += [e for e in executor.events(0.2) if e.kind == "epoch"]
    for event in held:
        event.answer(False)
    events = collect(executor, ["a", "b"])
    for trial_id in ("a", "b"):
        outcome = outcome_of(events, trial_id)
        assert outcome.metrics == {"gpus": 1.0, "gpu": 0.0} and outcome.error == "cuda:0"


def test_a_trial_the_cluster_cannot_place_is_warned_about(make, caplog):
    with caplog.at_level(logging.WARNING, logger="automl.execution.ray_backend"):
        executor = make(gpus_per_trial=2)
    assert "cannot be placed" in caplog.text
    assert executor.capacity() == 1  # it waits for a node; shutdown below must still end it


def failing_setup(slot):
    raise RuntimeError(f"no data for slot {slot.index}")


def test_a_failing_setup_fails_each_trial_with_its_traceback(make):
    executor = make(failing_setup)
    for trial_id in ("t1", "t2"):
        executor.submit(TrialRequest(trial_id, {"mode": "ok"}, 1))
        outcome = outcome_of(collect(executor, [trial_id]), trial_id)
        assert (outcome.status, outcome.reason) == ("FAILED", "exception")
        assert "RuntimeError: no data for slot 0" in outcome.error


def agent_setup(tmp_path):
    """The setup the agent passes: a partial of build_runner over a TrialContext with the data; and a config."""
    from automl.agent import make_plan
    from automl.spec import load_spec
    from automl.training.runner import TrialContext, build_runner
    from automl.training.trainer import TrainSettings
    from tests.conftest import write_spec

    plan = make_plan(load_spec(write_spec(tmp_path)))
    settings = TrainSettings(plan.metric, plan.direction, plan.metric_names, "cpu", None, 0)
    context = TrialContext(plan.data, settings, tuple(plan.registry.family_ref(n) for n in plan.families),
                           tmp_path / "checkpoints")
    (tmp_path / "checkpoints").mkdir()
    return functools.partial(build_runner, context), plan.space.sample(np.random.default_rng(0))


def test_the_agents_runner_trains_in_an_actor(make, tmp_path):
    """The agent's setup travels to the actor once; the trial trains there and writes its checkpoint."""
    agent_runner, config = agent_setup(tmp_path)
    executor = make(agent_runner)
    executor.submit(TrialRequest("real", config, 2))
    events = collect(executor, ["real"], timeout=180)
    assert [e.kind for e in of_trial(events, "real")] == ["started", "epoch", "epoch", "finished"]
    outcome = outcome_of(events, "real")
    assert outcome.status == "COMPLETE", outcome.error
    assert (tmp_path / "checkpoints" / "real.pt").exists()
    executor.submit(TrialRequest("again", config, 1))  # the same actor: setup (data, torch) is not run again
    again = collect(executor, ["again"], timeout=180)
    assert outcome_of(again, "again").status == "COMPLETE"
    assert {e.worker for e in again} == {e.worker for e in events}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; Ray's accounting of half GPUs is "
                                                          "tested above with a logical one")
def test_two_trials_train_on_half_a_real_gpu_each(make, tmp_path):
    agent_runner, config = agent_setup(tmp_path)
    executor = make(agent_runner, workers=2, gpus_per_trial=0.5)
    executor.submit(TrialRequest("a", config, 2))
    executor.submit(TrialRequest("b", config, 2))
    events = collect(executor, ["a", "b"], timeout=180)
    assert outcome_of(events, "a").status == outcome_of(events, "b").status == "COMPLETE"


def test_ray_is_imported_lazily_listens_on_loopback_and_is_shut_down_by_the_executor_that_started_it(tmp_path):
    """In a fresh interpreter (this one's Ray is the fixture's): `import automl` pulls no Ray in;
    the Ray an executor starts listens on loopback only (every TCP socket of its GCS, raylet,
    agents, actor and driver); the executor stops it again and leaves no process behind."""
    root = tempfile.mkdtemp(prefix="automl-ray-", dir="/tmp")  # short: Ray's socket paths live below it
    temp_dir = os.path.join(root, "ray")
    script = textwrap.dedent(f"""\
        import json, os, sys
        import automl, automl.execution.ray_backend
        assert "ray" not in sys.modules, "importing automl imported ray"
        import ray
        from automl.execution.base import TrialRequest
        from automl.execution.ray_backend import RayExecutor
        from tests.execution.test_executor_contract import (collect, listening_sockets, outcome_of,
                                                            ray_processes, setup)

        executor = RayExecutor(setup, workers=1, init_kwargs=dict(num_cpus=1, _temp_dir={temp_dir!r},
                                                                  log_to_driver=False))
        executor.submit(TrialRequest("t1", {{"mode": "ok"}}, 2))
        status = outcome_of(collect(executor, ["t1"]), "t1").status
        session = sorted(ray_processes({temp_dir!r}))  # seen from here, while they are still our descendants
        listening = listening_sockets(session + [os.getpid()]) if os.path.isdir("/proc") else None
        niceness = {{pid: os.getpriority(os.PRIO_PROCESS, pid) - os.getpriority(os.PRIO_PROCESS, 0)
                    for pid in session}}  # relative to this driver's: a suite run under `nice` shifts both
        executor.shutdown()
        print(json.dumps([status, ray.is_initialized(), session, listening, niceness]))
        """)
    env = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    try:
        result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        status, initialised, session, listening, niceness = json.loads(result.stdout.splitlines()[-1])
        assert (status, initialised) == ("COMPLETE", False)
        # Ray's default is nice 15 for its workers: on a busy machine the trial's actor would barely run
        assert set(niceness.values()) == {0}, f"Ray processes below the driver's priority: {niceness}"
        assert len(session) >= 3  # GCS, raylet and the actor's worker at least
        if listening is not None:
            assert len({pid for pid, _, _ in listening}) >= 3, listening  # GCS, raylet, actor, driver...
            assert [s for s in listening if not is_loopback(s[1])] == [], "Ray listens beyond this machine"
        left = lambda: [pid for pid in session if alive(pid)]  # noqa: E731
        assert wait_until(lambda: not left(), timeout=15), f"processes of the Ray session left: {left()}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
