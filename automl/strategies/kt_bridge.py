"""The bridge to keras-tuner: our SearchSpace as its HyperParameters and back, and
`OracleStrategy`, the plumbing shared by the strategies that wrap one of its oracles
(bayesian.py, hyperband.py).

keras-tuner is imported on first use: it imports keras (seconds), so `import automl` stays
fast and a run with another strategy never pays for it.

Files: an oracle writes oracle.json and trial_*/trial.json under `workdir/keras_tuner` (a
temporary folder when workdir is None). They mirror the search for whoever wants to look and
are never read back: the trial database is the source of truth, so a resumed run rebuilds the
oracle by replay (see `OracleStrategy`) and clears the files of the earlier run first.

Ids: keras-tuner numbers its trials itself ("0000", "0001", ... in creation order), ours are
strings that must stay unique across resumed runs, so the two are mapped both ways rather than
assumed equal.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from automl.space import Choice, Float, Int, Param, SearchSpace
from automl.strategies.base import Observation, Status, Strategy, Suggestion, TrialIds

log = logging.getLogger(__name__)

PROJECT = "keras_tuner"  # keras-tuner's folder inside the strategy's workdir
RUNNING, STOPPED, COMPLETED, FAILED = "RUNNING", "STOPPED", "COMPLETED", "FAILED"  # keras-tuner's TrialStatus


def import_keras_tuner():
    """keras_tuner, with keras on the torch backend (keras would look for TensorFlow otherwise)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras_tuner

    return keras_tuner


# -- the search space ------------------------------------------------------------------------------

def _labels(param: Choice) -> list:
    """A choice's values as keras-tuner takes them: one type among str, int and float. Anything
    else (bools, which it would turn into ints, or mixed types) travels as its repr."""
    kinds = {type(c) for c in param.choices}
    if len(kinds) == 1 and kinds <= {str, int, float}:
        return list(param.choices)
    return [repr(c) for c in param.choices]


def _choice_index(param: Choice, value: Any) -> int | None:
    # type-strict like Choice.problem: True must not pass for 1
    return next((i for i, c in enumerate(param.choices) if value == c and type(value) is type(c)), None)


def _parent_values(parent: Param, condition) -> list:
    """The values of `parent` that make `condition` hold, as keras-tuner holds them."""
    if isinstance(parent, Choice):
        labels = _labels(parent)
        return [labels[i] for i, c in enumerate(parent.choices) if condition.holds({parent.name: c})]
    numbers = [v for v in condition.values if isinstance(v, (int, float))]
    if isinstance(parent, Int):  # keras-tuner casts every value to int when the first is one
        return [int(v) for v in numbers if float(v).is_integer()]
    return [float(v) for v in numbers]


def to_hyperparameters(space: SearchSpace):
    """keras-tuner HyperParameters with the same parameters and conditions."""
    kt = import_keras_tuner()
    hps = kt.HyperParameters()
    scopes: dict[str, list[tuple[str, list]] | None] = {}  # name -> its conditions from the root; None: never active
    for param in space:
        chain: list[tuple[str, list]] | None = []
        if param.condition is not None:
            parent = space[param.condition.parent]
            values = _parent_values(parent, param.condition)
            chain = None if scopes[parent.name] is None or not values else [*scopes[parent.name], (parent.name, values)]
        scopes[param.name] = chain
        if chain is None:  # no value of the parent activates it; keras-tuner refuses an empty list
            continue
        with contextlib.ExitStack() as stack:
            # keras-tuner finds a parent only inside the scopes the parent was defined in: nest them all
            for parent_name, values in chain:
                stack.enter_context(hps.conditional_scope(parent_name, values))
            if isinstance(param, Float):
                hps.Float(param.name, param.low, param.high, sampling="log" if param.log else "linear")
            elif isinstance(param, Int) and param.log:  # keras-tuner's log step is a ratio, ours is 1: leave it out
                hps.Int(param.name, param.low, param.high, sampling="log")
            elif isinstance(param, Int):
                hps.Int(param.name, param.low, param.high, step=param.step)
            else:
                labels = _labels(param)
                hps.Choice(param.name, labels, ordered=not isinstance(labels[0], str))
    return hps


def to_kt_values(space: SearchSpace, config: Mapping[str, Any]) -> dict[str, Any]:
    """Our config (inside the space) as keras-tuner values: active parameters only."""
    values: dict[str, Any] = {}
    for name, value in space.active(config).items():
        param = space[name]
        if isinstance(param, Choice):
            index = _choice_index(param, value)
            if index is None:
                raise ValueError(f"{name}={value!r} is not one of {list(param.choices)}")
            values[name] = _labels(param)[index]
        else:
            values[name] = int(value) if isinstance(param, Int) else float(value)
    return values


