"""The agent: the only part that knows every other part.

spec -> data + profile -> families and search space -> ask/run/tell loop -> best
model on the test split -> export -> report. Every event is committed to the trial
database before it is acted on, so a run killed at any moment resumes from there.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from pydantic import ValidationError

import automl
from automl.data import load_data
from automl.data.base import PreparedData
from automl.errors import BudgetExhausted, PluginError, SpecError
from automl.execution.threads import ThreadExecutor
from automl.final_models import FinalModels
from automl.planning import build_space, choose_families
from automl.plugins import Registry, discover
from automl.reporting.base import RunObserver
from automl.rundir import RunLock, prepare_run_dir
from automl.space import SearchSpace
from automl.spec import METRICS, TaskSpec, problems_from_validation_error, spec_fingerprint
from automl.search import Limits, Observers, SearchLoop
from automl.store import TrialStore, best_trial
from automl.strategies.base import Strategy
from automl.training.device import describe_device, resolve_device
from automl.training.runner import TrialContext, build_runner
from automl.training.trainer import TrainSettings, Trainer

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """Everything decided before the first trial."""

    spec: TaskSpec
    registry: Registry
    data: PreparedData
    metric: str
    direction: str
    metric_names: tuple[str, ...]
    choices: list
    space: SearchSpace
    strategy_cls: type[Strategy]
    strategy_options: Any
    families: dict = field(default_factory=dict)


def validate_strategy_options(strategy_cls: type[Strategy], options: Mapping[str, Any]):
    try:
        return strategy_cls.Options.model_validate(options)
    except ValidationError as error:
        problems = [(f"strategy.options.{path}".rstrip("."), msg) for path, msg in problems_from_validation_error(error)]
        raise SpecError(problems) from None


def make_plan(spec: TaskSpec, extra_plugin_dirs: Sequence[Path] = ()) -> Plan:
    """Load plugins and data and decide families and space; runs no trial, writes nothing."""
    registry = discover(tuple(spec.plugins_dirs) + tuple(extra_plugin_dirs))
    try:
        strategy_cls = registry.strategy(spec.strategy.name)
    except PluginError as error:
        if spec.strategy.name not in registry.names("strategies"):
            raise SpecError([("strategy.name", str(error))]) from None
        raise
    options = validate_strategy_options(strategy_cls, spec.strategy.options)
    data = load_data(spec.data, spec.split, task=spec.task, seed=spec.seed)
    task = data.profile.task
    metric, direction = spec.resolved_metric(task)
    if task not in METRICS[metric][1]:
        raise SpecError([("metric", f"{metric!r} does not apply to {task} (the task inferred from the data); "
                                    f"use one of {', '.join(m for m, (_, t) in METRICS.items() if task in t)} "
                                    "or set `task`")])
    if task == "classification" and spec.loss != "auto":
        raise SpecError([("loss", f"{spec.loss!r} is a regression loss, but the task is classification (inferred "
                                  "from the data); remove loss, or set task to regression")])
    bad = [m for m in spec.metrics if task not in METRICS[m][1]]
    if bad:
        raise SpecError([("metrics", f"{', '.join(bad)} do(es) not apply to {task}")])
    metric_names = tuple(dict.fromkeys((metric, *spec.metrics)))
    families = {name: registry.family(name) for name in registry.names("families")}
    choices = choose_families(data.profile, families, spec.families)
    chosen = [c.family for c in choices if c.chosen]
    space = build_space(data.profile, families, chosen, spec.families)
    return Plan(spec, registry, data, metric, direction, metric_names, choices, space, strategy_cls, options,
                {n: families[n] for n in chosen})


def versions() -> dict[str, str]:
    import numpy
    import sklearn

    return {"automl": automl.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "scikit-learn": sklearn.__version__}


class Agent:
    def __init__(self, spec: TaskSpec, *, overwrite: bool = False, observers: Sequence[RunObserver] = (),
                 plugin_dirs: Sequence[Path] = ()):
        self.spec = spec
        self.overwrite = overwrite
        self.extra_observers = list(observers)
        self.plugin_dirs = list(plugin_dirs)
        self.run_dir = Path(spec.output)

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if self.spec.execution.backend == "ray" and importlib.util.find_spec("ray") is None:
            raise SpecError([("execution.backend", "'ray' needs Ray installed: pip install 'automl[ray]'")])
        plan = make_plan(self.spec, self.plugin_dirs)  # fails before anything is written
        device = resolve_device(self.spec.execution.device)
        with RunLock(self.run_dir):
            resuming = prepare_run_dir(self.run_dir, spec_fingerprint(self.spec), self.overwrite)
            store = TrialStore(self.run_dir / TrialStore.FILENAME)
            try:
                return self._run(plan, store, device, resuming)
            finally:
                store.close()

    def _run(self, plan: Plan, store: TrialStore, device: str, resuming: bool) -> dict[str, Any]:
        from automl.reporting.tensorboard import TensorBoardObserver

        spec = self.spec
        self.plan, self.store = plan, store
        strategy_plugin = plan.registry.get("strategies", spec.strategy.name)
        self._write_meta(plan, store, device, strategy_plugin.source, resuming)
        strategy = plan.strategy_cls(plan.space, seed=spec.seed, max_budget=float(spec.budget.max_epochs),
                                     options=plan.strategy_options)
        strategy.workdir = self.run_dir / "strategy"
        strategy.workdir.mkdir(exist_ok=True)
        tensorboard = TensorBoardObserver(self.run_dir / "tensorboard", plan.space, plan.metric, plan.direction,
                                          plan.metric_names)
        self.observers = Observers([tensorboard, *self.extra_observers])
        settings = TrainSettings(plan.metric, plan.direction, plan.metric_names, device, spec.budget.patience, spec.seed,
                                 loss=spec.loss)
        self.settings = settings
        context = TrialContext(plan.data, settings, tuple(plan.families),
                               tuple(spec.plugins_dirs) + tuple(self.plugin_dirs), self.run_dir / "checkpoints")
        executor, workers = self._make_executor(context, device)
        strategy.parallelism = workers
        isolation = "ray" if spec.execution.backend == "ray" else spec.execution.isolation
        store.set_meta("run", {**store.get_meta("run"), "workers": workers, "isolation": isolation})
        budget = spec.budget
        self.loop = SearchLoop(
            strategy, label=f"strategy {spec.strategy.name!r} from {strategy_plugin.source}", space=plan.space,
            store=store, executor=executor,
            limits=Limits(budget.max_trials, budget.max_time, budget.max_failed, float(budget.max_epochs),
                          budget.max_trial_time, budget.max_consecutive_failures, spec.execution.retries),
            metric=plan.metric, direction=plan.direction, observers=self.observers,
            prior_elapsed=float(store.get_meta("elapsed_before", 0.0)), call_timeout=spec.strategy.timeout,
            fallback=self._fallback_factory(plan) if spec.strategy.fallback else None,
            fallback_name=spec.strategy.fallback or "random")
        resubmit = self.loop.replay()
        self.observers.run_started({
            "name": spec.name, "metric": plan.metric, "direction": plan.direction, "strategy": spec.strategy.name,
            "families": list(plan.families), "max_trials": budget.max_trials, "max_time": budget.max_time,
            "max_epochs": budget.max_epochs, "device": device, "workers": workers,
            "already_finished": sum(1 for t in store.trials() if t.finished)})
        try:
            stopped_because = self.loop.run(resubmit)
        except BaseException:
            store.set_meta("elapsed_before", self.loop.elapsed())
            self._write_report()
            self.observers.close()
            raise
        try:
            if stopped_because.startswith("max_consecutive_failures"):
                self._abort(stopped_because)
            summary = self._finish(plan, stopped_because)
        finally:
            self.observers.close()
        return summary

    def _abort(self, why: str) -> None:
        """Trials fail one after another: stop with the last error rather than burn the budget."""
        self.store.set_meta("elapsed_before", self.loop.elapsed())
        self.store.set_meta("final", {"best_trial_id": None, "stopped_because": why, "finished_at": time.time(),
                                      "duration_s": self.loop.elapsed()})
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
        store.set_meta("strategy", {"name": spec.strategy.name, "options": plan.strategy_options.model_dump(mode="json"),
                                    "source": strategy_source})
        run = store.get_meta("run") if resuming else None
        started = run["started_at"] if run else time.time()
        store.set_meta("run", {"started_at": started, "resumed_at": time.time() if resuming else None,
                               "device": describe_device(device), "workers": None,
                               "host": socket.gethostname(), "versions": versions()})
        if not resuming:
            store.set_meta("elapsed_before", 0.0)

    def _fallback_factory(self, plan: Plan):
        def make() -> Strategy:
            cls = plan.registry.strategy(self.spec.strategy.fallback)
            strategy = cls(plan.space, seed=self.spec.seed, max_budget=float(self.spec.budget.max_epochs),
                           options=cls.Options())
            strategy.workdir, strategy.parallelism = self.run_dir / "strategy", self.spec.execution.workers or 1
            return strategy
        return make

    def _make_executor(self, context: TrialContext, device: str):
        """Worker processes (one per device slot) by default; threads of this process on request."""
        execution = self.spec.execution
        if execution.backend == "ray":
            from automl.execution.ray_backend import RayExecutor

            workers = execution.workers or 1
            executor = RayExecutor(functools.partial(build_runner, context), workers=workers, address=execution.address,
                                   cpus_per_trial=execution.cpus_per_trial or 1.0,
                                   gpus_per_trial=execution.gpus_per_trial or 0.0)
            return executor, workers
        if execution.isolation == "threads":
            workers = execution.workers or 1
            if device == "cpu":  # split the cores so parallel trials do not fight over them
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
            return ThreadExecutor(build_runner(context), workers), workers
        from automl.execution.processes import ProcessExecutor
        from automl.execution.slots import plan_slots

        slots = plan_slots(device, execution.workers, execution.trials_per_gpu)
        return ProcessExecutor(functools.partial(build_runner, context), slots), len(slots)

    # -- after the search ---------------------------------------------------------------------------
    def _finish(self, plan: Plan, stopped_because: str) -> dict[str, Any]:
        from automl.export import export_model

        store = self.store
        trials = store.trials()
        best = best_trial(trials)
        duration = self.loop.elapsed()
        if best is None:
            store.set_meta("final", {"best_trial_id": None, "stopped_because": stopped_because,
                                     "finished_at": time.time(), "duration_s": duration})
            self._write_report()
            failed = [t for t in trials if t.status == "FAILED"]
            hint = f" The last error: {(failed[-1].error or '').strip().splitlines()[-1]}." if failed and failed[-1].error else ""
            raise BudgetExhausted(f"no trial finished with a usable score ({stopped_because}; {len(failed)} failed)."
                                  f"{hint} See {self.run_dir / 'report.html'}.")
        # the driver's own trainer, made only now: during the search the data live in the workers
        trainer = Trainer(plan.data, self.settings, plan.families)
        final_models = FinalModels(self, plan, trainer)
        model = final_models.trained(best)
        val = {k: v for k, v in best.metrics.items() if k in plan.metric_names}  # CV: the mean over folds
        models = {"search": {"trial_id": best.trial_id, "val": val, "test": final_models.test_metrics(model)}}
        exported, refit_error = model, None
        if final_models.refit_wanted():
            epochs = max(1, int(best.metrics.get("best_epoch") or best.epochs or 1))
            try:
                exported = trainer.fit_full(best.trial_id, final_models.trained_config(best), epochs)
            except RuntimeError as error:  # it diverged: keep the search's model rather than lose the run
                refit_error = str(error)
                log.warning("the refit failed (%s); the best trial's own model is exported", error)
            else:
                models["refit"] = {"epochs": epochs, "rows": final_models.refit_rows(),
                                   "test": final_models.test_metrics(exported)}
        ensemble_net, ensemble = final_models.ensemble(trials)
        if ensemble is not None:
            models["ensemble"] = ensemble
        default = "ensemble" if ensemble is not None and ensemble["beats_single"] else ("refit" if "refit" in models
                                                                                       else "search")
        model_info = export_model(exported, plan.data, best.config, best.trial_id, plan.metric, self.run_dir / "model",
                                  data_source=self.spec.data.model_dump(mode="json"), ensemble=ensemble_net,
                                  default="ensemble" if default == "ensemble" else "single",
                                  single="refit" if "refit" in models else "search")
        final = {"best_trial_id": best.trial_id, "best_family": best.family, "val": val,
                 "test": models[default]["test"], "models": models, "default_model": default,
                 "model": model_info, "finished_at": time.time(), "duration_s": duration,
                 "stopped_because": stopped_because, **({"refit_error": refit_error} if refit_error else {})}
        store.set_meta("final", final)
        store.set_meta("elapsed_before", duration)
        paths = self._write_report()
        summary = {**final, "best": val, "run_dir": str(self.run_dir), "metric": plan.metric, "direction": plan.direction,
                   "report": {k: str(v) for k, v in paths.items()}}
        self.observers.run_finished(summary)
        return summary

    def _write_report(self) -> dict[str, Path]:
        from automl.reporting.report import write_report

        try:
            return write_report(self.run_dir)
        except Exception:  # the report can be rebuilt with `automl report`; never lose the run over it
            log.exception("could not write the report; run `automl report %s` to retry", self.run_dir)
            return {}
