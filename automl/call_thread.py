"""The thread that runs a strategy's calls, and a wait on its results that a signal can end.

The search loop calls the strategy through one daemon thread, so that a call that never returns
can be abandoned (a ThreadPoolExecutor's workers would keep the process alive).
"""
from __future__ import annotations

import concurrent.futures
import queue
import threading
import time

from automl import interrupts


class CallThread:
    """One daemon thread that runs calls in order. Daemon, unlike a ThreadPoolExecutor's
    workers, so a strategy call that never returns cannot keep the process alive. A SimpleQueue:
    its put is one C call, which no signal can interrupt while it holds the queue's lock."""

    def __init__(self) -> None:
        self._jobs: "queue.SimpleQueue[tuple | None]" = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="automl-strategy", daemon=True).start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except BaseException as error:
                    future.set_exception(error)

    def submit(self, function, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((future, function, args))
        return future

    def shutdown(self) -> None:
        self._jobs.put(None)


def result_in_slices(future: concurrent.futures.Future, timeout: float):
    """The call's result within `timeout` seconds, waiting in short slices so that a signal noted
    meanwhile (automl/interrupts.py) is raised here, outside the future's lock."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return future.result(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
        except concurrent.futures.TimeoutError:
            interrupts.raise_pending()
            if time.monotonic() >= deadline:
                raise
