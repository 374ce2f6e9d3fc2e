"""Run trials in worker threads of the driver process: fast start, no isolation.

Torch releases the GIL inside its kernels, so threads give real parallelism for
training while every trial uses the driver's data (no copies), and the objective of
`automl.optimize` (often a lambda) needs no pickling. Each slot has one thread running
the loop of worker.py; messages are handed over in memory, unserialised.

Time limits hold as for processes: past its limit a trial ends FAILED with reason
`timeout` and its slot gets a fresh thread. But a thread cannot be killed: the old one
is abandoned. Its next `report` returns stop and whatever it sends afterwards, its
outcome included, is dropped; it is a daemon, so it never holds up shutdown or the exit
of the process, yet its CPU (and the memory it holds) is freed only when its objective
returns. A crash of native code, or os._exit, is the driver's crash: isolation from
those needs worker processes.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable

from automl.execution.base import Runner
from automl.execution.pool import WorkerPool
from automl.execution.slots import Slot
from automl.execution.worker import build, serve
from automl.records import Reason

__all__ = ["ThreadExecutor", "ThreadTransport"]


@dataclass(eq=False)
class _Thread:
    slot: Slot
    wake: threading.Condition  # the transport's: tells the driver that some thread sent something
    inbox: "queue.Queue[tuple]" = field(default_factory=queue.Queue)
    outbox: list[tuple] = field(default_factory=list)  # guarded by wake
    abandoned: bool = False  # guarded by wake
    thread: threading.Thread | None = None

    # the worker's end of the channel
    def send(self, message: tuple) -> None:
        with self.wake:
            if not self.abandoned:
                self.outbox.append(message)
                self.wake.notify_all()

    def receive(self, timeout: float | None) -> tuple | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None


class ThreadTransport:
    """Threads of this process; `setup(slot) -> Runner` runs once in each (no pickling needed)."""

    kind = "worker thread"

    def __init__(self, setup: Callable[[Slot], Runner]):
        self._setup = setup
        self._wake = threading.Condition()

    def start(self, slot: Slot) -> _Thread:
        worker = _Thread(slot, self._wake)
        worker.thread = threading.Thread(target=self._main, args=(worker,), name=f"automl-worker-{slot.index}",
                                         daemon=True)
        worker.thread.start()
        return worker

    def _main(self, worker: _Thread) -> None:
        runner, setup_error = build(lambda: self._setup(worker.slot))
        serve(worker, self.name(worker), worker.slot, runner, setup_error)

    def name(self, worker: _Thread) -> str:
        return f"thread-{worker.slot.index}"

    def encode(self, message: tuple) -> tuple:
        return message  # nothing travels: the thread reads the very objects

    def send(self, worker: _Thread, data: tuple) -> None:
        worker.inbox.put(data)

    def receive(self, worker: _Thread) -> list[tuple]:
        with self._wake:
            messages, worker.outbox[:] = list(worker.outbox), []
        return messages

    def wait(self, workers: list[_Thread], timeout: float) -> None:
        with self._wake:
            self._wake.wait_for(lambda: any(w.outbox for w in workers), timeout)

    def death(self, worker: _Thread) -> tuple[Reason, str] | None:
        if worker.thread.is_alive():
            return None
        return Reason.CRASHED, "worker thread ended"  # its loop only ends when asked to: a bug, not a trial's doing

    def kill(self, worker: _Thread, grace: float = 0.0) -> list[tuple]:
        """A thread cannot be killed: cut it off (what it sent until now is returned, nothing after)
        and make its next report say stop."""
        worker.thread.join(grace)
        with self._wake:
            worker.abandoned = True
            messages, worker.outbox[:] = list(worker.outbox), []
        worker.inbox.put(("exit",))
        return messages

    def kill_text(self, worker: _Thread) -> str:
        return (f"its worker thread ({worker.thread.name}) was abandoned: a thread cannot be killed, so it runs "
                f"on until its objective returns")

    def close(self) -> None:
        pass


class ThreadExecutor(WorkerPool):
    """The Executor contract over worker threads; `setup(slot) -> Runner` runs once in each."""

    def __init__(self, setup: Callable[[Slot], Runner], slots: list[Slot]):
        super().__init__(ThreadTransport(setup), slots)
