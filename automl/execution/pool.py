"""One pool of worker slots behind the Executor contract, whatever carries the messages.

The pool keeps everything about slots and trials on the driver: which slot is free,
each running trial (its run id, start time, epochs, whether a stop was sent), time
limits, crash detection, replacing a dead worker, giving up a slot whose fresh workers
keep dying before they are ready, stop, shutdown and the queue of events not yet read.
A `Transport` only starts a worker for a slot, sends it a message, reads what it sent,
tells whether it is alive and kills it: worker processes over pipes (processes.py), Ray
actors (ray_backend.py) or threads of the driver (threads.py). Each worker runs the one
loop of worker.py.

With `spare=True` (worker processes) the pool keeps a warm spare: one more worker, set up
and idle on its pipe, per distinct slot environment (device, threads, env: on the CPU one
spare, on CUDA one per CUDA_VISIBLE_DEVICES, as a worker's CUDA device is fixed before
CUDA starts). When a seat's worker is killed (time limit) or dies, the spare of its
environment takes the seat at once and a new spare starts. A spare starts only while every
seat's worker is ready, so its imports never delay a worker a trial waits for. Its setup
runs with the slot of the first seat of its environment: the setup must depend on the slot
only through its device, threads and env, as build_runner does.

Time limits are enforced whenever events() runs (it wakes at least every POLL_INTERVAL
seconds while it waits). Every trial that is submitted gets `started` then `finished`,
also one whose worker died before it began and one whose request could not be sent;
except one whose worker found the disk full: events() raises `DiskFullError` instead,
so the run stops and the trial, never finished, resumes when the run does.
"""
from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from automl.errors import DiskFullError
from automl.execution.slots import Slot
from automl.records import Reason, Reply, TrialEvent, TrialOutcome, TrialRequest

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2  # longest sleep of events() while trials run: time limits are checked this often
MAX_START_FAILURES = 3  # a slot whose fresh workers die before they are ready this often in a row is given up
EXIT_GRACE = 2.0  # how long a worker that said it exits may take to end by itself before it is killed


class Transport(Protocol):
    """How the driver reaches its workers. A worker handle is whatever `start` returns."""

    kind: str  # what a worker is, for messages: "worker process", "Ray actor", ...

    def start(self, slot: Slot) -> Any: ...  # returns at once; the worker says "ready" when set up
    def name(self, worker: Any) -> str: ...  # until the worker names itself in its "ready"
    def encode(self, message: tuple) -> Any: ...  # what send takes; raises when the message cannot travel
    def send(self, worker: Any, data: Any) -> None: ...  # never raises: a dead worker is found by death()
    def receive(self, worker: Any) -> list[tuple]: ...  # what it sent, without waiting
    def wait(self, workers: list, timeout: float) -> None: ...  # until one may have sent something
    def death(self, worker: Any) -> tuple[Reason, str] | None: ...  # why it is gone, None while it lives
    def kill(self, worker: Any, grace: float = 0.0) -> list[tuple]: ...  # and what it sent before it died
    def kill_text(self, worker: Any) -> str: ...  # how kill ends it, for the error of a trial past its limit
    def close(self) -> None: ...  # after every worker was killed
    # only for a pool with spares: the spare `worker` takes over `slot` (of the same environment)
    def assign(self, worker: Any, slot: Slot) -> None: ...


@dataclass
class _Trial:
    request: TrialRequest
    run_id: int
    started: float | None = None  # time.monotonic() when the worker said it started
    epochs: int = 0
    stop_sent: bool = False  # stop() is sent once: a driver calling it every loop must not flood the worker


@dataclass
class _Seat:
    """One slot, its current worker and its trial."""

    slot: Slot
    worker: Any
    name: str
    ready: bool = False  # the worker has set up and said so
    exited: bool = False  # the worker said it exits (after shutdown asked it to)
    trial: _Trial | None = None
    start_failures: int = 0  # workers of this slot that died before they were ready, in a row
    given_up: bool = False


