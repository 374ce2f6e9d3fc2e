"""Local execution figures: slot reuse after a time-out, early spawn, the spare's CPU cost, throughput.

    python scripts/bench_execution.py [--repeats 3] [--trials 12] [--epochs 10] [--skip-throughput]

Every worker here is a real one: `build_runner` over sklearn digits (MLP, batch 32), the
setup the agent hands its worker processes.

1. Slot reuse after a time-out: a trial that hangs (and ignores SIGTERM) with a 2 s limit
   on a 1-slot executor, then a normal one submitted the moment the time-out arrives:
   seconds from the hung trial's limit to the next trial's start on that slot, without a
   spare (a fresh worker spawns: today's path) and with one (the warm spare takes the slot).
   An idle spare's resident memory and CPU use.
2. Early spawn: in a fresh driver, seconds from the start until every worker of 2 slots is set
   up: spawned after the plan (today), pre-started before the plan (the plugins discovered, the
   data loaded), or pre-started before the driver imports the agent (torch, scikit-learn) too.
3. The spare's cost: 2 trials training on 2 slots while the spare starts beside them (it
   starts once both workers are ready), against the same without a spare: mean trial seconds.
4. Trials per minute with 1 and then 2 worker processes through the agent (--epochs epochs,
   no early stopping), from the trial database, with the torch threads each worker had.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

LIMIT = 2.0  # the hung trial's time limit, s
EARLY_SPAWN = {"cold": "spawned after the plan (today)", "plan": "pre-started before the plan",
               "prestart": "pre-started before the agent's imports and the plan"}
IDS = itertools.count()  # trial ids never repeat: a trial id with a checkpoint would resume from it

HANG = textwrap.dedent("""\
    import os, signal, time
    from pathlib import Path
    from automl.families.mlp import MLPFamily


    class Hangs(MLPFamily):
        name = "hangs"

        def build(self, config, profile):
            try:  # the trial that finds (and takes) the marker hangs; the others train
                os.unlink(os.environ["BENCH_HANG_MARKER"])
            except FileNotFoundError:
                return super().build(config, profile)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(3600)
    """)


def raw_spec(folder: Path, **spec) -> dict:
    raw = {"name": "bench", "seed": 0, "data": {"source": "builtin", "name": "sklearn:digits"}, "output": str(folder)}
    return {**raw, **spec}


def plan_hangs(tmp: Path):
    """The agent's plan and worker setup for digits with the `hangs` family, and a config of it."""
    import numpy as np

    from automl.agent import make_plan
    from automl.spec import parse_spec
    from automl.training.runner import TrialContext, build_runner
    from automl.training.trainer import TrainSettings

    plugins = tmp / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "hangs.py").write_text(HANG)
    raw = raw_spec(tmp / "run", plugins_dirs=[str(plugins)], budget={"max_epochs": 3, "patience": None},
                   families={"include": ["hangs"], "overrides": {"batch_size": {"choices": [32]}}})
    plan = make_plan(parse_spec(raw, base_dir=tmp))
    settings = TrainSettings(plan.metric, plan.direction, plan.metric_names, "cpu", None, 0)
    context = TrialContext(plan.data, settings, (plan.registry.family_ref("hangs"),), tmp / "checkpoints")
    return functools.partial(build_runner, context), plan.space.sample(np.random.default_rng(0))


def wait_for(executor, kind: str, trial_id: str) -> float:
    """time.monotonic() when the trial's `kind` event arrives; epochs are answered go on."""
    while True:
        for event in executor.events(0.05):
            if event.kind == "epoch":
                event.answer(False)
            if event.kind == kind and event.trial_id == trial_id:
                return time.monotonic()


def until_ready(executor, spares: int = 0) -> None:
    while not executor.workers_ready() or len(executor.spare_pids(ready=True)) < spares:
        executor.events(0.05)


