"""The "botorch" engine of `bayesian`: what it has been told, when it refits, what it suggests.

- Start: the first `num_initial_points` trials (default max(5, parameters + 1)) are the points of
  one scrambled Sobol sequence of the seed, taken through the unit cube of the space
  (`SearchSpace.from_unit`: log scales, Int steps, choices, conditions).
- Then every suggestion comes from the GP of gp.py over every finished trial:
  COMPLETE trials with their loss; PRUNED ones with the loss they reached before they were stopped
  (a pessimistic value: they stopped early); FAILED ones (and non-finite losses) as the worst loss
  seen so far, so the search learns to avoid where they happened. Trials still running are
  pending: `X_pending` of the acquisition, and never suggested again.
- Hyperparameters: refitted (from BoTorch's defaults, never from an earlier fit) at fit points
  `m` of the number of finished trials: every m below 20, then every m // 10 (or every
  `refit_every`); in between the GP takes the last fit point's hyperparameters and is only
  conditioned on the newer trials. The fit uses the first m observations, in the order told.
- Replay-exact: the suggestion made with n trials known depends only on the seed, n, the
  observations in the order told and the pending configs. Every random draw is seeded with
  (seed, n) and a fit with its fit point, so a fresh instance told the same observations
  suggests what the uninterrupted one suggests next.
"""
from __future__ import annotations

import contextlib
import logging
import math
import warnings
from typing import Any, Mapping

import numpy as np

from automl.records import Observation, Status
from automl.space import SearchSpace
from automl.strategies.gp_encoding import Encoding

log = logging.getLogger(__name__)


@contextlib.contextmanager
def one_thread():
    """torch and BLAS (scipy's L-BFGS-B) on one thread while the GP works: its matrices have a few
    hundred rows at most, where more threads only hand over work (on a busy machine a suggestion
    is 2-6 times faster)."""
    import threadpoolctl
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpoolctl.threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


def fit_point(n: int, refit_every: int | None) -> int:
    """The largest m <= n at which the hyperparameters are fitted (see the module doc)."""
    for m in range(n, 1, -1):
        step = refit_every if refit_every else max(1, m // 10)
        if m % step == 0 or (refit_every is None and m < 20):
            return m
    return n


class GPSearch:
    """The engine: `suggest(n_known)`, `observe(observation)`, `pend(trial_id, config)`."""

    def __init__(self, space: SearchSpace, seed: int, options):
        self.space = space
        self.seed = seed
        self.options = options
        self.encoding = Encoding(space)
        self.xs: list[np.ndarray] = []  # finished trials in the order told
        self.losses: list[float | None] = []  # None: failed (imputed when fitting)
        self.pending: dict[str, np.ndarray] = {}
        self._hyper: tuple[int, Any] | None = None  # (fit point, state of the fitted model)
        self._sobol: np.ndarray | None = None

    @property
    def initial_points(self) -> int:
        n = self.options.num_initial_points
        if n == "auto":
            return max(5, len(self.space) + 1)
        return n if n is not None else 3 * len(self.space)

    def pend(self, trial_id: str, config: Mapping[str, Any]) -> None:
        if not self.space.problems(dict(config)):
            self.pending[trial_id] = self.encoding.encode(config)

    def observe(self, observation: Observation) -> None:
        self.pending.pop(observation.trial_id, None)
        config = dict(observation.config)
        problems = self.space.problems(config)
        if problems:
            log.warning("trial %s does not enter the Gaussian process, its config is outside the space: %s",
                        observation.trial_id, "; ".join(problems))
            return
        loss = observation.loss
        usable = observation.status in (Status.COMPLETE, Status.PRUNED) and loss is not None and math.isfinite(loss)
        self.xs.append(self.encoding.encode(config))
        self.losses.append(float(loss) if usable else None)

    def suggest(self, n_known: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed % 2**32, n_known])
        finite = [v for v in self.losses if v is not None]
        if n_known < self.initial_points or len(finite) < 2:
            return self._start(n_known, rng)
        try:
            with one_thread():
                point = self._from_gp(n_known, rng)
        except Exception as error:  # noqa: BLE001 - a numerical failure costs one suggestion, not the run
            log.warning("the Gaussian process failed (%s: %s); this suggestion is random", type(error).__name__, error)
            point = None
        return self.encoding.decode(point) if point is not None else self.space.sample(rng)

    def _start(self, n_known: int, rng: np.random.Generator) -> dict[str, Any]:
        if n_known >= self.initial_points or not len(self.space):
            return self.space.sample(rng)
        if self._sobol is None:
            from scipy.stats import qmc

            sobol = qmc.Sobol(len(self.space), scramble=True, seed=np.random.default_rng([self.seed % 2**32, 7]))
            with warnings.catch_warnings():  # "balance properties" of a count that is no power of two
                warnings.simplefilter("ignore")
                self._sobol = sobol.random(self.initial_points)
        return self.space.from_unit(dict(zip(self.space.names, self._sobol[n_known])))

    @staticmethod
    def _targets(losses: list[float | None]) -> np.ndarray:
        """Standardised, negated losses (the GP maximises); failures as the worst loss seen."""
        finite = np.array([v for v in losses if v is not None])
        y = np.array([v if v is not None else finite.max() for v in losses])
        std = y.std(ddof=1) if len(y) > 1 else 0.0  # as BoTorch's check expects
        return -(y - y.mean()) / (std if std > 0 else 1.0)

    def _from_gp(self, n_known: int, rng: np.random.Generator) -> np.ndarray | None:
        from automl.strategies import gp

        options = self.options
        n = len(self.xs)
        X = np.stack(self.xs)
        m = fit_point(n, options.refit_every)
        if sum(v is not None for v in self.losses[:m]) < 2:
            m = n  # a fit needs two finite losses among its trials (suggest checked that all n have them)
        if self._hyper is None or self._hyper[0] != m:
            _, hyper = gp.fit_model(X[:m], self._targets(self.losses[:m]), hyper=None, seed=m,
                                    maxiter=options.fit_maxiter, device=options.device, kernel=options.kernel)
            self._hyper = (m, hyper)
        y = self._targets(self.losses)
        model, _ = gp.fit_model(X, y, hyper=self._hyper[1], seed=m, maxiter=0, device=options.device, kernel=options.kernel)
        model = gp.cached(model)
        pending = np.stack(list(self.pending.values())) if self.pending else None
        acq = gp.acquisition(model, float(y.max()), pending, seed=int(rng.integers(2**31)),
                             mc_samples=options.mc_samples)
        order = np.argsort(-y, kind="stable")[:5]
        avoid = X if pending is None else np.concatenate([X, pending])
        point, _ = gp.optimise(acq, self.encoding, rng, X[order], raw_samples=options.raw_samples,
                               restarts=options.restarts, maxiter=options.acq_maxiter, avoid=avoid)
        return point
