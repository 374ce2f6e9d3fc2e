"""Run trials on a Ray cluster (or a local Ray): one long-lived actor per slot.

Actors rather than tasks: `setup(slot)` (torch, the data, the family plugins) runs once
per actor, not once per trial, and an actor can be talked to while its trial runs, which
the per-epoch answers need. Each actor holds `cpus_per_trial` CPUs and `gpus_per_trial`
GPUs in Ray's own accounting for its whole life (a fraction shares a GPU; Ray sets
CUDA_VISIBLE_DEVICES for it), so Ray places the actors and nothing here plans devices.

The setup runs in the actor's constructor (its main thread, where Python may set signal
handlers); the loop of worker.py then runs in a thread of the actor, while `deliver`
and `poll` are served in others. Worker -> driver messages wait in the actor until the
driver fetches them with a long poll (one call in flight per actor, held open up to
POLL_WAIT s while there is nothing to say) and acknowledges them with the next one, so
none is lost or reordered, and a dead actor shows up as an error of that call. This
works the same through Ray Client, which has no streaming generators. Driver -> worker
messages are `deliver` calls numbered by the driver: a threaded actor may run two calls
out of order, so the actor hands them to the loop in their numbers' order.

A Ray that the executor starts itself (no address) listens on loopback only, without a
dashboard: its GCS runs any code it is sent, so nothing beyond this machine may reach it.

The pool (pool.py) keeps all search state and the time limits on the driver: an actor
past its limit is killed with ray.kill (a forced exit, whatever the trial does with
signals) and the slot gets a fresh actor. Ray is imported only here, when an executor is
made, so `import automl` never pulls it in; the executor shuts down only a Ray it started.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import pickle
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from automl.execution.base import Runner
from automl.execution.pool import WorkerPool
from automl.execution.slots import Slot
from automl.execution.worker import build_in_process, serve
from automl.records import Reason

__all__ = ["RayExecutor", "RayTransport"]

log = logging.getLogger(__name__)

POLL_WAIT = 2.0  # how long an actor holds a poll open when it has nothing to report
ACTOR_THREADS = 4  # the worker loop's calls: a poll and deliveries served at once


# -- the actor (runs on a Ray worker) ----------------------------------------------------------------

class _Mailbox:
    """Both directions of one actor's messages: numbered, so none is lost, doubled or reordered.
    The worker loop's end is send / receive; the driver's calls end in deliver / poll."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._outbox: list[tuple[int, bytes]] = []  # (number, message) until the driver acknowledges them
        self._sent = 0
        self._inbox: dict[int, bytes] = {}  # delivered messages by number, until their turn
        self._next_in = 1

    def deliver(self, seq: int, data: bytes) -> None:
        with self._changed:
            self._inbox[seq] = data
            self._changed.notify_all()

    def poll(self, acked: int, wait: float) -> list[tuple[int, bytes]]:
        with self._changed:
            self._outbox = [m for m in self._outbox if m[0] > acked]
            self._changed.wait_for(lambda: self._outbox, wait)
            return list(self._outbox)

    def send(self, message: tuple) -> None:
        from ray import cloudpickle

        data = cloudpickle.dumps(message)  # here, not in a poll: one that cannot travel must not break polls
        with self._changed:
            self._sent += 1
            self._outbox.append((self._sent, data))
            self._changed.notify_all()

    def receive(self, timeout: float | None) -> tuple | None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._next_in in self._inbox, timeout):
                return None
            self._next_in += 1
            return pickle.loads(self._inbox.pop(self._next_in - 1))


class _TrialWorker:
    """The body of a slot's actor; wrapped with ray.remote in the driver."""

    def __init__(self, setup_bytes: bytes, slot: Slot):
        # unpickled here, not by Ray: a setup that cannot load fails its trials visibly, as in processes.py
        runner, setup_error = build_in_process(setup_bytes, slot)
        self._mailbox = _Mailbox()
        name = f"ray-{slot.index}:{socket.gethostname()}:{os.getpid()}"
        threading.Thread(target=serve, args=(self._mailbox, name, slot, runner, setup_error), name="automl-worker",
                         daemon=True).start()

    def deliver(self, seq: int, data: bytes) -> None:
        self._mailbox.deliver(seq, data)

    def poll(self, acked: int, wait: float) -> list[tuple[int, bytes]]:
        """The messages after `acked`, waiting up to `wait` s for one."""
        return self._mailbox.poll(acked, wait)