def slot_reuse(tmp: Path, setup, config: dict, spare: bool) -> float:
    from automl.execution.processes import ProcessExecutor, plan_slots
    from automl.records import TrialRequest

    executor = ProcessExecutor(setup, plan_slots("cpu", 1), spare=spare)
    try:
        until_ready(executor, spares=int(spare))  # as in a run whose limit is minutes: the spare is long set up
        (tmp / "hang").write_text("")
        hung, following = f"hung-{next(IDS)}", f"next-{next(IDS)}"
        executor.submit(TrialRequest(hung, config, 3, time_limit=LIMIT))
        started = wait_for(executor, "started", hung)
        wait_for(executor, "finished", hung)
        executor.submit(TrialRequest(following, config, 1))
        return wait_for(executor, "started", following) - (started + LIMIT)
    finally:
        executor.shutdown()


def early_spawn(tmp: Path, mode: str) -> tuple[float, float]:
    """(seconds until every worker is set up, seconds of them the driver's imports and plan took)."""
    from automl.execution.processes import ProcessExecutor, plan_slots

    began, slots = time.monotonic(), plan_slots("cpu", 2)
    if mode != "prestart":
        import automl.agent  # noqa: F401  (torch, scikit-learn: the CLI imports it as a run starts)
    prestarted = ProcessExecutor.prestart(slots) if mode != "cold" else None
    planning = time.monotonic()
    setup, _ = plan_hangs(tmp)  # the agent's imports (mode prestart), the plugins, the data, the plan
    planned = time.monotonic()
    executor = prestarted.ready(setup) if prestarted else ProcessExecutor(setup, slots)
    try:
        until_ready(executor)
        return time.monotonic() - began, planned - planning
    finally:
        executor.shutdown()


