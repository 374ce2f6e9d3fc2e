"""One suite for every executor backend: what the search loop relies on.

The runner is a top-level function so that worker processes can import it by name;
its config picks the behaviour under test.
"""
from __future__ import annotations

import ipaddress
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from automl.execution.base import TrialOutcome, TrialRequest
from automl.execution.processes import ProcessExecutor, plan_slots
from automl.execution.ray_backend import local_system_config
from automl.execution.threads import ThreadExecutor


def run_trial(request: TrialRequest, report) -> TrialOutcome:
    config = request.config
    mode = config.get("mode", "ok")
    if mode == "raise":
        raise ValueError(f"boom in {request.trial_id}")
    if mode == "oom_message":
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    if mode == "oom_torch":
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    if mode == "exit":
        os._exit(3)
    if mode == "segfault":
        import ctypes

        ctypes.string_at(0)  # a real invalid read, as native code would do it
    if mode == "crash_resumed":  # goes on at the epoch after the last attempt's, crashes after 2 epochs (at once after 2 crashes)
        counter = Path(config["counter"])
        crashes = int(counter.read_text()) if counter.exists() else 0
        for epoch in range(2 * crashes + 1, 2 * crashes + 3) if crashes < 2 else ():
            report(epoch, {"loss": 1.0 / epoch})
        counter.write_text(str(crashes + 1))
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hold_gil":  # native code that never lets another thread of the worker run
        sum(range(10**14))
    if mode in ("hang", "ignore_sigterm", "child"):
        if mode == "ignore_sigterm":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if mode == "child":  # a process of the trial's own, which a kill must take too
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            with open(config["pidfile"], "w") as f:
                f.write(str(child.pid))
        while True:
            time.sleep(0.05)
    if mode == "sync":  # a checkpoint after epoch 1: only once the driver has answered (committed) it
        report(1, {"loss": 1.0})
        report.sync()
        return TrialOutcome("COMPLETE", 1.0, {"loss": 1.0}, epochs=1)
    value = math.nan
    for epoch in range(1, int(request.budget) + 1):
        time.sleep(config.get("sleep", 0.01))
        value = math.nan if mode == "nan" else 1.0 / epoch
        if report(epoch, {"loss": value}):
            return TrialOutcome("PRUNED", value, {"loss": value}, epochs=epoch)
    if mode == "nan":
        return TrialOutcome("FAILED", None, epochs=int(request.budget), reason="diverged")
    return TrialOutcome("COMPLETE", value, {"loss": value}, epochs=int(request.budget))


def setup(slot) -> object:
    """What each worker process calls once: here the runner needs no preparation."""
    return run_trial


# a deadline for a state to be reached, never a wait: generous, as a Ray actor on a machine at
# load 10 took over 30 s to report its first epoch
DEADLINE = 180.0


def collect(executor, trial_ids, answer=lambda event: False, timeout: float = DEADLINE) -> list:
    """Poll until every trial in trial_ids has finished, answering epoch events with answer(event)."""
    waiting, events = set(trial_ids), []
    deadline = time.monotonic() + timeout
    while waiting:
        assert time.monotonic() < deadline, f"trials {sorted(waiting)} unfinished after {timeout} s: {events}"
        for event in executor.events(0.2):
            events.append(event)
            if event.kind == "epoch":
                event.answer(answer(event))
            elif event.kind == "finished":
                waiting.discard(event.trial_id)
    return events


def outcome_of(events, trial_id: str) -> TrialOutcome:
    return next(e.outcome for e in events if e.kind == "finished" and e.trial_id == trial_id)


def of_trial(events, trial_id: str) -> list:
    return [e for e in events if e.trial_id == trial_id]


REPO = Path(__file__).resolve().parents[2]


