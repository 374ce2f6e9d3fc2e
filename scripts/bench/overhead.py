"""Suite 1, overhead: the optimizer's own wall time per trial (one ask + one tell), every contender.

    python scripts/bench/overhead.py --out bench_results/overhead [--trials 100 300] [--seeds 1]
                                     [--only automl:bayesian,optuna:tpe,...] [--max-seconds 600] [--threads 0]

Each run asks and tells `n` trials in sequence on a 6-parameter mixed space (OVERHEAD_SPACE: a
3-way Choice, a log Float, two Floats, a log Int, an Int with step 2; no conditions) with a
cheap objective (microseconds), so what is timed is the optimizer: time.perf_counter() around
ask() and around tell(), nothing else. A run of 100 and a run of 300 trials are separate runs
(a budget-aware optimizer, e.g. NGOpt, plans for its run's length). The libraries are imported
before timing; building the optimizer object is timed apart (construct_ms) and not in the
per-trial figures; the first ask includes whatever an optimizer builds lazily.

Per contender and trial count: the median and the 95th percentile of the per-trial times
pooled over all trials of all seeds, and the total. A run that passes --max-seconds (of
ask+tell time) stops there and is reported as timed out with the trials it finished; the
contender is then skipped at larger trial counts, and the table says so.

Writes overhead.json (every per-trial time), overhead.md and overhead.png (per-trial time vs
trial index of the largest run, seed 0).
"""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import replace
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
import peers  # noqa: E402

from automl.space import SearchSpace  # noqa: E402
from automl.testing import MIXED_SPACE, toy_loss  # noqa: E402

# the conformance suite's 6-parameter mixed space, without its one condition: not every
# peer adapter takes conditional parameters, and all must search the identical space
OVERHEAD_SPACE = SearchSpace(tuple(replace(p, condition=None) for p in MIXED_SPACE))


def cheap_loss(config: Mapping[str, Any]) -> float:
    return toy_loss(config, None, 1.0)  # at full budget: a few arithmetic operations


def time_run(name: str, n_trials: int, seed: int, max_seconds: float | None) -> dict[str, Any]:
    run_seed = peers.run_seed(name, seed)
    record: dict[str, Any] = {"contender": name, "trials": n_trials, "seed": seed, "run_seed": run_seed,
                              "ask_ms": [], "tell_ms": [], "status": "ok", "error": None}
    try:
        start = time.perf_counter()
        optimizer = peers.make_optimizer(name, OVERHEAD_SPACE, run_seed, n_trials)
        record["construct_ms"] = 1000 * (time.perf_counter() - start)
        record["info"] = optimizer.info
        spent = 0.0
        for _ in range(n_trials):
            t0 = time.perf_counter()
            handle, config = optimizer.ask()
            t1 = time.perf_counter()
            value = cheap_loss(config)
            t2 = time.perf_counter()
            optimizer.tell(handle, value)
            t3 = time.perf_counter()
            record["ask_ms"].append(1000 * (t1 - t0))
            record["tell_ms"].append(1000 * (t3 - t2))
            spent += (t1 - t0) + (t3 - t2)
            if max_seconds and spent > max_seconds and len(record["ask_ms"]) < n_trials:
                record["status"] = "timed_out"
                break
    except peers.Exhausted as error:
        record["status"], record["error"] = "exhausted", str(error)
    except Exception as error:  # noqa: BLE001 - a contender's failure is a result, reported
        record["status"], record["error"] = "failed", f"{type(error).__name__}: {error}"
    record["trials_done"] = len(record["ask_ms"])
    record["total_s"] = (sum(record["ask_ms"]) + sum(record["tell_ms"])) / 1000
    return record


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    per_trial = [a + t for run in runs for a, t in zip(run["ask_ms"], run["tell_ms"])]
    stats = benchlib.summary(per_trial)
    statuses = sorted({run["status"] for run in runs})
    return {"per_trial_ms": stats, "ask_ms": benchlib.summary([a for run in runs for a in run["ask_ms"]]),
            "tell_ms": benchlib.summary([t for run in runs for t in run["tell_ms"]]),
            "total_s": [run["total_s"] for run in runs], "trials_done": [run["trials_done"] for run in runs],
            "status": statuses[0] if len(statuses) == 1 else "mixed: " + ", ".join(statuses),
            "errors": sorted({run["error"] for run in runs if run["error"]})}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--seeds", type=int, default=1, help="runs per contender and trial count")
    parser.add_argument("--only", default="", help=f"comma-separated contenders (default: {','.join(peers.DEFAULT)})")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop a run once its ask+tell time passes this (0: never)")
    parser.add_argument("--threads", type=int, default=0,
                        help="limit every contender to this many BLAS / OpenMP / torch threads (0: the libraries' "
                             "defaults). automl:bayesian limits its own BLAS calls to 1 thread in any case")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    names, trial_counts = peers.parse_only(args.only), sorted(set(args.trials))
    peers.prepare(names)
    with _thread_limit(args.threads):
        return _main(args, names, trial_counts)


