"""The agent: the only part that knows every other part.

spec -> data + profile -> families and search space -> ask/run/tell loop -> best
model on the test split -> export -> report. Every event is committed to the trial
database before it is acted on, so a run killed at any moment resumes from there.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import platform
import socket
import time
from pathlib import Path
from typing import Any, Sequence

import automl
from automl.errors import AutoMLError, BudgetExhausted, DiskFullError, SpecError
from automl.execution.prestart import PrestartedWorkers, planned_slots
from automl.execution.threads import ThreadExecutor
from automl.final.time_plan import SearchReserve, refit_rows, refit_wanted
from automl.final.warm_imports import ImportAfterFirstTrial
from automl.planning import Plan, make_plan, plan_strategy
from automl.reporting.base import Observers, RunObserver
from automl.retention import Retention
from automl.rundir import RunLock, prepare_run_dir
from automl.spec import TaskSpec, spec_fingerprint
from automl.search import Limits, SearchLoop, StopCause
from automl.strategy_builder import StrategySetup, build_strategy
from automl.strategy_choice import AUTO, StrategyChoice
from automl.store import TrialStore
from automl.store_file import check_database
from automl.strategies.base import Strategy
from automl.training.device import describe_device, resolve_device
from automl.training.runner import TrialContext, build_runner, worker_data
from automl.training.settings import TrainSettings

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    import numpy
    import sklearn

    # torch's from its metadata: the driver hands out its first trial before it imports torch
    return {"automl": automl.__version__, "python": platform.python_version(),
            "torch": importlib.metadata.version("torch"),
            "numpy": numpy.__version__, "scikit-learn": sklearn.__version__}


class Agent:
    def __init__(self, spec: TaskSpec, *, overwrite: bool = False, observers: Sequence[RunObserver] = (),
                 plugin_dirs: Sequence[Path] = (), started_at: float | None = None,
                 prestarted: PrestartedWorkers | None = None):
        """`prestarted`: workers the command started before it imported this module (`early_workers_for_file`);
        used when their slots are the ones the run plans, else closed."""
        self.spec = spec
        self._early = prestarted
        self.started_at = started_at  # time.time() when the command started (default: when run() starts)
        self.overwrite = overwrite
        self.extra_observers = list(observers)
        self.plugin_dirs = list(plugin_dirs)
        self.run_dir = Path(spec.output)

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.started_at = self.started_at or time.time()
        if self.spec.execution.backend == "ray" and importlib.util.find_spec("ray") is None:
            raise SpecError([("execution.backend", "'ray' needs Ray installed: pip install 'automl[ray]'")])
        RunLock(self.run_dir).check_free()  # a directory in use is refused at once, before the data load
        if not self.overwrite:  # a damaged trials.db is refused before the data load, not after it
            check_database(self.run_dir / TrialStore.FILENAME)
        device = resolve_device(self.spec.execution.device)
        self._prestarted = self._prestart(device, self._early)  # workers import torch while the data loads
        try:
            plan = make_plan(self.spec, self.plugin_dirs)  # fails before anything is written
            with RunLock(self.run_dir):
                resuming = prepare_run_dir(self.run_dir, spec_fingerprint(self.spec), self.overwrite)
                store = TrialStore(self.run_dir / TrialStore.FILENAME)
                try:
                    return self._run(plan, store, device, resuming)
                finally:
                    store.close()
        finally:
            if self._prestarted is not None:  # a no-op once the executor took the workers
                self._prestarted.close()

    def _prestart(self, device: str, early: PrestartedWorkers | None):
        """Worker processes started before the plan (`early` ones if they fit), or None (Ray, threads)."""
        slots = planned_slots(self.spec.execution, device)
        if early is not None and early.slots == slots:
            return early
        if early is not None:
            early.close()
        if slots is None:
            return None
        from automl.execution.processes import ProcessExecutor

        return ProcessExecutor.prestart(slots)

    def _run(self, plan: Plan, store: TrialStore, device: str, resuming: bool) -> dict[str, Any]:
        from automl.reporting.tensorboard import TensorBoardObserver

        spec = self.spec
        if resuming:
            plan = self._strategy_of_the_first_run(plan, store)
        self.plan, self.store = plan, store
        if plan.budget_too_small:
            log.warning("%s", plan.budget_note)
        for finding in plan.checks.findings:
            log.warning("data check: %s", finding.message)
        strategy_name = plan.strategy.name
        strategy_plugin = plan.registry.get("strategies", strategy_name)
        self._write_meta(plan, store, device, strategy_plugin.source, resuming)
        tensorboard = TensorBoardObserver(self.run_dir / "tensorboard", plan.space, plan.metric, plan.direction,
                                          plan.metric_names)
        self.observers = Observers([tensorboard, *self.extra_observers, ImportAfterFirstTrial()])
        settings = TrainSettings(plan.metric, plan.direction, plan.metric_names, device, spec.budget.patience,
                                 spec.seed, loss=spec.loss)
        self.settings = settings
        families = tuple(plan.registry.family_ref(name) for name in plan.families)
        context = TrialContext(worker_data(plan.data), settings, families, self.run_dir / "checkpoints")
        search_started = time.time()  # the search's clock counts the wait for the workers to be ready
        executor, workers = self._make_executor(context, device)
        log.info("%d worker(s), %d torch thread(s) each (%s)", workers, *self.threads)
        try:
            strategy = build_strategy(plan.strategy_cls, plan.strategy_options, self._strategy_setup(workers),
                                      registry=plan.registry)
        except BaseException:
            executor.shutdown()
            raise
        isolation = "ray" if spec.execution.backend == "ray" else spec.execution.isolation
        store.set_meta("run", {**store.get_meta("run"), "workers": workers, "isolation": isolation})
        budget = spec.budget
        self.loop = SearchLoop(
            strategy, label=f"strategy {strategy_name!r} from {strategy_plugin.source}", space=plan.space,
            store=store, executor=executor,
            limits=Limits(budget.max_trials, budget.max_time, budget.max_failed, float(budget.max_epochs),
                          budget.max_trial_time, budget.max_consecutive_failures, spec.execution.retries),
            metric=plan.metric, direction=plan.direction, observers=self.observers,
            prior_elapsed=float(store.get_meta("elapsed_before", 0.0)), call_timeout=spec.strategy.timeout,
            fallback=self._fallback_factory(plan, workers) if spec.strategy.fallback else None,
            fallback_name=spec.strategy.fallback or "random",
            after_outcome=Retention(context.checkpoint_dir, spec.ensemble.candidates, float(budget.max_epochs))
            if spec.execution.keep_checkpoints == "best" else None,
            time_reserve=None if budget.max_time is None else SearchReserve(
                budget.max_time, self.started_at, plan.data, spec.refit,
                refit_wanted(spec.refit, refit_rows(plan.data)), store.trials),
            # the refit trains in an idle worker: the executor is shut down after _finish
            keep_executor=True, start_time=search_started)
        resubmit = self.loop.replay()
        self.observers.run_started({
            "name": spec.name, "metric": plan.metric, "direction": plan.direction, "strategy": strategy_name,
            "families": list(plan.families), "max_trials": budget.max_trials, "max_time": budget.max_time,
            "max_epochs": budget.max_epochs, "device": device, "workers": workers,
            "threads": self.threads[0], "threads_note": self.threads[1],
            "trials_unit": "full trainings" if self.loop.counts_full_trainings else "trials",
            "already_finished": sum(1 for t in store.trials() if t.finished)})
        try:
            search_end = self.loop.run(resubmit)
        except BaseException:
            store.set_meta("elapsed_before", self.loop.elapsed())
            self._write_report()
            self.observers.close()
            raise
        try:
            stopped_because = str(search_end)
            if search_end.cause is StopCause.CONSECUTIVE_FAILURES:
                self._abort(stopped_because)
            summary = self._finish(plan, stopped_because)
        except BaseException:  # Ctrl-C or an error at the end: a refit still training is read by nobody
            self.loop.executor.shutdown(wait=0.0)
            raise
        finally:
            self.loop.executor.shutdown()
            self.observers.close()
        return summary

    def _abort(self, why: str) -> None:
        """Trials fail one after another: stop with the last error rather than burn the budget."""
        from automl.final.finish import no_model_document

        self.store.set_meta("elapsed_before", self.loop.elapsed())
        self.store.set_meta("final", no_model_document(why, self.loop.elapsed()))
        self._write_report()
        failed = [t for t in self.store.trials() if t.status == "FAILED"]
        last = failed[-1] if failed else None
        last_line = ((last.error or "").strip().splitlines() or [""])[-1] if last else ""
        detail = f" The last one ({last.trial_id}, {last.reason}): {last_line}" if last else ""
        raise BudgetExhausted(f"search aborted: {why}.{detail} Finished trials are kept; fix the cause and run "
                              f"again to resume. See {self.run_dir / 'report.html'}.")

    def _write_meta(self, plan: Plan, store: TrialStore, device: str, strategy_source: str, resuming: bool) -> None:
        spec = self.spec
        store.set_meta("spec", spec.model_dump(mode="json"))
        store.set_meta("fingerprint", spec_fingerprint(spec))
        store.set_meta("metric", plan.metric)
        store.set_meta("direction", plan.direction)
        store.set_meta("metrics", list(plan.metric_names))
        store.set_meta("space", plan.space.to_dict())
        store.set_meta("profile", plan.data.profile.to_dict())
        store.set_meta("choices", [c.to_dict() for c in plan.choices])
        store.set_meta("data_checks", [f.to_dict() for f in plan.checks.findings])
        store.set_meta("strategy", {**plan.strategy.to_dict(), "options": plan.strategy_options.model_dump(mode="json"),
                                    "source": strategy_source, "budget_note": plan.budget_note})
        run = store.get_meta("run") if resuming else None
        started = run["started_at"] if run else time.time()
        store.set_meta("run", {"started_at": started, "resumed_at": time.time() if resuming else None,
                               "device": describe_device(device), "workers": None,
                               "host": socket.gethostname(), "versions": versions()})
        if not resuming:
            store.set_meta("elapsed_before", 0.0)

    @staticmethod
    def _strategy_of_the_first_run(plan: Plan, store: TrialStore) -> Plan:
        """On resume, `auto` keeps the strategy it chose when the run started: a larger budget might
        pick another, and a strategy rebuilt by replay must be the one that made the trials."""
        first = store.get_meta("strategy") or {}
        if plan.strategy.chosen_by != AUTO or first.get("chosen_by") != AUTO or first.get("name") == plan.strategy.name:
            return plan
        log.info("resuming with %s, the strategy auto chose when the run started", first["name"])
        return plan_strategy(plan, StrategyChoice(first["name"], first.get("options") or {}, first.get("reason", ""),
                                                  chosen_by=AUTO))

    def _strategy_setup(self, workers: int) -> StrategySetup:
        return StrategySetup(self.plan.space, self.spec.seed, float(self.spec.budget.max_epochs),
                             self.run_dir / "strategy", workers)

    def _fallback_factory(self, plan: Plan, workers: int):
        def make() -> Strategy:
            cls = plan.registry.strategy(self.spec.strategy.fallback)
            return build_strategy(cls, {}, self._strategy_setup(workers), registry=plan.registry)
        return make

    def _make_executor(self, context: TrialContext, device: str):
        """Worker processes (one per device slot) by default; threads of this process on request."""
        execution = self.spec.execution
        if execution.backend == "ray":
            from automl.execution.ray_backend import RayExecutor

            workers = execution.workers or 1
            executor = RayExecutor(functools.partial(build_runner, context), workers=workers, address=execution.address,
                                   cpus_per_trial=execution.cpus_per_trial or 1.0,
                                   gpus_per_trial=execution.gpus_per_trial or 0.0, namespace=execution.namespace,
                                   runtime_env=execution.runtime_env, node_ip_address=execution.node_ip_address)
            self.threads = (executor.slots[0].torch_threads, "execution.cpus_per_trial")
            return executor, workers
        if execution.isolation == "threads":
            import torch

            from automl.execution.slots import Slot, threads_per_worker

            workers = execution.workers or 1
            self.threads = (torch.get_num_threads(), "this process's torch threads")
            if device == "cpu":  # split the cores so parallel trials do not fight over them
                threads, why = threads_per_worker(workers)
                torch.set_num_threads(threads)
                self.threads = (threads, why)

            runner = build_runner(context)  # one trainer for every thread: they share the driver's data tensors
            slots = [Slot(i, device, torch.get_num_threads()) for i in range(workers)]
            return ThreadExecutor(lambda slot: runner, slots), workers
        from automl.execution.slots import threads_per_worker

        slots = self._prestarted.slots
        self.threads = (slots[0].torch_threads, threads_per_worker(len(slots))[1])
        # a warm spare worker where trials are killed for time: the slot's next trial starts at once
        spare = self.spec.budget.max_trial_time is not None
        return self._prestarted.ready(functools.partial(build_runner, context), spare=spare), len(slots)

    # -- after the search ---------------------------------------------------------------------------
    def _finish(self, plan: Plan, stopped_because: str) -> dict[str, Any]:
        import torch

        from automl.final.finish import finish_search

        duration = self.loop.elapsed()
        threads = None
        if self.settings.device == "cpu":  # the refit and the ensemble run alone now: every usable core
            from automl.execution.slots import threads_per_worker

            threads = threads_per_worker(1)[0]
            torch.set_num_threads(threads)
        if self.spec.execution.backend == "ray":  # an actor keeps the threads its CPUs pay for
            threads = None
        try:
            final = finish_search(self.spec, plan.data, plan.families, self.store, self.run_dir, self.settings,
                                  stopped_because=stopped_because, duration=duration,
                                  progress=self.observers.phase, deadline=self._deadline(),
                                  executor=self.loop.executor, refit_threads=threads)
        except AutoMLError:
            self._write_report()  # the trials and why no model came out of them
            raise
        self.store.set_meta("elapsed_before", duration)
        paths = self._write_report()
        summary = {**final, "best": final["val"], "run_dir": str(self.run_dir), "metric": plan.metric,
                   "direction": plan.direction, "report": {k: str(v) for k, v in paths.items()}}
        self.observers.run_finished(summary)
        return summary

    def _deadline(self) -> float | None:
        """When max_time wants this command done: its search time was max_time less earlier commands'."""
        max_time = self.spec.budget.max_time
        return None if max_time is None else self.started_at + max_time - self.loop.prior_elapsed

    def _write_report(self) -> dict[str, Path]:
        import sys

        from automl.reporting.report import write_report

        leaving = sys.exc_info()[1]  # written on the way out of this error, which stays the one raised
        try:
            return write_report(self.run_dir)
        except DiskFullError as error:
            if leaving is None:
                raise  # the run stops with the one-line disk-full message (the next write would fail too)
            log.warning("could not write the report: %s", error)
            return {}
        except Exception:  # the report can be rebuilt with `automl report`; never lose the run over it
            log.exception("could not write the report; run `automl report %s` to retry", self.run_dir)
            return {}
