"""Bayesian optimisation, with two engines (option `engine`):

"botorch" (the default): a Gaussian process with a length scale per dimension and log expected
improvement, on BoTorch and GPyTorch (gp.py, gp_encoding.py, gp_search.py). Mixed and conditional
spaces are encoded in the unit cube (log scales linear, Ints rounded, choices one-hot, inactive
parameters fixed); trials still running are pending points of the acquisition; FAILED trials count
as the worst loss seen, PRUNED ones with the loss they reached. A Sobol start of
max(5, parameters + 1) points, then the GP. Hyperparameters are refitted every trial up to 20,
then every tenth of the trials so far (`refit_every`). Replay-exact: a fresh instance told the same
observations suggests the same next configs. About 50-150 ms a suggestion at 100 trials.

"keras-tuner": keras-tuner's BayesianOptimizationOracle (a Gaussian process with a Matern kernel,
upper confidence bound acquisition) through kt_bridge, as before the botorch engine. The first
`num_initial_points` trials are drawn at random; after that each suggestion fits the GP to every
completed trial (failed ones are skipped) and takes the best of 50 L-BFGS restarts of the
acquisition. Trials still running are "hallucinated" pessimistically. A GP suggestion costs
0.1-1 s on a CPU core. Resume: the replayed trials enter the oracle with their configs and
results (see `OracleStrategy`); while the search is still in its random phase a resumed run draws
exactly what the uninterrupted run would have drawn, past it suggestions differ.

Every trial runs at the full budget.
"""
from __future__ import annotations

import functools
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from automl.strategies.base import Observation, Suggestion, TrialIds
from automl.strategies.kt_bridge import OracleStrategy, from_kt_values, with_given_trials

KERAS_TUNER_ONLY = ("alpha", "beta")
BOTORCH_ONLY = ("kernel", "raw_samples", "restarts", "acq_maxiter", "fit_maxiter", "refit_every", "mc_samples", "device")


class BayesianOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: Literal["botorch", "keras-tuner"] = Field(
        "botorch", description="botorch: our Gaussian process with log expected improvement; "
                               "keras-tuner: keras-tuner's BayesianOptimizationOracle")
    # keras-tuner's own default is 3 per parameter: 60 random trials for the ~20-parameter
    # joint space of the agent, longer than most searches. 10 is Optuna TPE's start-up too.
    num_initial_points: int | Literal["auto"] | None = Field(
        "auto", description="trials before the Gaussian process takes over (Sobol points for botorch, random "
                            "for keras-tuner); auto: max(5, parameters + 1) for botorch, 10 for keras-tuner; "
                            "null: 3 per parameter of the space, keras-tuner's rule")
    alpha: float = Field(1e-4, gt=0, description="keras-tuner: noise added to the kernel's diagonal")
    beta: float = Field(2.6, ge=0, description="keras-tuner: exploration weight of the upper confidence bound")
    kernel: Literal["matern", "rbf"] = Field("matern", description="botorch: Matern 5/2 or squared exponential, "
                                                                   "with a length scale per dimension")
    raw_samples: int = Field(512, ge=8, description="botorch: points the acquisition is evaluated at first")
    restarts: int = Field(4, ge=1, description="botorch: the best raw points polished by L-BFGS-B")
    acq_maxiter: int = Field(40, ge=1, description="botorch: L-BFGS-B iterations of the acquisition")
    fit_maxiter: int = Field(100, ge=1, description="botorch: L-BFGS-B iterations of a hyperparameter fit")
    refit_every: int | None = Field(
        None, ge=1, description="botorch: refit the hyperparameters every this many trials; null: every trial "
                                "up to 20, then every tenth of the trials so far")
    mc_samples: int = Field(64, ge=1, description="botorch: quasi-Monte Carlo samples over pending trials")
    device: str = Field("cpu", description="botorch: the torch device of the GP's linear algebra (float64)")

    @model_validator(mode="after")
    def _engine_options(self):
        other = KERAS_TUNER_ONLY if self.engine == "botorch" else BOTORCH_ONLY
        given = sorted(set(other) & self.model_fields_set)
        if given:
            raise ValueError(f"{', '.join(given)} do(es) not apply to engine {self.engine!r}")
        return self


class BayesianStrategy(OracleStrategy):
    name = "bayesian"
    Options = BayesianOptions

    def __init__(self, space, *, seed: int, max_budget: float, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self._gp = None  # the botorch engine, built on first use
        self._gp_ids = TrialIds()

    @property
    def _engine(self):
        if self._gp is None:
            from automl.strategies.gp_search import GPSearch

            self._gp = GPSearch(self.space, self.seed, self.options)
        return self._gp

    def _keras_tuner(self) -> bool:
        return self.options.engine == "keras-tuner"

    # -- keras-tuner
    def _new_oracle(self, kt, **common):
        options = self.options
        initial = 10 if options.num_initial_points == "auto" else options.num_initial_points
        oracle = with_given_trials(kt.oracles.BayesianOptimizationOracle)(
            max_trials=None,  # the agent's budget decides when to stop
            num_initial_points=initial, alpha=options.alpha, beta=options.beta, **common)
        oracle.gpr = _lean_gpr_class()(**oracle.gpr.get_params(deep=False))  # the same model, predicting faster
        return oracle

    def _suggestion(self, trial_id: str, trial) -> Suggestion:
        return Suggestion(trial_id, from_kt_values(self.space, trial.hyperparameters.values))

    # -- the contract: botorch here, keras-tuner in OracleStrategy
    def ask(self) -> Suggestion | None:
        if self._keras_tuner():
            return super().ask()
        n_known = len(self._gp_ids.known)
        config = self._engine.suggest(n_known)
        trial_id = self._gp_ids.next()
        self._engine.pend(trial_id, config)
        return Suggestion(trial_id, config)

    def tell(self, observation: Observation) -> None:
        if self._keras_tuner():
            return super().tell(observation)
        self._gp_ids.seen(observation.trial_id)
        self._engine.observe(observation)

    def resume_pending(self, suggestion: Suggestion) -> None:
        if self._keras_tuner():
            return super().resume_pending(suggestion)
        self._gp_ids.seen(suggestion.trial_id)
        self._engine.pend(suggestion.trial_id, suggestion.config)

    def is_finished(self) -> bool:
        return super().is_finished() if self._keras_tuner() else False


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
