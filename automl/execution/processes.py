"""Run trials in long-lived worker processes, one per slot, for isolation.

A trial that segfaults, is killed, exits, or hangs in native code takes only its
worker down: the pool (pool.py) ends it FAILED ("crashed" or "timeout") and starts a
fresh worker for the slot. Workers are spawned (no fork of a driver that may hold CUDA
or threads), build their runner once with `setup(slot)` (torch and the data are loaded
once per worker, not per trial) and run the loop of worker.py, one trial at a time.
Each worker leads its own session, so a kill of its process group also takes whatever
the trial started, and Ctrl-C in the terminal reaches only the driver, which shuts the
workers down in order. Workers are not daemons (a trial may start processes of its
own); they watch their parent instead, so a driver killed with SIGKILL takes them along: on
Linux the kernel kills a worker the moment its driver dies (the parent-death signal, even
while the trial is stuck in native code); elsewhere a thread of the worker notices within
about a second and kills the worker's group.

Messages travel over one Pipe per worker, read with multiprocessing.connection.wait,
rather than over a shared Queue: a Queue has a feeder thread and one lock shared by
every writer, so a worker killed while putting could hold that lock forever or leave
half a message in the stream that every worker shares. With a pipe per worker a killed
writer only ends its own stream (EOF, which is also how a death is noticed at once),
and nothing stands between a message and the driver.

No worker outlives its executor: shutdown kills every group, a finalizer does when the
executor is collected, and an exit hook does at interpreter exit.

Workers may start before their setup exists (`ProcessExecutor.prestart(slots)`): they apply
their slot's environment, import what the setup will need (torch, the trainer) while the
driver loads the data and plans, and wait on their pipe for ("setup", bytes). The handle's
`ready(setup)` hands them the setup and returns the executor; closed or collected before
that (the plan failed), it kills them like an executor would, and each dies with the driver.
"""
from __future__ import annotations

import atexit
import ctypes
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from automl.execution.base import Runner
from automl.execution.pool import WorkerPool
from automl.execution.slots import Slot, plan_slots
from automl.execution.worker import DriverGone, apply_slot_env, build_in_process, exit_without_teardown, serve
from automl.records import Reason

__all__ = ["PrestartedWorkers", "ProcessExecutor", "ProcessTransport", "Slot", "plan_slots"]

log = logging.getLogger(__name__)

KILL_WAIT = 2.0  # a SIGKILLed process is gone in milliseconds unless stuck in the kernel
# what a worker started before its setup imports meanwhile (torch._dynamo: the first optimizer would)
PRELOAD = ("torch", "torch._dynamo", "automl.training.trainer")


# -- the worker process ------------------------------------------------------------------------------

