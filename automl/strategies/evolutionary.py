"""Evolutionary search through nevergrad: any optimizer of its registry, CMA-ES by default.

The default, nevergrad's `CMA` (ParametrizedCMA: full-covariance CMA-ES with nevergrad's
own population and step-size settings), was measured on the black-box suite of
docs/benchmarks.md (suite 2, 200 evaluations, 10 seeds): mean rank 1.85 among five contenders,
where TwoPointsDE, the default before, ranked 4.23 of six. It reaches regrets of 1e-11 to 2e-4
on Branin, Hartmann3 and Hartmann6 where TwoPointsDE stopped at 0.02 to 0.5; DiagonalCMA, tried
on four of the functions with 4 seeds, was better only on Levy6. It handles log floats, integers
and categoricals through one parametrization (a categorical is a softmax over weights that CMA
moves like any other coordinate), which is also where it is weakest (the mixed Hartmann6).
NGOpt is not the default: on mixed spaces it picks algorithms whose MetaModel step calls
`float()` on a 1-element array, a TypeError under numpy 2 in nevergrad 1.0.12.
Any other optimizer stays one option away (`optimizer`). A failing `ask` is re-raised as
a RuntimeError naming the optimizer.

The space becomes a `ng.p.Dict`: Float -> Scalar (Log when log), Int -> an integer-cast
Scalar over the indices of its step grid (an integer-cast Log when log), Choice -> Choice;
a constant parameter (low == high) is not handed to nevergrad at all. Nevergrad knows
no conditions, so every parameter is optimized and the inactive ones are dropped from
the config (`space.active`); whatever nevergrad returns is clipped back into the space.

Failed trials are told a penalty, `worst loss seen + max(1, worst - best)` (or
`FAILED_LOSS` before any loss is known), so the optimizer moves away from them without
a huge constant swamping the scale of the real losses.

Resume by replay: trials this instance did not ask are told to nevergrad as "tell not
asked" (a candidate rebuilt from the observed config). Optimizers that refuse it raise
`TellNotAskedNotSupportedError`; the trial is then skipped (logged at debug level) and
only its id is remembered, so new ids never collide with replayed ones.
"""
from __future__ import annotations

import difflib
import logging
import math
import traceback
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from automl.space import Choice, Float, Int, Param
from automl.strategies.base import Observation, Status, Strategy, Suggestion, TrialIds

log = logging.getLogger(__name__)

FAILED_LOSS = 1e6  # the penalty of a failure told before any finite loss


@lru_cache(maxsize=1)
def _registry() -> Mapping[str, Any]:
    # nevergrad takes ~2 s to import: only when this strategy is actually used
    import nevergrad as ng

    return ng.optimizers.registry


def _close_names(name: str, names: list[str]) -> list[str]:
    """Registry names close to `name`, case-insensitively (the registry is case-sensitive)."""
    lowered = {n.lower(): n for n in names}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=6, cutoff=0.6)
    return [lowered[m] for m in matches]


class EvolutionaryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    optimizer: str = Field("CMA", description="A name of nevergrad's optimizer registry (e.g. CMA, DiagonalCMA, "
                                              "TwoPointsDE, DE, OnePlusOne, PSO).")
    budget: int = Field(100, ge=1, description="Evaluations the optimizer plans for: it shapes populations and "
                                               "NGOpt's choice of algorithm, but stops nothing.")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        names = sorted(_registry())
        if name not in names:
            close = _close_names(name, names)
            hint = f"close names: {', '.join(close)}" if close else "e.g. CMA, TwoPointsDE, DE, OnePlusOne, PSO"
            raise ValueError(f"unknown nevergrad optimizer {name!r} ({hint})")
        return name


def _sequential_only(factory: Any) -> bool:
    """Whether nevergrad refuses num_workers > 1 for this registry entry. Checked before building
    it: a refused construction also trips a bug in RecastOptimizer.__del__ (noise on stderr)."""
    while factory is not None:
        if getattr(factory, "no_parallelization", False):
            return True
        factory = getattr(factory, "_OptimizerClass", None)  # a ConfiguredOptimizer wraps a class or another one
    return False


def _is_constant(param: Param) -> bool:
    if isinstance(param, Choice):
        return False  # a one-choice Choice still has a (useless) weight: harmless
    if isinstance(param, Int) and not param.log:
        return len(param.values) == 1
    return param.low == param.high


def _constant(param: Float | Int) -> float | int:
    return param.values[0] if isinstance(param, Int) and not param.log else param.low


