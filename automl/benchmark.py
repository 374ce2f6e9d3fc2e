"""`automl bench`: a strategy against the built-ins, on problems with a known optimum.

    results = run_bench("my_search", plugins_dirs=["my_plugins"], suites=("blackbox", "multifidelity"))
    text = format_results(results)

Two suites, the problems of `automl.bench_functions`:

* blackbox: Branin, Hartmann3, Hartmann6, Levy6, Rosenbrock4 and a mixed Hartmann6 (integers and a
  categorical). One sequential run of `evaluations` evaluations per (function, contender, seed);
  its regret is the best value found minus the function's minimum.
* multifidelity: the MF-Hartmann problems of mf-prior-bench (3-D and 6-D, good and bad correlation
  between fidelities), fidelity z = 1..100 given by the suggestion's budget. A run goes on until
  its cost reaches `budget_factor` x 100 fidelity units: a suggestion pays its budget, a promotion
  (`resume_from`) only the budget beyond its parent's. Its regret is the full-fidelity value of the
  incumbent (the config with the lowest value at its highest evaluated fidelity) minus the optimum.

Every strategy is built as `automl run` builds it (`build_strategy`, default options; the
`evolutionary` built-in is told the evaluations it plans for), with one trial at a time, seed i of
contender c being crc32("c/i"), so no two contenders share random draws. Within each problem and
seed the contenders are ranked by regret (1 = best, ties share the mean rank, a failed run ranks
last); a table shows the median regret and the mean rank over seeds.
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from automl.bench_functions import FUNCTIONS, MF_PROBLEMS
from automl.files import dumps_strict, write_atomic
from automl.plugins import Registry, discover
from automl.records import Observation, Status
from automl.strategy_builder import StrategySetup, build_strategy

SUITES = ("blackbox", "multifidelity")
OPPONENTS = {"blackbox": ("random", "bayesian", "evolutionary"), "multifidelity": ("random", "hyperband", "asha")}


@dataclass(frozen=True)
class Settings:
    seeds: int = 5
    evaluations: int = 100  # per black-box run
    budget_factor: float = 30.0  # a multi-fidelity run's cost cap, in units of the max fidelity
    functions: tuple[str, ...] = tuple(FUNCTIONS)
    mf_problems: tuple[str, ...] = tuple(MF_PROBLEMS)


QUICK = Settings(seeds=2, evaluations=12, budget_factor=2.0, functions=("branin", "hartmann6_mixed"),
                 mf_problems=("mfh3_good",))


@dataclass
class SuiteResult:
    suite: str
    problems: list[str]
    contenders: list[str]  # the strategy benchmarked first, then the built-ins
    regrets: dict[str, dict[str, list[float | None]]]  # problem -> contender -> per seed (None: failed)
    ranks: dict[str, dict[str, float]]  # problem -> contender -> mean rank over seeds
    seconds: dict[str, float]  # contender -> seconds over all its runs
    failures: list[str] = field(default_factory=list)

    def mean_rank(self, contender: str) -> float:
        return float(np.mean([self.ranks[p][contender] for p in self.problems]))

    def failed(self, contender: str) -> int:
        return sum(r is None for p in self.problems for r in self.regrets[p][contender])


class RunFailed(Exception):
    """A strategy raised or broke the contract during one run."""


def run_seed(contender: str, seed: int) -> int:
    return zlib.crc32(f"{contender}/{seed}".encode()) % (2**31 - 1)


def _build(registry: Registry, name: str, space, seed: int, max_budget: float, evaluations: int):
    options = {"budget": int(evaluations)} if name == "evolutionary" else {}
    return build_strategy(registry.strategy(name), options, StrategySetup(space, seed, float(max_budget)),
                          registry=registry)


def _suggest(strategy, space, max_budget: float):
    """The next suggestion, checked; None when the strategy is finished."""
    suggestion = strategy.ask()
    if suggestion is None:
        if strategy.is_finished():
            return None
        raise RunFailed("ask() returned None with no trial pending and is_finished() False")
    problems = space.problems(dict(suggestion.config))
    if problems:
        raise RunFailed(f"ask() returned a config outside the space: {'; '.join(problems)}")
    budget = max_budget if suggestion.budget is None else float(suggestion.budget)
    if not 0 < budget <= max_budget:
        raise RunFailed(f"ask() returned the budget {budget}, outside (0, {max_budget}]")
    return suggestion, budget


def blackbox_run(registry: Registry, name: str, function: str, seed: int, evaluations: int) -> float:
    """The regret of one run of `evaluations` evaluations (fewer when the strategy finishes)."""
    problem = FUNCTIONS[function]
    strategy = _build(registry, name, problem.space, run_seed(name, seed), 1.0, evaluations)
    best = math.inf
    for _ in range(evaluations):
        step = _suggest(strategy, problem.space, 1.0)
        if step is None:
            break
        suggestion, budget = step
        value = problem(suggestion.config)
        best = min(best, value)
        strategy.tell(Observation(suggestion.trial_id, Status.COMPLETE, value, dict(suggestion.config), budget,
                                  {"loss": value}))
    if not math.isfinite(best):
        raise RunFailed("no evaluation")
    return problem.regret(best)


def multifidelity_run(registry: Registry, name: str, problem_name: str, seed: int, budget_factor: float) -> float:
    """The incumbent's full-fidelity regret once the run has paid budget_factor x max fidelity."""
    problem = MF_PROBLEMS[problem_name]
    top = float(problem.max_fidelity)
    strategy = _build(registry, name, problem.space, run_seed(name, seed), top, max(1, int(budget_factor)))
    cost, cap = 0.0, budget_factor * top
    budgets: dict[str, float] = {}
    seen: dict[tuple, tuple[int, float, dict[str, Any]]] = {}  # config -> (fidelity, value, config)
    while cost < cap:
        step = _suggest(strategy, problem.space, top)
        if step is None:
            break
        suggestion, budget = step
        z = min(max(round(budget), 1), problem.max_fidelity)
        value = problem.value(suggestion.config, z)
        cost += budget - budgets.get(suggestion.resume_from, 0.0) if suggestion.resume_from else budget
        budgets[suggestion.trial_id] = budget
        key = tuple(suggestion.config[n] for n in problem.space.names)
        if key not in seen or z >= seen[key][0]:
            seen[key] = (z, value, dict(suggestion.config))
        strategy.tell(Observation(suggestion.trial_id, Status.COMPLETE, value, dict(suggestion.config), budget,
                                  {"loss": value}))
    if not seen:
        raise RunFailed("no evaluation")
    incumbent = min(seen.values(), key=lambda entry: entry[1])[2]
    return max(problem.value(incumbent, problem.max_fidelity) - problem.optimum, 0.0)


