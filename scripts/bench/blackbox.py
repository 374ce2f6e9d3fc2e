"""Suite 2, black-box quality: every contender on known-optimum functions, regret per budget.

    python scripts/bench/blackbox.py --out bench_results/blackbox [--seeds 10] [--budgets 50 100 200]
                                     [--functions branin,hartmann6,...] [--only automl:bayesian,optuna:tpe,...]
                                     [--jobs 1] [--max-seconds 0]

Each (function, contender, seed) is one sequential run of max(--budgets) evaluations; the smaller
budgets are read off its best-so-far curve (so a budget-aware optimizer plans for the largest
budget in every figure). Functions: functions.FUNCTIONS (Branin, Hartmann3, Hartmann6, Levy6,
Rosenbrock4, Hartmann6 on a mixed space), each with its exact minimum f*.

Measures, for evaluation t of a run (values v_1..v_t):
  simple regret   r_t = min(v_1..v_t) - f*  (>= 0)
  at budget B     r_B: median and interquartile range over seeds
  log-regret AUC  AUC_B = (1 / B) * sum_{t=1..B} log10(r_t + 1e-12): the mean of the log10
                  best-so-far regret over the first B evaluations (lower is better; it rewards
                  getting low early as well as ending low; -12 is a run at the optimum from t = 1)
  mean rank       within each function, budget and seed, the contenders are ranked by r_B (1 =
                  lowest; ties share the mean rank); a contender whose run failed or stopped
                  before B gets the worst rank for that seed; the ranks are averaged over seeds
A run that fails (an exception), passes --max-seconds, or runs out of points (a finished grid)
is recorded as such; an exhausted run keeps its final best for the later budgets (it had no
more points to try), a failed or timed-out one has no regret past where it stopped.

--jobs N runs N runs at once in separate processes (each limited to one BLAS / torch thread);
the default, 1, runs them in this process one after another.

Writes blackbox.json (every run's objective values), blackbox.md and blackbox.png (median
best-so-far regret vs evaluations, interquartile band, per function).
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
import functions  # noqa: E402
import peers  # noqa: E402

LOG_FLOOR = 1e-12


def run_one(function_name: str, name: str, seed: int, budget: int, max_seconds: float | None) -> dict[str, Any]:
    function = functions.get(function_name)
    run_seed = peers.run_seed(name, seed)
    record: dict[str, Any] = {"function": function_name, "contender": name, "seed": seed, "run_seed": run_seed,
                              "values": [], "status": "ok", "error": None, "info": {}}
    start = time.perf_counter()
    try:
        optimizer = peers.make_optimizer(name, function.space, run_seed, budget)
        record["info"] = optimizer.info
        for _ in range(budget):
            handle, config = optimizer.ask()
            value = function(config)
            optimizer.tell(handle, value)
            record["values"].append(value)
            if max_seconds and time.perf_counter() - start > max_seconds and len(record["values"]) < budget:
                record["status"] = "timed_out"
                break
    except peers.Exhausted as error:
        record["status"], record["error"] = "exhausted", str(error)
    except Exception as error:  # noqa: BLE001 - a contender's failure is a result, reported
        record["status"], record["error"] = "failed", f"{type(error).__name__}: {error}"
    record["seconds"] = time.perf_counter() - start
    return record


def _worker(task: tuple) -> dict[str, Any]:
    """One run in a pool process: one BLAS / torch thread, so N processes use N cores."""
    import threadpoolctl
    import torch

    torch.set_num_threads(1)
    peers.prepare([task[1]])  # imports outside the run's timed seconds, as in a single-process run
    with threadpoolctl.threadpool_limits(1):
        return run_one(*task)


def regret_curve(record: dict[str, Any], budget: int) -> np.ndarray:
    """Best-so-far regret after each evaluation, up to `budget`; an exhausted run is carried at its
    final best, a failed or timed-out one ends where it stopped (shorter than `budget`)."""
    optimum = functions.get(record["function"]).optimum
    values = np.asarray(record["values"][:budget], dtype=float)
    if values.size == 0:
        return values
    curve = np.maximum(np.minimum.accumulate(values) - optimum, 0.0)
    if record["status"] == "exhausted" and curve.size < budget:
        curve = np.concatenate([curve, np.full(budget - curve.size, curve[-1])])
    return curve


def auc(curve: np.ndarray, budget: int) -> float | None:
    if curve.size < budget:
        return None
    return float(np.mean(np.log10(curve[:budget] + LOG_FLOOR)))


def analyse(runs: Sequence[dict[str, Any]], function_names, names, budgets, seeds) -> dict[str, Any]:
    from scipy.stats import rankdata

    largest = max(budgets)
    by_key = {(r["function"], r["contender"], r["seed"]): r for r in runs}
    curves = {key: regret_curve(run, largest) for key, run in by_key.items()}
    stats: dict[str, Any] = {}
    ranks: dict[str, Any] = {}
    for f in function_names:
        stats[f], ranks[f] = {}, {}
        for name in names:
            stats[f][name] = {}
            for b in budgets:
                at_b = [float(c[b - 1]) for s in range(seeds) if (c := curves.get((f, name, s))) is not None
                        and c.size >= b]
                aucs = [auc(curves[(f, name, s)], b) for s in range(seeds) if (f, name, s) in curves]
                stats[f][name][str(b)] = {"regret": benchlib.summary(at_b), "auc_log10": benchlib.summary(aucs),
                                          "missing": seeds - len(at_b)}
            curve_stack = [curves[(f, name, s)] for s in range(seeds) if (f, name, s) in curves
                           and curves[(f, name, s)].size >= largest]
            stats[f][name]["median_curve"] = (np.median(np.vstack(curve_stack), axis=0).tolist()
                                              if curve_stack else [])
            stats[f][name]["q25_curve"] = (np.percentile(np.vstack(curve_stack), 25, axis=0).tolist()
                                           if curve_stack else [])
            stats[f][name]["q75_curve"] = (np.percentile(np.vstack(curve_stack), 75, axis=0).tolist()
                                           if curve_stack else [])
            stats[f][name]["seconds"] = benchlib.summary(by_key[(f, name, s)]["seconds"] for s in range(seeds)
                                                         if (f, name, s) in by_key)
        for b in budgets:
            per_seed = []
            for s in range(seeds):
                regrets = []
                for name in names:
                    c = curves.get((f, name, s))
                    regrets.append(float(c[b - 1]) if c is not None and c.size >= b else np.inf)  # missing: worst
                per_seed.append(rankdata(regrets, method="average"))
            mean = np.mean(per_seed, axis=0) if per_seed else [None] * len(names)
            ranks[f][str(b)] = {name: float(mean[i]) for i, name in enumerate(names)}
    overall = {str(b): {name: float(np.mean([ranks[f][str(b)][name] for f in function_names])) for name in names}
               for b in budgets}
    return {"stats": stats, "ranks": ranks, "mean_rank_all_functions": overall}


def _regret_cell(entry: dict[str, Any]) -> str:
    r = entry["regret"]
    if r["median"] is None:
        return "—"
    cell = f"{benchlib.fmt(r['median'], 3)} [{benchlib.fmt(r['q25'], 2)}, {benchlib.fmt(r['q75'], 2)}]"
    return cell + (f" ({entry['missing']} missing)" if entry["missing"] else "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--functions", default="", help=f"comma-separated (default: {','.join(functions.FUNCTIONS)})")
    parser.add_argument("--only", default="", help=f"comma-separated contenders (default: {','.join(peers.DEFAULT)})")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, in separate processes")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="stop a run once it has taken this long (0: never); reported as timed out")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    names = peers.parse_only(args.only)
    function_names = [f.strip() for f in args.functions.split(",") if f.strip()] or list(functions.FUNCTIONS)
    for f in function_names:
        functions.get(f)
    budgets = sorted(set(args.budgets))
    largest = max(budgets)
    tasks = [(f, name, seed, largest, args.max_seconds or None)
             for f in function_names for name in names for seed in range(args.seeds)]

    runs: list[dict[str, Any]] = []
    started = time.perf_counter()

    def progress(run):
        runs.append(run)
        regret = functions.get(run["function"]).regret(min(run["values"])) if run["values"] else None
        print(f"[{len(runs)}/{len(tasks)}] {run['function']} {run['contender']} seed {run['seed']}: {run['status']}, "
              f"regret {benchlib.fmt(regret)}, {run['seconds']:.1f} s", flush=True)

    if args.jobs > 1:
        import multiprocessing

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_worker, task) for task in tasks]):
                progress(future.result())
    else:
        peers.prepare(names)
        for task in tasks:
            progress(run_one(*task))
    runs.sort(key=lambda r: (function_names.index(r["function"]), names.index(r["contender"]), r["seed"]))

    analysis = analyse(runs, function_names, names, budgets, args.seeds)
    infos = _infos(runs, names)
    raw = {"functions": {f: {"optimum": functions.get(f).optimum, "argmin": dict(functions.get(f).argmin),
                             "space": functions.get(f).space.to_dict(), "description": functions.get(f).description,
                             "notes": list(functions.get(f).notes)} for f in function_names},
           "budgets": budgets, "seeds": args.seeds, "contenders": names, "jobs": args.jobs,
           "max_seconds": args.max_seconds, "log_floor": LOG_FLOOR, "wall_seconds": time.perf_counter() - started,
           "contender_info": infos, **analysis, "runs": runs}
    sections = _sections(analysis, function_names, names, budgets, infos, runs)
    notes = [f"Simple regret r_t = (best value in the first t evaluations) - f*; cells are median [q25, q75] "
             f"over {args.seeds} seeds.",
             f"Log-regret AUC at budget B = (1/B) * sum over t = 1..B of log10(r_t + {LOG_FLOOR:g}), the mean "
             "log10 best-so-far regret; median over seeds; lower is better.",
             "Mean rank: per function, budget and seed the contenders are ranked by r_B (1 = best, ties share the "
             "mean rank, a failed or stopped run ranks last), averaged over seeds; 'all' averages the functions.",
             f"One run per (function, contender, seed) to {largest} evaluations; smaller budgets are prefixes of it, "
             "so budget-aware optimizers (nevergrad, automl:evolutionary) plan for the largest budget.",
             "Each contender's seed i is peers.run_seed(contender, i), distinct per contender.",
             "Optima: see functions.py (the Hartmann argmins polished by L-BFGS-B; the mixed variant's by exhaustive "
             "search on its discrete part)."]
    args.out.mkdir(parents=True, exist_ok=True)
    benchlib.write_results(args.out, "blackbox", raw, sections, notes)
    _plot(args.out / "blackbox.png", analysis, function_names, names)
    return raw


def _infos(runs, names) -> dict[str, Any]:
    """What each contender ran, per function (nevergrad's pick depends on the space and budget)."""
    infos: dict[str, Any] = {}
    for run in runs:
        info = run.get("info") or {}
        infos.setdefault(run["contender"], {}).setdefault(run["function"], info)
    return infos


def _sections(analysis, function_names, names, budgets, infos, runs) -> list[tuple[str, str]]:
    stats, ranks, overall = analysis["stats"], analysis["ranks"], analysis["mean_rank_all_functions"]
    sections = []
    for b in budgets:
        rows = [[name] + [_regret_cell(stats[f][name][str(b)]) for f in function_names] for name in names]
        sections.append((f"Simple regret after {b} evaluations: median [q25, q75]",
                         benchlib.markdown_table(["contender", *function_names], rows)))
    for b in budgets:
        rows = [[name] + [ranks[f][str(b)][name] for f in function_names] + [overall[str(b)][name]]
                for name in sorted(names, key=lambda n: overall[str(b)][n])]
        sections.append((f"Mean rank after {b} evaluations (1 = best)",
                         benchlib.markdown_table(["contender", *function_names, "all"], rows)))
    largest = str(max(budgets))
    rows = [[name] + [stats[f][name][largest]["auc_log10"]["median"] for f in function_names] for name in names]
    sections.append((f"Log10-regret AUC over {largest} evaluations (median over seeds; lower is better)",
                     benchlib.markdown_table(["contender", *function_names], rows)))
    rows = [[name] + [stats[f][name]["seconds"]["median"] for f in function_names] for name in names]
    sections.append((f"Wall seconds per run of {largest} evaluations (median; optimizer + function)",
                     benchlib.markdown_table(["contender", *function_names], rows)))
    rows = []
    for name in names:
        for f in function_names:
            info = dict(infos.get(name, {}).get(f) or {})
            used = info.pop("used", None) or info.pop("class", "")
            extra = "; ".join(f"{k}: {v}" for k, v in info.items() if k not in ("library", "options", "settings"))
            rows.append([name, f, used, extra])
    sections.append(("Contenders as run", benchlib.markdown_table(["contender", "function", "ran", "details"], rows)))
    problems = [[r["function"], r["contender"], r["seed"], r["status"], len(r["values"]), r["error"] or ""]
                for r in runs if r["status"] != "ok"]
    sections.append(("Runs that did not finish normally",
                     benchlib.markdown_table(["function", "contender", "seed", "status", "evaluations", "error"],
                                             problems) if problems else "None."))
    return sections


def _plot(path: Path, analysis, function_names, names) -> None:
    stats = analysis["stats"]

    def draw(plt):
        cols = min(3, len(function_names))
        rows = -(-len(function_names) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
        for ax, f in zip(axes.flat, function_names):
            for name in names:
                median = np.asarray(stats[f][name]["median_curve"])
                if median.size == 0:
                    continue
                t = np.arange(1, median.size + 1)
                line, = ax.plot(t, median + LOG_FLOOR, label=name, linewidth=1.2)
                ax.fill_between(t, np.asarray(stats[f][name]["q25_curve"]) + LOG_FLOOR,
                                np.asarray(stats[f][name]["q75_curve"]) + LOG_FLOOR, color=line.get_color(),
                                alpha=0.12)
            ax.set_yscale("log")
            ax.set_title(f)
            ax.set_xlabel("evaluations")
            ax.set_ylabel("median simple regret")
        for ax in list(axes.flat)[len(function_names):]:
            ax.axis("off")
        if axes.flat[0].get_legend_handles_labels()[0]:
            axes.flat[0].legend(fontsize=7)
        return fig

    benchlib.plot(path, draw)


if __name__ == "__main__":
    main()