class EvolutionaryStrategy(Strategy):
    name = "evolutionary"
    Options = EvolutionaryOptions

    def __init__(self, space, *, seed, max_budget, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self._optimizer = None  # built at the first call: a caller of contract 1 sets parallelism after __init__
        self._sequential = False  # nevergrad refuses num_workers > 1 for it: one trial at a time
        self._pending: dict[str, Any] = {}  # trial id -> the candidate nevergrad asked
        self._ids = TrialIds("ev")  # every id suggested, replayed or resumed
        self._told: set[str] = set()
        self._best = math.inf
        self._worst = -math.inf

    # -- nevergrad ----------------------------------------------------------------------

    def _parametrization(self):
        import nevergrad as ng

        params = {}
        for param in self.space:
            if _is_constant(param):
                continue
            if isinstance(param, Choice):
                # stochastic softmax choice (nevergrad's default): drawn from the seeded random state
                params[param.name] = ng.p.Choice(list(param.choices))
            elif isinstance(param, Float):
                cls = ng.p.Log if param.log else ng.p.Scalar
                params[param.name] = cls(lower=param.low, upper=param.high)
            elif param.log:
                params[param.name] = ng.p.Log(lower=param.low, upper=param.high).set_integer_casting()
            else:
                # the index into range(low, high + 1, step): every integer it rounds to is a valid value
                params[param.name] = ng.p.Scalar(lower=0, upper=len(param.values) - 1).set_integer_casting()
        if not params:
            params["_unused"] = ng.p.Scalar()  # nevergrad refuses a parametrization with nothing to optimize
        parametrization = ng.p.Dict(**params)
        parametrization.random_state = np.random.RandomState(self.seed)
        return parametrization

    def _get_optimizer(self):
        if self._optimizer is None:
            factory = _registry()[self.options.optimizer]
            # a sequential-only optimizer (SQP, Powell, SPSA...) raises for num_workers > 1: give it one
            # worker and let ask() wait for each result instead
            self._sequential = _sequential_only(factory)
            workers = 1 if self._sequential else max(1, int(self.parallelism))
            self._optimizer = factory(self._parametrization(), budget=self.options.budget, num_workers=workers)
            log.debug("nevergrad optimizer %s (budget %d, %d workers)", self._optimizer.name,
                      self.options.budget, workers)
        return self._optimizer

    def _decode(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """A nevergrad value -> a config of the space (active parameters only, clipped)."""
        config: dict[str, Any] = {}
        for param in self.space:
            if param.name not in value:
                config[param.name] = _constant(param)
            elif isinstance(param, Choice):
                config[param.name] = value[param.name]
            elif isinstance(param, Float):
                # Log's exp() can land one ulp outside the range
                config[param.name] = float(min(max(float(value[param.name]), param.low), param.high))
            elif param.log:
                config[param.name] = int(min(max(int(value[param.name]), param.low), param.high))
            else:
                index = int(min(max(int(value[param.name]), 0), len(param.values) - 1))
                config[param.name] = param.values[index]
        return self.space.active(config)

    def _encode(self, config: Mapping[str, Any]):
        """A config -> a nevergrad candidate (for tell-not-asked); None if it does not fit the space.
        Inactive parameters keep the parametrization's initial value."""
        parametrization = self._get_optimizer().parametrization
        value = dict(parametrization.value)
        for name in value:
            if name not in config:
                continue
            param, given = self.space[name], config[name]
            if isinstance(param, Choice):
                if param.problem(given):
                    return None
                value[name] = given
            elif isinstance(param, Float):
                value[name] = float(min(max(float(given), param.low), param.high))
            elif param.log:
                value[name] = int(min(max(int(given), param.low), param.high))
            else:
                index = round((float(given) - param.low) / param.step)
                value[name] = int(min(max(index, 0), len(param.values) - 1))
        return parametrization.spawn_child(new_value=value)

    # -- the strategy contract ------------------------------------------------------------

    def ask(self) -> Suggestion | None:
        optimizer = self._get_optimizer()
        if self._sequential and self._pending:
            return None
        failure = None
        try:
            candidate = optimizer.ask()
        except Exception as error:  # noqa: BLE001 - re-raised below, with the cause named
            failure = f"{type(error).__name__}: {error}"
            log.debug("nevergrad ask() failed:\n%s", traceback.format_exc())
        if failure is not None:
            # raised outside the except block on purpose: the original traceback keeps alive a
            # scipy thread of nevergrad's MetaModel (its inner Powell), and an unfinished
            # non-daemon thread would stop the interpreter from ever exiting
            raise RuntimeError(f"nevergrad's {self.options.optimizer} failed to suggest a config ({failure}); "
                               f"try another optimizer, e.g. CMA, TwoPointsDE, DE or OnePlusOne")
        trial_id = self._ids.next()
        self._pending[trial_id] = candidate
        return Suggestion(trial_id, self._decode(candidate.value), budget=self.max_budget)

    def resume_pending(self, suggestion: Suggestion) -> None:
        # it runs again under its id; its result arrives through tell() as a tell-not-asked
        self._ids.seen(suggestion.trial_id)

    def _loss(self, observation: Observation) -> float:
        loss = observation.loss
        if observation.status is not Status.FAILED and loss is not None and math.isfinite(loss):
            self._best, self._worst = min(self._best, loss), max(self._worst, loss)
            return float(loss)
        if math.isinf(self._worst):
            return FAILED_LOSS
        return self._worst + max(1.0, self._worst - self._best)

    def tell(self, observation: Observation) -> None:
        optimizer = self._get_optimizer()
        if observation.trial_id in self._told:
            log.debug("trial %s told twice; the second time is ignored", observation.trial_id)
            return
        self._ids.seen(observation.trial_id)
        self._told.add(observation.trial_id)
        loss = self._loss(observation)
        candidate = self._pending.pop(observation.trial_id, None)
        if candidate is not None:
            optimizer.tell(candidate, loss)
            return
        # a trial this instance did not ask (replay, or a resumed pending trial)
        from nevergrad.common.errors import TellNotAskedNotSupportedError

        candidate = self._encode(observation.config)
        if candidate is None:
            log.debug("trial %s: config %s does not fit the space, not told", observation.trial_id,
                      dict(observation.config))
            return
        try:
            optimizer.tell(candidate, loss)
        except TellNotAskedNotSupportedError:
            log.debug("%s does not accept trials it did not ask; trial %s only counted",
                      self.options.optimizer, observation.trial_id)