def mean_ranks(per_seed: Sequence[Sequence[float | None]]) -> list[float]:
    """Per seed, rank the contenders' regrets (1 = lowest, ties share the mean rank, None last); average."""
    totals = np.zeros(len(per_seed[0]))
    for regrets in per_seed:
        values = np.array([math.inf if r is None else r for r in regrets])
        for i, value in enumerate(values):
            below, equal = np.sum(values < value), np.sum(values == value)
            totals[i] += below + (equal + 1) / 2
    return (totals / len(per_seed)).tolist()


def run_suite(registry: Registry, strategy: str, suite: str, settings: Settings,
              against: Sequence[str] | None = None, progress: Callable[[str], None] | None = None) -> SuiteResult:
    opponents = OPPONENTS[suite] if against is None else against
    known = registry.names("strategies")
    contenders = [strategy] + [n for n in dict.fromkeys(opponents) if n != strategy and n in known]
    problems = list(settings.functions if suite == "blackbox" else settings.mf_problems)
    regrets: dict[str, dict[str, list[float | None]]] = {p: {c: [] for c in contenders} for p in problems}
    seconds = {c: 0.0 for c in contenders}
    failures: list[str] = []
    for problem in problems:
        for name in contenders:
            for seed in range(settings.seeds):
                start = time.perf_counter()
                try:
                    if suite == "blackbox":
                        regret = blackbox_run(registry, name, problem, seed, settings.evaluations)
                    else:
                        regret = multifidelity_run(registry, name, problem, seed, settings.budget_factor)
                except Exception as error:  # noqa: BLE001 - a strategy's failure is a result, reported
                    regret = None
                    failures.append(f"{suite} {problem} {name} seed {seed}: {type(error).__name__}: {error}")
                seconds[name] += time.perf_counter() - start
                regrets[problem][name].append(regret)
                if progress is not None:
                    shown = "failed" if regret is None else f"regret {regret:.4g}"
                    progress(f"{suite} {problem} {name} seed {seed}: {shown} ({time.perf_counter() - start:.1f} s)")
    ranks = {}
    for problem in problems:
        per_seed = [[regrets[problem][c][s] for c in contenders] for s in range(settings.seeds)]
        ranks[problem] = dict(zip(contenders, mean_ranks(per_seed)))
    return SuiteResult(suite, problems, contenders, regrets, ranks, seconds, failures)


