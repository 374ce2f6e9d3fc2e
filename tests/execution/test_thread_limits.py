"""Time limits on worker threads: a thread cannot be killed, so past its limit it is abandoned.
Its trial fails with `timeout`, its next report says stop, what it sends later is dropped, the
slot gets a fresh thread, and a thread that never returns holds up neither shutdown nor exit."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from automl.execution.base import TrialOutcome, TrialRequest
from automl.execution.slots import plan_slots
from automl.execution.threads import ThreadExecutor
from tests.execution.test_executor_contract import REPO, collect, of_trial, outcome_of, setup
from tests.execution.test_process_faults import wait_until

# what each trial's runner saw when report told it to stop: its thread, the epoch
stopped_at: dict[str, tuple[threading.Thread, int]] = {}


def slow_trial(request: TrialRequest, report) -> TrialOutcome:
    for epoch in range(1, int(request.budget) + 1):
        time.sleep(request.config.get("sleep", 0.01))
        if report(epoch, {"loss": 1.0 / epoch}):
            stopped_at[request.trial_id] = (threading.current_thread(), epoch)
            return TrialOutcome("PRUNED", 1.0 / epoch, {"loss": 1.0 / epoch}, epochs=epoch)
    return TrialOutcome("COMPLETE", 1.0 / epoch, {"loss": 1.0 / epoch}, epochs=epoch)


def test_a_thread_past_its_limit_is_abandoned_and_its_slot_gets_a_fresh_one():
    executor = ThreadExecutor(lambda slot: slow_trial, plan_slots("cpu", 1, cpu_count=1))
    try:
        executor.submit(TrialRequest("slow", {"sleep": 0.3}, 1000, time_limit=1.0))
        events = collect(executor, ["slow"])
        outcome = outcome_of(events, "slow")
        assert (outcome.status, outcome.reason) == ("FAILED", "timeout")
        assert "time limit of 1 s" in outcome.error and "abandoned" in outcome.error
        assert outcome.epochs == sum(1 for e in events if e.kind == "epoch") >= 1
        # its next report said stop, and the thread ended; its PRUNED outcome never came out
        assert wait_until(lambda: "slow" in stopped_at and not stopped_at["slow"][0].is_alive(), timeout=30)
        executor.submit(TrialRequest("next", {}, 3))
        later = collect(executor, ["next"])
        assert of_trial(later, "slow") == [] and executor.events(0.3) == []
        assert outcome_of(later, "next").status == "COMPLETE"
        assert "next" not in stopped_at and executor.idle()
    finally:
        executor.shutdown()


def test_a_hung_thread_holds_up_neither_shutdown_nor_exit():
    executor = ThreadExecutor(setup, plan_slots("cpu", 1, cpu_count=1))
    executor.submit(TrialRequest("hung", {"mode": "hang"}, 3))
    assert [e.kind for e in executor.events(30)] == ["started"]
    begun = time.monotonic()
    executor.shutdown(wait=0.5)
    assert time.monotonic() - begun < 5
    assert executor.capacity() == 0 and executor.events(0) == []
    script = ("from automl.execution.base import TrialRequest\n"
              "from automl.execution.slots import plan_slots\n"
              "from automl.execution.threads import ThreadExecutor\n"
              "from tests.execution.test_executor_contract import setup\n"
              "executor = ThreadExecutor(setup, plan_slots('cpu', 1, cpu_count=1))\n"
              "executor.submit(TrialRequest('hung', {'mode': 'hang'}, 3, time_limit=0.2))\n"
              "print(sorted(e.kind for e in executor.events(30) + executor.events(30)), flush=True)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "['finished', 'started']"
