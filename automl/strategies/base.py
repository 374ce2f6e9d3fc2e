"""The strategy contract: ask for suggestions, tell observations.

A strategy knows the search space and what it has been told, nothing else: no
data, no trainer, no store. Everything is a loss (the agent flips metrics that are
maximised). `tell` is also how a fresh strategy is rebuilt on resume: the agent
replays every finished trial from the database, including ones this instance never
suggested, so an Observation carries the config and budget it was run with.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict

from automl.records import Observation, Status, Suggestion
from automl.space import SearchSpace

__all__ = ["STRATEGY_API", "NoOptions", "claim_id", "config_key", "Observation", "Status", "Strategy", "Suggestion", "TrialIds"]


class TrialIds:
    """Fresh trial ids `<prefix>0000`, `<prefix>0001`, ... that skip every id already seen.

    Strategies mark the ids they are told of (replay) or asked to resume, so a rebuilt
    strategy never hands out an id the run has used. `index` is the number in the last id
    handed out (a seed for per-suggestion generators)."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.known: set[str] = set()
        self.index = 0

    def seen(self, trial_id: str) -> None:
        self.known.add(trial_id)

    def next(self) -> str:
        while f"{self.prefix}{self.index:04d}" in self.known:
            self.index += 1
        trial_id = f"{self.prefix}{self.index:04d}"
        self.known.add(trial_id)
        return trial_id


def config_key(config: Mapping[str, Any]) -> str:
    """A config as a string that survives the trip through the database (JSON): a key for
    "the same configuration" in rungs and in sets of configurations already tried."""
    return json.dumps(dict(config), sort_keys=True, default=lambda v: v.item() if hasattr(v, "item") else str(v))


def claim_id(known: set[str], base: str) -> str:
    """`base`, or `base.1`, `base.2`, ...: the first not in `known`, which it joins. For ids
    that show a lineage (a promotion `0007-r1`) and must still never repeat."""
    trial_id, n = base, 0
    while trial_id in known:
        n += 1
        trial_id = f"{base}.{n}"
    known.add(trial_id)
    return trial_id


class NoOptions(BaseModel):
    """Options model of a strategy that takes none."""

    model_config = ConfigDict(extra="forbid")


STRATEGY_API = 2  # the contract version this automl implements; see docs/plugins.md


class Strategy:
    """Base class of every strategy, built-in or plugin.

    Subclasses set `name`, optionally an `Options` pydantic model (validated from the
    spec's `strategy.options`), and implement `ask` and `tell`. One call builds a strategy
    with everything it needs (`automl.strategy_builder.build_strategy` makes that call for
    the agent, `automl.optimize` and the conformance suite):

        space        the SearchSpace
        seed         the run's seed
        max_budget   the full budget of a trial, in epochs
        options      the validated Options
        workdir      a folder of the run directory for the strategy's own files (None: keep none)
        parallelism  how many trials run at once (so how often `ask` may be called before a `tell`)
        inner        strategies this one composes, built by the agent: see `inner_strategies`
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    api_version: ClassVar[int] = STRATEGY_API
    # True: every Observation carries the trial's per-epoch losses (`history`), and on resume
    # the recorded epochs of an interrupted trial are replayed through `should_stop`
    wants_history: ClassVar[bool] = False
    # True: most trials train part of max_budget (a rung ladder), and the run's max_trials counts
    # full trainings: each trial counts the epochs it adds, over max_budget (docs/strategies.md)
    partial_trials: ClassVar[bool] = False

    # class-level defaults, for plugins written against version 1 (they set neither)
    workdir: Path | None = None
    parallelism: int = 1

    def __init__(self, space: SearchSpace, *, seed: int, max_budget: float, options: BaseModel | None = None,
                 workdir: Path | None = None, parallelism: int = 1, inner: Mapping[str, "Strategy"] | None = None):
        self.space = space
        self.seed = seed
        self.max_budget = max_budget
        self.options = options if options is not None else self.Options()
        self.workdir = workdir
        self.parallelism = parallelism
        self.inner = dict(inner or {})

    @classmethod
    def inner_strategies(cls, options: BaseModel) -> Mapping[str, tuple[str, Mapping[str, Any]]]:
        """The strategies this one composes, by role: {role: (registered name, raw options)}.

        The agent builds each (validating its options, reporting errors at the Options fields
        `<role>` and `<role>_options`) and hands them in as `inner[role]`, so a strategy never
        looks plugins up itself."""
        return {}

    def ask(self) -> Suggestion | None:
        """The next trial to run, or None when nothing can be suggested right now
        (e.g. waiting for pending results) or the strategy has finished."""
        raise NotImplementedError

    def tell(self, observation: Observation) -> None:
        """Record how a trial ended. Must accept trials it did not suggest (replay)."""
        raise NotImplementedError

    def resume_pending(self, suggestion: Suggestion) -> None:
        """On resume: a trial from an earlier run that did not finish and will run again
        under its own id. Its observation arrives later through `tell`."""

    def should_stop(self, trial_id: str, step: int, loss: float) -> bool:
        """Asked after every epoch of a running trial; True prunes it."""
        return False

    def is_finished(self) -> bool:
        """True when the strategy has nothing more to suggest (e.g. a grid is done)."""
        return False

    def full_trainings_per_round(self) -> float | None:
        """For `partial_trials` strategies: the full trainings one round costs (its first bracket,
        or the trainings it takes to carry one config from the bottom rung to the top). A smaller
        max_trials never trains a config to the end. None: no such round."""
        return None
