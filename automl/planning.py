"""The agent's choices before the search: which families, which search space, and why.

Kept apart from the loop so `automl validate` and `automl init` can show the plan
without running anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from automl.data.base import Profile
from automl.errors import SpecError
from automl.families.base import Family
from automl.space import Choice, Condition, Float, Param, SearchSpace
from automl.spec import FamiliesSpec

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
