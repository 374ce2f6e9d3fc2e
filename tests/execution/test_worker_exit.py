"""A worker process told to exit ends at once (os._exit, no interpreter teardown) and loses
nothing it printed or logged."""
from __future__ import annotations

import logging
import sys

from automl.execution.base import TrialOutcome, TrialRequest
from automl.execution.processes import ProcessExecutor, plan_slots
from tests.execution.test_executor_contract import collect, outcome_of


def chatty_trial(request: TrialRequest, report) -> TrialOutcome:
    # no newline and no flush: still in the buffers when the worker is told to exit
    sys.stdout.write("stdout of trial " + request.trial_id)
    sys.stderr.write("stderr of trial " + request.trial_id)
    logging.getLogger("automl.test").warning("log of trial %s", request.trial_id)
    return TrialOutcome("COMPLETE", 1.0, {"loss": 1.0}, epochs=1)


def chatty_setup(slot) -> object:
    stream = open(sys.stderr.fileno(), "w", buffering=1 << 16, closefd=False)  # a handler that buffers
    handler = logging.StreamHandler(stream)
    logging.getLogger("automl.test").addHandler(handler)
    sys.stdout = open(sys.stdout.fileno(), "w", buffering=1 << 16, closefd=False)
    sys.stderr = open(sys.stderr.fileno(), "w", buffering=1 << 16, closefd=False)
    return chatty_trial


def test_a_worker_that_exits_flushes_what_its_trial_printed_and_logged_and_exits_with_0(capfd):
    executor = ProcessExecutor(chatty_setup, plan_slots("cpu", 1, cpu_count=1))
    try:
        executor.submit(TrialRequest("t1", {}, 1))
        assert outcome_of(collect(executor, ["t1"]), "t1").status == "COMPLETE"
        [worker] = executor.workers()
    finally:
        executor.shutdown()
    assert worker.process.exitcode == 0
    out, err = capfd.readouterr()
    assert "stdout of trial t1" in out
    assert "stderr of trial t1" in err and "log of trial t1" in err
