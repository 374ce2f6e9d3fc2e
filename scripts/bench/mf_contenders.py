"""Contenders of the multi-fidelity suite and the recorder that counts their cost.

Every contender is a function `run(problem, seed, recorder)` that evaluates configs through
`recorder.observe(config, z, paid)` until `recorder.exhausted()`; `paid` is what that evaluation
costs in fidelity units (epochs), so the cost model of each contender is in its driver:

* ours (hyperband, asha, random) - driven by ask/tell directly, one trial at a time, like
  automl's SearchLoop with one worker. A suggestion at budget b that carries `resume_from`
  (a promotion) continues that trial's checkpoint and pays b - (the resumed trial's budget);
  any other pays b. random suggests every config at the full budget.
* optuna (TPE + HyperbandPruner / SuccessiveHalvingPruner) - each trial trains epoch by epoch,
  z = 1, 2, ..., reporting every step (trial.report, trial.should_prune) and pays 1 per step
  it ran; a pruned trial has paid for the steps up to where it was pruned.
* keras-tuner Hyperband (HyperbandOracle without a Tuner) - a trial runs from
  "tuner/initial_epoch" to "tuner/epochs" and pays the difference: what keras-tuner's own
  Hyperband tuner trains when it reloads the parent trial's weights ("tuner/trial_id").
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings
from typing import Any, Callable, Mapping

import numpy as np

from automl.space import Float, Int
from automl.strategies.base import Observation, Status

ETA = 3  # the reduction factor of every contender


class Exhausted(Exception):
    """Raised by observe() once the cost budget is spent (ends a contender's loop)."""


class Recorder:
    """Counts cost and follows the incumbent.

    For each config the value at its highest evaluated fidelity is kept (a later evaluation
    at the same fidelity replaces it). The incumbent is the config with the lowest such value;
    its regret is its full-fidelity value (looked up, not paid for) minus the optimum. The
    full-fidelity-only incumbent is the lowest value among configs evaluated at max fidelity.
    Each change of either is logged with the cumulative cost after the evaluation that made it.
    """

    def __init__(self, problem, cost_cap: float):
        self.problem, self.cap = problem, cost_cap
        self.cost = 0.0
        self.evals = self.full_evals = 0
        self.seen: dict[tuple, tuple[int, float, Mapping[str, Any]]] = {}  # key -> (z, value, config)
        self.inc: tuple | None = None
        self.inc_value = math.inf
        self.full_best = math.inf
        self.log: list[tuple[float, float, float | None, float | None]] = []  # cost, regret, full-only, test

    def exhausted(self) -> bool:
        return self.cost >= self.cap

    def observe(self, config: Mapping[str, Any], z: int, paid: float) -> float:
        if self.exhausted():
            raise Exhausted
        p = self.problem
        z = int(round(z))
        value = p.value(config, z)
        self.cost += paid
        self.evals += 1
        key = p.key(config)
        before = (self.inc, self.inc_value, self.full_best)
        prev = self.seen.get(key)
        if prev is None or z >= prev[0]:
            self.seen[key] = (z, value, dict(config))
            if value < self.inc_value:
                self.inc, self.inc_value = key, value
            elif key == self.inc:  # the incumbent got worse at a higher fidelity: look again
                self.inc, (_, self.inc_value, _) = min(self.seen.items(), key=lambda kv: kv[1][1])
        if z == p.max_fidelity:
            self.full_evals += 1
            self.full_best = min(self.full_best, value)
        if (self.inc, self.inc_value, self.full_best) != before:
            inc_config = self.seen[self.inc][2]
            regret = p.value(inc_config, p.max_fidelity) - p.optimum
            full = self.full_best - p.optimum if math.isfinite(self.full_best) else None
            test = p.test_fn(inc_config) - p.test_optimum if p.test_fn is not None else None
            self.log.append((self.cost, regret, full, test))
        return value


def _ours(strategy: str, options: Mapping[str, Any]) -> Callable:
    def run(problem, seed: int, rec: Recorder) -> None:
        from automl.plugins import discover
        from automl.strategy_builder import StrategySetup, build_strategy

        registry = discover()
        maxf = float(problem.max_fidelity)
        strat = build_strategy(registry.strategy(strategy), dict(options), StrategySetup(problem.space, seed, maxf),
                               registry=registry)
        budgets: dict[str, float] = {}
        while not rec.exhausted():
            s = strat.ask()
            if s is None:  # one trial at a time: nothing is pending, so the strategy is done
                if not strat.is_finished():
                    raise RuntimeError(f"{strategy} returned no suggestion with no trial pending")
                return
            budget = float(s.budget) if s.budget is not None else maxf
            start = budgets[s.resume_from] if s.resume_from is not None else 0.0
            value = rec.observe(s.config, round(budget), budget - start)
            budgets[s.trial_id] = budget
            strat.tell(Observation(s.trial_id, Status.COMPLETE, value, config=dict(s.config), budget=budget))

    return run


def _optuna(pruner_name: str) -> Callable:
    def run(problem, seed: int, rec: Recorder) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        maxf = problem.max_fidelity
        if pruner_name == "hyperband":
            pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=maxf, reduction_factor=ETA)
        elif pruner_name == "none":
            pruner = optuna.pruners.NopPruner()
        else:
            pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA)
        # a fixed study name: HyperbandPruner assigns brackets by a hash of it (random by default)
        study = optuna.create_study(study_name=f"mf-seed{seed}", direction="minimize",
                                    sampler=optuna.samplers.TPESampler(seed=seed),
                                    pruner=pruner)
        while not rec.exhausted():
            trial = study.ask()
            config = {}
            for p in problem.space:
                if isinstance(p, Float):
                    config[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
                elif isinstance(p, Int):
                    config[p.name] = trial.suggest_int(p.name, p.low, p.high, log=p.log)
                else:
                    config[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            value = None
            for step in range(1, maxf + 1):
                if rec.exhausted():
                    return
                value = rec.observe(config, step, 1)
                trial.report(value, step)
                if step < maxf and trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                study.tell(trial, value)

    return run


def _kt_seed(seed: int) -> int:
    # keras-tuner seeds its n-th draw with seed + n: spread our seeds out; never 0 (means random)
    return int(np.random.SeedSequence(seed).generate_state(1)[0]) % (2**31 - 2) + 1


def _keras_tuner(problem, seed: int, rec: Recorder) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for p in problem.space:
        if isinstance(p, Float):
            hp.Float(p.name, p.low, p.high, sampling="log" if p.log else "linear")
        elif isinstance(p, Int):
            hp.Int(p.name, p.low, p.high, sampling="log" if p.log else "linear")
        else:
            hp.Choice(p.name, list(p.choices))
    oracle = kt.oracles.HyperbandOracle(objective=kt.Objective("loss", "min"), max_epochs=problem.max_fidelity,
                                        factor=ETA, hyperband_iterations=10**6, seed=_kt_seed(seed),
                                        hyperparameters=hp, max_consecutive_failed_trials=None)
    with tempfile.TemporaryDirectory(prefix="mf-kt-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        oracle._set_project_dir(folder, "kt")  # a bare oracle saves its files there (no Tuner)
        oracle.verbose = 0
        while not rec.exhausted():
            trial = oracle.create_trial("tuner0")
            if trial.status != "RUNNING":
                return
            values = trial.hyperparameters.values
            epochs, initial = int(values["tuner/epochs"]), int(values["tuner/initial_epoch"])
            config = {p.name: values[p.name] for p in problem.space}
            value = rec.observe(config, epochs, epochs - initial)
            oracle.update_trial(trial.trial_id, {"loss": value})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)


CONTENDERS: dict[str, tuple[Callable, str]] = {
    "hyperband": (_ours("hyperband", {"factor": ETA}),
                  f"automl hyperband, native engine (defaults): factor {ETA}, tpe sampler (BOHB), default min "
                  "budget, iterations repeated; promotions resume (pay only the new epochs)"),
    "asha": (_ours("asha", {"reduction_factor": ETA, "mode": "promotion"}),
             f"automl asha, promotion mode, eta {ETA}, tpe sampler and default min budget; promotions resume"),
    "hyperband_kt": (_ours("hyperband", {"engine": "keras-tuner", "factor": ETA, "hyperband_iterations": 10**6}),
                     f"automl hyperband, keras-tuner engine (keras-tuner's oracle via kt_bridge), factor {ETA}, "
                     "brackets repeated; promotions resume"),
    "asha_random": (_ours("asha", {"reduction_factor": ETA, "min_budget": 1, "mode": "promotion",
                                   "sampler": "random"}),
                    f"automl asha, promotion mode, eta {ETA}, min budget 1, random sampler; promotions resume"),
    "random": (_ours("random", {}), "automl random, every config at the full fidelity"),
    "optuna_tpe_hyperband": (_optuna("hyperband"),
                             f"Optuna TPE + HyperbandPruner(min_resource=1, max_resource=max, reduction_factor={ETA}),"
                             " one report per fidelity step"),
    "optuna_tpe_sh": (_optuna("sh"), f"Optuna TPE + SuccessiveHalvingPruner(min_resource=1, reduction_factor={ETA}),"
                                     " one report per fidelity step"),
    "optuna_tpe": (_optuna("none"), "Optuna TPE without pruning: every trial trains all max-fidelity steps"),
    "keras_tuner_hyperband": (_keras_tuner, f"keras-tuner HyperbandOracle driven directly, factor {ETA}, "
                                            "pays tuner/epochs - tuner/initial_epoch"),
}
