"""Run trials on a Ray cluster (or a local Ray): one long-lived actor per slot.

Actors rather than tasks: `setup(slot)` (torch, the data, the family plugins) runs once
per actor, not once per trial, and an actor can be talked to while its trial runs, which
the per-epoch answers need. Each actor holds `cpus_per_trial` CPUs and `gpus_per_trial`
GPUs in Ray's own accounting for its whole life (a fraction shares a GPU; Ray sets
CUDA_VISIBLE_DEVICES for it), so Ray places the actors and nothing here plans devices.

The actor is threaded: `run` trains in one thread while `poll`, `answer` and `stop` are
served in others. Worker -> driver events (started, epoch, finished) wait in the actor
until the driver fetches them with a long poll (one call in flight per actor, held open
up to POLL_WAIT s while there is nothing to say) and acknowledges them with the next one,
so none is lost or reordered, and a dead actor shows up as an error of that call. This
works the same through Ray Client, which has no streaming generators. The driver answers
each epoch with an `answer` call; the trial waits for it before its next epoch.

All search state and the database stay in the driver; time limits are enforced there
too, whenever events() runs (it wakes at least every POLL_INTERVAL s while it waits): an
actor past its limit is killed with ray.kill (a forced exit, whatever the trial does with
signals) and the slot gets a fresh actor. Ray is imported only here, when an executor is
made, so `import automl` never pulls it in.
"""
from __future__ import annotations

import itertools
import logging
import os
import pickle
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from automl.execution.base import Reply, Runner, TrialEvent, TrialOutcome, TrialRequest
from automl.execution.slots import Slot
from automl.execution.threads import REPLY_TIMEOUT, classify_failure

