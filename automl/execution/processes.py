"""Run trials in long-lived worker processes, one per slot, for isolation.

A trial that segfaults, is killed, exits, or hangs in native code takes only its
worker down: the driver ends it FAILED ("crashed" or "timeout") and starts a fresh
worker for the slot. Workers are spawned (no fork of a driver that may hold CUDA or
threads), build their runner once with `setup(slot)` (torch and the data are loaded
once per worker, not per trial) and run one trial at a time. Each worker leads its own
session, so a kill of its process group also takes whatever the trial started.

Worker -> driver messages travel over one Pipe per worker, read with
multiprocessing.connection.wait, rather than over a shared Queue: a Queue has a feeder
thread and one lock shared by every writer, so a worker killed while putting could
hold that lock forever or leave half a message in the stream that every worker shares.
With a pipe per worker a killed writer only ends its own stream (EOF, which is also how
a death is noticed at once), and nothing stands between a message and the driver.

All search state stays in the driver; time limits are enforced there too, whenever
events() runs (it wakes at least every POLL_INTERVAL seconds while it waits).
"""
from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from automl.execution.base import Reply, Runner, TrialEvent, TrialOutcome, TrialRequest
from automl.execution.slots import Slot, plan_slots
from automl.execution.threads import REPLY_TIMEOUT, classify_failure

