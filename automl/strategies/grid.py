"""Grid search: every choice, and `resolution` values per numeric parameter.

A numeric parameter's values are `from_unit` of evenly spaced points of [0, 1] (both
ends included; the middle alone at resolution 1), so log parameters are log-spaced and
integers respect their step; duplicates (a narrow Int range) are dropped. A conditional
parameter is expanded only under the parent values that activate it, so no config
appears twice.

The grid is never listed in full (a family space at resolution 5 holds millions of
points): the point at a position is decoded from subtree counts, and the order is a
seeded pseudo-random permutation of the positions, so a search stopped early still
covers the space. Replay: every config told or resumed is marked as seen, and seen
points are never suggested again.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from automl.space import Choice, Float, Int, Param, SearchSpace
from automl.strategies.base import Observation, Strategy, Suggestion, TrialIds

log = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1
_MISSING = object()  # an inactive parent, in the memo key of a subtree size


class GridOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: int = Field(5, ge=1, description="Values per numeric parameter (fewer for a narrow Int range).")
    shuffle: bool = Field(True, description="Visit the points in a seeded random order rather than in grid order.")


def _axis(param: Param, resolution: int) -> list[Any]:
    if isinstance(param, Choice):
        return list(param.choices)
    units = [0.5] if resolution == 1 else [i / (resolution - 1) for i in range(resolution)]
    return list(dict.fromkeys(param.from_unit(u) for u in units))  # dedup, order kept


class _Grid:
    """The points of a conditional grid, addressed by position in [0, size)."""

    def __init__(self, space: SearchSpace, resolution: int):
        self.params = list(space)
        self.axes = [_axis(p, resolution) for p in self.params]
        self.space = space
        # the only values a later condition can read: the memo key of a subtree's size
        self._parents = [p.name for p in self.params if any(q.condition and q.condition.parent == p.name
                                                             for q in self.params)]
        self._memo: dict[tuple, int] = {}
        self.size = self._count(0, {})

    def _count(self, i: int, partial: Mapping[str, Any]) -> int:
        """How many points complete `partial` (a config of the first i parameters)."""
        if i == len(self.params):
            return 1
        key = (i, tuple(partial.get(name, _MISSING) for name in self._parents))
        if key not in self._memo:
            param = self.params[i]
            if self.space.is_active(param, partial):
                self._memo[key] = sum(self._count(i + 1, {**partial, param.name: v}) for v in self.axes[i])
            else:
                self._memo[key] = self._count(i + 1, partial)
        return self._memo[key]

    def point(self, position: int) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for i, param in enumerate(self.params):
            if not self.space.is_active(param, config):
                continue
            for value in self.axes[i]:
                below = self._count(i + 1, {**config, param.name: value})
                if position < below:
                    config[param.name] = value
                    break
                position -= below
        return config


class _Permutation:
    """A seeded pseudo-random bijection of range(n), one index at a time (no n-sized array):
    a 4-round Feistel network on the smallest even number of bits covering n, cycle-walking
    back into range (fewer than 4 steps on average)."""

    def __init__(self, n: int, seed: int):
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.half = (bits + 1) // 2
        self.keys = [int(k) for k in np.random.default_rng([seed, 0x6772]).integers(0, 2**63, size=4)]

    def _mix(self, x: int, key: int) -> int:
        x = ((x ^ key) * 0x9E3779B97F4A7C15) & _MASK64  # splitmix64-style finaliser
        x = ((x ^ (x >> 31)) * 0xBF58476D1CE4E5B9) & _MASK64
        return x ^ (x >> 29)

    def _encrypt(self, x: int) -> int:
        mask = (1 << self.half) - 1
        left, right = x >> self.half, x & mask
        for key in self.keys:
            left, right = right, left ^ (self._mix(right, key) & mask)
        return (left << self.half) | right

    def __call__(self, index: int) -> int:
        x = self._encrypt(index)
        while x >= self.n:
            x = self._encrypt(x)
        return x


def _key(space: SearchSpace, config: Mapping[str, Any]) -> tuple:
    """A hashable identity of a config; the type is part of it so True and 1 stay apart."""
    key = []
    for param in space:
        if param.name in config:
            value = config[param.name]
            if isinstance(param, Float):
                value = float(value)
            elif isinstance(param, Int):
                value = int(value)
            key.append((param.name, type(value).__name__, value))
    return tuple(key)


class GridStrategy(Strategy):
    name = "grid"
    Options = GridOptions

    def __init__(self, space, *, seed, max_budget, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self._grid = _Grid(space, self.options.resolution)
        self._order = _Permutation(self._grid.size, seed) if self.options.shuffle else (lambda i: i)
        self._cursor = 0  # positions before it have been suggested or were already seen
        self._seen: set[tuple] = set()  # configs suggested, told or resumed
        self._ids = TrialIds("grid")
        log.debug("grid of %d points (resolution %d)", self._grid.size, self.options.resolution)

    @property
    def size(self) -> int:
        """The number of points of the grid."""
        return self._grid.size

    def _next_point(self) -> dict[str, Any] | None:
        while self._cursor < self._grid.size:
            config = self._grid.point(self._order(self._cursor))
            if _key(self.space, config) not in self._seen:
                return config
            self._cursor += 1  # told during replay: skip it
        return None

    def ask(self) -> Suggestion | None:
        config = self._next_point()
        if config is None:
            return None
        self._cursor += 1
        self._seen.add(_key(self.space, config))
        return Suggestion(self._ids.next(), config, budget=self.max_budget)

    def is_finished(self) -> bool:
        return self._next_point() is None

    def _remember(self, trial_id: str, config: Mapping[str, Any]) -> None:
        self._ids.seen(trial_id)
        self._seen.add(_key(self.space, config))

    def resume_pending(self, suggestion: Suggestion) -> None:
        self._remember(suggestion.trial_id, suggestion.config)

    def tell(self, observation: Observation) -> None:
        self._remember(observation.trial_id, observation.config)