def ray_processes(temp_dir: str) -> dict[int, str]:
    """Live processes of the Ray session under temp_dir, by pid: the ones that name its folder
    (raylet, GCS, ...) and the descendants of this process that Ray has renamed ("ray::...", its workers)."""
    table = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # gone meanwhile, or not a process
            continue
        if entry.name.isdigit() and fields[0] != "Z":  # a zombie is dead, only not yet reaped
            table[int(entry.name)] = (int(fields[1]), cmdline)
    ours = {os.getpid()}
    for _ in range(8):  # descendants, a few generations down
        ours |= {pid for pid, (parent, _) in table.items() if parent in ours}
    return {pid: cmdline for pid, (_, cmdline) in table.items()
            if temp_dir in cmdline or (pid in ours and cmdline.startswith("ray::"))}


def listening_sockets(pids) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket the processes listen on, from /proc (Linux)."""
    owner = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd) if fd.is_symlink() else ""
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
        except OSError:  # gone meanwhile
            continue
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()  # local address as hex IP:port; state 0A is LISTEN; the socket's inode
            if fields[3] == "0A" and fields[9] in owner:
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.append((owner[fields[9]], socket.inet_ntop(family, raw), int(port, 16)))
    return found


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address.removeprefix("::ffff:")).is_loopback  # IPv4 mapped into IPv6 too


def start_local_ray(**resources):
    """Start a private local Ray for one test module; yield; shut it down and check nothing is left.

    HOME and TMPDIR point into a temporary folder (Ray writes ~/.ray and temp files), and the
    folder is short: Ray's socket paths under it must stay below the 107 characters Unix allows.
    PYTHONPATH makes this repository's `tests` importable by the workers, which load the
    runners of these tests by name."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")
    root = tempfile.mkdtemp(prefix="automl-ray-", dir="/tmp")
    temp_dir = os.path.join(root, "ray")
    with pytest.MonkeyPatch.context() as env:  # Ray's processes keep this environment; ours gets its own back
        env.setenv("HOME", root)
        env.setenv("TMPDIR", root)
        env.setenv("RAY_AUTH_MODE", "disabled")  # a private local cluster needs no token
        env.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, logging_level="WARNING",
                 log_to_driver=False, _system_config=local_system_config(), **resources)
    try:
        yield ray
    finally:
        session = ray_processes(temp_dir)  # before the shutdown: workers reparented after it are no longer ours
        ray.shutdown()
        deadline = time.monotonic() + 15
        while (left := set(session) & set(ray_processes(temp_dir))) and time.monotonic() < deadline:
            time.sleep(0.1)
        left |= set(ray_processes(temp_dir))
        shutil.rmtree(root, ignore_errors=True)
        if not Path("/proc").is_dir():
            return  # no process table to read (not Linux): the check below needs one
        assert session, "no process of the Ray session was found: the check below would prove nothing"
        assert not left, f"Ray processes outlived ray.shutdown(): {[session.get(p, p) for p in left]}"


@pytest.fixture(scope="module")
def local_ray():
    yield from start_local_ray()


@pytest.fixture(params=["threads", "processes", "ray"])
def make_executor(request):
    made = []
    if request.param == "ray":
        request.getfixturevalue("local_ray")

    def make(slots: int = 1):
        if request.param == "threads":
            executor = ThreadExecutor(setup, plan_slots("cpu", slots, cpu_count=slots))
        elif request.param == "processes":
            executor = ProcessExecutor(setup, plan_slots("cpu", slots, cpu_count=slots))
        else:
            from automl.execution.ray_backend import RayExecutor

            executor = RayExecutor(setup, workers=slots)
        made.append(executor)
        return executor

    make.kind = request.param
    yield make
    for executor in made:
        executor.shutdown()


def needs_processes(make) -> None:
    if make.kind == "threads":
        pytest.skip("a thread's crash is the driver's crash: only worker processes and Ray actors isolate")