class WorkerPool:
    """The Executor contract over one worker per slot, reached through `transport`."""

    def __init__(self, transport: Transport, slots: list[Slot], spare: bool = False):
        if not slots:
            raise ValueError(f"{type(self).__name__} needs at least one slot")
        self.transport = transport
        self._spare_slots = {_environment(s): s for s in reversed(slots)} if spare else {}  # the first of each
        self._spares: dict[tuple, _Seat] = {}  # a spare is a seat without trials, by environment
        self._spare_failures: dict[tuple, int] = {}  # spares of an environment that died before ready, in a row
        self._lock = threading.RLock()
        self._pending: list[TrialEvent] = []
        self._run_ids = itertools.count(1)
        self._closed = False
        self._shut_down = False
        self._disk_full: DiskFullError | None = None  # a worker's, raised by the next events()
        self._seats: list[_Seat] = []
        try:
            for slot in slots:
                worker = transport.start(slot)
                self._seats.append(_Seat(slot, worker, transport.name(worker)))
        except BaseException:
            for seat in self._seats:
                transport.kill(seat.worker)
            transport.close()
            raise

    # -- the contract --------------------------------------------------------------------------
    def capacity(self) -> int:
        with self._lock:
            return 0 if self._closed else len(self._free())

    def running(self) -> list[str]:
        with self._lock:
            return [s.trial.request.trial_id for s in self._seats if s.trial is not None]

    def idle(self) -> bool:
        """No trial running and no event waiting to be read."""
        with self._lock:
            return not self._pending and all(s.trial is None for s in self._seats)

    def workers(self) -> list:
        """The current worker handles, by slot."""
        with self._lock:
            return [s.worker for s in self._seats]

    def workers_ready(self) -> bool:
        """Every slot's worker has set up (or the slot was given up)."""
        with self._lock:
            return all(s.ready or s.given_up for s in self._seats)

    def spares(self, ready: bool = False) -> list:
        """The spare workers' handles (only those set up, with `ready`)."""
        with self._lock:
            return [s.worker for s in self._spares.values() if s.ready or not ready]

    def submit(self, request: TrialRequest) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is shut down")
            self._poll()  # replace a worker that died while idle before giving it a trial
            free = self._free()
            if not free:
                raise RuntimeError("no free worker slot")
            trial = _Trial(request, next(self._run_ids))
            try:
                data = self.transport.encode(("run", trial.run_id, request))
            except Exception as error:  # a config that cannot travel fails as a trial, not the driver
                outcome = TrialOutcome.failed(Reason.EXCEPTION, f"the trial request could not be sent to a "
                                                                f"worker: {error!r}")
                self._pending += [TrialEvent("started", request.trial_id, "driver"),
                                  TrialEvent("finished", request.trial_id, "driver", outcome=outcome)]
                return
            seat = free[0]
            seat.trial = trial
            # should the worker die right now, the next events() ends the trial as crashed
            self.transport.send(seat.worker, data)

    def stop(self, trial_id: str) -> None:
        with self._lock:
            for seat in self._seats:
                if seat.trial is not None and seat.trial.request.trial_id == trial_id:
                    self._send_stop(seat)

    def events(self, timeout: float | None = None) -> list[TrialEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._shut_down:
                    self._poll()
                if self._disk_full is not None:  # raised once; the events still pending stay to be read
                    error, self._disk_full = self._disk_full, None
                    raise error
                if self._pending or self._closed:
                    out, self._pending = self._pending, []
                    return out
                if all(s.given_up for s in self._seats):
                    raise RuntimeError(f"every worker slot failed to start its {self.transport.kind} "
                                       f"{MAX_START_FAILURES} times in a row; see the log for why")
                workers = [s.worker for s in self._seats if not s.given_up]
            left = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - time.monotonic())
            if left <= 0:
                return []
            self.transport.wait(workers, left)

    def shutdown(self, wait: float = 5.0) -> None:
        """Ask every trial to stop and every worker to exit, wait up to `wait` s, then kill every
        worker. Trials cut off this way send no outcome: they stay to be resumed."""
        with self._lock:
            if self._shut_down:
                return
            self._closed = True
            for seat in self._seats:
                if seat.given_up:
                    continue
                if seat.trial is not None:
                    self._send_stop(seat)
                self.transport.send(seat.worker, self.transport.encode(("exit",)))
            for event in self._pending:
                event.answer(True)  # nobody waits on a driver that has left
            for spare in self._spares.values():  # no trial to end: killed at once
                self.transport.kill(spare.worker)
            self._spares.clear()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                self._poll()  # keeps outcomes that still arrive, for a last events() call
                waiting = [s.worker for s in self._seats if not self._settled(s)]
            if not waiting:
                break
            self.transport.wait(waiting, min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        with self._lock:
            self._shut_down = True
            for seat in self._seats:
                if not seat.given_up:
                    self._take(seat, self.transport.kill(seat.worker, EXIT_GRACE if seat.exited else 0.0))
                seat.trial = None
            self.transport.close()

    # -- internals -------------------------------------------------------------------------------
    def _free(self) -> list[_Seat]:
        return [s for s in self._seats if s.trial is None and not s.given_up]

    def _settled(self, seat: _Seat) -> bool:
        """Nothing left to wait for at shutdown: no trial, and the worker exited or never got going."""
        return seat.given_up or (seat.trial is None and (seat.exited or not seat.ready)) or \
            self.transport.death(seat.worker) is not None

    def _send_stop(self, seat: _Seat) -> None:
        if not seat.trial.stop_sent:
            seat.trial.stop_sent = True
            self.transport.send(seat.worker, self.transport.encode(("stop", seat.trial.run_id)))

    def _answer(self, seat: _Seat, run_id: int, epoch: int, stop: bool) -> None:
        with self._lock:
            if not self._shut_down and seat.trial is not None and seat.trial.run_id == run_id:
                self.transport.send(seat.worker, self.transport.encode(("answer", run_id, epoch, bool(stop))))

    def _poll(self) -> None:
        """Read what every worker sent; end the trials of dead workers and of those past their limit."""
        now = time.monotonic()
        for seat in self._seats:
            if seat.given_up:
                continue
            self._take(seat, self.transport.receive(seat.worker))
            if self._closed:
                continue  # workers are exiting on purpose now; shutdown kills them
            death = self.transport.death(seat.worker)
            trial = seat.trial
            if death is not None:
                reason, cause = death
                doing = f"running trial {trial.request.trial_id}" if trial is not None else "idle"
                error = f"{cause} while {doing} (slot {seat.slot.index}, {seat.name})"
                log.warning("%s", error)
                self._end_worker(seat, reason, error)
            elif trial is not None and trial.request.time_limit is not None and trial.started is not None \
                    and now - trial.started > trial.request.time_limit:
                error = (f"trial {trial.request.trial_id} ran past its time limit of {trial.request.time_limit:g} s; "
                         f"{self.transport.kill_text(seat.worker)}")
                log.warning("%s", error)
                self._end_worker(seat, Reason.TIMEOUT, error)
        if self._spare_slots and not self._closed:
            self._keep_spares()

    def _keep_spares(self) -> None:
        """Read the spares, replace a dead one, and start the missing ones once every seat is ready."""
        for key, spare in list(self._spares.items()):
            self._take(spare, self.transport.receive(spare.worker))
            death = self.transport.death(spare.worker)
            if death is not None:
                log.warning("spare %s: %s", spare.name, death[1])
                self.transport.kill(spare.worker)
                del self._spares[key]
                self._spare_failures[key] = 0 if spare.ready else self._spare_failures.get(key, 0) + 1
                if self._spare_failures[key] >= MAX_START_FAILURES:  # the seats go on, replaced the slow way
                    log.error("no more spare %s: %d in a row died before they were ready", self.transport.kind,
                              MAX_START_FAILURES)
                    del self._spare_slots[key]
        if not self.workers_ready():
            return  # a worker that a trial may wait for is starting: a spare would slow it down
        for key, slot in self._spare_slots.items():
            if key not in self._spares:
                worker = self.transport.start(slot)
                self._spares[key] = _Seat(slot, worker, self.transport.name(worker))

    def _take(self, seat: _Seat, messages: list[tuple]) -> None:
        for message in messages:
            self._receive(seat, message)

    def _receive(self, seat: _Seat, message: tuple) -> None:
        kind, trial = message[0], seat.trial
        if kind == "ready":
            seat.ready, seat.start_failures, seat.name = True, 0, message[1]
            return
        if kind == "exited":
            seat.exited = True
            return
        if trial is None or trial.run_id != message[1]:
            log.debug("%s sent %r of a trial that has ended; ignored", seat.name, kind)
            return
        trial_id = trial.request.trial_id
        if kind == "started":
            trial.started = time.monotonic()
            self._pending.append(TrialEvent("started", trial_id, seat.name))
        elif kind == "epoch":
            trial.epochs = max(trial.epochs, message[2])  # the epoch reached, as a trainer counts: not this
            # attempt's reports (a trial resumed from its checkpoint goes on at the epoch after it)
            reply = Reply(functools.partial(self._answer, seat, trial.run_id, message[2]))
            self._pending.append(TrialEvent("epoch", trial_id, seat.name, epoch=message[2], metrics=message[3],
                                            elapsed=message[4] if len(message) > 4 else None, reply=reply))
        elif kind == "finished":
            seat.trial = None  # the slot is free exactly when its outcome is queued: idle() stays true to it
            self._pending.append(TrialEvent("finished", trial_id, seat.name, outcome=message[2]))
        elif kind == "disk_full":
            seat.trial = None  # no outcome: the trial stays unfinished in the store and resumes with the run
            self._disk_full = self._disk_full or DiskFullError(message[2])

    def _end_worker(self, seat: _Seat, reason: Reason, error: str) -> None:
        """Kill the worker (dead or past its limit), fail its trial unless it finished meanwhile, replace it."""
        self._take(seat, self.transport.kill(seat.worker))  # a finished outcome that came first stands
        if not seat.ready:
            seat.start_failures += 1
        trial, seat.trial = seat.trial, None
        if trial is not None:
            trial_id = trial.request.trial_id
            if trial.started is None:  # keep started -> finished for every trial, even one that never began
                self._pending.append(TrialEvent("started", trial_id, seat.name))
            self._pending.append(TrialEvent("finished", trial_id, seat.name,
                                            outcome=TrialOutcome.failed(reason, error, trial.epochs)))
        if seat.start_failures >= MAX_START_FAILURES:
            log.error("slot %d is given up: its %s died before it was ready %d times in a row",
                      seat.slot.index, self.transport.kind, seat.start_failures)
            seat.given_up = True
            return
        spare = self._spares.pop(_environment(seat.slot), None)
        if spare is None:
            seat.worker, seat.ready = self.transport.start(seat.slot), False
        else:  # set up already (or further on than a fresh start): says "ready" again under its new name
            self.transport.assign(spare.worker, seat.slot)
            seat.worker, seat.ready = spare.worker, spare.ready
            log.info("spare %s takes over slot %d", spare.name, seat.slot.index)
        seat.name, seat.exited = self.transport.name(seat.worker), False


def _environment(slot: Slot) -> tuple:
    """What a worker's setup depends on besides the slot's index: a spare set up for one slot
    fits every slot of the same environment."""
    return slot.device, slot.torch_threads, tuple(sorted(slot.env.items()))
