"""Suite 5: training throughput of our trainer inside a real trial vs a minimal torch loop.

    python scripts/bench/throughput.py --out DIR [--threads N] [--quick]

One fixed configuration per setting (every hyperparameter pinned), the same data, model (built by
automl's own `mlp` family from the same config and seed), optimizer, batch size and epoch count,
measured seven ways, all with the same number of torch threads:

  minimal       a hand-written loop: shuffle, forward, cross-entropy, backward, Adam step; nothing else
  minimal + validation  the same plus the validation rows' accuracy after every epoch (eval mode, no
                gradients): the least a tuning objective does, e.g. Optuna's PyTorch example
  trainer       automl's Trainer.run in this process, checkpoint writes switched off: training plus
                the per-epoch validation pass and the copy of the best epoch's weights
  +ckpt/epoch   Trainer.run writing its checkpoint (an atomic torch.save of model, optimizer and best
                state) after every epoch, as automl did before it checkpointed by time; for reference
  +checkpoint   Trainer.run as it is: a checkpoint once CHECKPOINT_INTERVAL_S passed since the last
                one, and at the trial's end
  +logging      the above plus, per epoch, what the driver does with a report: TrialStore.add_epoch
                (SQLite, WAL; epoch rows with synchronous=NORMAL) and TensorBoardObserver.epoch (scalars)
  automl run    what a user gets: `automl run` on a spec with max_trials 1 and the pinned config
                (families.include ["mlp"], every parameter overridden to one choice), worker process,
                driver, TensorBoard, checkpoints. Measured from the epochs table of trials.db:
                each epoch's `elapsed`, the worker's own clock since the trial started (the
                driver may record an epoch later: a worker waits for its answers only where
                the strategy prunes, and before a checkpoint).

samples/s = training rows x (epochs - 1) / (time of the last epoch end - time of the first epoch
end): the first epoch (worker start, data transfer, model build, warm-up) is excluded everywhere,
so the numbers are the steady-state cost of one epoch of training as each path runs it. The
overheads are the differences between consecutive rows; the ratio is path / minimal.

Settings: digits (1149 training rows of 64 pixels, MLP 2x256, batch 64) and a synthetic table
(50k rows x 50 features, 10 classes, 32k training rows, MLP 2x256, batch 256).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from benchlib import markdown_table, summary, write_results  # noqa: E402

SPLIT = {"validation": 0.2, "test": 0.2}
MLP = {"mlp.depth": 2, "mlp.width": 256, "mlp.dropout": 0.1, "mlp.norm": "none", "mlp.activation": "relu"}
TRAINING = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-5, "lr_schedule": "constant", "grad_clip": 0.0}
AUTOML_LAUNCH = ("import os, sys; n = int(os.environ['BENCH_THREADS']); os.cpu_count = lambda: n; "
                 "from automl.cli import main; main()")


def settings_for(quick: bool, work: Path) -> list[dict]:
    rows = 10_000 if quick else 50_000
    return [
        {"name": "digits MLP, batch 64", "data": {"source": "builtin", "name": "sklearn:digits"},
         "batch_size": 64, "epochs": 5 if quick else 30},
        {"name": f"synthetic {rows // 1000}k x 50 MLP, batch 256",
         "data": {"source": "npz", "path": str(synthetic(work / f"synthetic_{rows}.npz", rows)), "kind": "tabular"},
         "batch_size": 256, "epochs": 3 if quick else 10},
    ]


def synthetic(path: Path, rows: int, features: int = 50, classes: int = 10) -> Path:
    if not path.exists():
        rng = np.random.default_rng(0)
        X = rng.standard_normal((rows, features)).astype(np.float32)
        y = np.argmax(X @ rng.standard_normal((features, classes)) + 0.5 * rng.standard_normal((rows, classes)),
                      axis=1)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, X=X, y=y)
    return path


def config_of(setting: dict) -> dict:
    return {"family": "mlp", **TRAINING, "batch_size": setting["batch_size"], **MLP}


def steady_rate(rows: int, stamps: list[float]) -> float:
    """rows x (epochs - 1) / (last epoch end - first epoch end)."""
    return rows * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def load(setting: dict):
    from automl.data import load_data
    from automl.spec import BuiltinData, NpzData, SplitSpec

    source = setting["data"]
    data_spec = BuiltinData(**source) if source["source"] == "builtin" else NpzData(**source)
    return load_data(data_spec, SplitSpec(**SPLIT), task=None, seed=0)


def minimal(setting: dict, data, validate: bool = False) -> list[float]:
    """A hand-written loop; with `validate`, the loop a tuning objective is (Optuna's PyTorch example):
    after every epoch, accuracy on the validation rows in eval mode without gradients."""
    import torch
    from torch import nn

    from automl.families.mlp import MLPFamily
    from automl.training.trainer import family_params

    _, params = family_params(config_of(setting))
    torch.manual_seed(0)
    model = MLPFamily().build(params, data.profile)
    optimizer = torch.optim.Adam(model.parameters(), lr=TRAINING["lr"], weight_decay=TRAINING["weight_decay"])
    X, y = torch.as_tensor(data.X_train), torch.as_tensor(data.y_train, dtype=torch.long)
    X_val, y_val = torch.as_tensor(data.X_val), torch.as_tensor(data.y_val, dtype=torch.long)
    bs = setting["batch_size"]
    stamps = []
    model.train()
    for _ in range(setting["epochs"]):
        order = torch.randperm(len(X))
        for start in range(0, len(X), bs):
            index = order[start:start + bs]
            loss = nn.functional.cross_entropy(model(X[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if validate:
            model.eval()
            with torch.no_grad():
                float((model(X_val).argmax(dim=1) == y_val).float().mean())
            model.train()
        stamps.append(time.perf_counter())
    return stamps


def trainer_run(setting: dict, data, work: Path, *, checkpoint: str, logging: bool) -> list[float]:
    """`checkpoint`: "off" (no torch.save at all), "every epoch", or "policy" (automl's own)."""
    from automl.families.mlp import MLPFamily
    from automl.planning import build_space
    from automl.reporting.tensorboard import TensorBoardObserver
    from automl.spec import FamiliesSpec
    from automl.store import TrialStore
    from automl.training import trainer as trainer_module
    from automl.training.checkpoints import CHECKPOINT_INTERVAL_S, save_checkpoint
    from automl.training.trainer import TrainSettings, Trainer

    families = {"mlp": MLPFamily()}
    interval = 0.0 if checkpoint == "every epoch" else CHECKPOINT_INTERVAL_S
    trainer = Trainer(data, TrainSettings("accuracy", "maximize", ("accuracy",), "cpu", patience=None, seed=0,
                                          checkpoint_interval=interval), families)
    # the trainer's torch.save, and nothing else, switched off (or on) for this run
    trainer_module.save_checkpoint = (lambda *a, **k: None) if checkpoint == "off" else save_checkpoint
    tag = f"{checkpoint.replace(' ', '')}-{'log' if logging else 'nolog'}"
    folder = work / f"inproc-{tag}"
    if folder.exists():
        shutil.rmtree(folder)  # a fresh trial database and TensorBoard folder every time
    folder.mkdir(parents=True)
    config = config_of(setting)
    store = observer = None
    if logging:
        space = build_space(data.profile, families, ["mlp"], FamiliesSpec())
        store = TrialStore(folder / "trials.db")
        store.add_trial("t0", config, budget=setting["epochs"], family="mlp")
        store.start_trial("t0")
        observer = TensorBoardObserver(folder / "tensorboard", space, "accuracy", "maximize", ("accuracy",))
        observer.run_started({"families": ["mlp"]})
        observer.trial_started("t0", config, setting["epochs"])
    stamps: list[float] = []
    started = time.perf_counter()

    def report(epoch, metrics):
        if logging:
            store.add_epoch("t0", epoch, dict(metrics), time.perf_counter() - started)
            observer.epoch("t0", epoch, metrics)
        stamps.append(time.perf_counter())
        return False

    checkpoint_path = folder / "t0.pt"
    checkpoint_path.unlink(missing_ok=True)
    trainer.run("t0", config, setting["epochs"], checkpoint_path, report)
    if logging:
        observer.close()
        store.close()
    return stamps


def automl_run(setting: dict, work: Path, threads: int | None) -> dict:
    config = config_of(setting)
    run_dir = work / "automl-run"
    spec = {"name": "throughput", "seed": 0, "data": setting["data"], "metric": "accuracy", "split": SPLIT,
            "budget": {"max_trials": 1, "max_epochs": setting["epochs"], "patience": None},
            "strategy": {"name": "random"}, "refit": False, "ensemble": {"enabled": False},
            "families": {"include": ["mlp"], "overrides": {k: {"choices": [v]} for k, v in config.items()}},
            "execution": {"device": "cpu", "workers": 1}, "output": str(run_dir)}
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    args = ["run", str(spec_path), "--overwrite", "--quiet"]
    env = dict(os.environ)
    command = ["automl", *args]
    if threads:
        env["BENCH_THREADS"] = str(threads)
        # the worker's torch threads: automl counts usable cores by the affinity mask, which the patched
        # os.cpu_count of AUTOML_LAUNCH does not reach; without this the worker ran 2 threads, the rest 1
        env["OMP_NUM_THREADS"] = str(threads)
        command = [sys.executable, "-c", AUTOML_LAUNCH, *args]
    started = time.time()
    with open(work / "automl.log", "w") as log:
        proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.time() - started
    if proc.returncode != 0:
        raise RuntimeError(f"automl exited {proc.returncode}; see {work / 'automl.log'}")
    db = sqlite3.connect(f"file:{run_dir / 'trials.db'}?mode=ro", uri=True)
    stamps = [r[0] for r in db.execute("SELECT elapsed FROM epochs ORDER BY epoch")]
    config_run, started_at, finished_at, epochs = db.execute(
        "SELECT config, started_at, finished_at, epochs FROM trials").fetchone()
    db.close()
    assert json.loads(config_run) == config, f"automl ran another config: {config_run}"
    return {"stamps": stamps, "trial_s": finished_at - started_at, "wall_s": wall, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/throughput"))
    parser.add_argument("--threads", type=int, help="torch threads everywhere (default: what automl gives its one "
                                                    "worker, all cores)")
    parser.add_argument("--repeats", type=int, default=1, help="measure every path this many times (median kept)")
    parser.add_argument("--quick", action="store_true", help="5 / 3 epochs, a 10k-row table")
    args = parser.parse_args()
    args.out = args.out.resolve()  # the generated specs live elsewhere: a relative output would move with them
    import torch

    threads = args.threads or os.cpu_count() or 1  # automl: cpu_count // workers threads in its one worker
    torch.set_num_threads(threads)
    work = args.out / "work"
    results, rows = [], []
    for index, setting in enumerate(settings_for(args.quick, work)):
        data = load(setting)
        folder = work / f"setting{index}"
        folder.mkdir(parents=True, exist_ok=True)
        n = len(data.X_train)
        print(f"[throughput] {setting['name']}: {n} training rows, {setting['epochs']} epochs", flush=True)
        rates: dict[str, list[float]] = {}
        extra = {}
        for _ in range(args.repeats):
            rates.setdefault("minimal", []).append(steady_rate(n, minimal(setting, data)))
            rates.setdefault("minimal + validation", []).append(steady_rate(n, minimal(setting, data, True)))
            for path, checkpoint, logging in [("trainer", "off", False), ("+ckpt/epoch", "every epoch", False),
                                              ("+checkpoint", "policy", False), ("+logging", "policy", True)]:
                stamps = trainer_run(setting, data, folder, checkpoint=checkpoint, logging=logging)
                rates.setdefault(path, []).append(steady_rate(n, stamps))
            run = automl_run(setting, folder, args.threads)
            rates.setdefault("automl run", []).append(steady_rate(n, run["stamps"]))
            extra = {"automl_trial_s": run["trial_s"], "automl_wall_s": run["wall_s"],
                     "automl_whole_trial_samples_per_s": n * run["epochs"] / run["trial_s"]}
            print("[throughput]   " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rates.items()), flush=True)
        medians = {k: summary(v)["median"] for k, v in rates.items()}
        base, validated = medians["minimal"], medians["minimal + validation"]
        for path, rate in medians.items():
            per_epoch_ms = 1000 * n / rate
            rows.append([setting["name"], path, rate, rate / base, rate / validated, per_epoch_ms,
                         per_epoch_ms - 1000 * n / base])
        whole = extra["automl_whole_trial_samples_per_s"]
        rows.append([setting["name"], "automl run, whole trial (incl. 1st epoch, start)", whole, whole / base,
                     whole / validated, 1000 * extra["automl_trial_s"] / setting["epochs"], None])
        results.append({"setting": setting["name"], "data": setting["data"], "train_rows": n,
                        "batch_size": setting["batch_size"], "epochs": setting["epochs"], "config": config_of(setting),
                        "samples_per_s": rates, "median": medians, "ratio_to_minimal":
                        {k: v / base for k, v in medians.items()}, "ratio_to_minimal_with_validation":
                        {k: v / validated for k, v in medians.items()}, **extra})
    columns = ["setting", "path", "samples/s", "ratio to minimal", "ratio to minimal + validation", "ms per epoch",
               "ms per epoch over minimal"]
    notes = [
        f"torch threads: {threads} in every path ({'--threads' if args.threads else 'automl default: all cores for its one worker'}).",
        "samples/s over epochs 2..E (the first epoch and all start-up excluded); ms per epoch = training rows / rate.",
        "minimal + validation: the minimal loop plus, after each epoch, the validation rows' accuracy in eval mode "
        "without gradients: the least a tuning loop does (a score per epoch to report, prune and keep the best "
        "epoch by).",
        "trainer - minimal = per-epoch validation pass (+ metrics) and the copy of the best weights; "
        "+ckpt/epoch - trainer = an atomic torch.save every epoch (the policy before checkpoints by time, for "
        "reference); +checkpoint - trainer = the checkpoints automl writes (one per CHECKPOINT_INTERVAL_S s and "
        "at the end; the end's falls after the last stamp); +logging - +checkpoint = SQLite add_epoch "
        "(synchronous=NORMAL for epoch rows) and TensorBoard scalars; automl run - +logging = the worker process "
        "sending each epoch to the driver (it waits for the answer only where the strategy prunes; random "
        "here), against the in-process SQLite and TensorBoard writes of +logging, which the driver does meanwhile.",
        "'automl run, whole trial': training rows x epochs / (finished_at - started_at) of the trial: includes "
        "the first epoch, the model build, the final checkpoint and the worker's first touch of the data; not "
        "the worker's start (its imports and warm-up come before it reports the trial started).",
    ]
    write_results(args.out, "throughput", {"threads": threads, "quick": args.quick, "repeats": args.repeats,
                                           "settings": results},
                  [("Samples per second", markdown_table(columns, rows))], notes)
    print((args.out / "throughput.md").read_text())


if __name__ == "__main__":
    main()
