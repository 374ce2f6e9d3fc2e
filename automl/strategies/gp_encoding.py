"""A search space as the Gaussian process sees it: vectors in the unit cube.

One column per Float and Int (its `to_unit` value: log scales are linear here, an Int sits in
the middle of its share of [0, 1]), one column per choice of a Choice (one-hot). A parameter that
is inactive for a config takes a fixed value (0.5, or no choice at all for a Choice), the same
for every config where it is inactive, so it adds no distance between them.

`project` maps any point of the cube onto the nearest encoding of a config of the space (Ints
rounded to their step, the largest one-hot entry chosen, inactive parameters fixed), vectorised
over many points: the acquisition is optimised in the continuous cube and its results projected,
and `neighbours` gives the discrete moves (one Int step, another choice) of a local search.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from automl.space import Choice, Float, Int, SearchSpace

INACTIVE = 0.5  # the value of an inactive Float or Int


class Encoding:
    def __init__(self, space: SearchSpace):
        self.space = space
        self.slices: list[slice] = []
        start = 0
        for param in space:
            width = len(param.choices) if isinstance(param, Choice) else 1
            self.slices.append(slice(start, start + width))
            start += width
        self.dim = start
        self.fixed = np.zeros(self.dim)
        for param, cols in zip(space, self.slices):
            if not isinstance(param, Choice):
                self.fixed[cols] = INACTIVE
        # what each condition accepts, as a lookup over the parent's choices (Condition.holds: `in`)
        self._accepts = {param.name: [c in param.condition.values for c in space[param.condition.parent].choices]
                         for param in space if param.condition is not None
                         and isinstance(space[param.condition.parent], Choice)}

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """A config of the space (active parameters only) as a point of the cube."""
        x = self.fixed.copy()
        for param, cols in zip(self.space, self.slices):
            if param.name not in config:
                continue
            if isinstance(param, Choice):
                x[cols.start + param.choices.index(config[param.name])] = 1.0
            else:
                x[cols.start] = param.to_unit(config[param.name])
        return x

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        """A projected point as its config (only the active parameters)."""
        units = {}
        for param, cols in zip(self.space, self.slices):
            if isinstance(param, Choice):
                units[param.name] = (int(np.argmax(x[cols])) + 0.5) / len(param.choices)
            else:
                units[param.name] = float(x[cols.start])
        return self.space.from_unit(units)

    def project(self, X: np.ndarray) -> np.ndarray:
        """Every row onto the encoding of a config: rounded, one-hot, inactive parameters fixed."""
        return self._walk(X)[0]

    def active(self, X: np.ndarray) -> np.ndarray:
        """(rows, parameters): which parameter is active in each (projected) row."""
        return self._walk(X)[1]

    def _walk(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        out = np.empty_like(X)
        values: dict[str, np.ndarray] = {}  # decoded values (choice indices for a Choice)
        active: dict[str, np.ndarray] = {}
        for param, cols in zip(self.space, self.slices):
            if param.condition is None:
                mask = np.ones(len(X), dtype=bool)
            else:
                parent = param.condition.parent
                if param.name in self._accepts:
                    holds = np.asarray(self._accepts[param.name])[values[parent]]
                else:
                    numbers = [v for v in param.condition.values if isinstance(v, (int, float))]
                    holds = np.isin(values[parent], numbers)
                mask = active[parent] & holds
            active[param.name] = mask
            if isinstance(param, Choice):
                index = np.argmax(X[:, cols], axis=1)
                out[:, cols] = np.eye(len(param.choices))[index]
                values[param.name] = index
            else:
                unit, value = self._numeric(param, X[:, cols.start])
                out[:, cols.start] = unit
                values[param.name] = value
            out[~mask, cols] = self.fixed[cols]
        return out, np.stack([active[p.name] for p in self.space], axis=1) if len(self.space) else \
            np.zeros((len(X), 0), dtype=bool)

    @staticmethod
    def _numeric(param, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Units in [0, 1] -> (their projection, the parameter's values), like from_unit/to_unit."""
        u = np.clip(u, 0.0, 1.0)
        if isinstance(param, Float):
            if param.high == param.low:
                return np.full_like(u, 0.5), np.full_like(u, param.low)
            if param.log:
                lo, hi = math.log(param.low), math.log(param.high)
                return u, np.clip(np.exp(lo + u * (hi - lo)), param.low, param.high)
            return u, param.low + u * (param.high - param.low)
        return Encoding._int_units(param, Encoding._int_values(param, u))

    @staticmethod
    def _int_values(param: Int, u: np.ndarray) -> np.ndarray:
        if param.log:
            span = math.log(param.high + 1) - math.log(param.low)
            raw = np.exp(math.log(param.low) + u * span)
            return np.clip(np.floor(raw), param.low, param.high)
        n_values = (param.high - param.low) // param.step + 1
        index = np.clip(np.floor(u * n_values), 0, n_values - 1)
        return param.low + index * param.step

    @staticmethod
    def _int_units(param: Int, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if param.log:
            span = math.log(param.high + 1) - math.log(param.low)
            return (np.log(value + 0.5) - math.log(param.low)) / span, value
        n_values = (param.high - param.low) // param.step + 1
        return ((value - param.low) // param.step + 0.5) / n_values, value

    def neighbours(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The discrete moves from each projected row: one step up or down of an active Int, another
        value of an active Choice. Returns (the projected neighbours, the row each comes from)."""
        moves, origin = [], []
        rows = np.arange(len(X))
        masks = self.active(X)
        for i, (param, cols) in enumerate(zip(self.space, self.slices)):
            if isinstance(param, Float):
                continue
            active = masks[:, i]
            if isinstance(param, Choice):
                for j in range(len(param.choices)):
                    keep = active & (X[:, cols.start + j] < 0.5)
                    moved = X[keep].copy()
                    moved[:, cols] = np.eye(len(param.choices))[j]
                    moves.append(moved), origin.append(rows[keep])
            else:
                value = self._int_values(param, X[:, cols.start])
                for delta in (-param.step, param.step):
                    step = value + delta
                    keep = active & (step >= param.low) & (step <= param.high)
                    moved = X[keep].copy()
                    moved[:, cols.start] = self._int_units(param, step[keep])[0]
                    moves.append(moved), origin.append(rows[keep])
        if not moves:
            return np.empty((0, self.dim)), np.empty(0, dtype=int)
        return self.project(np.concatenate(moves)), np.concatenate(origin)

    def continuous(self, X: np.ndarray) -> np.ndarray:
        """Per row, the columns a gradient may move: active Floats and Ints (the Ints are rounded after)."""
        free = np.zeros(X.shape, dtype=bool)
        masks = self.active(X)
        for i, (param, cols) in enumerate(zip(self.space, self.slices)):
            if not isinstance(param, Choice):
                free[:, cols.start] = masks[:, i]
        return free
