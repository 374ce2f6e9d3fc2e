"""The whole `automl run` command against its budget: where the time goes before, during and after the search.

    python scripts/bench/command_time.py [--datasets digits breast_cancer] [--seeds 1] [--budget 60]
        [--max-trials 12] [--strategy bayesian] [--out FILE.md]
    python scripts/bench/command_time.py --spec specs/breast_cancer.json [--repeats 3] [--out FILE.md]

With --spec, the given spec as a user runs it (`automl run SPEC --out DIR --overwrite --quiet`),
--repeats times, with the same columns (no budget column: the spec's own).

For each data set and seed, two runs of the real command (`automl run --quiet`, its own process):
  * `max_time`: max_time = --budget, no trial limit. Reported: the whole process against the budget.
  * `max_trials`: --max-trials trials, no max_time. Reported: the time after the search (the refit,
    ensemble, baselines, export, evaluation and report) as a share of the search's time.
Both report the first trial's start after the command started (its `started_at` in trials.db,
against the time the process was launched) and the trials finished. "After the search" is the
whole process less the time before the run record started and the search's own clock.
Spec: the suite-4 settings (max 30 epochs, patience 6, validation 0.2, test 0.2; mlp on
breast_cancer, mlp + cnn on digits), device cpu, one worker.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASETS = {"digits": ("sklearn:digits", ["mlp", "cnn"]), "breast_cancer": ("sklearn:breast_cancer", ["mlp"])}


def run_once(workdir: Path, dataset: str, seed: int, strategy: str, budget: dict) -> dict:
    source, families = DATASETS[dataset]
    spec = {"name": f"{dataset}-{seed}", "seed": seed, "data": {"source": "builtin", "name": source},
            "metric": "accuracy", "split": {"validation": 0.2, "test": 0.2},
            "budget": {"max_epochs": 30, "patience": 6, **budget}, "strategy": {"name": strategy},
            "families": {"include": families}, "execution": {"device": "cpu", "workers": 1}}
    (workdir / "spec.json").write_text(json.dumps(spec))
    return {"dataset": dataset, "seed": seed, **timed_run(workdir, workdir / "spec.json")}


def timed_run(workdir: Path, spec_path: Path) -> dict:
    """One `automl run` of the spec into workdir/run, timed from the process's launch."""
    run_dir = workdir / "run"
    launched = time.time()
    with open(workdir / "automl.log", "w") as log:
        code = subprocess.run(["automl", "run", str(spec_path), "--out", str(run_dir), "--overwrite", "--quiet"],
                              stdout=log, stderr=subprocess.STDOUT).returncode
    whole = time.time() - launched
    if code != 0:
        raise RuntimeError(f"automl exited {code}; see {workdir / 'automl.log'}")
    results = json.loads((run_dir / "results.json").read_text())
    db = sqlite3.connect(f"file:{run_dir / 'trials.db'}?mode=ro", uri=True)
    first_start = db.execute("SELECT MIN(started_at) FROM trials").fetchone()[0]
    run_started = json.loads(db.execute("SELECT value FROM meta WHERE key = 'run'").fetchone()[0])["started_at"]
    db.close()
    search = results["timings"]["search"]  # its clock starts with the run record, before the workers are ready
    return {"whole_s": whole, "search_s": search,
            "first_trial_s": first_start - launched, "after_search_s": whole - (run_started - launched) - search,
            "trials": results["trials"]["completed"] + results["trials"]["pruned"],
            "cut": results.get("cut_for_time") or [], "timings": results["timings"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--max-trials", type=int, default=12)
    parser.add_argument("--strategy", default="bayesian")
    parser.add_argument("--spec", type=Path, help="time this spec as it is instead of the built-in settings")
    parser.add_argument("--repeats", type=int, default=3, help="runs of --spec")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="command-time-") as scratch:
        for repeat in range(args.repeats if args.spec else 0):
            workdir = Path(scratch) / f"spec-{repeat}"
            workdir.mkdir()
            row = {"mode": "spec", "dataset": args.spec.name, "seed": "-", **timed_run(workdir, args.spec.resolve())}
            rows.append(row)
            print(json.dumps(row), flush=True)
        for dataset in args.datasets if not args.spec else ():
            for seed in range(args.seeds):
                for mode, budget in (("max_time", {"max_time": args.budget, "max_trials": 100000}),
                                     ("max_trials", {"max_trials": args.max_trials})):
                    workdir = Path(scratch) / f"{dataset}-{seed}-{mode}"
                    workdir.mkdir()
                    row = {"mode": mode, **run_once(workdir, dataset, seed, args.strategy, budget)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    lines = [f"load average at the end: {os.getloadavg()[0]:.1f} (1 min)", "",
             "| data set | seed | budget | whole command s | vs budget | first trial starts s | search s | "
             "after the search s (share of search) | trials | cut for time |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        budget = {"max_time": f"max_time {args.budget:g} s", "max_trials": f"max_trials {args.max_trials}",
                  "spec": "the spec's"}[r["mode"]]
        ratio = f"{r['whole_s'] / args.budget:.2f}x" if r["mode"] == "max_time" else "-"
        lines.append(f"| {r['dataset']} | {r['seed']} | {budget} | {r['whole_s']:.1f} | {ratio} | {r['first_trial_s']:.1f} | "
                     f"{r['search_s']:.1f} | {r['after_search_s']:.1f} ({r['after_search_s'] / r['search_s']:.0%}) | "
                     f"{r['trials']} | {'refit' if r['cut'] else '-'} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(f"```\npython scripts/bench/command_time.py {' '.join(sys.argv[1:])}\n```\n\n{table}\n")


if __name__ == "__main__":
    main()
