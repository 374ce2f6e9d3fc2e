"""Local execution figures: throughput with 1 and 2 worker processes, and timeout recovery.

    python scripts/bench_execution.py [--trials 12] [--epochs 10]

1. Trials per minute on digits-sized trials (sklearn digits, MLP, batch 32, --epochs
   epochs, no early stopping) with 1 and then 2 worker processes, from the trial database:
   trials / (last finish - first start), and the ratio. The search's own start-up (data,
   worker spawn) is reported apart.
2. Timeout recovery: a trial that hangs (and ignores SIGTERM) with a 2 s limit, then a
   normal one: seconds from the hung trial's limit to the next trial's start on that slot.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import textwrap
import time
from pathlib import Path

from automl.agent import Agent
from automl.spec import parse_spec
from automl.store import TrialStore

HANG = textwrap.dedent("""\
    import signal, time
    from pathlib import Path
    from automl.families.mlp import MLPFamily

    MARKER = Path(__file__).with_suffix(".hung")


    class Hangs(MLPFamily):
        name = "hangs"

        def build(self, config, profile):
            if not MARKER.exists():  # the first trial hangs; the next one (a fresh worker) trains
                MARKER.write_text("")
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                time.sleep(3600)
            return super().build(config, profile)
    """)


def run(folder: Path, **spec) -> list:
    raw = {"name": "bench", "seed": 0, "data": {"source": "builtin", "name": "sklearn:digits"}, "output": str(folder)}
    raw.update(spec)
    started = time.time()
    Agent(parse_spec(raw, base_dir=folder)).run()
    store = TrialStore(folder / "trials.db", readonly=True)
    trials = store.trials()
    store.close()
    return trials, time.time() - started


def throughput(tmp: Path, workers: int, trials: int, epochs: int) -> dict:
    records, wall = run(tmp / f"w{workers}", budget={"max_trials": trials, "max_epochs": epochs, "patience": None},
                        families={"include": ["mlp"], "overrides": {"batch_size": {"choices": [32]}}},
                        execution={"workers": workers})
    first, last = min(t.started_at for t in records), max(t.finished_at for t in records)
    return {"workers": workers, "trials": len(records), "trials_per_minute": 60 * len(records) / (last - first),
            "search_s": last - first, "command_s": wall}


def timeout_recovery(tmp: Path) -> float:
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / "hangs.py").write_text(HANG)
    records, _ = run(tmp / "timeout", plugins_dirs=[str(plugins)], families={"include": ["hangs"]},
                     budget={"max_trials": 2, "max_epochs": 2, "max_trial_time": 2},
                     execution={"workers": 1, "retries": 0})
    hung, following = records
    assert hung.reason == "timeout", hung.reason
    return following.started_at - (hung.started_at + 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [throughput(Path(tmp), workers, args.trials, args.epochs) for workers in (1, 2)]
        recovery = timeout_recovery(Path(tmp))
    for row in rows:
        print(f"{row['workers']} worker(s): {row['trials_per_minute']:.1f} trials/min "
              f"({row['trials']} trials in {row['search_s']:.1f} s; whole command {row['command_s']:.1f} s)")
    print(f"ratio 2 workers / 1 worker: {rows[1]['trials_per_minute'] / rows[0]['trials_per_minute']:.2f}")
    print(f"timeout recovery: the next trial started {recovery:.2f} s after the hung trial's limit")
    print(json.dumps({"throughput": rows, "timeout_recovery_s": recovery}))


if __name__ == "__main__":
    main()
