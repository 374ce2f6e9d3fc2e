"""The GP engine of `bayesian` under variants of its options or of its length-scale prior, on the
suite's functions: median simple regret at 50 and 100 evaluations over seeds (a diagnosis tool,
not a suite; docs/benchmarks.md reports what it found on Hartmann6).

    python scripts/bench/gp_variants.py '[{}, {"num_initial_points": 10}, {"_prior": "gamma"}]' hartmann6 10

A variant is the strategy's options, plus `_prior`: "gamma" (Gamma(3, 6) on each length scale,
BoTorch's default before its dimension-scaled prior), "ln<centre>" (LogNormal(log centre, 1))
or "optuna" (Optuna GPSampler's prior on the inverse squared length scales,
-(0.1 / theta + 0.1 * theta)). The prior is swapped in the worker process only.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import functions  # noqa: E402
import peers  # noqa: E402


def _kernel_with(prior, minimum: float):
    from gpytorch.constraints import GreaterThan
    from gpytorch.kernels import MaternKernel

    return lambda d, use_rbf_kernel=False: MaternKernel(nu=2.5, ard_num_dims=d, lengthscale_prior=prior,
                                                       lengthscale_constraint=GreaterThan(minimum))


def _swap_prior(variant: str) -> None:
    import botorch.models.utils.gpytorch_modules as modules
    import torch
    from gpytorch.priors import GammaPrior, LogNormalPrior, Prior

    class OptunaPrior(Prior):
        arg_constraints: dict = {}
        support = torch.distributions.constraints.positive

        def __init__(self):
            super().__init__(validate_args=False)

        def log_prob(self, lengthscale):
            theta = lengthscale ** -2
            return -(0.1 / theta + 0.1 * theta)

    if variant == "gamma":
        kernel = _kernel_with(GammaPrior(3.0, 6.0), 1e-4)
    elif variant == "optuna":
        kernel = _kernel_with(OptunaPrior(), 1e-2)
    elif variant.startswith("ln"):
        kernel = _kernel_with(LogNormalPrior(math.log(float(variant[2:])), 1.0), 2.5e-2)
    else:
        raise SystemExit(f"unknown _prior {variant!r}")
    modules.get_covar_module_with_dim_scaled_prior = kernel  # gp.fit_model looks it up at each fit


def run(task):
    import threadpoolctl
    import torch

    function_name, seed, variant, budget = task
    options = dict(variant)
    prior = options.pop("_prior", None)
    if prior:
        _swap_prior(prior)
    torch.set_num_threads(1)
    function = functions.get(function_name)
    with threadpoolctl.threadpool_limits(1):
        optimizer = peers.AutomlOptimizer("automl:bayesian", "bayesian", function.space,
                                          peers.run_seed("automl:bayesian", seed), options)
        values, seconds = [], []
        for _ in range(budget):
            start = time.perf_counter()
            handle, config = optimizer.ask()
            value = function(config)
            optimizer.tell(handle, value)
            seconds.append(time.perf_counter() - start)
            values.append(value)
    best = np.minimum.accumulate(values)
    return (function_name, json.dumps(variant, sort_keys=True), seed, function.regret(best[min(49, budget - 1)]),
            function.regret(best[-1]), 1000 * float(np.median(seconds[-20:])))


def main() -> None:
    variants, names, seeds = json.loads(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
    tasks = [(name, seed, variant, 100) for variant in variants for name in names for seed in range(seeds)]
    rows = defaultdict(list)
    with Pool(2) as pool:
        for name, variant, seed, at50, at100, ms in pool.imap(run, tasks):
            print(f"{name} {variant} seed {seed}: regret {at50:.3g} @50, {at100:.3g} @100, {ms:.0f} ms an ask",
                  flush=True)
            rows[(name, variant)].append((at50, at100, ms))
    for (name, variant), values in rows.items():
        at50, at100, ms = np.median(np.array(values), axis=0)
        print(f"{name} {variant}: median regret {at50:.3g} @50, {at100:.3g} @100 ({len(values)} seeds), {ms:.0f} ms")


if __name__ == "__main__":
    main()
