"""Run trials in worker threads of the driver process.

Torch releases the GIL inside its kernels, so threads give real parallelism for
training while keeping every trial on the driver's data tensors (no copies). A
stopped trial ends at its next epoch boundary. Isolation from crashes of native
code needs worker processes; this executor is the embedded default for one machine.
"""
from __future__ import annotations

import logging
import queue
import threading
import traceback


from automl.execution.base import Reply, Runner, TrialEvent, TrialOutcome, TrialRequest

log = logging.getLogger(__name__)

REPLY_TIMEOUT = 600.0  # a driver that never answers must not hang a worker forever


def classify_failure(error: BaseException) -> str:
    # by name, so that objectives without torch never import it
    if type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower():
        return "oom"
    return "exception"


class ThreadExecutor:
    def __init__(self, runner: Runner, workers: int = 1):
        self.runner = runner
        self.workers = workers
        self._events: "queue.Queue[TrialEvent]" = queue.Queue()
        self._running: dict[str, threading.Thread] = {}
        self._stop_flags: dict[str, threading.Event] = {}
        self._free_slots = list(range(workers))
        self._lock = threading.Lock()
        self._closed = False

    def capacity(self) -> int:
        with self._lock:
            return 0 if self._closed else len(self._free_slots)

    def submit(self, request: TrialRequest) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is shut down")
            if not self._free_slots:
                raise RuntimeError("no free worker slot")
            slot = self._free_slots.pop(0)
            flag = threading.Event()
            self._stop_flags[request.trial_id] = flag
            thread = threading.Thread(target=self._work, args=(request, slot, flag),
                                      name=f"automl-worker-{slot}", daemon=True)
            self._running[request.trial_id] = thread
        thread.start()

    def _work(self, request: TrialRequest, slot: int, flag: threading.Event) -> None:
        worker = f"thread-{slot}"
        self._events.put(TrialEvent("started", request.trial_id, worker))

        def report(epoch: int, metrics: dict) -> bool:
            reply: "queue.Queue[bool]" = queue.Queue(maxsize=1)
            self._events.put(TrialEvent("epoch", request.trial_id, worker, epoch=epoch, metrics=dict(metrics),
                                        reply=Reply(reply.put)))
            waited = 0.0
            while not flag.is_set() and waited < REPLY_TIMEOUT:  # a stopped trial does not wait for an answer
                try:
                    return reply.get(timeout=0.2) or flag.is_set()
                except queue.Empty:
                    waited += 0.2
            return True

        try:
            outcome = self.runner(request, report)
        except BaseException as error:  # any failure of one trial is data, not the end of the run
            kind = classify_failure(error)
            log.debug("trial %s failed", request.trial_id, exc_info=True)
            outcome = TrialOutcome("FAILED", None, reason=kind,
                                   error="".join(traceback.format_exception(error)).strip())
        # queue the outcome and free the slot together: a driver that sees no running trial
        # and an empty queue can trust that nothing is in flight
        with self._lock:
            self._events.put(TrialEvent("finished", request.trial_id, worker, outcome=outcome))
            self._free_slots.append(slot)
            self._free_slots.sort()
            self._running.pop(request.trial_id, None)
            self._stop_flags.pop(request.trial_id, None)

    def events(self, timeout: float | None = None) -> list[TrialEvent]:
        out = []
        try:
            out.append(self._events.get(timeout=timeout))
            while True:
                out.append(self._events.get_nowait())
        except queue.Empty:
            pass
        return out

    def idle(self) -> bool:
        """No trial running and no event waiting to be read."""
        with self._lock:
            return not self._running and self._events.empty()

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def stop(self, trial_id: str) -> None:
        with self._lock:
            flag = self._stop_flags.get(trial_id)
        if flag is not None:
            flag.set()

    def shutdown(self, wait: float = 30.0) -> None:
        """Ask every trial to stop at its next epoch and wait for the threads a while."""
        with self._lock:
            self._closed = True
            threads = list(self._running.values())
            for flag in self._stop_flags.values():
                flag.set()
        # answer pending epoch questions so no worker waits on a driver that has left
        for event in self.events(timeout=0):
            event.answer(True)
        for thread in threads:
            thread.join(timeout=wait)
