"""Build a strategy in one call, with everything it needs, the same way for every caller.

The agent, `automl.optimize`, the conformance suite and the fallback after a broken
strategy all come here. Options are validated (errors name `strategy.options.<field>`),
the strategies a strategy composes (asha's sampler) are built first and handed in, and
the plugin contract's version is checked, so a plugin written for an older contract
keeps working and one written for a newer contract gets a clear error.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pydantic import BaseModel, ValidationError

from automl.errors import PluginError, SpecError
from automl.space import SearchSpace
from automl.strategies.base import STRATEGY_API, Strategy

if TYPE_CHECKING:
    from automl.plugins import Registry

SUPPORTED_APIS = (1, STRATEGY_API)  # 1: workdir and parallelism were set after construction
CONTEXT_ARGS = ("workdir", "parallelism", "inner")


@dataclass(frozen=True)
class StrategySetup:
    """What every strategy of one search is built with."""

    space: SearchSpace
    seed: int
    max_budget: float
    workdir: Path | None = None  # made when the strategy is built
    parallelism: int = 1


def validate_options(cls: type[Strategy], raw: Mapping[str, Any] | BaseModel | None,
                     path: str = "strategy.options") -> BaseModel:
    """The strategy's Options from the spec's mapping; a SpecError names each bad field."""
    if isinstance(raw, cls.Options):
        return raw
    from automl.spec_checks import kind_problems, problems_from_validation_error

    document = dict(raw or {}) if not isinstance(raw, BaseModel) else raw.model_dump()
    problems = kind_problems(cls.Options, document)  # true is no number here either
    try:
        options = cls.Options.model_validate(document)
    except ValidationError as error:
        given = {where for where, _ in problems}
        problems += [p for p in problems_from_validation_error(error, cls.Options) if p[0] not in given]
    if problems:
        raise SpecError([(f"{path}.{where}".rstrip("."), message) for where, message in problems])
    return options


def _label(cls: type) -> str:
    return f"strategy {getattr(cls, 'name', '') or cls.__name__!r} ({cls.__module__})"


def _accepts_context(cls: type[Strategy]) -> bool:
    """Whether the constructor takes workdir/parallelism/inner (contract 2) or only the four
    arguments of contract 1."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return True
    return all(name in params for name in CONTEXT_ARGS)


def _check_api(cls: type[Strategy]) -> None:
    version = getattr(cls, "api_version", 1)
    if version not in SUPPORTED_APIS:
        raise PluginError(f"{_label(cls)} is written for strategy contract version {version!r}; this automl "
                          f"supports versions {', '.join(map(str, SUPPORTED_APIS))}. Upgrade automl, or use a "
                          "release of the plugin made for this one.")


def build_strategy(cls: type[Strategy], options: Mapping[str, Any] | BaseModel | None, setup: StrategySetup, *,
                   registry: "Registry | None" = None, options_path: str = "strategy.options") -> Strategy:
    """A ready strategy of class `cls`: options validated, inner strategies built and handed in."""
    _check_api(cls)
    validated = validate_options(cls, options, options_path)
    if setup.workdir is not None:
        setup.workdir.mkdir(parents=True, exist_ok=True)
    inner = _build_inner(cls, validated, setup, registry, options_path)
    if _accepts_context(cls):
        return cls(setup.space, seed=setup.seed, max_budget=setup.max_budget, options=validated,
                   workdir=setup.workdir, parallelism=setup.parallelism, **({"inner": inner} if inner else {}))
    if inner:
        raise PluginError(f"{_label(cls)} composes other strategies ({', '.join(inner)}) but its __init__ does not "
                          "accept `inner`; accept **kwargs and pass them to Strategy.__init__")
    # contract 1: the four arguments, then the context as attributes (what the agent used to do)
    strategy = cls(setup.space, seed=setup.seed, max_budget=setup.max_budget, options=validated)
    strategy.workdir, strategy.parallelism = setup.workdir, setup.parallelism
    return strategy


def _build_inner(cls: type[Strategy], options: BaseModel, setup: StrategySetup, registry: "Registry | None",
                 options_path: str) -> dict[str, Strategy]:
    wanted = cls.inner_strategies(options) if hasattr(cls, "inner_strategies") else {}
    if not wanted:
        return {}
    if registry is None:
        from automl.plugins import discover

        registry = discover()
    inner = {}
    for role, (name, inner_options) in wanted.items():
        if name == cls.name:
            raise SpecError([(f"{options_path}.{role}", f"{cls.name} cannot compose itself; use e.g. 'random'")])
        if name not in registry.names("strategies"):
            known = ", ".join(n for n in registry.names("strategies") if n != cls.name)
            raise SpecError([(f"{options_path}.{role}", f"{cls.name} has no {role} strategy named {name!r}; "
                                                        f"known: {known}")])
        inner_cls = registry.strategy(name)  # a PluginError here names the plugin and why it does not load
        workdir = setup.workdir / role if setup.workdir is not None else None
        inner[role] = build_strategy(inner_cls, inner_options, StrategySetup(
            setup.space, setup.seed, setup.max_budget, workdir, setup.parallelism), registry=registry,
            options_path=f"{options_path}.{role}_options")
    return inner


def strategy_class_and_options(registry: "Registry", name: str, options: Mapping[str, Any]):
    """The class of strategy `name` and its validated options; an unknown name is the spec's problem."""
    try:
        strategy_cls = registry.strategy(name)
    except PluginError as error:
        if name not in registry.names("strategies"):
            raise SpecError([("strategy.name", str(error))]) from None
        raise
    return strategy_cls, validate_options(strategy_cls, options)


def builtin_strategy_problems(raw: Any, plugin_dirs: Sequence[Path] = ()) -> list[tuple[str, str]]:
    """What the built-in strategy a spec document names refuses in its options (or an unknown name),
    found without the data, any plugin code or torch, so that they are listed with the spec's own
    problems (`automl validate --no-data` answers at once). A strategy from a plugin folder or another
    package is checked by make_plan."""
    from automl.plugins import discover
    from automl.strategy_choice import AUTO

    strategy = raw.get("strategy") if isinstance(raw, Mapping) else None
    name, options = (strategy.get("name"), strategy.get("options", {})) if isinstance(strategy, Mapping) else (None, None)
    if not isinstance(name, str) or name in ("", AUTO) or not isinstance(options, Mapping):
        return []  # the spec's own checks say what is wrong
    registry = discover()  # entry points only: nothing is imported until a plugin is loaded
    if name not in registry.names("strategies"):
        if plugin_dirs or raw.get("plugins_dirs"):
            return []  # it may come from a plugin folder
    elif not registry.get("strategies", name).builtin:
        return []
    try:
        strategy_class_and_options(registry, name, options)
    except SpecError as error:
        return error.problems
    return []
