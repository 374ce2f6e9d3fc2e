"""Random search: each config drawn independently from the space.

The generator for the n-th suggestion is seeded with (seed, n), so suggestions are
reproducible and a strategy rebuilt by replay continues where the last one stopped
instead of repeating its first configs.
"""
from __future__ import annotations

import numpy as np

from automl.strategies.base import Observation, Strategy, Suggestion, TrialIds


class RandomStrategy(Strategy):
    name = "random"

    def __init__(self, space, *, seed, max_budget, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self._ids = TrialIds()

    def ask(self) -> Suggestion:
        trial_id = self._ids.next()
        rng = np.random.default_rng([self.seed, self._ids.index])
        return Suggestion(trial_id=trial_id, config=self.space.sample(rng), budget=self.max_budget)

    def resume_pending(self, suggestion: Suggestion) -> None:
        self._ids.seen(suggestion.trial_id)

    def tell(self, observation: Observation) -> None:
        self._ids.seen(observation.trial_id)