# -- the driver side -------------------------------------------------------------------------------

LOOPBACK = "127.0.0.1"


# Ray starts its workers at nice 15, below everything else on the machine: beside 8 busy processes on 2
# cores an actor took 150 s to import torch (5 s at nice 0). A trial is the work the user asked for.
def local_system_config() -> dict:
    """A fresh dict each time: ray.init adds its own entries to the one it is given."""
    return {"worker_niceness": 0}


def init_arguments(address: str | None, init_kwargs: dict | None) -> dict:
    """ray.init's arguments: a Ray started here (no address, no RAY_ADDRESS) listens on loopback only,
    has no dashboard and runs its workers at normal priority, unless init_kwargs say otherwise."""
    arguments: dict[str, Any] = {"address": address}
    init_kwargs = dict(init_kwargs or {})
    if address is None and not os.environ.get("RAY_ADDRESS"):
        arguments.update(include_dashboard=False, _node_ip_address=LOOPBACK,
                         _system_config={**local_system_config(), **init_kwargs.pop("_system_config", {})})
    arguments.update(init_kwargs)
    return arguments


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and (host == "localhost" or ipaddress.ip_address(host).is_loopback)
    except ValueError:  # a host name: Ray resolves it
        return False


def _init(ray, arguments: dict) -> None:
    node_ip = arguments.get("_node_ip_address")
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if not _is_loopback(node_ip) or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        ray.init(**arguments)
        return
    # On Linux, ray.init swaps a loopback node IP for the machine's address (services.resolve_ip_for_localhost,
    # Ray 2.x), and the GCS, raylet and workers then listen on every interface. Its single-machine mode (the
    # default on macOS and Windows) keeps loopback: on for this ray.init only; the node keeps its IP after.
    saved, constants.ENABLE_RAY_CLUSTER = constants.ENABLE_RAY_CLUSTER, False
    try:
        ray.init(**arguments)
    finally:
        constants.ENABLE_RAY_CLUSTER = saved

@dataclass(eq=False)
class _Actor:
    slot: Slot
    handle: Any  # ray.actor.ActorHandle
    poll: Any = None  # the poll call in flight (an ObjectRef)
    acked: int = 0  # the last message number taken in
    delivered: int = 0  # the last message number sent
    death: tuple[Reason, str] | None = None


