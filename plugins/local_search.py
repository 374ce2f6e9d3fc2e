"""Local search around the incumbent: an example strategy plugin in one file.

Copy this file into a folder and run with `--plugins-dir FOLDER` (or list the folder
under `plugins_dirs` in the spec), then pick it with `"strategy": {"name": "local_search"}`.

How it searches: the first `n_initial` trials are random. After that, with
probability `explore` a trial is random; otherwise it perturbs the best config found
so far: each parameter moves in the space's unit cube by a Gaussian step of width
`step`, and each choice is resampled with probability `step`.
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from automl.space import Choice
from automl.strategies import Observation, Status, Strategy, Suggestion, TrialIds


class LocalSearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_initial: int = Field(5, ge=1, description="Random trials before local moves start.")
    step: float = Field(0.15, gt=0, le=1, description="Step width in the unit cube.")
    explore: float = Field(0.2, ge=0, le=1, description="Chance of a random trial after the start.")


class LocalSearch(Strategy):
    name = "local_search"
    Options = LocalSearchOptions

    def __init__(self, space, **context):
        super().__init__(space, **context)  # seed, max_budget, options, workdir, parallelism
        self.ids = TrialIds("ls")  # fresh ids that skip those replayed or resumed
        self.best: tuple[float, dict] | None = None  # (loss, config)

    def ask(self) -> Suggestion:
        trial_id = self.ids.next()
        # one generator per suggestion: reproducible, and a replayed strategy does not repeat itself
        rng = np.random.default_rng([self.seed, self.ids.index])
        opts = self.options
        if self.best is None or self.ids.index < opts.n_initial or rng.uniform() < opts.explore:
            config = self.space.sample(rng)
        else:
            config = self._perturb(self.best[1], rng)
        return Suggestion(trial_id, config, budget=self.max_budget)

    def _perturb(self, incumbent: dict, rng: np.random.Generator) -> dict:
        units = {}
        for param in self.space:
            if param.name not in incumbent:
                units[param.name] = float(rng.uniform())  # inactive in the incumbent: anything goes
            elif isinstance(param, Choice) and rng.uniform() < self.options.step:
                units[param.name] = float(rng.uniform())
            elif isinstance(param, Choice):
                units[param.name] = param.to_unit(incumbent[param.name])
            else:
                units[param.name] = param.to_unit(incumbent[param.name]) + rng.normal(0, self.options.step)
        return self.space.from_unit(units)

    def resume_pending(self, suggestion: Suggestion) -> None:
        self.ids.seen(suggestion.trial_id)

    def tell(self, observation: Observation) -> None:
        self.ids.seen(observation.trial_id)
        if observation.status is Status.FAILED or observation.loss is None:
            return
        if self.best is None or observation.loss < self.best[0]:
            self.best = (observation.loss, dict(observation.config))
