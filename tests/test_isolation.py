"""Trials in worker processes: a crash is retried from the checkpoint, a hung trial is killed
at its time limit, and no process outlives the run."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import pytest

from automl.agent import Agent
from automl.spec import load_spec
from automl.store import TrialStore
from tests.conftest import write_spec

HANG_SECONDS = 90  # a hung trial sleeps this long unless it is killed

FAULTY_FAMILY = textwrap.dedent("""\
    import os, signal, time
    from pathlib import Path
    import torch
    from automl.families.mlp import MLPFamily

    MARKER = Path(os.environ["AUTOML_TEST_MARKER"])


    class Faulty(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, x):
            self.calls += 1
            if self.training and self.calls == 200 and MODE == "crash" and not MARKER.exists():
                MARKER.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)  # the worker dies in the middle of the trial, once
            if self.training and MODE == "hang" and not MARKER.exists():
                MARKER.write_text(str(os.getpid()))
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                time.sleep(HANG_SECONDS)
            return self.inner(x)


    class FaultyFamily(MLPFamily):
        name = "faulty"

        def build(self, config, profile):
            return Faulty(super().build(config, profile))
    """)


def faulty_spec(tmp_path, monkeypatch, mode, **budget):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "faulty.py").write_text(
        FAULTY_FAMILY.replace("MODE", repr(mode)).replace("HANG_SECONDS", str(HANG_SECONDS)))
    monkeypatch.setenv("AUTOML_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.setenv("AUTOML_CHECKPOINT_INTERVAL_S", "0")  # a checkpoint every epoch: a retry goes on from the last
    return write_spec(tmp_path, data={"source": "builtin", "name": "sklearn:digits"}, plugins_dirs=["plugins"],
                      families={"include": ["faulty"], "overrides": {"batch_size": {"choices": [32]},
                                                                     "optimizer": {"choices": ["adam"]}}},
                      budget={"max_trials": 2, "max_epochs": 8, "patience": None, **budget},
                      execution={"isolation": "processes", "retries": 1})


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_crashed_worker_is_retried_from_the_trial_checkpoint(tmp_path, monkeypatch):
    Agent(load_spec(faulty_spec(tmp_path, monkeypatch, "crash"))).run()
    store = TrialStore(tmp_path / "run" / "trials.db", readonly=True)
    trials, attempts = store.trials(), store.attempts()
    history = store.history(trials[0].trial_id)
    store.close()
    assert [t.status for t in trials] == ["COMPLETE", "COMPLETE"]
    assert [(a["trial_id"], a["reason"]) for a in attempts] == [(trials[0].trial_id, "crashed")]
    assert "SIGKILL" in attempts[0]["error"]
    assert [h["epoch"] for h in history] == list(range(1, 9))
    # the crash came at forward call 200, in epoch 6 (37 calls an epoch): epochs 1-5 were recorded
    # before it and kept, and the retry went on from the checkpoint instead of starting over
    crashed_at = (tmp_path / "marker").stat().st_mtime
    with sqlite3.connect(tmp_path / "run" / "trials.db") as con:
        before = [e for (e,) in con.execute("SELECT epoch FROM epochs WHERE trial_id=? AND recorded_at < ? "
                                            "ORDER BY epoch", (trials[0].trial_id, crashed_at))]
    assert before == [1, 2, 3, 4, 5]
    assert not alive(int((tmp_path / "marker").read_text()))


def test_a_hung_trial_is_killed_at_its_time_limit_and_the_slot_runs_the_next(tmp_path, monkeypatch):
    from automl.execution.pool import WorkerPool
    from automl.records import REFIT

    # the spec's limit reaches every request; only the hung (first) trial keeps it, so that the
    # healthy trial after it is never raced against a tight limit on a busy machine
    limits, submit = [], WorkerPool.submit

    def submit_keeping_the_limit_for_the_first_only(self, request):
        if request.kind == REFIT:  # after the search, in an idle worker: no limit, as in the driver
            assert request.time_limit is None
            return submit(self, request)
        limits.append(request.time_limit)
        return submit(self, request if len(limits) == 1 else replace(request, time_limit=None))

    monkeypatch.setattr(WorkerPool, "submit", submit_keeping_the_limit_for_the_first_only)
    summary = Agent(load_spec(faulty_spec(tmp_path, monkeypatch, "hang", max_trial_time=3))).run()
    store = TrialStore(tmp_path / "run" / "trials.db", readonly=True)
    first, second = store.trials()
    store.close()
    assert limits == [3, 3]
    assert (first.status, first.reason) == ("FAILED", "timeout")
    # killed near its limit, not when its sleep ends (HANG_SECONDS); the margin is for a busy machine
    assert first.duration < HANG_SECONDS / 2
    assert second.status == "COMPLETE" and summary["best_trial_id"] == second.trial_id
    assert not alive(int((tmp_path / "marker").read_text()))  # ignored SIGTERM, killed anyway
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["failures"][0]["reason"] == "timeout"
    assert "ran past its time limit of 3 s" in results["failures"][0]["error"]


LATE_RAISE = textwrap.dedent("""\
    import numpy as np
    from automl.strategies import Strategy, Suggestion

    class LateRaise(Strategy):
        name = "late_raise"
        n = 0

        def ask(self):
            self.n += 1
            if self.n > 2:
                raise ValueError("third ask")
            return Suggestion(str(self.n), self.space.sample(np.random.default_rng(self.n)))

        def tell(self, observation):
            pass
    """)


def worker_pids(db) -> set[int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
        try:
            workers = [w for (w,) in con.execute("SELECT worker FROM trials WHERE worker IS NOT NULL")]
        except sqlite3.OperationalError:
            return set()
    return {int(w.rsplit(":", 1)[1]) for w in workers if ":" in w}


@pytest.mark.parametrize("ending, exit_code", [("done", 0), ("sigint", 130), ("sigterm", 130), ("error", 1)])
def test_no_process_is_left_behind(tmp_path, ending, exit_code):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "late_raise.py").write_text(LATE_RAISE)
    spec = write_spec(tmp_path, data={"source": "builtin", "name": "sklearn:digits"}, plugins_dirs=["plugins"],
                      strategy={"name": "late_raise" if ending == "error" else "random"},
                      families={"include": ["mlp"], "overrides": {"batch_size": {"choices": [32]}}},
                      budget={"max_trials": 3, "max_epochs": 30 if ending.startswith("sig") else 3},
                      execution={"isolation": "processes", "workers": 2})
    db = tmp_path / "run" / "trials.db"
    process = subprocess.Popen([sys.executable, "-m", "automl.cli", "run", str(spec), "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while ending.startswith("sig") and len(worker_pids(db) if db.exists() else ()) < 2:
        assert process.poll() is None and time.time() < deadline, process.stderr.read() if process.poll() else ""
        time.sleep(0.05)
    if ending.startswith("sig"):
        process.send_signal(signal.SIGINT if ending == "sigint" else signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    pids = worker_pids(db)
    assert pids
    deadline = time.time() + 10
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)]