def run_bench(strategy: str, plugins_dirs: Sequence[str | Path] = (), suites: Sequence[str] = SUITES,
              settings: Settings = Settings(), against: Sequence[str] | None = None,
              progress: Callable[[str], None] | None = None) -> list[SuiteResult]:
    """Every suite asked for, `strategy` against `against` (default: OPPONENTS, those registered).
    A PluginError when a strategy named is unknown or a plugin fails to load."""
    registry = discover([Path(p) for p in plugins_dirs])
    registry.get("strategies", strategy).load()  # an unknown name or a broken plugin fails here, named
    if against is not None:
        for name in against:
            registry.get("strategies", name).load()
    else:
        for name in {n for suite in suites for n in OPPONENTS[suite]} & set(registry.names("strategies")):
            registry.get("strategies", name).load()
    return [run_suite(registry, strategy, suite, settings, against, progress) for suite in suites]


def _cell(regrets: list[float | None], rank: float) -> str:
    done = [r for r in regrets if r is not None]
    median = f"{float(np.median(done)):.3g}" if done else "failed"
    missing = f", {len(regrets) - len(done)} failed" if len(done) < len(regrets) else ""
    return f"{median} ({rank:.2f}{missing})"


def format_suite(result: SuiteResult, settings: Settings) -> str:
    """A Markdown table: one row per problem, a cell per contender: median regret (mean rank)."""
    size = (f"{settings.evaluations} evaluations" if result.suite == "blackbox"
            else f"a cost of {settings.budget_factor:g} x the max fidelity")
    header = ["problem", *result.contenders]
    rows = [[p, *(_cell(result.regrets[p][c], result.ranks[p][c]) for c in result.contenders)]
            for p in result.problems]
    rows.append(["mean rank", *(f"{result.mean_rank(c):.2f}" for c in result.contenders)])
    rows.append(["seconds", *(f"{result.seconds[c]:.1f}" for c in result.contenders)])
    lines = [f"{result.suite}: median regret (mean rank; 1 = best) after {size}, {settings.seeds} seed(s)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_results(results: Sequence[SuiteResult], settings: Settings) -> str:
    return "\n\n".join(format_suite(result, settings) for result in results)


def save(out: Path, strategy: str, results: Sequence[SuiteResult], settings: Settings) -> list[Path]:
    """bench.json (every regret) and bench.md (the tables) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    document: Mapping[str, Any] = {
        "strategy": strategy, "settings": {**settings.__dict__},
        "suites": [{"suite": r.suite, "contenders": r.contenders, "regrets": r.regrets, "ranks": r.ranks,
                    "mean_rank": {c: r.mean_rank(c) for c in r.contenders}, "seconds": r.seconds,
                    "failures": r.failures} for r in results]}
    paths = [out / "bench.json", out / "bench.md"]
    write_atomic(paths[0], dumps_strict(document, indent=2) + "\n")
    write_atomic(paths[1], f"# automl bench {strategy}\n\n" + format_results(results, settings) + "\n")
    return paths