__all__ = ["RayExecutor"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2  # longest sleep of events() while trials run: time limits are checked this often
POLL_WAIT = 2.0  # how long an actor holds a poll open when it has nothing to report
MAX_START_FAILURES = 3  # a slot whose fresh actors die before they are ready this often in a row is given up
ACTOR_THREADS = 4  # run + poll + answer/stop served at once by one actor


# -- the actor (runs on a Ray worker) ----------------------------------------------------------------

class _TrialWorker:
    """The body of a slot's actor; wrapped with ray.remote in the driver."""

    def __init__(self, setup_bytes: bytes, slot: Slot):
        os.environ.update(slot.env)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # Ray sets them from num_cpus; the slot decides
            if name not in slot.env:
                os.environ[name] = str(slot.torch_threads)
        self._name = f"ray-{slot.index}:{socket.gethostname()}:{os.getpid()}"
        self._changed = threading.Condition()
        self._events: list[tuple] = []  # (seq, run_id, kind, *payload) until the driver acknowledges them
        self._seq = 0
        self._current: int | None = None  # run id of the trial running now
        self._answers: dict[int, bool] = {}  # epoch -> stop, for the current trial
        self._stopped: set[int] = set()  # run ids; a stop may overtake its run in a threaded actor
        self._runner: Runner | None = None
        self._setup_error: str | None = None
        try:  # unpickled here, not by Ray: a setup that cannot load fails its trials visibly, as in processes.py
            self._runner = pickle.loads(setup_bytes)(slot)
        except BaseException:
            self._setup_error = traceback.format_exc().strip()
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(slot.torch_threads)

    def _push(self, *event) -> None:  # with self._changed held
        self._seq += 1
        self._events.append((self._seq, *event))
        self._changed.notify_all()

    def poll(self, acked: int, wait: float) -> tuple[str, list[tuple]]:
        """The events after `acked`, waiting up to `wait` s for one; also tells the driver we are ready."""
        with self._changed:
            self._events = [e for e in self._events if e[0] > acked]
            self._changed.wait_for(lambda: self._events, wait)
            return self._name, list(self._events)

    def answer(self, run_id: int, epoch: int, stop: bool) -> None:
        with self._changed:
            if run_id == self._current:  # a late answer to an ended trial is dropped
                self._answers[epoch] = bool(stop)
                self._changed.notify_all()

    def stop(self, run_id: int) -> None:
        with self._changed:
            self._stopped.add(run_id)
            self._changed.notify_all()

    def run(self, run_id: int, request: TrialRequest) -> None:
        def report(epoch: int, metrics: dict) -> bool:
            with self._changed:
                self._push(run_id, "epoch", epoch, dict(metrics))
                # a stopped trial does not wait for its answer; a driver that never answers must not hang us
                answered = self._changed.wait_for(lambda: epoch in self._answers or run_id in self._stopped,
                                                  REPLY_TIMEOUT)
                if not answered or run_id in self._stopped:
                    return True
                return self._answers.pop(epoch)

        with self._changed:
            self._current, self._answers = run_id, {}
            self._stopped = {r for r in self._stopped if r >= run_id}  # run ids only grow
            self._push(run_id, "started")
        try:
            if self._runner is None:
                raise RuntimeError(f"setup of worker {self._name} failed:\n{self._setup_error}")
            outcome = self._runner(request, report)
        except BaseException as error:  # any failure of one trial is data, not the end of the actor
            outcome = TrialOutcome("FAILED", None, reason=classify_failure(error),
                                   error="".join(traceback.format_exception(error)).strip())
        try:  # an outcome that cannot travel would break every later poll of this actor
            from ray import cloudpickle

            cloudpickle.dumps(outcome)
        except Exception as error:
            outcome = TrialOutcome("FAILED", None, reason="exception",
                                   error=f"the trial's outcome could not be sent to the driver: {error!r}")
        with self._changed:
            self._current = None
            self._stopped.discard(run_id)
            self._push(run_id, "finished", outcome)


# -- the driver side -------------------------------------------------------------------------------

@dataclass
class _Trial:
    request: TrialRequest
    run_id: int
    started: float | None = None  # time.monotonic() when the driver heard the trial started
    epochs: int = 0
    stop_sent: bool = False  # stop() is sent once: a driver calling it every loop must not flood the actor


@dataclass
class _Actor:
    slot: Slot
    handle: Any  # ray.actor.ActorHandle
    name: str
    poll: Any = None  # the poll call in flight (an ObjectRef)
    acked: int = 0  # the last event sequence number handled
    ready: bool = False  # setup has run: the actor answered a poll
    trial: _Trial | None = None
    run: Any = None  # the run call's ref, kept so the call is not orphaned


class RayExecutor:
    """The Executor contract over Ray actors; `setup(slot) -> Runner` runs once in each."""

    def __init__(self, setup: Callable[[Slot], Runner], *, workers: int, address: str | None = None,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, init_kwargs: dict | None = None):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if cpus_per_trial <= 0 or gpus_per_trial < 0:
            raise ValueError(f"cpus_per_trial must be > 0 and gpus_per_trial >= 0, not {cpus_per_trial} "
                             f"and {gpus_per_trial}")
        import ray

        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():  # a Ray the caller set up (and its options) is used as it is
            ray.init(address=address, **(init_kwargs or {}))
            self._owns_ray = True
        try:
            self._start_actors(setup, workers, cpus_per_trial, gpus_per_trial)
        except BaseException:
            self._release_ray()  # a Ray started for nothing must not outlive the failed constructor
            raise

    def _start_actors(self, setup: Callable[[Slot], Runner], workers: int, cpus_per_trial: float,
                      gpus_per_trial: float) -> None:
        ray = self._ray
        try:
            setup_bytes = ray.cloudpickle.dumps(setup)
        except Exception as error:
            raise TypeError(f"setup must be picklable: {error}") from error
        # in the object store once: every actor, fresh ones for dead slots too, reads the data from there
        self._setup_ref = ray.put(setup_bytes)
        self._remote = ray.remote(_TrialWorker)
        # a dead actor is replaced here, with its trial failed: Ray must neither restart it nor retry calls
        self.actor_options = {"num_cpus": cpus_per_trial, "num_gpus": gpus_per_trial,
                              "max_concurrency": ACTOR_THREADS, "max_restarts": 0, "max_task_retries": 0}
        device = "cuda" if gpus_per_trial > 0 else "cpu"
        self.slots = [Slot(i, device, max(1, int(cpus_per_trial)), {}) for i in range(workers)]
        self._check_resources(workers, cpus_per_trial, gpus_per_trial)
        self._lock = threading.RLock()
        self._pending: list[TrialEvent] = []
        self._run_ids = itertools.count(1)
        self._start_failures = [0] * workers
        self._broken: set[int] = set()  # slot positions given up on
        self._closed = False
        self._shut_down = False
        self._actors = [self._start(slot) for slot in self.slots]

    def _check_resources(self, workers: int, cpus: float, gpus: float) -> None:
        # an actor Ray cannot place waits forever, silently: say so up front (an autoscaler may still add nodes)
        try:
            total = self._ray.cluster_resources()
            nodes = sum(1 for node in self._ray.nodes() if node.get("Alive"))
        except Exception:  # informative only
            log.debug("could not read the cluster's resources", exc_info=True)
            return
        if total.get("CPU", 0) < cpus or total.get("GPU", 0) < gpus:
            log.warning("the Ray cluster has %g CPU and %g GPU: a trial asking for %g CPU and %g GPU cannot be "
                        "placed until nodes are added", total.get("CPU", 0), total.get("GPU", 0), cpus, gpus)
        elif total.get("CPU", 0) < workers * cpus or total.get("GPU", 0) < workers * gpus:
            log.warning("the Ray cluster fits fewer than %d trials of %g CPU and %g GPU at once; the others wait",
                        workers, cpus, gpus)
        if nodes > 1:
            log.info("Ray cluster of %d nodes: the run directory must be on a filesystem they all share "
                     "(workers write checkpoints there)", nodes)

    def _start(self, slot: Slot) -> _Actor:
        handle = self._remote.options(**self.actor_options).remote(self._setup_ref, slot)
        actor = _Actor(slot, handle, f"ray-{slot.index}")
        actor.poll = handle.poll.remote(0, POLL_WAIT)  # its first answer says setup is done
        return actor

    # -- the contract --------------------------------------------------------------------------
    def capacity(self) -> int:
        with self._lock:
            return 0 if self._closed else len(self._free())

    def running(self) -> list[str]:
        with self._lock:
            return [a.trial.request.trial_id for a in self._actors if a.trial is not None]

    def idle(self) -> bool:
        """No trial running and no event waiting to be read."""
        with self._lock:
            return not self._pending and all(a.trial is None for a in self._actors)

    def submit(self, request: TrialRequest) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("executor is shut down")
            self._check()  # replace an actor that died while idle before giving it a trial
            free = self._free()
            if not free:
                raise RuntimeError("no free worker slot")
            actor, trial = self._actors[free[0]], _Trial(request, next(self._run_ids))
            try:
                actor.run = actor.handle.run.remote(trial.run_id, request)
            except Exception as error:  # a config that cannot travel fails as a trial, not the driver
                self._pending += [TrialEvent("started", request.trial_id, "driver"),
                                  TrialEvent("finished", request.trial_id, "driver", outcome=TrialOutcome(
                                      "FAILED", None, reason="exception",
                                      error=f"the trial request could not be sent to a worker: {error!r}"))]
                return
            actor.trial = trial

    def stop(self, trial_id: str) -> None:
        with self._lock:
            for actor in self._actors:
                trial = actor.trial
                if trial is not None and trial.request.trial_id == trial_id and not trial.stop_sent:
                    trial.stop_sent = True
                    actor.handle.stop.remote(trial.run_id)

    def events(self, timeout: float | None = None) -> list[TrialEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._shut_down:
                    self._check()
                if self._pending or self._closed:
                    out, self._pending = self._pending, []
                    return out
                if len(self._broken) == len(self._actors):
                    raise RuntimeError(f"every worker slot's Ray actor died before it was ready "
                                       f"{MAX_START_FAILURES} times in a row; see the log for why")
                polls = self._polls()
            left = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - time.monotonic())
            if left <= 0:
                return []
            self._wait(polls, left)

    def shutdown(self, wait: float = 5.0) -> None:
        """Ask every trial to stop, wait up to `wait` s for them to end, then kill every actor (and
        Ray, if this executor started it). Trials cut off this way send no outcome: they stay to be
        resumed from their checkpoints."""
        with self._lock:
            if self._shut_down:
                return
            self._closed = True
            if not self._ray.is_initialized():  # someone shut Ray down under us: its actors went with it
                self._shut_down, self._owns_ray = True, False
                return
            for actor in self._actors:
                if actor.trial is not None and not actor.trial.stop_sent:
                    actor.trial.stop_sent = True
                    actor.handle.stop.remote(actor.trial.run_id)
            for event in self._pending:
                event.answer(True)  # nobody waits on a driver that has left
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                self._check()  # keeps outcomes that still arrive, for a last events() call
                if not any(a.trial is not None for a in self._actors):
                    break
                polls = self._polls()
            self._wait(polls, min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        with self._lock:
            self._shut_down = True
            for actor in self._actors:
                self._kill(actor)
                actor.trial = None
            self._setup_ref = None
        self._release_ray()

    # -- internals -------------------------------------------------------------------------------
    def _release_ray(self) -> None:
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()

    def _free(self) -> list[int]:
        return [i for i, a in enumerate(self._actors) if a.trial is None and i not in self._broken]

    def _polls(self) -> list:
        return [a.poll for i, a in enumerate(self._actors) if i not in self._broken and a.poll is not None]

    def _wait(self, polls: list, timeout: float) -> None:
        """Until a poll comes back or `timeout` s pass."""
        if polls:
            self._ray.wait(polls, num_returns=1, timeout=timeout)
        else:
            time.sleep(timeout)

    def _kill(self, actor: _Actor) -> None:
        try:
            self._ray.kill(actor.handle, no_restart=True)
        except Exception:  # already gone
            log.debug("ray.kill of %s failed", actor.name, exc_info=True)

    def _answer(self, actor: _Actor, run_id: int, epoch: int, stop: bool) -> None:
        with self._lock:
            if not self._shut_down and actor.trial is not None and actor.trial.run_id == run_id:
                actor.handle.answer.remote(run_id, epoch, bool(stop))

    def _check(self) -> None:
        """Take in the polls that came back; end the trials of dead actors and of those past their limit."""
        polls = self._polls()
        ready = self._ray.wait(polls, num_returns=len(polls), timeout=0)[0] if polls else []
        for position, actor in enumerate(self._actors):
            if actor.poll is not None and position not in self._broken and any(actor.poll == r for r in ready):
                self._receive(position, actor)
        if self._closed:
            return  # actors are about to be killed on purpose
        now = time.monotonic()
        for position, actor in enumerate(self._actors):
            trial = actor.trial
            limit = trial.request.time_limit if trial is not None else None
            if limit is not None and trial.started is not None and now - trial.started > limit:
                error = (f"trial {trial.request.trial_id} ran past its time limit of {limit:g} s; its Ray actor "
                         f"{actor.name} was killed")
                log.warning("%s", error)
                self._kill(actor)
                self._fail(actor, "timeout", error)
                self._actors[position] = self._start(actor.slot)

    def _receive(self, position: int, actor: _Actor) -> None:
        ref, actor.poll = actor.poll, None
        try:
            actor.name, events = self._ray.get(ref)
        except self._ray.exceptions.RayActorError as error:
            # its process or node died; an actor Ray calls unavailable (unreachable for now) is taken
            # for dead too: polling it again could spin, and its trial is retried from its checkpoint
            self._on_death(position, actor, "crashed", f"the Ray actor {actor.name} died: {error}")
            return
        except Exception as error:  # the poll itself failed, e.g. an event the driver cannot unpickle
            self._on_death(position, actor, "exception", f"events of Ray actor {actor.name} could not be read "
                                                         f"(the actor was killed): {error!r}")
            return
        if not actor.ready:
            actor.ready, self._start_failures[position] = True, 0
        for seq, run_id, kind, *payload in events:
            actor.acked = seq
            self._on_event(actor, run_id, kind, payload)
        actor.poll = actor.handle.poll.remote(actor.acked, POLL_WAIT)

    def _on_event(self, actor: _Actor, run_id: int, kind: str, payload: list) -> None:
        trial = actor.trial
        if trial is None or trial.run_id != run_id:
            log.debug("%s sent %r of a trial that has ended; ignored", actor.name, kind)
            return
        trial_id = trial.request.trial_id
        if kind == "started":
            trial.started = time.monotonic()
            self._pending.append(TrialEvent("started", trial_id, actor.name))
        elif kind == "epoch":
            trial.epochs += 1
            epoch, metrics = payload
            reply = lambda stop, a=actor, r=run_id, e=epoch: self._answer(a, r, e, stop)  # noqa: E731
            self._pending.append(TrialEvent("epoch", trial_id, actor.name, epoch=epoch, metrics=metrics,
                                            reply=Reply(reply)))
        elif kind == "finished":
            actor.trial = None  # the slot is free exactly when its outcome is queued: idle() stays true to it
            self._pending.append(TrialEvent("finished", trial_id, actor.name, outcome=payload[0]))

    def _on_death(self, position: int, actor: _Actor, reason: str, error: str) -> None:
        self._kill(actor)  # it may live on after a failed poll; then it must not hold its resources
        if not actor.ready:
            self._start_failures[position] += 1
        if actor.trial is not None:
            log.warning("%s (slot %d, trial %s)", error, actor.slot.index, actor.trial.request.trial_id)
            self._fail(actor, reason, f"{error}\nwhile running trial {actor.trial.request.trial_id}")
        else:
            log.warning("%s (slot %d, idle)", error, actor.slot.index)
        if self._closed:
            return
        if self._start_failures[position] >= MAX_START_FAILURES:
            log.error("Ray actors for slot %d died %d times before they were ready; the slot is given up",
                      actor.slot.index, self._start_failures[position])
            self._broken.add(position)
            return
        self._actors[position] = self._start(actor.slot)

    def _fail(self, actor: _Actor, reason: str, error: str) -> None:
        trial, actor.trial = actor.trial, None
        trial_id = trial.request.trial_id
        if trial.started is None:  # keep started -> finished for every trial, even one that never began
            self._pending.append(TrialEvent("started", trial_id, actor.name))
        self._pending.append(TrialEvent("finished", trial_id, actor.name, outcome=TrialOutcome(
            "FAILED", None, epochs=trial.epochs, reason=reason, error=error)))
