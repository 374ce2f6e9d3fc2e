"""The agent's choices before the search: the data, which families, which search space, which
strategy, and why (`make_plan`).

Kept apart from the loop so `automl validate` and `automl init` can show the plan without
running anything, and without torch: the families' `suits` and `space` need none.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from automl.data import load_data
from automl.data.base import PreparedData, Profile
from automl.data.checks import DataChecks, check_data
from automl.errors import SpecError
from automl.families.base import Family
from automl.plugins import Registry, discover
from automl.space import Choice, Condition, Float, Param, SearchSpace
from automl.spec import METRICS, FamiliesSpec, TaskSpec
from automl.strategies.base import Strategy
from automl.strategy_builder import StrategySetup, build_strategy, strategy_class_and_options
from automl.strategy_choice import AUTO, SearchFacts, StrategyChoice, choose_strategy, trial_budget_note

BATCH_SIZES = (32, 64, 128, 256)
FIRST_ORDER = ("adam", "adamw", "sgd")
# L-BFGS trains full batch with a line search (tens of passes over the data per epoch): offered
# for small tables only, where that costs less than one epoch of a CNN and often converges best
LBFGS_MAX_TRAIN = 5000
# recurrent and attention nets overfit a few hundred series (accuracy near chance on small UCR sets,
# where 1-NN scores 0.9); left out there unless the spec includes them, see docs/benchmarks.md
SMALL_SEQUENCE_SET = 1000
DATA_HUNGRY_SEQUENCE_FAMILIES = ("rnn", "transformer")


@dataclass(frozen=True)
class FamilyChoice:
    family: str
    chosen: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "chosen": self.chosen, "reason": self.reason}


def choose_families(profile: Profile, families: dict[str, Family], spec: FamiliesSpec) -> list[FamilyChoice]:
    """Every known family with the decision and its reason; raises when none is left."""
    unknown = [n for n in (spec.include or ()) + spec.exclude if n not in families]
    if unknown:
        raise SpecError([("families", f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                                      f"known: {', '.join(sorted(families))}")])
    choices = []
    for name in sorted(families):
        suits, why = families[name].suits(profile)
        if name in spec.exclude:
            choices.append(FamilyChoice(name, False, "excluded by the spec"))
        elif spec.include is not None and name not in spec.include:
            choices.append(FamilyChoice(name, False, "not in the spec's include list"))
        elif not suits:
            choices.append(FamilyChoice(name, False, why))
        elif spec.include is None and _too_few_series(name, profile):
            choices.append(FamilyChoice(name, False, f"{profile.n_train} training series are too few for it to "
                                                     "learn its own features; random kernels and small "
                                                     "convolutional nets generalise better there"))
        else:
            extra = " (asked for in the spec)" if spec.include is not None else ""
            choices.append(FamilyChoice(name, True, why + extra))
    if not any(c.chosen for c in choices):
        detail = "; ".join(f"{c.family}: {c.reason}" for c in choices)
        raise SpecError([("families", f"no model family fits this {profile.modality} data with these settings "
                                      f"({detail})")])
    return choices


def _too_few_series(name: str, profile: Profile) -> bool:
    return (name in DATA_HUNGRY_SEQUENCE_FAMILIES and profile.modality == "sequence"
            and profile.n_train <= SMALL_SEQUENCE_SET)


def training_params(profile: Profile) -> list[Param]:
    """Hyperparameters of the optimisation itself, shared by every family."""
    batch_sizes = tuple(b for b in BATCH_SIZES if b <= max(profile.n_train, BATCH_SIZES[0]))
    small_table = profile.modality == "tabular" and profile.n_train <= LBFGS_MAX_TRAIN
    optimizers = FIRST_ORDER + (("lbfgs",) if small_table else ())
    first_order = Condition("optimizer", FIRST_ORDER)  # L-BFGS has no weight decay; clipping breaks its line search
    sgd = Condition("optimizer", ("sgd",))
    return [
        Choice("optimizer", optimizers),
        Float("lr", 1e-4, 3e-2, log=True),
        Float("momentum", 0.5, 0.99, condition=sgd),
        Choice("nesterov", (False, True), condition=sgd),
        Float("weight_decay", 1e-6, 1e-2, log=True, condition=first_order),
        Choice("batch_size", batch_sizes),  # L-BFGS: rows per gradient chunk of its full batch (memory only)
        Choice("lr_schedule", ("constant", "cosine", "one_cycle")),
        Choice("grad_clip", (0.0, 1.0, 5.0), condition=first_order),  # max gradient norm; 0 is off
    ]


def _prefixed(family: str, param: Param) -> Param:
    from dataclasses import replace

    if param.condition is not None:
        condition = Condition(f"{family}.{param.condition.parent}", param.condition.values)
    else:
        condition = Condition("family", (family,))
    return replace(param, name=f"{family}.{param.name}", condition=condition)


def build_space(profile: Profile, families: dict[str, Family], chosen: list[str], spec: FamiliesSpec) -> SearchSpace:
    params: list[Param] = [Choice("family", tuple(chosen))]
    params += training_params(profile)
    for name in chosen:
        params += [_prefixed(name, p) for p in families[name].space(profile)]
    space = SearchSpace(tuple(params))
    problems = []
    for key, override in spec.overrides.items():
        try:
            space = space.with_override(key, low=override.low, high=override.high, log=override.log,
                                        choices=override.choices)
        except KeyError:
            problems.append((f"families.overrides.{key}", f"no parameter {key!r} in the search space; known: "
                                                          f"{', '.join(space.names)}"))
        except ValueError as error:
            problems.append((f"families.overrides.{key}", str(error)))
    if problems:
        raise SpecError(problems)
    return space


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
    strategy: StrategyChoice  # which strategy and why (named in the spec, or picked by `auto`)
    families: dict = field(default_factory=dict)
    budget_note: str = ""  # how max_trials counts for a rung-ladder strategy, and whether it is enough
    budget_too_small: bool = False
    checks: DataChecks = field(default_factory=DataChecks)  # its refusals were raised unless refuse=False


def make_plan(spec: TaskSpec, extra_plugin_dirs: Sequence[Path] = (), *, refuse: bool = True) -> Plan:
    """Load plugins and data and decide families and space; runs no trial, writes nothing.

    Data the checks refuse (too few rows, too many classes) raises a DataError unless `refuse`
    is False (`automl init` looks first, then picks a split that fits)."""
    registry = discover(tuple(spec.plugins_dirs) + tuple(extra_plugin_dirs))
    if spec.strategy.name != AUTO:  # checked before the data is loaded: a typo fails at once
        strategy_class_and_options(registry, spec.strategy.name, spec.strategy.options)
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
    checks = check_data(data, spec.split, seed=spec.seed, drop_advice="list it in data.drop" if spec.data.source == "csv"
                        else "remove it from the data")
    if refuse:
        checks.raise_refusals()
    metric_names = tuple(dict.fromkeys((metric, *spec.metrics)))
    families = {name: registry.family(name) for name in registry.names("families")}
    choices = choose_families(data.profile, families, spec.families)
    chosen = [c.family for c in choices if c.chosen]
    space = build_space(data.profile, families, chosen, spec.families)
    return plan_strategy(Plan(spec, registry, data, metric, direction, metric_names, choices, space, None, None,
                              _named_or_auto(spec, space, registry), {n: families[n] for n in chosen},
                              checks=checks))


def _named_or_auto(spec: TaskSpec, space: SearchSpace, registry: Registry) -> StrategyChoice:
    if spec.strategy.name != AUTO:
        return StrategyChoice(spec.strategy.name, dict(spec.strategy.options), "named in the spec")
    facts = SearchFacts.of(space, max_trials=spec.budget.max_trials, max_time=spec.budget.max_time,
                           max_epochs=spec.budget.max_epochs, workers=spec.execution.workers or 1)
    return choose_strategy(facts, registry.names("strategies"))


def plan_strategy(plan: Plan, choice: StrategyChoice | None = None) -> Plan:
    """The plan with `choice` (default: the plan's own) as its strategy, class and options checked.

    The strategy is built once here and dropped, so that `automl validate` reports what a
    strategy refuses (e.g. a rung ladder that does not fit max_epochs) before a run directory
    is touched."""
    choice = choice or plan.strategy
    strategy_cls, options = strategy_class_and_options(plan.registry, choice.name, choice.options)
    budget = plan.spec.budget
    strategy = build_strategy(strategy_cls, options, StrategySetup(plan.space, plan.spec.seed, float(budget.max_epochs)),
                              registry=plan.registry)
    note, too_small = trial_budget_note(strategy, budget.max_trials, float(budget.max_epochs))
    return dataclasses.replace(plan, strategy_cls=strategy_cls, strategy_options=options, strategy=choice,
                               budget_note=note, budget_too_small=too_small)
