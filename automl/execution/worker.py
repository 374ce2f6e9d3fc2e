"""The worker side of every transport: one loop that runs one trial at a time.

A worker talks to the driver over a `Channel` (a pipe in a process, a pair of buffers
in a Ray actor or a thread) in plain tuples:

    driver -> worker   ("run", run_id, request) ("answer", run_id, epoch, stop) ("stop", run_id) ("exit",)
                       ("slot", slot, name): a spare worker takes over a slot (same device and environment)
    worker -> driver   ("ready", name) ("started", run_id) ("epoch", run_id, epoch, metrics, seconds since started)
                       ("finished", run_id, outcome) ("disk_full", run_id, path) ("exited",)

Every message about a trial carries its run id, so a late answer or stop meant for an
earlier trial never reaches a later one. Failures of a trial become outcomes here:
raised exceptions (`oom` or `exception`), an outcome that is not one, and an outcome
that cannot travel to the driver. A full disk is not the trial's failure: it is sent as
"disk_full" (the file) instead of an outcome, and the driver stops the run.
"""
from __future__ import annotations

import logging
import os
import pickle
import sys
import time
import traceback
from typing import Callable, Protocol

from automl.execution.base import Runner
from automl.execution.slots import Slot, set_thread_env
from automl.files import disk_full
from automl.records import Reason, TrialOutcome, TrialRequest

REPLY_TIMEOUT = 600.0  # a driver that never answers must not hang a worker forever


class DriverGone(Exception):
    """The driver's end of the channel is closed: nobody is left to train for."""


class Channel(Protocol):
    def send(self, message: tuple) -> None: ...  # raises what serialising it raised; DriverGone if it cannot go
    def receive(self, timeout: float | None) -> tuple | None: ...  # None after timeout s; DriverGone


def classify_failure(error: BaseException) -> Reason:
    # by name, so that objectives without torch never import it
    if type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower():
        return Reason.OOM
    return Reason.EXCEPTION


def build(setup: Callable[[], Runner]) -> tuple[Runner | None, str | None]:
    """(runner, None), or (None, the traceback): a failed setup fails every trial sent to the
    worker, so the run fails visibly instead of replacing workers in a loop."""
    try:
        return setup(), None
    except BaseException:
        return None, traceback.format_exc().strip()


def apply_slot_env(slot: Slot) -> None:
    """The slot's environment, for a process of its own before it imports torch or touches CUDA."""
    os.environ.update(slot.env)
    set_thread_env()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # Ray sets them from num_cpus; the slot decides
        if name not in slot.env:
            os.environ[name] = str(slot.torch_threads)


def build_in_process(setup_bytes: bytes, slot: Slot) -> tuple[Runner | None, str | None]:
    """For a worker with a process of its own (a spawned process, a Ray actor): the slot's
    environment before the setup imports torch or touches CUDA, then the pickled setup."""
    apply_slot_env(slot)
    built = build(lambda: pickle.loads(setup_bytes)(slot))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(slot.torch_threads)
    return built


def serve(channel: Channel, name: str, slot: Slot, runner: Runner | None, setup_error: str | None) -> None:
    """Say ready, then run every trial the driver sends until it asks the worker to exit or goes away."""
    try:
        channel.send(("ready", name))
        exiting = False
        while not exiting:
            message = channel.receive(None)
            if message[0] == "run":
                exiting = _run_one(channel, runner, setup_error, slot, message[1], message[2])
            elif message[0] == "slot":  # a spare taking over a seat: the pool checked that the slot fits
                slot, name = message[1], message[2]
                channel.send(("ready", name))
            else:  # anything but exit is a stop or an answer for a trial that has already ended
                exiting = message[0] == "exit"
        channel.send(("exited",))
    except DriverGone:
        pass