class RayTransport:
    """Ray actors, one per slot, reached by `deliver` calls and long polls."""

    kind = "Ray actor"

    def __init__(self, setup: Callable[[Slot], Runner], *, address: str | None, cpus_per_trial: float,
                 gpus_per_trial: float, init_kwargs: dict | None):
        import ray

        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():  # a Ray the caller set up (and its options) is used as it is
            _init(ray, init_arguments(address, init_kwargs))
            self._owns_ray = True
        try:
            try:
                setup_bytes = ray.cloudpickle.dumps(setup)
            except Exception as error:
                raise TypeError(f"setup must be picklable: {error}") from error
            # in the object store once: every actor, fresh ones for dead slots too, reads the data from there
            self._setup_ref = ray.put(setup_bytes)
            self._remote = ray.remote(_TrialWorker)
            # a dead actor is replaced by the pool, with its trial failed: Ray must neither restart it nor retry calls
            self.actor_options = {"num_cpus": cpus_per_trial, "num_gpus": gpus_per_trial,
                                  "max_concurrency": ACTOR_THREADS, "max_restarts": 0, "max_task_retries": 0}
        except BaseException:
            self.close()  # a Ray started for nothing must not outlive the failed constructor
            raise

    def check_resources(self, workers: int, cpus: float, gpus: float) -> None:
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

    def start(self, slot: Slot) -> _Actor:
        handle = self._remote.options(**self.actor_options).remote(self._setup_ref, slot)
        return _Actor(slot, handle, poll=handle.poll.remote(0, POLL_WAIT))  # its first answer says "ready"

    def name(self, worker: _Actor) -> str:
        return f"ray-{worker.slot.index}"

    def encode(self, message: tuple) -> bytes:
        return self._ray.cloudpickle.dumps(message)

    def send(self, worker: _Actor, data: bytes) -> None:
        if worker.death is None and self._ray.is_initialized():
            worker.delivered += 1
            worker.handle.deliver.remote(worker.delivered, data)

    def receive(self, worker: _Actor) -> list[tuple]:
        if worker.poll is None or not self._ray.is_initialized() or \
                not self._ray.wait([worker.poll], num_returns=1, timeout=0)[0]:
            return []
        ref, worker.poll, messages = worker.poll, None, []
        try:
            for seq, data in self._ray.get(ref):
                messages.append(pickle.loads(data))
                worker.acked = seq
        except self._ray.exceptions.RayActorError as error:
            # its process or node died; an actor Ray calls unavailable (unreachable for now) is taken
            # for dead too: polling it again could spin, and its trial is retried from its checkpoint
            worker.death = Reason.CRASHED, f"the Ray actor died: {error}"
        except Exception as error:  # the poll itself failed, e.g. a message the driver cannot unpickle
            worker.death = Reason.EXCEPTION, f"messages of the Ray actor could not be read (it was killed): {error!r}"
        if worker.death is None:
            worker.poll = worker.handle.poll.remote(worker.acked, POLL_WAIT)
        return messages

    def wait(self, workers: list[_Actor], timeout: float) -> None:
        polls = [w.poll for w in workers if w.poll is not None] if self._ray.is_initialized() else []
        if polls:
            self._ray.wait(polls, num_returns=1, timeout=timeout)
        else:
            time.sleep(timeout)

    def death(self, worker: _Actor) -> tuple[Reason, str] | None:
        if worker.death is None and not self._ray.is_initialized():  # someone shut Ray down under us
            worker.death = Reason.CRASHED, "Ray was shut down, and its actors with it"
        return worker.death

    def kill(self, worker: _Actor, grace: float = 0.0) -> list[tuple]:
        worker.poll = None
        if self._ray.is_initialized():
            try:  # also after a death: an actor whose poll failed may live on, holding its resources
                self._ray.kill(worker.handle, no_restart=True)
            except Exception:  # already gone
                log.debug("ray.kill of the actor of slot %d failed", worker.slot.index, exc_info=True)
        worker.death = worker.death or (Reason.CRASHED, "killed")
        return []

    def kill_text(self, worker: _Actor) -> str:
        return "its Ray actor was killed with ray.kill"

    def close(self) -> None:
        self._setup_ref = None
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()


class RayExecutor(WorkerPool):
    """The Executor contract over Ray actors; `setup(slot) -> Runner` runs once in each.

    `namespace`, `runtime_env`, `node_ip_address` and `init_kwargs` go to ray.init when no Ray is
    initialised in this process; otherwise the Ray found is used as it is (they and address are
    ignored) and left running. A Ray started here without an address listens on 127.0.0.1 only."""

    def __init__(self, setup: Callable[[Slot], Runner], *, workers: int, address: str | None = None,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, namespace: str | None = None,
                 runtime_env: dict | None = None, node_ip_address: str | None = None,
                 init_kwargs: dict | None = None):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if cpus_per_trial <= 0 or gpus_per_trial < 0:
            raise ValueError(f"cpus_per_trial must be > 0 and gpus_per_trial >= 0, not {cpus_per_trial} "
                             f"and {gpus_per_trial}")
        given = {"namespace": namespace, "runtime_env": runtime_env, "_node_ip_address": node_ip_address}
        init_kwargs = {**{k: v for k, v in given.items() if v is not None}, **(init_kwargs or {})}
        transport = RayTransport(setup, address=address, cpus_per_trial=cpus_per_trial,
                                 gpus_per_trial=gpus_per_trial, init_kwargs=init_kwargs)
        transport.check_resources(workers, cpus_per_trial, gpus_per_trial)
        device = "cuda" if gpus_per_trial > 0 else "cpu"
        self.slots = [Slot(i, device, max(1, int(cpus_per_trial)), {}) for i in range(workers)]
        self.actor_options = transport.actor_options
        super().__init__(transport, self.slots)
