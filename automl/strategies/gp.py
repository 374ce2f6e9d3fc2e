"""The Gaussian process and its acquisition, on BoTorch and GPyTorch (imported inside functions:
`import automl` never loads them).

Model: BoTorch's `SingleTaskGP` on the encoded configs (gp_encoding.py) in float64: a squared
Matern 5/2 kernel (or squared exponential: option `kernel`) with one length scale per column (ARD) under BoTorch's dimension-scaled
log-normal prior, a constant mean and a Gaussian noise, its hyperparameters the maximum a
posteriori of the marginal likelihood (L-BFGS-B). The losses are standardised and negated (the
GP maximises), so `best_f` is the best loss seen.

Acquisition: `LogExpectedImprovement` (analytic) when nothing is pending, else
`qLogExpectedImprovement` with the pending trials as `X_pending` (quasi-Monte Carlo over their
joint outcomes: a new suggestion goes where it still improves whatever they turn out to be).

Its optimisation respects the space: `raw_samples` projected points (uniform, and around the
best configs seen), the best `restarts` of them polished by L-BFGS-B over their active Float and
Int columns (choices held), projected (Ints rounded), then a discrete local search (one Int step,
another choice, greedily while the acquisition rises). Every candidate is a config of the space.
"""
from __future__ import annotations

import functools
import numpy as np

from automl.strategies.gp_encoding import Encoding

MIN_NOISE = 1e-6  # the noise variance's lower bound (standardised losses): near-deterministic objectives


@functools.lru_cache(maxsize=None)
def _torch():
    import torch

    return torch


def fit_model(X: np.ndarray, y: np.ndarray, *, hyper: dict | None, seed: int, maxiter: int, device: str = "cpu",
              kernel: str = "matern"):
    """The GP on (X, y): with `hyper` (an earlier fit's state) taken as they are, else fitted.
    Returns (model, its hyperparameters)."""
    torch = _torch()
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.constraints import GreaterThan
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from gpytorch.priors import LogNormalPrior

    train_x = torch.as_tensor(X, dtype=torch.float64, device=device)
    train_y = torch.as_tensor(y, dtype=torch.float64, device=device).unsqueeze(-1)
    likelihood = GaussianLikelihood(noise_prior=LogNormalPrior(-4.0, 1.0),
                                    noise_constraint=GreaterThan(MIN_NOISE, initial_value=1e-4))
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior

    covar = get_covar_module_with_dim_scaled_prior(X.shape[-1], use_rbf_kernel=kernel == "rbf")
    model = SingleTaskGP(train_x, train_y, likelihood=likelihood, covar_module=covar, outcome_transform=None)
    if hyper is not None:
        model.load_state_dict(hyper)
    else:
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        with torch.random.fork_rng(devices=[]):  # a failed fit retries from prior draws: seeded
            torch.manual_seed(seed)
            try:
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
            except Exception:  # noqa: BLE001 - no fit at all: the prior's starting point is a model too
                model.load_state_dict(initial)
    model.eval()
    return model, {k: v.detach().clone() for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _cached_gp_class():
    torch = _torch()
    from botorch.models.model import Model
    from botorch.posteriors.gpytorch import GPyTorchPosterior
    from gpytorch.distributions import MultivariateNormal

    class CachedGP(Model):
        """The posterior of a fitted `SingleTaskGP` (its RBF kernel, constant mean and noise) from
        one Cholesky factor computed here (RBF or Matern 5/2 kernels), in plain torch: the same mean and covariance as GPyTorch's
        prediction, without its layers, 20-40 times cheaper per call on a few hundred points. The
        acquisition is optimised through thousands of such calls."""

        @property
        def num_outputs(self) -> int:
            return 1

        def __init__(self, gp):
            super().__init__()
            with torch.no_grad():
                train_x = gp.train_inputs[0]
                self.matern = type(gp.covar_module).__name__ == "MaternKernel"
                self.scale = gp.covar_module.lengthscale.detach().reshape(-1)
                self.constant = float(gp.mean_module.constant.detach())
                noise = float(gp.likelihood.noise.detach().reshape(-1)[0])
                self.train = train_x / self.scale
                K = self._kernel(self.train, self.train) + noise * torch.eye(len(train_x), dtype=train_x.dtype,
                                                                            device=train_x.device)
                self.chol = torch.linalg.cholesky(K)
                residual = (gp.train_targets - self.constant).unsqueeze(-1)
                self.alpha = torch.cholesky_solve(residual, self.chol).squeeze(-1)

        def _kernel(self, a, b):
            d2 = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2) - 2 * a @ b.transpose(-1, -2)
            if not self.matern:  # RBF
                return torch.exp(-0.5 * d2.clamp_min(0.0))
            r = 5.0 ** 0.5 * d2.clamp_min(1e-30).sqrt()  # Matern 5/2
            return (1.0 + r + r * r / 3.0) * torch.exp(-r)

        def posterior(self, X, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
            x = X / self.scale
            k = self._kernel(x, self.train)  # (..., q, n)
            mean = self.constant + k @ self.alpha
            v = torch.linalg.solve_triangular(self.chol, k.transpose(-1, -2), upper=False)
            cov = self._kernel(x, x) - v.transpose(-1, -2) @ v
            eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
            cov = cov.clamp_min(0.0) * eye + cov * (1 - eye) + 1e-10 * eye  # a valid diagonal despite rounding
            return GPyTorchPosterior(MultivariateNormal(mean, cov))

    return CachedGP


def cached(model):
    """`model` (a fitted SingleTaskGP) as a CachedGP: the same posterior, cheaper."""
    return _cached_gp_class()(model)


def acquisition(model, best_f: float, pending: np.ndarray | None, seed: int, mc_samples: int):
    torch = _torch()
    from botorch.acquisition import LogExpectedImprovement, qLogExpectedImprovement
    from botorch.sampling import SobolQMCNormalSampler

    if pending is None or not len(pending):
        return LogExpectedImprovement(model, best_f=best_f)
    x_pending = torch.as_tensor(pending, dtype=torch.float64, device=_device(model))
    sampler = SobolQMCNormalSampler(torch.Size([mc_samples]), seed=seed)
    return qLogExpectedImprovement(model, best_f=best_f, sampler=sampler, X_pending=x_pending)


def _device(model):
    return model.chol.device if hasattr(model, "chol") else next(iter(model.parameters())).device


def _values(acq, X: np.ndarray, chunk: int = 512) -> np.ndarray:
    torch = _torch()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), chunk):
            x = torch.as_tensor(X[start:start + chunk], dtype=torch.float64, device=_device(acq.model))
            out.append(acq(x.unsqueeze(-2)).cpu().numpy())
    return np.concatenate(out) if out else np.empty(0)


