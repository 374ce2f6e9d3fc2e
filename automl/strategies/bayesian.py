"""Bayesian optimisation: keras-tuner's BayesianOptimizationOracle (a Gaussian process with a
Matern kernel, upper confidence bound acquisition) through kt_bridge.

The first `num_initial_points` trials are drawn at random; after that each suggestion fits
the GP to every completed trial (failed ones are skipped) and takes the best of 50 L-BFGS
restarts of the acquisition. Trials still running are "hallucinated" pessimistically, so
several pending suggestions do not pile onto one point. Every trial runs at the full budget.

A GP suggestion costs 0.1-1 s on a CPU core (it grows with the parameters and trials), a
random one nothing: a short run (tests) is quickest with a large num_initial_points.

Resume: the replayed trials enter the oracle with their configs and results (see
`OracleStrategy`), so the GP learns from all of them; interrupted ones enter as running (and
are hallucinated) until they are told. While the search is still in its random phase a
resumed run draws exactly what the uninterrupted run would have drawn: the fresh oracle
re-draws the replayed configs first and skips them as already tried. Past it, suggestions
differ from the uninterrupted run's (the acquisition's random restarts start afresh).
"""
from __future__ import annotations

import functools

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from automl.strategies.base import Suggestion
from automl.strategies.kt_bridge import OracleStrategy, from_kt_values, with_given_trials


class BayesianOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # keras-tuner's own default is 3 per parameter: 60 random trials for the ~20-parameter
    # joint space of the agent, longer than most searches. 10 is Optuna TPE's start-up too.
    num_initial_points: int | None = Field(
        10, ge=1, description="random trials before the Gaussian process takes over "
                              "(null: 3 per parameter of the space, keras-tuner's rule)")
    alpha: float = Field(1e-4, gt=0, description="noise added to the kernel's diagonal: how noisy the losses are")
    beta: float = Field(2.6, ge=0, description="exploration weight of the upper confidence bound")


class BayesianStrategy(OracleStrategy):
    name = "bayesian"
    Options = BayesianOptions

    def _new_oracle(self, kt, **common):
        options = self.options
        oracle = with_given_trials(kt.oracles.BayesianOptimizationOracle)(
            max_trials=None,  # the agent's budget decides when to stop
            num_initial_points=options.num_initial_points, alpha=options.alpha, beta=options.beta, **common)
        oracle.gpr = _lean_gpr_class()(**oracle.gpr.get_params(deep=False))  # the same model, predicting faster
        return oracle

    def _suggestion(self, trial_id: str, trial) -> Suggestion:
        return Suggestion(trial_id, from_kt_values(self.space, trial.hyperparameters.values))


@functools.lru_cache(maxsize=None)
def _lean_gpr_class():
    import scipy.linalg
    from sklearn.gaussian_process import GaussianProcessRegressor

    class LeanGPR(GaussianProcessRegressor):
        """scikit-learn's GP regressor with a lean `predict` for what keras-tuner asks of it.

        The oracle optimises its acquisition with 50 L-BFGS restarts and numerical gradients:
        thousands of one-point predictions per suggestion, where scikit-learn's input checks
        cost four times the arithmetic (a whole check_strategy run: 100 s -> 25 s). This
        computes the same mean and standard deviation from the documented fitted attributes
        (kernel_, X_train_, alpha_, L_); anything else (an unfitted model, a covariance) goes
        to scikit-learn.
        """

        def fit(self, X, y):
            super().fit(X, y)
            y = np.asarray(y, dtype=float)
            mean, std = (float(np.mean(y)), float(np.std(y))) if self.normalize_y else (0.0, 1.0)
            self._scale = (mean, std if std >= 10 * np.finfo(float).eps else 1.0)  # as scikit-learn's
            return self

        def predict(self, X, return_std=False, return_cov=False):
            if return_cov or not hasattr(self, "X_train_") or np.ndim(self.alpha_) != 1:
                return super().predict(X, return_std=return_std, return_cov=return_cov)
            X = np.asarray(X, dtype=float)
            mean, std = self._scale
            k = self.kernel_(X, self.X_train_)
            y_mean = k @ self.alpha_ * std + mean
            if not return_std:
                return y_mean
            v = scipy.linalg.solve_triangular(self.L_, k.T, lower=True, check_finite=False)
            y_var = np.maximum(self.kernel_.diag(X) - np.einsum("ij,ij->j", v, v), 0.0)
            return y_mean, np.sqrt(y_var) * std

    return LeanGPR
