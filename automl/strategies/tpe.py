"""TPE: a tree-structured Parzen estimator over the unit cube, multi-fidelity aware (the
model of BOHB; Bergstra et al. 2011, Falkner et al. 2018).

Every parameter is mapped to [0, 1] with `space.to_unit` (log scales and integer steps
included). The observations of one budget are split by a quantile of their loss into
*good* (the best `gamma`, at least `min_points`) and *bad* (the rest); each set gets a
product-kernel density: Gaussian for numbers (normal-reference bandwidth, at least
`min_bandwidth` and 1 / (n + 1) for n points, Optuna's "magic clip", which keeps the
search from collapsing into the first basin it finds), Aitchison-Aitken for choices (the
same category gets 1 - bw, each other bw / (k - 1)), plus a uniform component of weight
`prior_weight`. `multivariate` (default) keeps one joint kernel per point as BOHB does;
False models each dimension on its own as Optuna's default TPE. A suggestion draws
`n_candidates` points around random good points (the bandwidth widened by
`bandwidth_factor`) and keeps the one with the highest l(x) / g(x).
A parameter inactive in a point (a condition) counts as no information in that dimension.

Budgets: observations carry the budget they were run with. The model is fitted on the
highest budget that has at least `min_points + 2` results (default `min_points`: the
number of parameters + 1), so under hyperband or asha it learns from the most trained
results as soon as there are enough of them, and from the cheap bottom rung before that.
With fewer results than that anywhere, or with probability `random_fraction`, the config
is drawn at random. FAILED trials count as the worst loss at their budget. A config
already suggested or told is not proposed again while a new candidate exists (small
discrete spaces run out of new configs; then the best seen one may come back).

Replay: the n-th suggestion's generator is seeded with (seed, n) and the model depends
only on the set of observations told (sorted by loss, then trial id), not on their order,
so a fresh instance told the same trials continues exactly where the last one stopped.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from automl.space import Choice
from automl.strategies.base import Observation, Status, Strategy, Suggestion, TrialIds, config_key


class TPEOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gamma: float = Field(0.25, gt=0, lt=1, description="the share of observations counted as good")
    min_points: int | None = Field(None, ge=1, description="at least this many good points; a budget needs "
                                                           "min_points + 2 results to be modelled (default: "
                                                           "parameters + 1)")
    random_fraction: float = Field(0.2, ge=0, le=1, description="share of suggestions drawn at random")
    n_candidates: int = Field(64, ge=1, description="candidates drawn from the good density per suggestion")
    bandwidth_factor: float = Field(3.0, gt=0, description="widens the good density when drawing candidates")
    min_bandwidth: float = Field(1e-3, gt=0, description="floor of every bandwidth, in the unit cube")
    prior_weight: float = Field(1.0, ge=0, description="weight of a uniform component in both densities, as "
                                                       "many points")
    multivariate: bool = Field(True, description="one joint kernel per point (BOHB); False: independent "
                                                 "dimensions (Optuna's default TPE)")


class _Density:
    """A product-kernel Parzen density over the unit-cube vectors `points` (NaN: inactive)."""

    def __init__(self, points: np.ndarray, kinds: list[int], min_bandwidth: float, prior: float = 0.0,
                 multivariate: bool = True):
        self.points, self.kinds, self.prior, self.multivariate = points, kinds, prior, multivariate
        # kinds: 0 numeric, k > 1 a choice of k categories
        n, dims = points.shape
        self.bw = np.empty(dims)
        for d in range(dims):
            column = points[:, d][~np.isnan(points[:, d])]
            spread = float(np.std(column)) if len(column) > 1 else 1.0
            bw = 1.06 * spread * max(len(column), 1) ** (-1.0 / (4 + dims))
            if kinds[d] > 1:
                bw = min(bw, (kinds[d] - 1) / kinds[d])  # (k-1)/k is the uniform distribution
            self.bw[d] = max(bw, min_bandwidth, 1.0 / (n + 1))  # 1/(n+1): Optuna's "magic clip"

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """The density at each row of x (m, dims), the uniform prior included: multivariate, the
        mean over points of the kernel product; otherwise the product of per-dimension densities."""
        n = self.points.shape[0]
        if not self.multivariate:
            return np.prod([(self._kernel(x, d).sum(axis=1) + self.prior) / (n + self.prior)
                            for d in range(len(self.kinds))], axis=0)
        total = np.prod([self._kernel(x, d) for d in range(len(self.kinds))], axis=0)
        return (total.sum(axis=1) + self.prior) / (n + self.prior)  # the prior's density is 1

    def _kernel(self, x: np.ndarray, d: int) -> np.ndarray:
        """(m, n): the kernel of dimension d between each row of x and each point (1 where inactive)."""
        k, bw = self.kinds[d], self.bw[d]
        xs, ps = x[:, d][:, None], self.points[:, d][None, :]
        if k > 1:
            kernel = np.where(np.floor(xs * k) == np.floor(ps * k), 1 - bw, bw / (k - 1))
        else:
            kernel = np.exp(-0.5 * ((xs - ps) / bw) ** 2) / (bw * math.sqrt(2 * math.pi))
        return np.where(np.isnan(xs) | np.isnan(ps), 1.0, kernel)

    def draw(self, rng: np.random.Generator, n: int, widen: float) -> np.ndarray:
        """n points: each around a random point of the density, its bandwidth times `widen`."""
        centres = self.points[rng.integers(len(self.points), size=n)]
        uniform = rng.uniform(size=n) < self.prior / (len(self.points) + self.prior)
        centres[uniform] = np.nan  # a draw from the uniform component
        out = np.empty_like(centres)
        for d, k in enumerate(self.kinds):
            if not self.multivariate:  # each dimension picks its own point
                centre = self.points[rng.integers(len(self.points), size=n), d]
                centre = np.where(rng.uniform(size=n) < self.prior / (len(self.points) + self.prior), np.nan, centre)
            else:
                centre = centres[:, d]
            fresh = rng.uniform(size=n)
            if k > 1:
                keep = rng.uniform(size=n) >= min(self.bw[d] * widen, (k - 1) / k) * k / (k - 1)
                value = np.where(keep, centre, fresh)
            else:
                value = _truncated_normal(rng, centre, self.bw[d] * widen)
            out[:, d] = np.where(np.isnan(centre), fresh, value)
        return out


def _truncated_normal(rng: np.random.Generator, mean: np.ndarray, sd: float) -> np.ndarray:
    """Normal draws around `mean` kept inside [0, 1] (redrawn a few times, then clipped)."""
    out = rng.normal(mean, sd)
    for _ in range(8):
        bad = (out < 0) | (out > 1) | np.isnan(out)
        if not bad.any():
            break
        out[bad] = rng.normal(mean[bad], sd)
    return np.clip(np.nan_to_num(out, nan=0.5), 0.0, 1.0)


class TPEStrategy(Strategy):
    name = "tpe"
    Options = TPEOptions
    uses_budgets = True  # hyperband and asha tell it every outcome with its budget

    def __init__(self, space, **context):
        super().__init__(space, **context)
        self._ids = TrialIds()
        self._params = list(space.params)
        self._kinds = [len(p.choices) if isinstance(p, Choice) else 0 for p in self._params]
        self.min_points = self.options.min_points or len(self._params) + 1
        self._results: dict[str, tuple[float, float, np.ndarray]] = {}  # trial id -> (budget, loss, unit vector)
        self._tried: set[str] = set()  # config keys suggested or told

    # -- the contract --------------------------------------------------------------------------
    def ask(self) -> Suggestion:
        trial_id = self._ids.next()
        rng = np.random.default_rng([self.seed, self._ids.index])
        config = self._propose(rng)
        self._tried.add(config_key(config))
        return Suggestion(trial_id, config, budget=self.max_budget)

    def tell(self, observation: Observation) -> None:
        self._ids.seen(observation.trial_id)
        config = self.space.active(observation.config)
        self._tried.add(config_key(config))
        if observation.status is Status.FAILED or observation.loss is None:
            loss = math.inf
        else:
            loss = float(observation.loss)
            loss = math.inf if loss != loss else loss
        budget = float(observation.budget) if observation.budget is not None else float(self.max_budget)
        self._results[observation.trial_id] = (budget, loss, self._to_vector(config))

    def resume_pending(self, suggestion: Suggestion) -> None:
        self._ids.seen(suggestion.trial_id)
        self._tried.add(config_key(self.space.active(suggestion.config)))

    # -- the model -----------------------------------------------------------------------------
    def model_budget(self) -> float | None:
        """The budget the next suggestion is modelled on (None: not enough results yet)."""
        counts: dict[float, int] = {}
        for budget, _, _ in self._results.values():
            counts[budget] = counts.get(budget, 0) + 1
        enough = [b for b, n in counts.items() if n >= self.min_points + 2]
        return max(enough) if enough else None

    def _propose(self, rng: np.random.Generator) -> dict[str, Any]:
        budget = self.model_budget()
        if budget is None or rng.uniform() < self.options.random_fraction:
            return self._random(rng)
        rows = sorted((loss, trial_id, vector) for trial_id, (b, loss, vector) in self._results.items()
                      if b == budget)
        n_good = max(self.min_points, math.ceil(self.options.gamma * len(rows)))
        n_good = min(n_good, len(rows) - 1)
        opts = self.options
        good, bad = (_Density(np.array([v for _, _, v in part]), self._kinds, opts.min_bandwidth, opts.prior_weight,
                              opts.multivariate) for part in (rows[:n_good], rows[n_good:]))
        candidates = good.draw(rng, self.options.n_candidates, self.options.bandwidth_factor)
        score = np.log(np.maximum(good.pdf(candidates), 1e-300)) - np.log(np.maximum(bad.pdf(candidates), 1e-300))
        configs = [self.space.from_unit(dict(zip(self.space.names, row))) for row in candidates]
        order = np.argsort(-score, kind="stable")
        for index in order:
            if config_key(configs[index]) not in self._tried:
                return configs[index]
        fresh = self._random(rng)
        return fresh if config_key(fresh) not in self._tried else configs[order[0]]

    def _random(self, rng: np.random.Generator) -> dict[str, Any]:
        config = self.space.sample(rng)
        for _ in range(20):  # a small discrete space: prefer a config not tried yet
            if config_key(config) not in self._tried:
                break
            config = self.space.sample(rng)
        return config

    def _to_vector(self, config: Mapping[str, Any]) -> np.ndarray:
        return np.array([p.to_unit(config[p.name]) if p.name in config else np.nan for p in self._params])