def _polish(acq, starts: np.ndarray, free: np.ndarray, maxiter: int) -> np.ndarray:
    """L-BFGS-B from every start at once (their sum: the starts do not interact), moving only the
    `free` columns inside [0, 1]."""
    torch = _torch()
    from scipy.optimize import minimize

    shape = starts.shape
    device = _device(acq.model)

    def loss(flat):
        x = torch.as_tensor(flat.reshape(shape), dtype=torch.float64, device=device).requires_grad_(True)
        value = -acq(x.unsqueeze(-2)).sum()
        (grad,) = torch.autograd.grad(value, x)
        return float(value.detach()), grad.cpu().numpy().ravel()

    flat = starts.ravel()
    bounds = [(0.0, 1.0) if f else (v, v) for v, f in zip(flat, free.ravel())]
    try:
        result = minimize(loss, flat, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": maxiter})
        return np.clip(result.x.reshape(shape), 0.0, 1.0)
    except Exception:  # noqa: BLE001 - a NaN gradient or a failed line search: keep the starts
        return starts


def optimise(acq, encoding: Encoding, rng: np.random.Generator, best: np.ndarray, *, raw_samples: int,
             restarts: int, maxiter: int, avoid: np.ndarray) -> tuple[np.ndarray, float]:
    """The projected point with the highest acquisition that is not in `avoid` (configs already
    tried or pending), and its value; (None, -inf) when every candidate is in `avoid`."""
    d = encoding.dim
    n_local = raw_samples // 4 if len(best) else 0
    raw = [rng.random((raw_samples - n_local, d))]
    if n_local:  # around the best configs seen: small steps of the numeric columns, choices kept
        centres = best[rng.integers(len(best), size=n_local)]
        raw.append(centres + rng.normal(0.0, rng.choice([0.01, 0.05, 0.2], size=(n_local, 1)), size=(n_local, d))
                   * encoding.continuous(centres))
    raw = encoding.project(np.concatenate(raw))
    values = _values(acq, raw)
    order = np.argsort(-values, kind="stable")
    starts = raw[order[:restarts]]
    polished = encoding.project(_polish(acq, starts, encoding.continuous(starts), maxiter))
    candidates = np.concatenate([polished, raw[order[:restarts]]])
    scores = _values(acq, candidates)
    for _ in range(3):  # discrete local search from the candidates
        moves, origin = encoding.neighbours(candidates)
        if not len(moves):
            break
        gains = _values(acq, moves)
        improved = False
        for i in range(len(candidates)):
            mine = np.flatnonzero(origin == i)
            if len(mine) and gains[mine].max() > scores[i]:
                j = mine[np.argmax(gains[mine])]
                candidates[i], scores[i], improved = moves[j], gains[j], True
        if not improved:
            break
    pool = np.concatenate([candidates, raw])
    pool_scores = np.concatenate([scores, values])
    for i in np.argsort(-pool_scores, kind="stable"):
        if not _seen(pool[i], avoid):
            return pool[i], float(pool_scores[i])
    return None, -np.inf


def _seen(x: np.ndarray, avoid: np.ndarray) -> bool:
    return bool(len(avoid)) and bool(np.any(np.all(np.abs(avoid - x) < 1e-9, axis=1)))

