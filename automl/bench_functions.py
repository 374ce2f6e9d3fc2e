"""Known-optimum problems of `automl bench` and of the suites in scripts/bench/.

Black-box functions (`FUNCTIONS`): each takes a config of its `SearchSpace` and returns a
value to minimise; `optimum` is its global minimum over the space and `argmin` a config
attaining it (checked by tests/bench/test_bench_smoke.py).

    branin       2-D, x1 in [-5, 10], x2 in [0, 15]; minimum 5 / (4 pi) = 0.397887... at (-pi, 12.275),
                 (pi, 2.275) and (3 pi, 2.475).
    hartmann3    3-D in [0, 1]^3; minimum -3.862779787... (the literature's argmin polished by L-BFGS-B).
    hartmann6    6-D in [0, 1]^6; minimum -3.322368011... (likewise).
    levy6        6-D in [-10, 10]^6; minimum 0 at (1, ..., 1).
    rosenbrock4  4-D in [-5, 10]^4; minimum 0 at (1, ..., 1).
    hartmann6_mixed  Hartmann6 on a mixed space (2 Int + 4 Float + 1 Choice).

Multi-fidelity problems (`MF_PROBLEMS`): the MF-Hartmann functions of mf-prior-bench
(mfpbench 1.10, after Kandasamy et al. 2017), re-implemented from its formula (mf-prior-bench
pins numpy<2). Fidelity z in 1..100; with s = log(z)/log(100), alpha' = alpha - bias * (1 - s)
and a non-negative noise |N(0,1)| * noise * (1 - s) seeded by (1337 * z * hash(X)) as there,
so z = 100 is the noiseless Hartmann function and its minimum is the optimum.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from automl.space import Choice, Float, Int, SearchSpace


@dataclass(frozen=True)
class TestFunction:
    name: str
    space: SearchSpace
    fn: Callable[[Mapping[str, Any]], float]
    optimum: float
    argmin: Mapping[str, Any]
    description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __call__(self, config: Mapping[str, Any]) -> float:
        return float(self.fn(config))

    def regret(self, value: float) -> float:
        """value - optimum, never below 0 (a rounding below the optimum counts as 0)."""
        return max(float(value) - self.optimum, 0.0)


def _floats(prefix: str, n: int, low: float, high: float) -> SearchSpace:
    return SearchSpace(tuple(Float(f"{prefix}{i}", low, high) for i in range(n)))


def _vector(config: Mapping[str, Any], n: int, prefix: str = "x") -> np.ndarray:
    return np.array([float(config[f"{prefix}{i}"]) for i in range(n)])


# -- Branin ---------------------------------------------------------------------------------------

def _branin(config: Mapping[str, Any]) -> float:
    x1, x2 = float(config["x0"]), float(config["x1"])
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


BRANIN = TestFunction(
    "branin", SearchSpace((Float("x0", -5.0, 10.0), Float("x1", 0.0, 15.0))), _branin,
    optimum=5 / (4 * math.pi), argmin={"x0": -math.pi, "x1": 12.275},
    description="Branin-Hoo, 2-D, three global minima")


# -- Hartmann -------------------------------------------------------------------------------------

_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_A3 = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_P3 = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
_A6 = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_P6 = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                       [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def hartmann3_vector(x: np.ndarray) -> float:
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A3 * (np.asarray(x, dtype=float) - _P3) ** 2, axis=1))))


def hartmann6_vector(x: np.ndarray) -> float:
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A6 * (np.asarray(x, dtype=float) - _P6) ** 2, axis=1))))


_H3_ARGMIN = (0.11458888932421674, 0.5556488889726049, 0.8525469795448206)
_H6_ARGMIN = (0.20168950968761765, 0.15001069413863433, 0.47687396963094986, 0.27533242916768874,
              0.31165161370991157, 0.6573005333899428)

HARTMANN3 = TestFunction(
    "hartmann3", _floats("x", 3, 0.0, 1.0), lambda c: hartmann3_vector(_vector(c, 3)),
    optimum=-3.862779787332659, argmin={f"x{i}": v for i, v in enumerate(_H3_ARGMIN)},
    description="Hartmann, 3-D, 4 local minima")

HARTMANN6 = TestFunction(
    "hartmann6", _floats("x", 6, 0.0, 1.0), lambda c: hartmann6_vector(_vector(c, 6)),
    optimum=-3.322368011415514, argmin={f"x{i}": v for i, v in enumerate(_H6_ARGMIN)},
    description="Hartmann, 6-D, 6 local minima")


# -- Levy, Rosenbrock -----------------------------------------------------------------------------

def levy_vector(x: np.ndarray) -> float:
    w = 1 + (np.asarray(x, dtype=float) - 1) / 4
    head = math.sin(math.pi * w[0]) ** 2
    middle = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2))
    tail = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    return float(head + middle + tail)


def rosenbrock_vector(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


LEVY6 = TestFunction(
    "levy6", _floats("x", 6, -10.0, 10.0), lambda c: levy_vector(_vector(c, 6)),
    optimum=0.0, argmin={f"x{i}": 1.0 for i in range(6)}, description="Levy, 6-D, highly multimodal")

ROSENBROCK4 = TestFunction(
    "rosenbrock4", _floats("x", 4, -5.0, 10.0), lambda c: rosenbrock_vector(_vector(c, 4)),
    optimum=0.0, argmin={f"x{i}": 1.0 for i in range(4)}, description="Rosenbrock, 4-D, a curved valley")


# -- Hartmann6 on a mixed space ---------------------------------------------------------------------

SHIFTS = {"s0": 0.0, "s1": 0.025, "s2": 0.05, "s3": 0.075}
MIXED_SPACE = SearchSpace((
    Int("i0", 0, 9), Int("i1", 0, 9), Choice("shift", tuple(SHIFTS)),
    *(Float(f"x{i}", 0.0, 1.0) for i in range(2, 6)),
))


def mixed_point(config: Mapping[str, Any]) -> np.ndarray:
    """The Hartmann6 point of a mixed config: x0 = i0 / 10 + shift, x1 = i1 / 10 + shift."""
    shift = SHIFTS[config["shift"]]
    return np.array([int(config["i0"]) / 10 + shift, int(config["i1"]) / 10 + shift,
                     *(float(config[f"x{i}"]) for i in range(2, 6))])


def _hartmann6_mixed(config: Mapping[str, Any]) -> float:
    return hartmann6_vector(mixed_point(config))


# found by compute_mixed_optimum() of scripts/bench/functions.py (seed 0, 8 random starts + the known start per combination; 6 minutes on
# a busy 2-core machine): x0 = 0.225, x1 = 0.125 (i0 = 2, i1 = 1, shift 0.025), not the lattice point
# nearest the continuous argmin (0.2, 0.15 needs two different shifts)
_MIXED_ARGMIN = {"i0": 2, "i1": 1, "shift": "s1", "x2": 0.473317843306933, "x3": 0.2760367091036995,
                 "x4": 0.3112975387713877, "x5": 0.657494855169008}
_MIXED_OPTIMUM = -3.3088236403733036

HARTMANN6_MIXED = TestFunction(
    "hartmann6_mixed", MIXED_SPACE, _hartmann6_mixed, optimum=_MIXED_OPTIMUM, argmin=_MIXED_ARGMIN,
    description="Hartmann6 with x0, x1 on a 0.1 lattice (Int 0..9) shifted by a Choice of 4 offsets",
    notes=("x0 = i0/10 + shift, x1 = i1/10 + shift, shift in {s0: 0, s1: 0.025, s2: 0.05, s3: 0.075} "
           "(an unordered string Choice); x2..x5 Floats in [0, 1]. Minimum: exhaustive over the 400 "
           "discrete combinations x multi-start L-BFGS-B on x2..x5 (scripts/bench/functions.py: compute_mixed_optimum).",))

FUNCTIONS: dict[str, TestFunction] = {f.name: f for f in (BRANIN, HARTMANN3, HARTMANN6, LEVY6, ROSENBROCK4,
                                                           HARTMANN6_MIXED)}


# -- multi-fidelity Hartmann (mf-prior-bench) --------------------------------------------------------

MFH_PRESETS = {"good": (2.5, 2.0), "moderate": (3.0, 3.0), "bad": (3.5, 4.0), "terrible": (4.0, 5.0)}
MFH_SEED = 1337  # mfpbench's _default_seed
_MFH = {3: (_A3, _P3, -3.86278), 6: (_A6, _P6, -3.32237)}  # mfpbench's constants and documented minima


def mf_hartmann(dims: int, bias: float, noise: float, z: int, xs: tuple[float, ...], z_max: int = 100) -> float:
    """mfpbench's MFHartmann3/6.__call__ (seed None -> 1337)."""
    a, p, _ = _MFH[dims]
    s = (math.log(z) - math.log(1)) / (math.log(z_max) - math.log(1))
    x = np.asarray(xs, dtype=float).reshape(1, -1)
    alpha_prime = _ALPHA - bias * (1 - s)
    inner = np.sum(a * (x[:, np.newaxis, :] - p) ** 2, axis=-1)
    h = -np.sum(alpha_prime * np.exp(-inner), axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(seed=abs(MFH_SEED * z * hash(tuple(xs))))
    return float((h + np.abs(rng.normal(size=h.size)) * noise * (1 - s))[0])


@dataclass(frozen=True)
class MFProblem:
    """`value(config, z)`: the loss of `config` at the integer fidelity z in 1..max_fidelity."""

    name: str
    space: SearchSpace
    max_fidelity: int
    optimum: float  # the lowest full-fidelity value over the space
    value_fn: Callable[[Mapping[str, Any], int], float]
    description: str = ""

    def value(self, config: Mapping[str, Any], z: int) -> float:
        if not 1 <= z <= self.max_fidelity:
            raise ValueError(f"{self.name}: fidelity {z} outside 1..{self.max_fidelity}")
        return float(self.value_fn(config, int(z)))


def mf_hartmann_problem(name: str) -> MFProblem:
    """`mfh3_good`, `mfh6_bad`, ...: dimension 3 or 6 and a preset of MFH_PRESETS."""
    dims, preset = int(name[3]), name.split("_", 1)[1]
    bias, noise = MFH_PRESETS[preset]
    names = [f"X_{i}" for i in range(dims)]

    def value(config, z):
        return mf_hartmann(dims, bias, noise, z, tuple(float(config[n]) for n in names))

    return MFProblem(name, SearchSpace(tuple(Float(n, 0.0, 1.0) for n in names)), 100, _MFH[dims][2], value,
                     description=f"MF-Hartmann {dims}-D, bias {bias}, noise {noise}, fidelity z = 1..100")


MF_PROBLEMS: dict[str, MFProblem] = {name: mf_hartmann_problem(name)
                                     for name in ("mfh3_good", "mfh3_bad", "mfh6_good", "mfh6_bad")}
