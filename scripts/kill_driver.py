"""Kill the driver with SIGKILL at random moments, resume each time, and count what was lost.

    python scripts/kill_driver.py [--kills 10] [--seed 0] [--workers 1] [--out DIR]

Runs `automl run` on a small digits spec (MLP, 10 trials x 15 epochs) in a subprocess and
SIGKILLs it at a random moment: after a random number (1-20) of new epochs were recorded,
plus a random fraction of an epoch, so kills land anywhere in a trial, between trials and
mid-write. Checks the trial database, runs it again, --kills times; then lets it finish. Prints: kills, completed trials lost (finished before a kill
but missing or changed after), trials repeated (a config run twice or a trial finished
twice), and the final trial count. Exit code 1 when anything was lost or repeated.
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = {
    "name": "kill-test",
    "seed": 0,
    "data": {"source": "builtin", "name": "sklearn:digits"},
    "budget": {"max_trials": 10, "max_epochs": 15, "patience": None},
    "families": {"include": ["mlp"], "overrides": {"batch_size": {"choices": [32]}}},
    "output": "run",
}


def epochs_recorded(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
            return con.execute("SELECT COUNT(*) FROM epochs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def read(db: Path) -> tuple[dict, list]:
    """(completed trials -> (finished_at, loss), every trial's config) as an outsider reads them."""
    if not db.exists():
        return {}, []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
            completed = {t: (f, l) for t, f, l in con.execute(
                "SELECT trial_id, finished_at, loss FROM trials WHERE status='COMPLETE'")}
            configs = [c for (c,) in con.execute("SELECT config FROM trials")]
        return completed, configs
    except sqlite3.OperationalError:  # killed before the schema existed
        return {}, []


def kill_and_resume(folder: Path, kills: int, seed: int, workers: int, log=print, final_timeout: float = 600) -> dict:
    """`final_timeout`: seconds the last run may take to finish the search and the final models."""
    spec = dict(SPEC, execution={"workers": workers})
    (folder / "spec.json").write_text(json.dumps(spec))
    db = folder / "run" / "trials.db"
    command = [sys.executable, "-m", "automl.cli", "run", str(folder / "spec.json"), "--quiet"]
    rng = random.Random(seed)
    lost, repeated, done_kills = set(), 0, 0
    for kill in range(kills):
        before, _ = read(db)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target, extra = epochs_recorded(db) + rng.randint(1, 20), rng.uniform(0.0, 0.1)
        deadline = time.time() + 300
        while process.poll() is None and epochs_recorded(db) < target and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(extra)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            done_kills += 1
        process.wait()
        after, configs = read(db)
        lost |= {t for t, value in before.items() if after.get(t) != value}
        repeated = max(repeated, len(configs) - len(set(configs)))
        log(f"kill {kill + 1} after epoch {target} (+{extra:.2f} s): {len(after)} completed, {len(configs)} trials")
        if len(after) >= spec["budget"]["max_trials"]:
            break
    before, _ = read(db)
    final = subprocess.run(command, capture_output=True, text=True, timeout=final_timeout)
    after, configs = read(db)
    lost |= {t for t, value in before.items() if after.get(t) != value}
    return {"kills": done_kills, "completed_lost": len(lost), "trials_repeated": max(repeated, len(configs) - len(set(configs))),
            "completed": len(after), "trials": len(configs), "final_exit_code": final.returncode,
            "final_stderr": final.stderr[-2000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", help="keep the run here (default: a temporary folder)")
    args = parser.parse_args()
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        result = kill_and_resume(folder, args.kills, args.seed, args.workers)
    print(f"kills: {result['kills']}, completed trials lost: {result['completed_lost']}, "
          f"trials repeated: {result['trials_repeated']}, completed at the end: {result['completed']} of "
          f"{SPEC['budget']['max_trials']} ({time.time() - start:.0f} s)")
    if result["completed_lost"] or result["trials_repeated"] or result["final_exit_code"]:
        print(result["final_stderr"])
        sys.exit(1)


if __name__ == "__main__":
    main()