def test_events_arrive_in_order_per_trial(make_executor):
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": "ok"}, 3, time_limit=60))  # a limit far off changes nothing
    assert executor.running() == ["t1"]
    events = collect(executor, ["t1"])
    assert [e.kind for e in events] == ["started", "epoch", "epoch", "epoch", "finished"]
    assert [e.epoch for e in events if e.kind == "epoch"] == [1, 2, 3]
    assert events[1].metrics == {"loss": 1.0}
    assert len({e.worker for e in events}) == 1 and events[0].worker
    outcome = events[-1].outcome
    assert (outcome.status, outcome.epochs, outcome.loss) == ("COMPLETE", 3, pytest.approx(1 / 3))
    assert executor.running() == [] and executor.idle()


def test_answer_true_stops_the_trial(make_executor):
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": "ok"}, 10))
    events = collect(executor, ["t1"], answer=lambda event: event.epoch == 2)
    assert [e.epoch for e in events if e.kind == "epoch"] == [1, 2]
    outcome = outcome_of(events, "t1")
    assert (outcome.status, outcome.epochs) == ("PRUNED", 2)


def test_a_trial_no_strategy_prunes_trains_on_without_waiting_for_answers(make_executor):
    """Where the strategy never prunes, the driver's answers (and how busy it is) do not hold a
    worker up: unanswered epochs still finish the trial, and a stop answer still ends it."""
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": "ok"}, 4, awaits_answers=False))
    events, deadline = [], time.monotonic() + DEADLINE
    while not any(e.kind == "finished" for e in events):  # never answered
        assert time.monotonic() < deadline, events
        events += executor.events(0.2)
    assert [e.epoch for e in events if e.kind == "epoch"] == [1, 2, 3, 4]
    assert outcome_of(events, "t1").status == "COMPLETE"
    executor.submit(TrialRequest("t2", {"mode": "ok", "sleep": 0.05}, 10_000, awaits_answers=False))
    outcome = outcome_of(collect(executor, ["t2"], answer=lambda event: event.epoch == 2), "t2")
    assert outcome.status == "PRUNED" and outcome.epochs < 10_000


def test_sync_waits_until_the_driver_answered_the_last_epoch(make_executor):
    """What the trainer calls before a checkpoint: the epochs it holds are committed by then."""
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": "sync"}, 1, awaits_answers=False))
    events, deadline = [], time.monotonic() + DEADLINE
    while not any(e.kind == "epoch" for e in events):
        assert time.monotonic() < deadline, events
        events += executor.events(0.2)
    quiet_until = time.monotonic() + 1.0
    while time.monotonic() < quiet_until:  # unanswered: the runner waits in sync
        events += executor.events(0.1)
    assert not any(e.kind == "finished" for e in events)
    next(e for e in events if e.kind == "epoch").answer(False)
    events += collect(executor, ["t1"])
    assert outcome_of(events, "t1").status == "COMPLETE"


def test_two_slots_run_two_trials_at_once(make_executor):
    executor = make_executor(2)
    assert executor.capacity() == 2
    executor.submit(TrialRequest("a", {"mode": "ok"}, 2))
    assert executor.capacity() == 1
    executor.submit(TrialRequest("b", {"mode": "ok"}, 2))
    assert executor.capacity() == 0 and sorted(executor.running()) == ["a", "b"]
    with pytest.raises(RuntimeError):
        executor.submit(TrialRequest("c", {"mode": "ok"}, 2))
    # each trial waits for the answer to its first epoch: both first epochs can only
    # arrive while neither is answered if the two trials really run side by side
    held, events, deadline = {}, [], time.monotonic() + DEADLINE
    while len(held) < 2:
        assert time.monotonic() < deadline, f"the two trials did not overlap: {events}"
        for event in executor.events(0.2):
            events.append(event)
            if event.kind == "epoch":
                held[event.trial_id] = event
    assert not executor.idle()
    for event in held.values():
        event.answer(False)
    events += collect(executor, ["a", "b"])
    assert outcome_of(events, "a").status == outcome_of(events, "b").status == "COMPLETE"
    assert len({e.worker for e in events if e.trial_id == "a"} | {e.worker for e in events if e.trial_id == "b"}) == 2
    assert executor.capacity() == 2 and executor.idle()


