"""`automl.optimize`: any objective, the same strategies, loop and store as `automl run`.

    from automl import optimize
    from automl.space import Float, Int, SearchSpace
    space = SearchSpace((Float("x", -5, 5), Int("n", 1, 10)))
    result = optimize(lambda config, budget: (config["x"] - 1) ** 2 + config["n"], space,
                      strategy="bayesian", max_trials=40, seed=0)
    result.best_config, result.best_value

The objective receives the config and the budget the strategy chose (None-free: the
full budget is `max_budget`; for `asha` and `hyperband`, whose trials get part of it, `max_trials`
counts full budgets, each trial its share) and returns a number (the metric) or a dict of metrics
holding `metric`. An exception or a non-finite value makes that trial FAILED; the
search goes on.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

from automl.errors import RunDirError
from automl.records import Reason, Status, TrialOutcome
from automl.execution.slots import plan_slots
from automl.execution.threads import ThreadExecutor
from automl.search import Limits, SearchLoop, metrics_of
from automl.plugins import Registry, discover
from automl.space import SearchSpace
from automl.store import TrialRecord, TrialStore, best_trial
from automl.strategies.base import Strategy
from automl.strategy_builder import StrategySetup, build_strategy
from automl.strategy_choice import AUTO, SearchFacts, choose_strategy
from automl.training.metrics import to_loss

Objective = Callable[[Mapping[str, Any], float], Union[float, Mapping[str, float]]]


@dataclass
class OptimizeResult:
    best_trial_id: str | None
    best_config: dict[str, Any] | None
    best_value: float | None  # the metric in its own units
    trials: list[TrialRecord]
    stopped_because: str
    storage: Path | None  # the trial database, when one was asked for


def _strategy_class(strategy: str | type[Strategy], registry: Registry) -> tuple[type[Strategy], str]:
    if isinstance(strategy, str):
        plugin = registry.get("strategies", strategy)
        return plugin.load(), f"strategy {strategy!r} from {plugin.source}"
    return strategy, f"strategy {getattr(strategy, 'name', strategy.__name__)!r} ({strategy.__module__})"


def optimize(objective: Objective, space: SearchSpace, strategy: str | type[Strategy] = "random", *,
             max_trials: int | None = 50, max_time: float | None = None, seed: int = 0,
             options: Mapping[str, Any] | None = None, max_budget: float = 1.0, workers: int = 1,
             metric: str = "loss", direction: str = "minimize", max_failed: int | None = None,
             storage: str | Path | None = None, plugins_dirs: Sequence[str | Path] = ()) -> OptimizeResult:
    """Minimise (or maximise) `objective` over `space`. With `storage` (a folder) the trial
    database is kept there and a second call with the same space resumes from it.
    `strategy="auto"` picks one from the budget and the space, as `automl run` does."""
    registry = discover([Path(p) for p in plugins_dirs])
    if strategy == AUTO and options:
        raise ValueError("strategy 'auto' picks its own options; name a strategy to pass options")
    with tempfile.TemporaryDirectory(prefix="automl-optimize-") as scratch:
        folder = Path(storage) if storage is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        store = TrialStore(folder / TrialStore.FILENAME)
        try:
            known = store.get_meta("space")
            if known is not None and known != space.to_dict():
                raise RunDirError(f"{folder} holds a search over another space; use a new storage folder")
            if strategy == AUTO:  # chosen once per storage: a resumed search keeps the strategy that began it
                choice = store.get_meta("strategy") or choose_strategy(SearchFacts.of(
                    space, max_trials=max_trials, max_time=max_time, max_epochs=max_budget, workers=workers),
                    registry.names("strategies")).to_dict()
                store.set_meta("strategy", choice)
                strategy, options = choice["name"], choice["options"]
            cls, label = _strategy_class(strategy, registry)
            instance = build_strategy(cls, options, StrategySetup(space, seed, float(max_budget), folder / "strategy",
                                                                  workers), registry=registry)
            store.set_meta("space", space.to_dict())
            store.set_meta("metric", metric)
            store.set_meta("direction", direction)

            def run_trial(request, report) -> TrialOutcome:
                metrics = metrics_of(objective(dict(request.config), request.budget), metric)
                value = metrics.get(metric, math.nan)
                if not math.isfinite(value):
                    return TrialOutcome(Status.FAILED, None, metrics, reason=Reason.NON_FINITE,
                                        error=f"the objective returned {metric}={value}")
                return TrialOutcome(Status.COMPLETE, to_loss(value, direction), metrics, epochs=0)

            loop = SearchLoop(instance, label=label, space=space, store=store,
                              executor=ThreadExecutor(lambda slot: run_trial, plan_slots("cpu", workers)),
                              limits=Limits(max_trials, max_time, max_failed or max_trials or 10**9, float(max_budget)),
                              metric=metric, direction=direction)
            stopped = str(loop.run(loop.replay()))
            trials = store.trials()
        finally:
            store.close()
    best = best_trial(trials)
    return OptimizeResult(best.trial_id if best else None, dict(best.config) if best else None,
                          best.metrics.get(metric) if best else None, trials, stopped,
                          folder / TrialStore.FILENAME if storage is not None else None)
