"""Random search: each config drawn independently from the space.

The generator for the n-th suggestion is seeded with (seed, n), so suggestions are
reproducible and a strategy rebuilt by replay continues where the last one stopped
instead of repeating its first configs.
"""
from __future__ import annotations

import numpy as np

from automl.strategies.base import Observation, Strategy, Suggestion


class RandomStrategy(Strategy):
    name = "random"

    def __init__(self, space, *, seed, max_budget, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self._known: set[str] = set()
        self._count = 0

    def _next_index(self) -> int:
        while f"{self._count:04d}" in self._known:
            self._count += 1
        return self._count

    def ask(self) -> Suggestion:
        index = self._next_index()
        rng = np.random.default_rng([self.seed, index])
        trial_id = f"{index:04d}"
        self._known.add(trial_id)
        return Suggestion(trial_id=trial_id, config=self.space.sample(rng), budget=self.max_budget)

    def resume_pending(self, suggestion: Suggestion) -> None:
        self._known.add(suggestion.trial_id)

    def tell(self, observation: Observation) -> None:
        self._known.add(observation.trial_id)