def fresh_early_spawn(tmp: Path, mode: str) -> tuple[float, float]:
    """early_spawn in a fresh driver, as `automl run` is: it imports the agent, discovers the plugins,
    loads the data and plans."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, __file__, "--early-spawn", mode, str(tmp)],
                         check=True, capture_output=True, text=True).stdout
    total, plan = json.loads(out.strip().splitlines()[-1])
    return total, plan


def spare_idle(setup, seconds: float = 5.0) -> dict:
    """An idle spare's memory (RSS) and the CPU it uses while it waits on its pipe."""
    import os

    from automl.execution.processes import ProcessExecutor, plan_slots

    def cpu_s(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    executor = ProcessExecutor(setup, plan_slots("cpu", 1), spare=True)
    try:
        until_ready(executor, spares=1)
        [pid] = executor.spare_pids()
        before, began = cpu_s(pid), time.monotonic()
        while time.monotonic() - began < seconds:
            executor.events(0.2)
        rss = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS"))
        return {"rss_mb": int(rss.split()[1]) / 1024, "cpu_s": cpu_s(pid) - before, "over_s": seconds}
    finally:
        executor.shutdown()


def spare_cost(setup, config: dict, spare: bool, epochs: int) -> float:
    from automl.execution.processes import ProcessExecutor, plan_slots
    from automl.records import TrialRequest

    executor = ProcessExecutor(setup, plan_slots("cpu", 2), spare=spare)
    try:
        until_ready(executor)
        trial_ids = [f"train-{next(IDS)}" for _ in range(2)]
        for trial_id in trial_ids:  # the spare starts now, beside them
            executor.submit(TrialRequest(trial_id, config, epochs))
        seen: dict[tuple[str, str], float] = {}  # (kind, trial id) -> when it arrived
        while sum(kind == "finished" for kind, _ in seen) < 2:
            for event in executor.events(0.05):
                if event.kind == "epoch":
                    event.answer(False)
                if event.kind == "finished":
                    assert event.outcome.status == "COMPLETE", event.outcome
                seen[event.kind, event.trial_id] = time.monotonic()
        return statistics.mean(seen["finished", t] - seen["started", t] for t in trial_ids)
    finally:
        executor.shutdown()


def throughput(tmp: Path, workers: int, trials: int, epochs: int) -> dict:
    from automl.agent import Agent
    from automl.execution.slots import threads_per_worker
    from automl.spec import parse_spec
    from automl.store import TrialStore

    folder = tmp / f"w{workers}"
    raw = raw_spec(folder, budget={"max_trials": trials, "max_epochs": epochs, "patience": None},
                   families={"include": ["mlp"], "overrides": {"batch_size": {"choices": [32]}}},
                   execution={"workers": workers})
    began = time.time()
    Agent(parse_spec(raw, base_dir=folder)).run()
    wall = time.time() - began
    store = TrialStore(folder / "trials.db", readonly=True)
    records = store.trials()
    store.close()
    first, last = min(t.started_at for t in records), max(t.finished_at for t in records)
    threads, why = threads_per_worker(workers)  # what plan_slots gives each worker process
    return {"workers": workers, "threads_per_worker": threads, "threads_why": why, "trials": len(records),
            "trials_per_minute": 60 * len(records) / (last - first), "search_s": last - first, "command_s": wall}


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--early-spawn", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.early_spawn:  # one measurement, in this fresh driver
        print(json.dumps(early_spawn(Path(args.early_spawn[1]), args.early_spawn[0])))
        return
    result = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.environ["BENCH_HANG_MARKER"] = str(tmp / "hang")
        setup, config = plan_hangs(tmp)
        for spare in (False, True):
            runs = [slot_reuse(tmp, setup, config, spare) for _ in range(args.repeats)]
            result[f"slot_reuse_s_spare_{spare}"] = runs
            print(f"slot reuse after a time-out, {'warm spare' if spare else 'fresh worker (no spare)'}: "
                  f"median {statistics.median(runs):.2f} s (runs: {', '.join(f'{r:.2f}' for r in runs)})")
        idle = result["spare_idle"] = spare_idle(setup)
        print(f"an idle spare: {idle['rss_mb']:.0f} MB resident, {idle['cpu_s']:.2f} s CPU in {idle['over_s']:.0f} s")
        for mode, text in EARLY_SPAWN.items():
            pairs = [fresh_early_spawn(tmp, mode) for _ in range(args.repeats)]
            runs = [total for total, _ in pairs]
            result[f"ready_s_{mode}"], result[f"plan_s_{mode}"] = runs, [p for _, p in pairs]
            print(f"start to 2 workers set up, workers {text}: median {statistics.median(runs):.2f} s "
                  f"(runs: {', '.join(f'{r:.2f}' for r in runs)}; the driver's step before the setup took "
                  f"{statistics.median(p for _, p in pairs):.2f} s)")
        for spare in (False, True):
            runs = [spare_cost(setup, config, spare, args.epochs) for _ in range(args.repeats)]
            result[f"trial_s_spare_{spare}"] = runs
            print(f"2 trials of {args.epochs} epochs on 2 slots, {'a spare starting beside them' if spare else 'no spare'}: "
                  f"mean trial {statistics.median(runs):.2f} s (median of {args.repeats} runs)")
        if not args.skip_throughput:
            rows = [throughput(tmp, workers, args.trials, args.epochs) for workers in (1, 2)]
            result["throughput"] = rows
            for row in rows:
                print(f"{row['workers']} worker(s), {row['threads_per_worker']} torch thread(s) each "
                      f"({row['threads_why']}): {row['trials_per_minute']:.1f} trials/min ({row['trials']} trials in "
                      f"{row['search_s']:.1f} s; whole command {row['command_s']:.1f} s)")
            print(f"ratio 2 workers / 1 worker: {rows[1]['trials_per_minute'] / rows[0]['trials_per_minute']:.2f}")
    result["load_after"] = os.getloadavg()
    print(f"load average before {result['load_before'][0]:.2f}, after {result['load_after'][0]:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
