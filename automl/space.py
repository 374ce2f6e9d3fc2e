"""Search spaces: Float, Int and Choice parameters with optional conditions.

A config is a plain dict holding only the parameters that are active for it: a
parameter with a condition is active when its parent is active and takes one of
the listed values (e.g. `mlp.width` only when `family == "mlp"`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence, Union

import numpy as np

Value = Union[bool, int, float, str]


@dataclass(frozen=True)
class Condition:
    parent: str
    values: tuple[Value, ...]

    def holds(self, config: Mapping[str, Any]) -> bool:
        return self.parent in config and config[self.parent] in self.values


@dataclass(frozen=True)
class Float:
    name: str
    low: float
    high: float
    log: bool = False
    condition: Condition | None = None

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"{self.name}: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"{self.name}: a log-scale range needs low > 0, got {self.low}")

    def _clip(self, value: float) -> float:
        # exp(log(x)) can land one ulp outside the range; a value outside must never be suggested
        return float(min(max(value, self.low), self.high))

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return self._clip(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self._clip(rng.uniform(self.low, self.high))

    def to_unit(self, value: float) -> float:
        if self.high == self.low:
            return 0.5
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        u = min(max(u, 0.0), 1.0)
        if self.log:
            return self._clip(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
        return self._clip(self.low + u * (self.high - self.low))

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{self.name}={value!r} is not a finite number"
        if not self.low <= value <= self.high:
            return f"{self.name}={value!r} is outside [{self.low}, {self.high}]"
        return None


@dataclass(frozen=True)
class Int:
    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False
    condition: Condition | None = None

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"{self.name}: low {self.low} > high {self.high}")
        if self.step < 1:
            raise ValueError(f"{self.name}: step must be >= 1")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError(f"{self.name}: a log-scale int needs low > 0 and step 1")

    @property
    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))

    def sample(self, rng: np.random.Generator) -> int:
        return self.from_unit(float(rng.uniform()))

    def to_unit(self, value: int) -> float:
        """The middle of the value's share of [0, 1], so from_unit(to_unit(v)) == v."""
        if self.log:
            span = math.log(self.high + 1) - math.log(self.low)
            return (math.log(value + 0.5) - math.log(self.low)) / span
        n_values = (self.high - self.low) // self.step + 1
        return ((value - self.low) // self.step + 0.5) / n_values

    def from_unit(self, u: float) -> int:
        u = min(max(u, 0.0), 1.0)
        if self.log:
            # map u onto [log(low), log(high + 1)) so each integer gets its share of mass
            raw = math.exp(math.log(self.low) + u * (math.log(self.high + 1) - math.log(self.low)))
            return int(min(max(math.floor(raw), self.low), self.high))
        n_values = (self.high - self.low) // self.step + 1
        index = min(int(u * n_values), n_values - 1)
        return self.low + index * self.step

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return f"{self.name}={value!r} is not an integer"
        if not self.low <= value <= self.high or (value - self.low) % self.step:
            return f"{self.name}={value!r} is not in range({self.low}, {self.high} + 1, {self.step})"
        return None


@dataclass(frozen=True)
class Choice:
    name: str
    choices: tuple[Value, ...]
    condition: Condition | None = None

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"{self.name}: no choices")
        object.__setattr__(self, "choices", tuple(self.choices))

    def sample(self, rng: np.random.Generator) -> Value:
        return self.choices[int(rng.integers(len(self.choices)))]

    def to_unit(self, value: Value) -> float:
        return (self.choices.index(value) + 0.5) / len(self.choices)

    def from_unit(self, u: float) -> Value:
        return self.choices[min(int(min(max(u, 0.0), 1.0) * len(self.choices)), len(self.choices) - 1)]

    def problem(self, value: Any) -> str | None:
        # bool is an int in Python: compare types too so True never passes for 1
        if not any(value == c and type(value) is type(c) for c in self.choices):
            return f"{self.name}={value!r} is not one of {list(self.choices)}"
        return None