__all__ = ["ProcessExecutor", "Slot", "plan_slots"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2  # longest sleep of events() while trials run: time limits are checked this often
KILL_WAIT = 2.0  # a SIGKILLed process is gone in milliseconds unless stuck in the kernel
MAX_START_FAILURES = 3  # a slot whose fresh workers die before they are ready this often in a row is given up


# -- the worker process ------------------------------------------------------------------------------

class _Stop(Exception):
    """The driver has gone away: end the worker."""


def _watch_driver(driver_pid: int) -> None:
    # the pipe tells an idle or reporting worker that the driver is gone, but a trial busy
    # for hours (or hung) would outlive a driver killed with SIGKILL: watch the parent too
    while os.getppid() == driver_pid:
        time.sleep(1.0)
    if hasattr(os, "killpg"):
        os.killpg(os.getpgrp(), signal.SIGKILL)  # the trial's children with us
    os._exit(1)


def _worker_main(slot: Slot, setup_bytes: bytes, conn: multiprocessing.connection.Connection) -> None:
    if hasattr(os, "setsid"):
        os.setsid()  # own session and group: one killpg takes the trial's children too, and Ctrl-C in
        # the terminal reaches only the driver, which shuts the workers down in order
    threading.Thread(target=_watch_driver, args=(os.getppid(),), name="automl-driver-watch", daemon=True).start()
    os.environ.update(slot.env)  # before the setup imports torch or touches CUDA
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if name not in slot.env:
            os.environ[name] = str(slot.torch_threads)
    runner: Runner | None = None
    setup_error = None
    try:
        runner = pickle.loads(setup_bytes)(slot)
    except BaseException:  # reported with every trial sent here, so the run fails visibly, not in a loop
        setup_error = traceback.format_exc().strip()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(slot.torch_threads)
    try:
        conn.send(("ready",))
        exiting = False
        while not exiting:
            message = conn.recv()
            if message[0] == "run":
                exiting = _run_one(conn, runner, setup_error, slot, message[1], message[2])
            elif message[0] == "exit":
                exiting = True
            # anything else is a stop or answer for a trial that has already ended
    except (EOFError, OSError, _Stop):
        pass  # the driver is gone: nobody is left to report to


def _run_one(conn, runner: Runner | None, setup_error: str | None, slot: Slot, run_id: int,
             request: TrialRequest) -> bool:
    """Run one trial; return True when the driver asked the worker to exit meanwhile."""
    state = {"stop": False, "exit": False}

    def handle(message: tuple) -> None:
        if message[0] == "exit":
            state["stop"] = state["exit"] = True
        elif message[0] == "stop" and message[1] == run_id:
            state["stop"] = True

    def report(epoch: int, metrics: dict) -> bool:
        conn.send(("epoch", epoch, dict(metrics)))
        deadline = time.monotonic() + REPLY_TIMEOUT  # a driver that never answers must not hang us
        while not state["stop"]:  # a stopped trial does not wait for an answer
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if conn.poll(min(left, 1.0)):
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    raise _Stop from None  # unwinds the runner: there is no driver to train for
                # answers carry the run id and epoch: a late answer to an earlier trial is ignored
                if message[0] == "answer" and message[1] == run_id and message[2] == epoch:
                    return bool(message[3]) or state["stop"]
                handle(message)
        return True

    conn.send(("started",))
    try:
        if runner is None:
            raise RuntimeError(f"setup of worker slot {slot.index} failed:\n{setup_error}")
        outcome = runner(request, report)
    except _Stop:
        raise
    except BaseException as error:  # any failure of one trial is data, not the end of the worker
        outcome = TrialOutcome("FAILED", None, reason=classify_failure(error),
                               error="".join(traceback.format_exception(error)).strip())
    try:
        conn.send(("finished", outcome))
    except (pickle.PicklingError, TypeError, AttributeError) as error:  # pickled before a byte is written
        conn.send(("finished", TrialOutcome("FAILED", None, reason="exception",
                                            error=f"the trial's outcome could not be sent to the driver: {error!r}")))
    return state["exit"]


# -- the driver side ------------------------------------------------------------------------------

@dataclass
class _Trial:
    request: TrialRequest
    run_id: int
    started: float | None = None  # time.monotonic() when the worker said it started
    epochs: int = 0
    stop_sent: bool = False  # stop() is sent once: a driver calling it every loop must not fill the pipe


@dataclass
class _Worker:
    slot: Slot
    process: Any  # multiprocessing's SpawnProcess
    conn: multiprocessing.connection.Connection
    ready: bool = False
    broken_pipe: bool = False
    trial: _Trial | None = None

    @property
    def name(self) -> str:
        return f"process-{self.slot.index}:{self.process.pid}"


def _kill_group(process) -> None:
    """SIGKILL the worker's process group (the trial's children included), then the worker itself."""
    pid = process.pid
    if pid is None:
        return
    # the group outlives a reaped leader while children of it live, and its id cannot be
    # reused meanwhile, so killpg after the worker was reaped still only hits our processes
    if hasattr(os, "killpg"):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # no group yet (killed before setsid) or already gone
    if process.exitcode is None:  # never os.kill a pid that was reaped: it may be reused
        process.kill()


def _death_cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "worker process closed its pipe"
    if exitcode < 0:
        try:
            return f"worker process died with signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"worker process died with signal {-exitcode}"
    return f"worker process exited with code {exitcode}"


def _kill_all(workers: list[_Worker]) -> None:
    """Last resort (garbage collection, interpreter exit): leave no worker behind."""
    for worker in workers:
        _kill_group(worker.process)
    for worker in workers:
        worker.process.join(KILL_WAIT)
        worker.conn.close()


_LIVE: set[weakref.finalize] = set()


@atexit.register  # registered after multiprocessing's own exit hook, so it runs first: that hook
def _kill_live_workers() -> None:  # joins non-daemon children and would wait forever on a hung trial
    for finalizer in list(_LIVE):
        finalizer()


class ProcessExecutor:
    """The Executor contract over worker processes; `setup(slot) -> Runner` runs once in each."""

    def __init__(self, setup: Callable[[Slot], Runner], slots: list[Slot]):
        if not slots:
            raise ValueError("ProcessExecutor needs at least one slot")
        try:  # fail here, with a clear message, rather than in every worker
            self._setup_bytes = pickle.dumps(setup)
        except Exception as error:
            raise TypeError(f"setup must be picklable (a top-level function or a functools.partial of one): "
                            f"{error}") from error
        self._context = multiprocessing.get_context("spawn")  # fork would copy driver threads and CUDA state
        self._lock = threading.RLock()
        self._pending: list[TrialEvent] = []
        self._run_ids = itertools.count(1)
        self._start_failures = [0] * len(slots)
        self._broken: set[int] = set()  # slot positions given up on
        self._closed = False
        self._shut_down = False
        self._workers: list[_Worker] = []  # mutated in place: the finalizer holds this very list
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)
        _LIVE.difference_update([f for f in _LIVE if not f.alive])  # those of executors collected meanwhile
        _LIVE.add(self._finalizer)
        for slot in slots:
            self._workers.append(self._start(slot))

    def _start(self, slot: Slot) -> _Worker:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_worker_main, args=(slot, self._setup_bytes, theirs),
                                        name=f"automl-slot-{slot.index}")  # not daemon: trials may start processes
        process.start()
        theirs.close()  # only the worker may hold its end, or its death would never read as EOF here
        log.debug("started worker pid %d for slot %d (%s)", process.pid, slot.index, slot.device)
        return _Worker(slot, process, ours)

    # -- the contract --------------------------------------------------------------------------
    def capacity(self) -> int:
        with self._lock:
            if self._closed:
                return 0
            return sum(1 for i, w in enumerate(self._workers) if w.trial is None and i not in self._broken)

    def running(self) -> list[str]:
        with self._lock:
            return [w.trial.request.trial_id for w in self._workers if w.trial is not None]

    def idle(self) -> bool:
        """No trial running and no event waiting to be read."""
        with self._lock:
            return not self._pending and all(w.trial is None for w in self._workers)

    def worker_pids(self) -> list[int]:
        """The pids of the current workers, by slot."""
        with self._lock:
            return [w.process.pid for w in self._workers]

    def submit(self, request: TrialRequest) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is shut down")
            self._poll()  # replace a worker that died while idle before giving it a trial
            free = [i for i, w in enumerate(self._workers) if w.trial is None and i not in self._broken]
            if not free:
                raise RuntimeError("no free worker slot")
            trial = _Trial(request, next(self._run_ids))
            try:
                message = pickle.dumps(("run", trial.run_id, request))
            except Exception as error:  # a config that cannot travel fails as a trial, not the driver
                self._pending += [TrialEvent("started", request.trial_id, "driver"),
                                  TrialEvent("finished", request.trial_id, "driver", outcome=TrialOutcome(
                                      "FAILED", None, reason="exception",
                                      error=f"the trial request could not be sent to a worker: {error!r}"))]
                return
            worker = self._workers[free[0]]
            worker.trial = trial
            # should the worker die right now, the send fails quietly and the next events() ends
            # the trial as crashed: submit itself never fails on a dead worker
            self._send(worker, message, raw=True)

    def stop(self, trial_id: str) -> None:
        with self._lock:
            for worker in self._workers:
                trial = worker.trial
                if trial is not None and trial.request.trial_id == trial_id and not trial.stop_sent:
                    trial.stop_sent = True
                    self._send(worker, ("stop", trial.run_id))

    def events(self, timeout: float | None = None) -> list[TrialEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                self._poll()
                if self._pending or self._closed:
                    out, self._pending = self._pending, []
                    return out
                if len(self._broken) == len(self._workers):
                    raise RuntimeError("every worker slot failed to start its worker process "
                                       f"{MAX_START_FAILURES} times in a row; see the log for why")
                handles = [w.process.sentinel for i, w in enumerate(self._workers) if i not in self._broken]
                handles += [w.conn for i, w in enumerate(self._workers) if i not in self._broken and not w.broken_pipe]
            left = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - time.monotonic())
            if left <= 0:
                return []
            multiprocessing.connection.wait(handles, left)

    def shutdown(self, wait: float = 5.0) -> None:
        """Ask every trial to stop and every worker to exit, wait up to `wait` s, then kill the
        process groups. Trials cut off this way send no outcome: they stay to be resumed."""
        with self._lock:
            if self._shut_down:
                return
            self._closed = True
            for worker in self._workers:
                if worker.trial is not None:
                    self._send(worker, ("stop", worker.trial.run_id))
                self._send(worker, ("exit",))
            for event in self._pending:
                event.answer(True)  # nobody waits on a driver that has left
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                self._poll()  # keeps outcomes that still arrive, for a last events() call
                alive = [w.process.sentinel for w in self._workers if w.process.exitcode is None]
            if not alive:
                break
            multiprocessing.connection.wait(alive, min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        with self._lock:
            self._finalizer()  # kills every group (again: cheap) and reaps the workers
            _LIVE.discard(self._finalizer)
            self._shut_down = True
            for worker in self._workers:
                if worker.process.exitcode is None:
                    log.warning("worker pid %d did not die after SIGKILL (stuck in the kernel?)", worker.process.pid)

    # -- internals -------------------------------------------------------------------------------
    def _send(self, worker: _Worker, message, raw: bool = False) -> None:
        try:
            worker.conn.send_bytes(message) if raw else worker.conn.send(message)
        except (OSError, ValueError):  # a dead worker: its death is handled by _poll
            worker.broken_pipe = True

    def _answer(self, worker: _Worker, run_id: int, epoch: int, stop: bool) -> None:
        with self._lock:
            if worker.trial is not None and worker.trial.run_id == run_id:
                self._send(worker, ("answer", run_id, epoch, bool(stop)))

    def _poll(self) -> None:
        """Read what every worker sent; end the trials of dead workers and of those past their limit."""
        now = time.monotonic()
        for position, worker in enumerate(self._workers):
            if position in self._broken:
                continue
            self._drain(position, worker)
            if self._closed:
                continue  # workers are exiting on purpose now; shutdown reaps them
            if worker.broken_pipe or worker.process.exitcode is not None:
                self._on_death(position, worker)
                continue
            trial = worker.trial
            limit = trial.request.time_limit if trial is not None else None
            if limit is not None and trial.started is not None and now - trial.started > limit:
                self._kill_trial(position, worker, "timeout",
                                 f"trial {trial.request.trial_id} ran past its time limit of {limit:g} s; "
                                 f"its worker process group (pid {worker.process.pid}) was killed with SIGKILL")

    def _drain(self, position: int, worker: _Worker) -> None:
        while not worker.broken_pipe:
            try:
                if not worker.conn.poll(0):
                    return
                message = worker.conn.recv()
            except (EOFError, OSError):  # the writer died, maybe in the middle of a message
                worker.broken_pipe = True
                return
            self._receive(position, worker, message)

    def _receive(self, position: int, worker: _Worker, message: tuple) -> None:
        kind, trial = message[0], worker.trial
        if kind == "ready":
            worker.ready = True
            self._start_failures[position] = 0
            return
        if trial is None:
            log.debug("worker %s sent %r with no trial running; ignored", worker.name, kind)
            return
        trial_id = trial.request.trial_id
        if kind == "started":
            trial.started = time.monotonic()
            self._pending.append(TrialEvent("started", trial_id, worker.name))
        elif kind == "epoch":
            trial.epochs += 1
            reply = lambda stop, w=worker, r=trial.run_id, e=message[1]: self._answer(w, r, e, stop)  # noqa: E731
            self._pending.append(TrialEvent("epoch", trial_id, worker.name, epoch=message[1], metrics=message[2],
                                            reply=Reply(reply)))
        elif kind == "finished":
            worker.trial = None  # the slot is free exactly when its outcome is queued: idle() stays true to it
            self._pending.append(TrialEvent("finished", trial_id, worker.name, outcome=message[1]))

    def _on_death(self, position: int, worker: _Worker) -> None:
        # a dying process closes its pipe a moment before it can be reaped: give it that moment,
        # so the cause names its signal or exit code, not our own SIGKILL
        worker.process.join(KILL_WAIT)
        cause = _death_cause(worker.process.exitcode)
        _kill_group(worker.process)  # the trial's own children may have outlived it
        worker.process.join(KILL_WAIT)
        self._drain(position, worker)
        if not worker.ready:
            self._start_failures[position] += 1
        if worker.trial is not None:
            log.warning("%s while running trial %s (slot %d, pid %s)", cause, worker.trial.request.trial_id,
                        worker.slot.index, worker.process.pid)
            self._fail(worker, "crashed", f"{cause} while running trial {worker.trial.request.trial_id} "
                                          f"(slot {worker.slot.index}, pid {worker.process.pid})")
        else:
            log.warning("%s while idle (slot %d, pid %s)", cause, worker.slot.index, worker.process.pid)
        self._replace(position, worker)

    def _kill_trial(self, position: int, worker: _Worker, reason: str, error: str) -> None:
        _kill_group(worker.process)
        worker.process.join(KILL_WAIT)
        self._drain(position, worker)  # it may have finished in the meantime: then that outcome stands
        if worker.trial is not None:
            log.warning("%s", error)
            self._fail(worker, reason, error)
        self._replace(position, worker)

    def _fail(self, worker: _Worker, reason: str, error: str) -> None:
        trial, worker.trial = worker.trial, None
        trial_id = trial.request.trial_id
        if trial.started is None:  # keep started -> finished for every trial, even one that never began
            self._pending.append(TrialEvent("started", trial_id, worker.name))
        self._pending.append(TrialEvent("finished", trial_id, worker.name,
                                        outcome=TrialOutcome("FAILED", None, epochs=trial.epochs, reason=reason,
                                                             error=error)))

    def _replace(self, position: int, worker: _Worker) -> None:
        worker.conn.close()
        if self._start_failures[position] >= MAX_START_FAILURES:
            log.error("worker processes for slot %d died %d times before they were ready; the slot is given up",
                      worker.slot.index, self._start_failures[position])
            self._broken.add(position)
            return
        self._workers[position] = self._start(worker.slot)