def _from_kt(param: Param, value: Any) -> Any:
    if isinstance(param, Choice):
        labels = _labels(param)
        return param.choices[labels.index(value)] if value in labels else None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if isinstance(param, Float):  # exp/log round-trips can land one ulp outside the range
        return float(min(max(value, param.low), param.high))
    # an optimiser's vector at the upper bound maps to high + 1 for a log int: clip and snap to the step
    index = min(max(round((value - param.low) / param.step), 0), (param.high - param.low) // param.step)
    return int(param.low + index * param.step)


def from_kt_values(space: SearchSpace, values: Mapping[str, Any]) -> dict[str, Any]:
    """keras-tuner values as our config: our types, only the parameters active by our conditions,
    keras-tuner's own entries (tuner/epochs, ...) left out. Always inside the space."""
    config: dict[str, Any] = {}
    for param in space:
        if not space.is_active(param, config):
            continue
        value = _from_kt(param, values.get(param.name))
        if value is None:  # never seen; would only happen if keras-tuner's conditions disagreed with ours
            log.warning("keras-tuner gave no usable value for %s (%r); using the middle of its range",
                        param.name, values.get(param.name))
            value = param.from_unit(0.5)
        config[param.name] = value
    return config


# -- keras-tuner internals ------------------------------------------------------------------------

def attach_project(oracle, directory: str | Path, project_name: str) -> None:
    """Tell a bare oracle where to keep its files: the one call into keras-tuner's private API.

    An oracle saves itself (directory/project_name/oracle.json, trial_*/trial.json) on every
    create_trial and end_trial, and can only do so once a Tuner has handed it a folder through
    `Oracle._set_project_dir`. We drive oracles without a Tuner (a Tuner wants to build and fit
    keras models itself), so we make that call here. Checked by tests: if keras-tuner renames it,
    this function is the one place to change.
    """
    oracle._set_project_dir(str(directory), project_name)


@functools.lru_cache(maxsize=None)
def with_given_trials(oracle_cls):
    """A subclass of `oracle_cls` that also records trials it did not draw (`add_trial`).

    `populate_space` is the documented extension point that fills a trial's values; answering
    it with given values lets a replayed trial enter through the oracle's own `create_trial`:
    its id, duplicate check, running-trial bookkeeping and files, as if the oracle had drawn it.
    """

    class GivenTrials(oracle_cls):
        _given: dict | None = None

        def add_trial(self, values: Mapping[str, Any], tuner_id: str):
            self._given = dict(values)  # a copy: keras-tuner edits a trial's values in place
            try:
                return self.create_trial(tuner_id)
            finally:
                self._given = None

        def populate_space(self, trial_id):
            if self._given is not None:
                return {"status": RUNNING, "values": self._given}
            return super().populate_space(trial_id)

    GivenTrials.__name__ = GivenTrials.__qualname__ = oracle_cls.__name__
    return GivenTrials


@functools.lru_cache(maxsize=None)
def _blas():
    import threadpoolctl  # a dependency of scikit-learn

    import_keras_tuner()  # loads scipy's BLAS too: the controller only sees libraries already loaded
    return threadpoolctl.ThreadpoolController()


@contextlib.contextmanager
def quiet():
    """Around every call into an oracle: one BLAS thread, and none of its per-trial warnings.

    The Gaussian process works on matrices of a few dozen rows thousands of times per suggestion,
    where a second BLAS thread only adds hand-overs: single-threaded it is 3-4 times faster on a
    busy machine. The warnings: keras-tuner's lock uses the deprecated threading.currentThread,
    and the GP fit warns about convergence on few points.
    """
    with _blas().limit(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", module="sklearn")
        yield


def kt_seed(seed: int) -> int:
    """The oracle's seed for our seed. Spread out: keras-tuner seeds its n-th random draw with
    seed + n, so seeds 0, 1, 2 taken as they are would draw the same values shifted by one.
    Never 0 (keras-tuner replaces it by a random seed), below 2**31 for numpy and scikit-learn."""
    return int(np.random.SeedSequence(seed % 2**32).generate_state(1)[0]) % (2**31 - 2) + 1


# -- the shared strategy --------------------------------------------------------------------------

class OracleStrategy(Strategy):
    """A strategy that asks a keras-tuner oracle. Subclasses build the oracle (`_new_oracle`)
    and turn its trials into suggestions (`_suggestion`).

    The oracle is built on the first call, not in __init__: a caller of strategy contract 1
    sets `workdir` after construction. Every trial gets a fresh tuner id, because an oracle hands a tuner id that
    already has a running trial that same trial again: that is how several run at once.

    Replay: a trial told (or resumed) that this instance never suggested is added to the oracle
    with its values (`with_given_trials`) and ended with its result, so the oracle learns from it,
    counts it as tried, and numbers its own next trials after it. Our new ids skip every id seen.
    """

    name = ""  # a base, not a plugin

    def __init__(self, space: SearchSpace, *, seed: int, max_budget: float, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self._oracle = None
        self._tmp: tempfile.TemporaryDirectory | None = None  # keras-tuner's files when workdir is None
        self._ours: dict[str, str] = {}  # keras-tuner trial id -> our trial id
        self._kt: dict[str, str] = {}  # our trial id -> keras-tuner trial id
        self._ids = TrialIds()  # every id of ours: suggested, told or pending
        self._tuners = 0
        self._finished = False

    # -- for subclasses
    def _new_oracle(self, kt, **common):
        """The oracle, built with `common` (objective, hyperparameters, seed, ...)."""
        raise NotImplementedError

    def _suggestion(self, trial_id: str, trial) -> Suggestion:
        raise NotImplementedError

    def _replay(self, trial_id: str, config: Mapping[str, Any], budget: float | None,
                observation: Observation | None, resume_from: str | None) -> None:
        """A trial this instance never suggested: finished (observation) or still to run (None)."""
        self._add(trial_id, config, observation)

    # -- the oracle
    @property
    def oracle(self):
        if self._oracle is None:
            kt = import_keras_tuner()
            directory = self.workdir
            if directory is None:
                self._tmp = tempfile.TemporaryDirectory(prefix=f"automl-{self.name}-")
                directory = self._tmp.name
            shutil.rmtree(Path(directory) / PROJECT, ignore_errors=True)  # an earlier run's; see the module doc
            oracle = self._new_oracle(
                kt, objective=kt.Objective("loss", "min"), hyperparameters=to_hyperparameters(self.space),
                seed=kt_seed(self.seed),
                max_consecutive_failed_trials=None)  # keras-tuner would raise; the agent's max_failed decides
            attach_project(oracle, directory, PROJECT)
            oracle.verbose = 0  # no printed tables per trial
            self._oracle = oracle
        return self._oracle

    def _next_trial(self):
        """The oracle's next trial; its status is RUNNING, or IDLE / STOPPED when it has none."""
        oracle = self.oracle
        # IDLE or STOPPED can also mean that 20 random draws in a row hit configs already tried (a
        # fresh oracle re-draws the replayed trials' configs first). Every attempt moves its sampling
        # seed on, so a few more get past them; a real IDLE or STOPPED stays so.
        for _ in range(len(oracle.trials) // 20 + 2):
            trial = oracle.create_trial(self._tuner_id())
            if trial.status == RUNNING:
                self._tuners += 1
                return trial
        return trial

    def _tuner_id(self) -> str:
        return f"worker{self._tuners}"

    def _bind(self, trial_id: str, kt_id: str) -> None:
        self._ours[kt_id], self._kt[trial_id] = trial_id, kt_id

    def _add(self, trial_id: str, config: Mapping[str, Any], observation: Observation | None) -> None:
        problems = self.space.problems(dict(config))
        if problems:  # keras-tuner cannot place it: only its id is kept
            log.warning("trial %s is not replayed into keras-tuner, its config is outside the space: %s",
                        trial_id, "; ".join(problems))
            return
        trial = self.oracle.add_trial(to_kt_values(self.space, config), self._tuner_id())
        self._tuners += 1
        self._bind(trial_id, trial.trial_id)
        if observation is not None:
            self._end(trial.trial_id, observation)

    def _end(self, kt_id: str, observation: Observation) -> None:
        trial = self.oracle.get_trial(kt_id)
        if trial.status != RUNNING:
            log.debug("trial %s was already told; ignored", observation.trial_id)
            return
        loss = observation.loss
        if observation.status != Status.FAILED and loss is not None and math.isfinite(loss):
            self.oracle.update_trial(kt_id, {"loss": float(loss)})
            trial.status = COMPLETED  # PRUNED too: its loss is the best it reached
        else:
            # keras-tuner would retry a NaN score and its Gaussian process reads an infinite one as 0
            trial.status = FAILED
        self.oracle.end_trial(trial)

    # -- the contract
    def ask(self) -> Suggestion | None:
        with quiet():
            trial = self._next_trial()
        if trial.status != RUNNING:
            self._finished = trial.status == STOPPED  # IDLE: waiting for running trials
            return None
        trial_id = self._ids.next()
        self._bind(trial_id, trial.trial_id)
        return self._suggestion(trial_id, trial)

    def tell(self, observation: Observation) -> None:
        self._ids.seen(observation.trial_id)
        with quiet():
            kt_id = self._kt.get(observation.trial_id)
            if kt_id is None:
                self._replay(observation.trial_id, observation.config, observation.budget, observation, None)
            else:
                self._end(kt_id, observation)

    def resume_pending(self, suggestion: Suggestion) -> None:
        self._ids.seen(suggestion.trial_id)
        if suggestion.trial_id not in self._kt:
            with quiet():
                self._replay(suggestion.trial_id, suggestion.config, suggestion.budget, None, suggestion.resume_from)

    def is_finished(self) -> bool:
        return self._finished