@pytest.mark.parametrize("mode, reason, text", [("raise", "exception", "ValueError: boom in t1"),
                                                ("oom_message", "oom", "CUDA out of memory")])
def test_runner_exception_fails_the_trial(make_executor, mode, reason, text):
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": mode}, 3))
    events = collect(executor, ["t1"])
    assert [e.kind for e in events] == ["started", "finished"]
    outcome = outcome_of(events, "t1")
    assert (outcome.status, outcome.reason) == ("FAILED", reason)
    assert "Traceback" in outcome.error and text in outcome.error
    executor.submit(TrialRequest("t2", {"mode": "ok"}, 1))  # the slot survives a failed trial
    assert outcome_of(collect(executor, ["t2"]), "t2").status == "COMPLETE"


def test_nan_metrics_and_own_failures_pass_through(make_executor):
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": "nan"}, 2))
    events = collect(executor, ["t1"])
    assert all(math.isnan(e.metrics["loss"]) for e in events if e.kind == "epoch")
    outcome = outcome_of(events, "t1")
    assert (outcome.status, outcome.reason, outcome.epochs) == ("FAILED", "diverged", 2)


def test_stop_ends_the_trial_at_its_next_epoch(make_executor):
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": "ok"}, 100))
    events, deadline = [], time.monotonic() + DEADLINE
    while not any(e.kind == "epoch" for e in events):
        assert time.monotonic() < deadline
        events += executor.events(0.2)
    first_epoch = next(e for e in events if e.kind == "epoch")
    executor.stop("t1")  # the epoch is left unanswered: a stopped trial must not wait for it
    executor.stop("t1")
    executor.stop("no-such-trial")
    events += collect(executor, ["t1"])
    outcome = outcome_of(events, "t1")
    assert (outcome.status, outcome.epochs) == ("PRUNED", 1)
    first_epoch.answer(False)  # late: must reach no later trial
    executor.submit(TrialRequest("t2", {"mode": "ok"}, 3))
    outcome = outcome_of(collect(executor, ["t2"]), "t2")
    assert (outcome.status, outcome.epochs) == ("COMPLETE", 3)


def test_shutdown_is_idempotent_and_final(make_executor):
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": "ok"}, 10_000))
    deadline = time.monotonic() + DEADLINE
    while not any(e.kind == "epoch" for e in executor.events(0.2)):  # running, waiting for an answer
        assert time.monotonic() < deadline
    started = time.monotonic()
    executor.shutdown()
    executor.shutdown()
    assert time.monotonic() - started < 10
    assert executor.capacity() == 0
    with pytest.raises(RuntimeError):
        executor.submit(TrialRequest("t2", {"mode": "ok"}, 1))
    started = time.monotonic()
    executor.events(0)
    assert time.monotonic() - started < 1


def test_events_returns_within_its_timeout_when_idle(make_executor):
    executor = make_executor()
    for timeout in (0, 0.3):
        started = time.monotonic()
        assert executor.events(timeout) == []
        assert time.monotonic() - started < timeout + 0.5
    assert executor.idle() and executor.running() == []


def test_time_limit_kills_a_hung_trial(make_executor):
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": "hang"}, 3, time_limit=0.5))
    outcome = outcome_of(collect(executor, ["t1"]), "t1")
    assert (outcome.status, outcome.reason) == ("FAILED", "timeout")


def test_a_crash_fails_only_its_trial(make_executor):
    needs_processes(make_executor)
    executor = make_executor()
    executor.submit(TrialRequest("t1", {"mode": "exit"}, 3))
    outcome = outcome_of(collect(executor, ["t1"]), "t1")
    assert (outcome.status, outcome.reason) == ("FAILED", "crashed")
    executor.submit(TrialRequest("t2", {"mode": "ok"}, 1))
    assert outcome_of(collect(executor, ["t2"]), "t2").status == "COMPLETE"
