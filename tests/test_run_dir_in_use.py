"""A second driver on a run directory in use is refused at once, before it loads the data;
the early look creates nothing, and a directory that is free runs as before."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import automl.agent
from automl.agent import Agent
from automl.errors import RunDirError
from automl.rundir import HOLDER_FILE, LOCK_FILE, RunLock
from automl.spec import load_spec
from tests.conftest import write_spec


def no_data_load(*args, **kwargs):
    raise AssertionError("the data was loaded (make_plan called) for a run directory in use")


def test_a_run_directory_held_by_another_driver_is_refused_before_the_data_loads(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path))
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from automl.rundir import RunLock
        lock = RunLock({str(run)!r})
        lock.acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(automl.agent, "make_plan", no_data_load)
        with pytest.raises(RunDirError, match=f"in use by process {holder.pid} on host"):
            Agent(spec).run()
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE, HOLDER_FILE]  # the holder's, nothing of ours
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_the_early_look_creates_nothing_and_lets_a_free_directory_through(tmp_path):
    missing = tmp_path / "not-yet"
    RunLock(missing).check_free()
    assert not missing.exists()

    free = tmp_path / "free"
    with RunLock(free):
        pass  # a finished run leaves its lock file
    before = sorted(os.listdir(free))
    RunLock(free).check_free()
    assert sorted(os.listdir(free)) == before
    with RunLock(free):  # and the real acquisition still works after the look
        pass