@contextlib.contextmanager
def _thread_limit(threads: int):
    if not threads:
        yield
        return
    import threadpoolctl
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpoolctl.threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


def _main(args, names, trial_counts) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        results[name] = {}
        skipped_because = None
        for n in trial_counts:
            if skipped_because:
                results[name][str(n)] = {"status": "skipped", "reason": skipped_because}
                print(f"{name} @ {n}: skipped ({skipped_because})", flush=True)
                continue
            these = [time_run(name, n, seed, args.max_seconds or None) for seed in range(args.seeds)]
            runs.extend(these)
            results[name][str(n)] = summary = summarise(these)
            results[name]["info"] = these[0].get("info", {})
            if any(run["status"] == "timed_out" for run in these):
                skipped_because = f"a run of {n} trials passed --max-seconds {args.max_seconds:g}"
            stats = summary["per_trial_ms"]
            print(f"{name} @ {n}: {summary['status']}, median {benchlib.fmt(stats['median'])} ms, "
                  f"p95 {benchlib.fmt(stats['p95'])} ms", flush=True)

    raw = {"space": OVERHEAD_SPACE.to_dict(), "trials": trial_counts, "seeds": args.seeds, "threads": args.threads,
           "max_seconds": args.max_seconds, "contenders": names, "results": results, "runs": runs}
    sections = [("ask + tell time per trial (ms)", _table(names, trial_counts, results)),
                ("Contenders as run", _contenders(names, results))]
    notes = ["Per-trial time: wall time of one ask() plus one tell() (time.perf_counter), the objective excluded; "
             "median and 95th percentile over all trials of all seeds of a run length. Runs of different lengths "
             "are separate runs.",
             "Building the optimizer is not counted (construct_ms in the JSON); the first ask() includes whatever "
             "an optimizer builds lazily. Libraries are imported before timing.",
             f"A run stops once its ask+tell time passes --max-seconds ({args.max_seconds:g} s; 0 = never): it is "
             "reported as timed out with the trials it finished, and the contender is skipped at larger trial "
             "counts.",
             "Each contender's seed i is peers.run_seed(contender, i) (distinct per contender).",
             (f"Every contender limited to {args.threads} BLAS / OpenMP / torch thread(s) (--threads)."
              if args.threads else "Threads: each library's default (--threads 0), except that automl:bayesian "
                                   "always limits its BLAS calls to one thread (its own design; the stock "
                                   "keras-tuner oracle of kerastuner:bayesian does not). Compare with --threads 1.")]
    args.out.mkdir(parents=True, exist_ok=True)
    benchlib.write_results(args.out, "overhead", raw, sections, notes)
    _plot(args.out / "overhead.png", names, trial_counts, runs)
    return raw


def _cell(summary: dict[str, Any], key: str) -> str:
    status = summary.get("status")
    if status == "skipped":
        return "skipped" if key == "p95" else f"skipped: {summary['reason']}"
    value = benchlib.fmt(summary["per_trial_ms"][key])
    if status != "ok":
        done = "/".join(str(d) for d in summary["trials_done"])
        value += f" ({status.replace('_', ' ')} after {done} trials)"
    return value


def _table(names, trial_counts, results) -> str:
    columns = ["contender"] + [f"{label} @{n}" for n in trial_counts for label in ("median ms", "p95 ms")]
    rows = [[name] + [_cell(results[name][str(n)], key) for n in trial_counts for key in ("median", "p95")]
            for name in names]
    return benchlib.markdown_table(columns, rows)


def _contenders(names, results) -> str:
    rows = []
    for name in names:
        info = dict(results[name].get("info") or {})
        what = info.pop("used", None) or info.pop("class", "")
        rows.append([name, what, "; ".join(f"{k}: {v}" for k, v in info.items() if k not in ("library",))])
    return benchlib.markdown_table(["contender", "ran", "details"], rows)


def _plot(path: Path, names, trial_counts, runs) -> None:
    largest = max(trial_counts)

    def draw(plt):
        fig, ax = plt.subplots(figsize=(8, 5))
        for name in names:
            run = next((r for r in runs if r["contender"] == name and r["trials"] == largest and r["seed"] == 0), None)
            if run is None or not run["ask_ms"]:
                continue
            per_trial = [a + t for a, t in zip(run["ask_ms"], run["tell_ms"])]
            ax.plot(range(1, len(per_trial) + 1), per_trial, label=name, linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("trial")
        ax.set_ylabel("ask + tell (ms)")
        ax.set_title(f"Optimizer time per trial, 6-parameter mixed space, {largest}-trial run (seed 0)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        return fig

    benchlib.plot(path, draw)


if __name__ == "__main__":
    main()
