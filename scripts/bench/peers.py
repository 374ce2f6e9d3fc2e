"""One ask/tell interface over every optimizer the benchmarks compare, all on OUR SearchSpace.

    opt = make_optimizer("optuna:tpe", space, seed=0, budget_hint=200)
    handle, config = opt.ask()        # config: a dict inside `space` (our types)
    opt.tell(handle, value)           # always minimised
    opt.info                          # what actually ran (library, class, settings, substitutions)

Every contender sees the identical space: each adapter translates our Float / Int / Choice
(log scales and Int steps kept) into its library's own parameters and translates its answers
back (checked: a config outside the space raises). Conditions are not supported: the suites'
spaces have none.

Contenders (CONTENDERS), all at their library's defaults unless said here:
  automl:random, automl:bayesian, automl:evolutionary, automl:grid
      our Strategy classes from the plugin registry, built as automl.optimize builds them
      (max_budget 1, parallelism 1, default options); automl:evolutionary is told
      options.budget = budget_hint, the evaluations it plans for (like nevergrad:ngopt);
      automl:grid (default resolution 5) is optional and may run out of points (`Exhausted`).
  optuna:random, optuna:tpe, optuna:gp, optuna:cmaes
      optuna's ask/tell API with `study.ask(distributions)`: RandomSampler, TPESampler,
      GPSampler, CmaEsSampler, each seeded. CmaEsSampler handles floats and ints only: a
      Choice is drawn by its independent sampler (optuna's RandomSampler), as optuna does.
  kerastuner:bayesian
      keras_tuner.oracles.BayesianOptimizationOracle (stock: keras-tuner's own GP and its
      num_initial_points default, 3 per parameter) driven by create_trial / update_trial /
      end_trial, with a HyperParameters built from our space; it keeps its files in a
      temporary folder, as under a Tuner.
  nevergrad:ngopt
      ng.optimizers.NGOpt on an ng.p.Dict (Scalar / Log / integer-cast Scalar / Choice). NGOpt
      picks its algorithm from the space and budget; some picks (MetaModel, e.g. 2-D with a
      budget of 200) crash under numpy 2 in nevergrad 1.0.12 (`float()` of a 1-element array).
      So a probe first runs NGOpt on a cheap stand-in function over the same parametrization
      and budget (once per space and budget, per process); if it crashes there, the run uses
      the crashing algorithm's own base optimizer (a MetaModel's `_optim`, e.g. the CMA it
      wraps: MetaModel without its surrogate step), else TwoPointsDE, and `info` records the
      substitution and the error.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import tempfile
import warnings
import zlib
from functools import lru_cache
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from automl.space import Choice, Float, Int, SearchSpace

os.environ.setdefault("KERAS_BACKEND", "torch")


class Exhausted(Exception):
    """The optimizer has nothing more to suggest (e.g. a finished grid)."""


class Optimizer(Protocol):
    name: str
    info: dict[str, Any]

    def ask(self) -> tuple[Any, dict[str, Any]]: ...

    def tell(self, handle: Any, value: float) -> None: ...


def _checked(space: SearchSpace, config: Mapping[str, Any], who: str) -> dict[str, Any]:
    problems = space.problems(dict(config))
    if problems:
        raise RuntimeError(f"{who} suggested a config outside the space: {problems}")
    return dict(config)


def _no_conditions(space: SearchSpace) -> None:
    if any(p.condition is not None for p in space):
        raise ValueError("peers.py supports spaces without conditions only")


# -- ours ---------------------------------------------------------------------------------------------

class AutomlOptimizer:
    def __init__(self, name: str, strategy: str, space: SearchSpace, seed: int, options: Mapping[str, Any]):
        from automl.plugins import discover
        from automl.strategies.base import Observation, Status
        from automl.strategy_builder import StrategySetup, build_strategy

        self._observation, self._complete = Observation, Status.COMPLETE
        registry = discover(())
        cls = registry.strategy(strategy)
        self.name, self.space = name, space
        # no workdir: an oracle keeps its files in a temporary folder of its own
        self.strategy = build_strategy(cls, dict(options), StrategySetup(space, seed, 1.0), registry=registry)
        self._configs: dict[str, dict[str, Any]] = {}
        self.info = {"library": "automl", "class": f"{cls.__module__}.{cls.__name__}",
                     "options": self.strategy.options.model_dump()}

    def ask(self):
        suggestion = self.strategy.ask()
        if suggestion is None:
            raise Exhausted(f"{self.name} has nothing more to suggest")
        config = _checked(self.space, suggestion.config, self.name)
        self._configs[suggestion.trial_id] = config
        return suggestion.trial_id, config

    def tell(self, handle, value):
        config = self._configs.pop(handle)
        self.strategy.tell(self._observation(handle, self._complete, float(value), config, 1.0,
                                             {"loss": float(value)}))


# -- optuna -------------------------------------------------------------------------------------------

def optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    _no_conditions(space)
    out = {}
    for param in space:
        if isinstance(param, Float):
            out[param.name] = FloatDistribution(param.low, param.high, log=param.log)
        elif isinstance(param, Int):
            out[param.name] = IntDistribution(param.low, param.high, log=param.log, step=param.step)
        else:
            out[param.name] = CategoricalDistribution(param.choices)
    return out


class OptunaOptimizer:
    def __init__(self, name: str, sampler_name: str, space: SearchSpace, seed: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        samplers = optuna.samplers
        make = {"random": lambda: samplers.RandomSampler(seed=seed),
                "tpe": lambda: samplers.TPESampler(seed=seed),
                "gp": lambda: samplers.GPSampler(seed=seed),
                "cmaes": lambda: samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)}[sampler_name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning (GPSampler)
            sampler = make()
        self.name, self.space = name, space
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.distributions = optuna_distributions(space)
        self.info = {"library": "optuna", "class": type(sampler).__name__, "settings": "library defaults, seeded"}
        if sampler_name == "gp":
            import importlib.util

            if importlib.util.find_spec("greenlet") is None:
                self.info["note"] = ("greenlet is not installed: GPSampler optimises its acquisition with "
                                     "sequential L-BFGS-B (optuna warns that suggestions are slower)")
        if sampler_name == "cmaes" and any(isinstance(p, Choice) for p in space):
            self.info["note"] = "Choice parameters drawn by CmaEsSampler's independent sampler (RandomSampler)"

    def ask(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask(self.distributions)
        config = {}
        for param in self.space:
            value = trial.params[param.name]
            config[param.name] = int(value) if isinstance(param, Int) else float(value) if isinstance(param, Float) \
                else value
        return trial, _checked(self.space, config, self.name)

    def tell(self, handle, value):
        self.study.tell(handle, float(value))


# -- keras-tuner ---------------------------------------------------------------------------------------

class KerasTunerOptimizer:
    """The stock BayesianOptimizationOracle. Our space -> HyperParameters and back reuses automl's
    translation (kt_bridge.to_hyperparameters / from_kt_values), which only maps types; none of our
    changes to the oracle (the lean GP predict, one BLAS thread, 10 initial points) apply here."""

    def __init__(self, name: str, space: SearchSpace, seed: int):
        from automl.strategies.kt_bridge import import_keras_tuner, kt_seed, to_hyperparameters

        _no_conditions(space)
        kt = import_keras_tuner()
        self.name, self.space = name, space
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-kerastuner-")
        self.oracle = kt.oracles.BayesianOptimizationOracle(
            objective=kt.Objective("loss", "min"), max_trials=None, hyperparameters=to_hyperparameters(space),
            seed=kt_seed(seed))
        self.oracle._set_project_dir(self._tmp.name, "oracle")  # what a Tuner does; the oracle saves its files there
        self.oracle.verbose = 0
        self._tuner = 0
        self.info = {"library": "keras-tuner", "class": "BayesianOptimizationOracle",
                     "settings": "library defaults (num_initial_points = 3 per parameter, alpha 1e-4, beta 2.6), "
                                 "seed from automl.strategies.kt_bridge.kt_seed(seed)"}

    def ask(self):
        from automl.strategies.kt_bridge import from_kt_values

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(5):  # a fresh tuner id per trial: an id with a running trial gets that trial again
                self._tuner += 1
                trial = self.oracle.create_trial(f"tuner{self._tuner}")
                if trial.status == "RUNNING":
                    break
            else:
                raise Exhausted(f"{self.name}: the oracle answered {trial.status}")
        return trial.trial_id, _checked(self.space, from_kt_values(self.space, trial.hyperparameters.values),
                                        self.name)

    def tell(self, handle, value):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.oracle.update_trial(handle, {"loss": float(value)})
            trial = self.oracle.get_trial(handle)
            trial.status = "COMPLETED"
            self.oracle.end_trial(trial)


# -- nevergrad -----------------------------------------------------------------------------------------

def nevergrad_parametrization(space: SearchSpace, seed: int):
    """Float -> Scalar (Log when log); Int -> an integer-cast Scalar over the indices of its step grid
    (an integer-cast Log when log); Choice -> Choice."""
    import nevergrad as ng

    _no_conditions(space)
    params = {}
    for param in space:
        if isinstance(param, Choice):
            params[param.name] = ng.p.Choice(list(param.choices))
        elif isinstance(param, Float):
            params[param.name] = (ng.p.Log if param.log else ng.p.Scalar)(lower=param.low, upper=param.high)
        elif param.log:
            params[param.name] = ng.p.Log(lower=param.low, upper=param.high).set_integer_casting()
        else:
            params[param.name] = ng.p.Scalar(lower=0, upper=len(param.values) - 1).set_integer_casting()
    parametrization = ng.p.Dict(**params)
    parametrization.random_state = np.random.RandomState(seed)
    return parametrization


def nevergrad_config(space: SearchSpace, value: Mapping[str, Any]) -> dict[str, Any]:
    config = {}
    for param in space:
        raw = value[param.name]
        if isinstance(param, Choice):
            config[param.name] = raw
        elif isinstance(param, Float):
            config[param.name] = float(min(max(float(raw), param.low), param.high))
        elif param.log:
            config[param.name] = int(min(max(int(raw), param.low), param.high))
        else:
            config[param.name] = param.values[int(min(max(int(raw), 0), len(param.values) - 1))]
    return config


def _space_key(space: SearchSpace) -> str:
    return json.dumps(space.to_dict(), sort_keys=True)


@lru_cache(maxsize=None)
def _ngopt_probe(space_key: str, budget: int) -> dict[str, Any]:
    """Run NGOpt for `budget` evaluations of a cheap stand-in (squared distance of the unit
    coordinates to 0.3, plus the choice's index) over the parametrization of the space."""
    import nevergrad as ng

    space = SearchSpace.from_dict(json.loads(space_key))
    optimizer = ng.optimizers.NGOpt(nevergrad_parametrization(space, 12345), budget=budget, num_workers=1)
    selected = _selected(optimizer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(budget):
                candidate = optimizer.ask()
                config = nevergrad_config(space, candidate.value)
                optimizer.tell(candidate, _stand_in(space, config))
    except Exception as error:  # noqa: BLE001 - recorded, and the run falls back
        return {"selected": selected, "error": f"{type(error).__name__}: {error}"}
    return {"selected": selected, "error": None}


def _selected(optimizer) -> str:
    try:
        return optimizer.optim.name
    except Exception:  # noqa: BLE001
        return "unknown"


def _stand_in(space: SearchSpace, config: Mapping[str, Any]) -> float:
    total = 0.0
    for param in space:
        if isinstance(param, Choice):
            total += param.choices.index(config[param.name])
        else:
            total += (param.to_unit(config[param.name]) - 0.3) ** 2
    return total


class NevergradOptimizer:
    def __init__(self, name: str, space: SearchSpace, seed: int, budget_hint: int):
        import nevergrad as ng

        self.name, self.space = name, space
        parametrization = nevergrad_parametrization(space, seed)
        probe = _ngopt_probe(_space_key(space), int(budget_hint))
        self.info = {"library": "nevergrad", "requested": "NGOpt", "budget": int(budget_hint),
                     "ngopt_selected": probe["selected"]}
        if probe["error"] is None:
            self.optimizer = ng.optimizers.NGOpt(parametrization, budget=int(budget_hint), num_workers=1)
            self.info["used"] = f"NGOpt -> {_selected(self.optimizer)}"
        else:
            # the crashing pick's own base optimizer (a MetaModel keeps it as `_optim` and asks it whenever
            # it does not use its surrogate): the same search, without the step that crashes
            selected = ng.optimizers.NGOpt(parametrization, budget=int(budget_hint), num_workers=1).optim
            inner = getattr(selected, "_optim", None)
            if inner is not None:
                self.optimizer, used = inner, f"{inner.name} (the base optimizer of NGOpt's pick {probe['selected']})"
            else:
                self.optimizer = ng.optimizers.TwoPointsDE(parametrization, budget=int(budget_hint), num_workers=1)
                used = "TwoPointsDE"
            self.info["used"] = used
            self.info["substituted_because"] = (f"NGOpt picked {probe['selected']}, which crashed on a probe run "
                                                f"with this space and budget: {probe['error']}")

    def ask(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidate = self.optimizer.ask()
        return candidate, _checked(self.space, nevergrad_config(self.space, candidate.value), self.name)

    def tell(self, handle, value):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.optimizer.tell(handle, float(value))


# -- the registry --------------------------------------------------------------------------------------

Factory = Callable[[SearchSpace, int, int], Optimizer]

CONTENDERS: dict[str, Factory] = {
    "automl:random": lambda space, seed, budget: AutomlOptimizer("automl:random", "random", space, seed, {}),
    "automl:bayesian": lambda space, seed, budget: AutomlOptimizer("automl:bayesian", "bayesian", space, seed, {}),
    "automl:evolutionary": lambda space, seed, budget: AutomlOptimizer("automl:evolutionary", "evolutionary", space,
                                                                       seed, {"budget": int(budget)}),
    "automl:grid": lambda space, seed, budget: AutomlOptimizer("automl:grid", "grid", space, seed, {}),
    "automl:tpe": lambda space, seed, budget: AutomlOptimizer("automl:tpe", "tpe", space, seed, {}),
    "optuna:random": lambda space, seed, budget: OptunaOptimizer("optuna:random", "random", space, seed),
    "optuna:tpe": lambda space, seed, budget: OptunaOptimizer("optuna:tpe", "tpe", space, seed),
    "optuna:gp": lambda space, seed, budget: OptunaOptimizer("optuna:gp", "gp", space, seed),
    "optuna:cmaes": lambda space, seed, budget: OptunaOptimizer("optuna:cmaes", "cmaes", space, seed),
    "kerastuner:bayesian": lambda space, seed, budget: KerasTunerOptimizer("kerastuner:bayesian", space, seed),
    "nevergrad:ngopt": lambda space, seed, budget: NevergradOptimizer("nevergrad:ngopt", space, seed, budget),
}
DEFAULT = [name for name in CONTENDERS if name != "automl:grid"]  # grid is optional: it can run out of points


def run_seed(name: str, seed: int) -> int:
    """The seed contender `name` gets for the suites' seed number `seed`: distinct per contender, so no
    two contenders share random draws (nevergrad's TwoPointsDE and optuna's RandomSampler both draw
    from numpy's RandomState(seed): with one seed they would evaluate the same first points)."""
    return zlib.crc32(f"{name}/{seed}".encode()) % (2**31 - 1)


def make_optimizer(name: str, space: SearchSpace, seed: int, budget_hint: int) -> Optimizer:
    """Contender `name` with exactly this seed (the suites pass `run_seed(name, i)`)."""
    if name not in CONTENDERS:
        raise SystemExit(f"unknown contender {name!r}; known: {', '.join(CONTENDERS)}")
    return CONTENDERS[name](space, int(seed), int(budget_hint))


def parse_only(text: str | None) -> list[str]:
    """`--only a,b` -> the contenders named (checked); empty -> DEFAULT."""
    if not text:
        return list(DEFAULT)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        raise SystemExit(f"unknown contender(s) {', '.join(unknown)}; known: {', '.join(CONTENDERS)}")
    return names


def prepare(names) -> None:
    """Import the libraries the contenders need, so no timed call pays for an import."""
    libraries = {name.split(":")[0] for name in names}
    if "optuna" in libraries:
        import optuna  # noqa: F401
        import optuna.samplers  # noqa: F401
    if "nevergrad" in libraries or "automl:evolutionary" in names:
        import nevergrad  # noqa: F401
    if "kerastuner" in libraries or "automl:bayesian" in names:
        from automl.strategies.kt_bridge import import_keras_tuner

        import_keras_tuner()
    if "automl:bayesian" in names:  # its default engine's Gaussian process
        import botorch  # noqa: F401
    logging.getLogger("optuna").setLevel(logging.WARNING)


def run(optimizer: Optimizer, objective: Callable[[Mapping[str, Any]], float], n: int) -> list[float]:
    """Sequential ask / evaluate / tell, `n` times (fewer if the optimizer is exhausted)."""
    values = []
    for _ in itertools.repeat(None, n):
        try:
            handle, config = optimizer.ask()
        except Exhausted:
            break
        value = float(objective(config))
        optimizer.tell(handle, value if math.isfinite(value) else 1e12)
        values.append(value)
    return values