class _PipeChannel:
    """The worker's end of its pipe."""

    def __init__(self, conn: multiprocessing.connection.Connection):
        self.conn = conn

    def send(self, message: tuple) -> None:
        data = pickle.dumps(message)  # may raise: nothing is written then
        try:
            self.conn.send_bytes(data)
        except OSError:
            raise DriverGone from None

    def receive(self, timeout: float | None) -> tuple | None:
        try:
            return self.conn.recv() if self.conn.poll(timeout) else None
        except (EOFError, OSError):
            raise DriverGone from None


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_driver(driver_pid: int) -> bool:
    """Ask Linux to SIGKILL this worker when its driver dies; False where that is not possible.

    The kernel sends the signal when the driver's thread that started the worker ends, not the
    driver itself: the caller asks only for workers started by the driver's main thread."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != driver_pid:  # the driver died before the prctl: no signal will come
        os._exit(1)
    return True


def _watch_driver(driver_pid: int) -> None:
    # the pipe tells an idle or reporting worker that the driver is gone, but a trial busy
    # for hours (or hung) would outlive a driver killed with SIGKILL: watch the parent too
    while os.getppid() == driver_pid:
        time.sleep(1.0)
    if hasattr(os, "killpg"):
        os.killpg(os.getpgrp(), signal.SIGKILL)  # the trial's children with us
    os._exit(1)


def _await_setup(channel: _PipeChannel, slot: Slot, preload: Sequence[str]) -> bytes | None:
    """A worker started before its setup: the slot's environment, the imports, then the setup
    from the driver (None when it says exit or goes away instead)."""
    apply_slot_env(slot)  # before torch loads: OpenMP reads its threads and wait policy then
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception:  # the setup, which needs it, fails with the full story
            log.debug("preloading %s failed", module, exc_info=True)
    try:
        message = channel.receive(None)
    except DriverGone:
        return None
    return message[1] if message[0] == "setup" else None


def _worker_main(slot: Slot, setup_bytes: bytes | None, conn: multiprocessing.connection.Connection,
                 driver_pid: int, from_main_thread: bool, preload: Sequence[str] = ()) -> None:
    if from_main_thread:  # first: the kernel's signal comes even while an import or native code holds the GIL
        _die_with_driver(driver_pid)
    if hasattr(os, "setsid"):
        os.setsid()  # own session and group: one killpg takes the trial's children too
    # still watched where the kernel does not kill us: it also takes the processes the trial started itself
    threading.Thread(target=_watch_driver, args=(driver_pid,), name="automl-driver-watch", daemon=True).start()
    channel = _PipeChannel(conn)
    if setup_bytes is None:
        setup_bytes = _await_setup(channel, slot, preload)
        if setup_bytes is None:
            exit_without_teardown()
    runner, setup_error = build_in_process(setup_bytes, slot)
    serve(channel, f"process-{slot.index}:{os.getpid()}", slot, runner, setup_error)
    exit_without_teardown()


# -- the driver side ------------------------------------------------------------------------------

@dataclass(eq=False)
class _Process:
    slot: Slot
    process: Any  # multiprocessing's SpawnProcess
    conn: multiprocessing.connection.Connection
    broken: bool = False  # EOF, or a write that failed
    unreadable: str | None = None  # a message that could not be unpickled
    death: tuple[Reason, str] | None = None  # once known


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


def _kill_all(workers: list[_Process]) -> None:
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


def _pickled(setup: Callable[[Slot], Runner]) -> bytes:
    try:  # fail here, with a clear message, rather than in every worker
        return pickle.dumps(setup)
    except Exception as error:
        raise TypeError(f"setup must be picklable (a top-level function or a functools.partial of one): "
                        f"{error}") from error


class ProcessTransport:
    """Spawned worker processes, one pipe each; `setup(slot) -> Runner` runs once in each.

    Without a setup yet, `prestart(slot)` starts workers that wait for it; `provide(setup)`
    gives it, and `start` then hands out a waiting worker of that slot before it spawns one."""

    kind = "worker process"

    def __init__(self, setup: Callable[[Slot], Runner] | None, preload: Sequence[str] = PRELOAD):
        self._setup_bytes = None if setup is None else _pickled(setup)
        self._preload = tuple(preload)
        self._waiting: dict[int, _Process] = {}  # started before the setup, by slot index
        self._context = multiprocessing.get_context("spawn")  # fork would copy driver threads and CUDA state
        self._live: list[_Process] = []  # mutated in place: the finalizer holds this very list
        self._finalizer = weakref.finalize(self, _kill_all, self._live)
        _LIVE.difference_update([f for f in _LIVE if not f.alive])  # those of executors collected meanwhile
        _LIVE.add(self._finalizer)

    def prestart(self, slot: Slot) -> _Process:
        worker = self._spawn(slot, None)
        self._waiting[slot.index] = worker
        return worker

    def provide(self, setup: Callable[[Slot], Runner]) -> None:
        self._setup_bytes = _pickled(setup)

    def start(self, slot: Slot) -> _Process:
        if self._setup_bytes is None:
            raise RuntimeError("no setup for the workers yet: provide(setup) first")
        worker = self._waiting.pop(slot.index, None)
        if worker is None:
            return self._spawn(slot, self._setup_bytes)
        self.send(worker, self.encode(("setup", self._setup_bytes)))  # one dead meanwhile: death() tells
        return worker

    def _spawn(self, slot: Slot, setup_bytes: bytes | None) -> _Process:
        ours, theirs = self._context.Pipe(duplex=True)
        from_main_thread = threading.current_thread() is threading.main_thread()  # see _die_with_driver
        process = self._context.Process(target=_worker_main, args=(slot, setup_bytes, theirs, os.getpid(),
                                                                   from_main_thread, self._preload),
                                        name=f"automl-slot-{slot.index}")  # not daemon: trials may start processes
        process.start()
        theirs.close()  # only the worker may hold its end, or its death would never read as EOF here
        log.debug("started worker pid %d for slot %d (%s)", process.pid, slot.index, slot.device)
        worker = _Process(slot, process, ours)
        self._live.append(worker)
        return worker

    def assign(self, worker: _Process, slot: Slot) -> None:
        worker.slot = slot
        self.send(worker, self.encode(("slot", slot, self.name(worker))))

    def name(self, worker: _Process) -> str:
        return f"process-{worker.slot.index}:{worker.process.pid}"

    def encode(self, message: tuple) -> bytes:
        return pickle.dumps(message)

    def send(self, worker: _Process, data: bytes) -> None:
        try:
            worker.conn.send_bytes(data)
        except (OSError, ValueError):  # a dead worker, or one killed already: death() tells
            worker.broken = True

    def receive(self, worker: _Process) -> list[tuple]:
        messages = []
        while not worker.broken:
            try:
                if not worker.conn.poll(0):
                    break
                messages.append(worker.conn.recv())
            except (EOFError, OSError, ValueError):  # the writer died, maybe in the middle of a message
                worker.broken = True
            except Exception as error:  # a message the driver cannot unpickle
                worker.broken, worker.unreadable = True, repr(error)
        return messages

    def wait(self, workers: list[_Process], timeout: float) -> None:
        handles = [w.process.sentinel for w in workers] + [w.conn for w in workers if not w.broken]
        multiprocessing.connection.wait(handles, timeout)

    def death(self, worker: _Process) -> tuple[Reason, str] | None:
        if worker.death is not None or (not worker.broken and worker.process.exitcode is None):
            return worker.death
        if worker.unreadable is not None:
            worker.death = Reason.EXCEPTION, (f"a message of worker process {worker.process.pid} could not be "
                                              f"read (the worker was killed): {worker.unreadable}")
        else:
            # a dying process closes its pipe a moment before it can be reaped: give it that moment,
            # so the cause names its signal or exit code, not our own SIGKILL
            worker.process.join(KILL_WAIT)
            worker.death = Reason.CRASHED, _death_cause(worker.process.exitcode)
        return worker.death

    def kill(self, worker: _Process, grace: float = 0.0) -> list[tuple]:
        if grace > 0:
            worker.process.join(grace)
        _kill_group(worker.process)  # also after an exit of its own: the trial's children may live on
        worker.process.join(KILL_WAIT)
        messages = self.receive(worker)
        worker.conn.close()
        if worker.process.exitcode is None:
            log.warning("worker pid %d did not die after SIGKILL (stuck in the kernel?)", worker.process.pid)
        else:
            self._live.remove(worker)
        return messages

    def kill_text(self, worker: _Process) -> str:
        return f"its worker process group (pid {worker.process.pid}) was killed with SIGKILL"

    def close(self) -> None:
        self._finalizer()  # kills what is left (nothing, after an orderly shutdown)
        _LIVE.discard(self._finalizer)


class ProcessExecutor(WorkerPool):
    """The Executor contract over worker processes; `setup(slot) -> Runner` runs once in each.

    `spare=True` keeps a warm spare worker (pool.py) that takes over a killed or dead worker's
    slot at once; `transport` is one whose workers were started before the setup (prestart)."""

    def __init__(self, setup: Callable[[Slot], Runner], slots: list[Slot], spare: bool = False, *,
                 transport: ProcessTransport | None = None):
        if transport is None:
            transport = ProcessTransport(setup)
        else:
            transport.provide(setup)
        super().__init__(transport, slots, spare=spare)

    @staticmethod
    def prestart(slots: list[Slot], preload: Sequence[str] = PRELOAD) -> PrestartedWorkers:
        """Start the slots' workers now, before the setup exists: they import `preload` and wait."""
        return PrestartedWorkers(slots, preload)

    def worker_pids(self) -> list[int]:
        """The pids of the current workers, by slot."""
        return [worker.process.pid for worker in self.workers()]

    def spare_pids(self, ready: bool = False) -> list[int]:
        """The pids of the spare workers (only those set up, with `ready`)."""
        return [worker.process.pid for worker in self.spares(ready)]


class PrestartedWorkers:
    """Worker processes started before their setup: `ready(setup)` makes them an executor;
    `close()` (or collection, or the driver's exit) kills them when no setup will come."""

    def __init__(self, slots: list[Slot], preload: Sequence[str] = PRELOAD):
        self.slots = list(slots)
        self._transport: ProcessTransport | None = ProcessTransport(None, preload)
        try:
            self._workers = [self._transport.prestart(slot) for slot in self.slots]
        except BaseException:
            self.close()
            raise

    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def ready(self, setup: Callable[[Slot], Runner], spare: bool = False) -> ProcessExecutor:
        """The executor over these workers, which build their runners with `setup` now."""
        if self._transport is None:
            raise RuntimeError("these workers were closed or handed to an executor already")
        executor = ProcessExecutor(setup, self.slots, spare, transport=self._transport)  # TypeError: stays open
        self._transport = None  # the executor owns them now: close() leaves them alone
        return executor

    def close(self) -> None:
        """Kill the workers unless an executor took them; idempotent."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def __enter__(self) -> PrestartedWorkers:
        return self

    def __exit__(self, *exc) -> None:  # after ready() a no-op: the executor lives on
        self.close()