class _Reporter:
    """The `report` a runner calls after each epoch of one trial. A trial its strategy may prune
    (`request.awaits_answers`) waits for the driver's answer every epoch; any other goes on at once
    and reads what has arrived (a stop, the exit, answers). `sync` waits until the driver answered
    the last epoch sent: the trainer calls it before a checkpoint, so the driver has committed every
    epoch the checkpoint holds (a crash between the two would otherwise lose those epochs' rows)."""

    def __init__(self, channel: Channel, run_id: int, awaits_answers: bool):
        self.channel, self.run_id, self.awaits_answers = channel, run_id, awaits_answers
        self.stop = self.exit = False
        self.sent = self.answered = 0  # epochs
        self.started = time.monotonic()  # an epoch's time is the worker's: the driver may read it later

    def handle(self, message: tuple) -> None:
        if message[0] == "exit":
            self.stop = self.exit = True
        elif message[1:2] == (self.run_id,):  # anything else is for a trial that has already ended
            if message[0] == "stop":
                self.stop = True
            elif message[0] == "answer":
                self.answered = max(self.answered, message[2])
                self.stop = self.stop or bool(message[3])

    def __call__(self, epoch: int, metrics: dict) -> bool:
        self.channel.send(("epoch", self.run_id, epoch, dict(metrics), time.monotonic() - self.started))
        self.sent = epoch
        if self.awaits_answers:
            return self.sync()
        while not self.stop and (message := self.channel.receive(0)) is not None:
            self.handle(message)
        return self.stop

    def sync(self) -> bool:
        """True when the trial must stop: a stopped trial does not wait for its answer, and a driver
        silent for REPLY_TIMEOUT seconds stops it too."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while not self.stop and self.answered < self.sent:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            message = self.channel.receive(min(left, 1.0))  # DriverGone unwinds the runner
            if message is not None:
                self.handle(message)
        return self.stop


def _run_one(channel: Channel, runner: Runner | None, setup_error: str | None, slot: Slot, run_id: int,
             request: TrialRequest) -> bool:
    """Run one trial; True when the driver asked the worker to exit meanwhile."""
    report = _Reporter(channel, run_id, request.awaits_answers)
    channel.send(("started", run_id))
    try:
        if runner is None:
            raise RuntimeError(f"setup of worker slot {slot.index} failed:\n{setup_error}")
        outcome = runner(request, report)
        if not isinstance(outcome, TrialOutcome):
            raise TypeError(f"the runner returned {outcome!r}, not a TrialOutcome")
    except DriverGone:
        raise
    except BaseException as error:  # any failure of one trial is data, not the end of the worker
        full = disk_full(error)
        if full is not None:  # not the trial's fault: the driver stops the run, the trial resumes with it
            path = getattr(error, "path", None) or getattr(full, "filename", None) or "a file of the trial"
            channel.send(("disk_full", run_id, str(path)))
            return report.exit
        outcome = TrialOutcome.failed(classify_failure(error), "".join(traceback.format_exception(error)).strip())
    if outcome.reason is Reason.OOM:
        _release_gpu_cache()
    try:
        channel.send(("finished", run_id, outcome))
    except DriverGone:
        raise
    except Exception as error:  # serialised before a byte is written: the channel is intact
        channel.send(("finished", run_id, TrialOutcome.failed(
            Reason.EXCEPTION, f"the trial's outcome could not be sent to the driver: {error!r}", outcome.epochs)))
    return report.exit


def _release_gpu_cache() -> None:
    """After an out-of-memory trial, hand the memory torch's allocator keeps cached back to the GPU:
    the retry at half batch, and a worker sharing the GPU (trials_per_gpu), need it."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def exit_without_teardown() -> None:
    """End a worker process without the interpreter's teardown: freeing every object torch made
    takes 0.3-0.5 s, which the driver would wait for at the end of every run. Every trial's files
    were written and synced before its outcome was sent; only the log and the standard streams remain."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed or replaced: nothing left to flush
            pass
    os._exit(0)
