"""The run-directory lock: one run at a time, the holder named, released when the holder dies;
and the resume check on a directory whose trial database cannot be read."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from automl.errors import RunDirError
from automl.rundir import HOLDER_FILE, LOCK_FILE, RunLock, prepare_run_dir

DEADLINE_S = 60.0  # generous: the machine may be busy; the waits end as soon as the condition holds


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunDirError) as caught:
            RunLock(tmp_path / "run").acquire()
    message = str(caught.value)
    assert f"process {os.getpid()}" in message and socket.gethostname() in message and "since" in message
    assert "another --out" in message


def test_the_lock_is_free_again_after_release(tmp_path):
    run = tmp_path / "run"
    with RunLock(run):
        assert (run / HOLDER_FILE).exists()
    assert not (run / HOLDER_FILE).exists()
    with RunLock(run):  # by a new holder
        pass


def test_the_lock_of_a_killed_holder_is_released_by_the_os(tmp_path):
    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from automl.rundir import RunLock
        lock = RunLock({str(run)!r})  # held while referenced
        lock.acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"process {child.pid} on host"):
            RunLock(run).acquire()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=DEADLINE_S)
        lock = RunLock(run)

        def acquired() -> bool:
            try:
                lock.acquire()
            except RunDirError:
                return False
            return True

        wait_for(acquired, "the killed holder's lock to be released")
        assert f'"pid": {os.getpid()}' in (run / HOLDER_FILE).read_text()  # the stale holder replaced
        lock.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()


def test_overwrite_keeps_the_lock_and_removes_the_rest(tmp_path):
    run = tmp_path / "run"
    with RunLock(run):
        (run / "trials.db").write_text("old")
        (run / "checkpoints").mkdir()
        assert prepare_run_dir(run, {"spec": 1}, overwrite=True) is False
        assert sorted(p.name for p in run.iterdir()) == sorted([LOCK_FILE, HOLDER_FILE])


def test_resuming_over_a_damaged_database_is_refused_naming_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "trials.db").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(RunDirError, match="trials.db.*restore it"):
        prepare_run_dir(run, {"spec": 1}, overwrite=False)
