"""Strategy benchmark: ask+tell overhead and black-box quality, every strategy vs random.

    python scripts/bench_strategies.py [--strategies random,bayesian,...] [--seeds 5] [--out FILE.json]

1. Overhead: mean wall time of one ask() + one tell() per trial over 100 sequential trials
   on the 6-parameter mixed space of automl.testing (MIXED_SPACE), with a cheap loss.
2. Quality: median simple regret on Hartmann6 (6 continuous parameters in [0, 1]; global
   minimum -3.32237) after 50 and 100 evaluations, over --seeds seeds. Budgets are ignored
   by the function: multi-fidelity strategies spend evaluations on low rungs for nothing,
   which this measures honestly.
Prints a Markdown table and writes the raw figures as JSON with --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from automl.plugins import discover
from automl.space import Float, SearchSpace
from automl.strategies.base import Observation, Status
from automl.testing import MIXED_SPACE, toy_loss

HARTMANN6_MIN = -3.32237
_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
               [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
HARTMANN_SPACE = SearchSpace(tuple(Float(f"x{i}", 0.0, 1.0) for i in range(6)))


def hartmann6(config) -> float:
    x = np.array([config[f"x{i}"] for i in range(6)])
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A * (x - _P) ** 2, axis=1))))


def make(cls, space, seed, max_budget, workdir):
    strategy = cls(space, seed=seed, max_budget=max_budget, options=cls.Options())
    strategy.workdir = workdir
    return strategy


def sequential(strategy, loss_fn, n_trials):
    """Ask/tell one trial at a time. Returns the losses and the seconds spent in ask+tell."""
    losses, overhead = [], 0.0
    while len(losses) < n_trials:
        start = time.perf_counter()
        suggestion = strategy.ask()
        overhead += time.perf_counter() - start
        if suggestion is None:
            if getattr(strategy, "is_finished", lambda: False)():
                break
            raise RuntimeError(f"{strategy.name} returned None with nothing pending")
        loss = loss_fn(suggestion)
        start = time.perf_counter()
        strategy.tell(Observation(suggestion.trial_id, Status.COMPLETE, loss, dict(suggestion.config),
                                  suggestion.budget, {"loss": loss}))
        overhead += time.perf_counter() - start
        losses.append(loss)
    return losses, overhead


def main() -> None:
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    registry = discover()
    names = args.strategies.split(",") if args.strategies else registry.names("strategies")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            cls = registry.strategy(name)
            workdir = Path(tmp) / name
            workdir.mkdir()
            strategy = make(cls, MIXED_SPACE, 0, 9.0, workdir / "overhead")
            losses, seconds = sequential(strategy, lambda s: toy_loss(s.config, s.budget, 9.0), 100)
            regrets = {50: [], 100: []}
            for seed in range(args.seeds):
                strategy = make(cls, HARTMANN_SPACE, seed, 9.0, workdir / f"h6-{seed}")
                values, _ = sequential(strategy, lambda s: hartmann6(s.config), 100)
                for n in regrets:
                    regrets[n].append(min(values[:n]) - HARTMANN6_MIN)
            rows[name] = {"ask_tell_ms_per_trial": 1000 * seconds / max(len(losses), 1), "trials": len(losses),
                          "hartmann6_median_regret_50": statistics.median(regrets[50]),
                          "hartmann6_median_regret_100": statistics.median(regrets[100]), "regrets": regrets}
            print(f"{name}: done", flush=True)
    print("\n| strategy | ask+tell ms/trial (100 trials, 6-param mixed) | Hartmann6 median regret @50 | @100 |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['ask_tell_ms_per_trial']:.2f} | {row['hartmann6_median_regret_50']:.4f} | "
              f"{row['hartmann6_median_regret_100']:.4f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