Param = Union[Float, Int, Choice]


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        seen: set[str] = set()
        for param in self.params:
            if param.name in seen:
                raise ValueError(f"duplicate parameter {param.name!r}")
            if param.condition is not None and param.condition.parent not in seen:
                raise ValueError(f"{param.name}: condition parent {param.condition.parent!r} must come before it")
            seen.add(param.name)

    def __iter__(self):
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def is_active(self, param: Param, config: Mapping[str, Any]) -> bool:
        return param.condition is None or param.condition.holds(config)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for param in self.params:  # parents come first, so conditions see their values
            if self.is_active(param, config):
                config[param.name] = param.sample(rng)
        return config

    def from_unit(self, units: Mapping[str, float]) -> dict[str, Any]:
        """Build a config from per-parameter values in [0, 1]; inactive ones are dropped."""
        config: dict[str, Any] = {}
        for param in self.params:
            if self.is_active(param, config):
                config[param.name] = param.from_unit(units.get(param.name, 0.5))
        return config

    def active(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Keep only the values of parameters that are active for this config."""
        kept: dict[str, Any] = {}
        for param in self.params:
            if self.is_active(param, kept) and param.name in config:
                kept[param.name] = config[param.name]
        return kept

    def problems(self, config: Mapping[str, Any]) -> list[str]:
        """Why a config does not belong to this space (empty list: it does)."""
        if not isinstance(config, Mapping):
            return [f"config must be a mapping, got {type(config).__name__}"]
        found: list[str] = []
        checked: dict[str, Any] = {}
        for param in self.params:
            active = self.is_active(param, checked)
            if active and param.name not in config:
                found.append(f"{param.name} is missing")
            elif active:
                problem = param.problem(config[param.name])
                if problem:
                    found.append(problem)
                checked[param.name] = config[param.name]
            elif param.name in config:
                found.append(f"{param.name} is given but inactive for this config")
        unknown = set(config) - set(self.names)
        found.extend(f"{name} is not a parameter of the space" for name in sorted(unknown))
        return found

    def contains(self, config: Mapping[str, Any]) -> bool:
        return not self.problems(config)

    def with_override(self, name: str, *, low=None, high=None, log=None, choices=None) -> "SearchSpace":
        """Replace one parameter's domain, keeping its name and condition."""
        params = []
        for param in self.params:
            if param.name != name:
                params.append(param)
                continue
            if choices is not None:
                params.append(Choice(name, tuple(choices), param.condition))
            elif isinstance(param, Choice):
                raise ValueError(f"{name} is a choice; override it with 'choices'")
            else:
                cast = int if isinstance(param, Int) else float
                changes = {k: cast(v) for k, v in (("low", low), ("high", high)) if v is not None}
                if isinstance(param, Int) and any(v is not None and v != int(v) for v in (low, high)):
                    raise ValueError(f"{name} takes whole numbers; got low={low}, high={high}")
                if log is not None:
                    changes["log"] = log
                params.append(replace(param, **changes))
        if name not in self.names:
            raise KeyError(name)
        return SearchSpace(tuple(params))

    def to_dict(self) -> list[dict[str, Any]]:
        out = []
        for param in self.params:
            item: dict[str, Any] = {"name": param.name, "type": type(param).__name__.lower()}
            if isinstance(param, Choice):
                item["choices"] = list(param.choices)
            else:
                item.update(low=param.low, high=param.high, log=param.log)
                if isinstance(param, Int):
                    item["step"] = param.step
            if param.condition is not None:
                item["condition"] = {"parent": param.condition.parent, "values": list(param.condition.values)}
            out.append(item)
        return out

    @classmethod
    def from_dict(cls, items: Sequence[Mapping[str, Any]]) -> "SearchSpace":
        params: list[Param] = []
        for item in items:
            cond = item.get("condition")
            condition = Condition(cond["parent"], tuple(cond["values"])) if cond else None
            kind = item["type"]
            if kind == "choice":
                params.append(Choice(item["name"], tuple(item["choices"]), condition))
            elif kind == "int":
                params.append(Int(item["name"], item["low"], item["high"], item.get("step", 1), item.get("log", False), condition))
            elif kind == "float":
                params.append(Float(item["name"], item["low"], item["high"], item.get("log", False), condition))
            else:
                raise ValueError(f"unknown parameter type {kind!r}")
        return cls(tuple(params))
