"""Suite 4: end to end on real training: automl vs KerasTuner vs Optuna under one wall-clock budget.

    python scripts/bench/end_to_end.py --out DIR --datasets digits breast_cancer --seeds 3 --budget 60 \
        [--target digits=0.97,breast_cancer=0.96] [--tools ...] [--threads N] [--quick]

Every tool gets, per (dataset, seed), the same data: `automl.data.load_data` with the split
validation 0.2 / test 0.2 and the seed, so train/validation/test rows are identical for all.
Each run is its own process (imports and state never leak between tools).

Tools and what they search (max 30 epochs per trial, early stopping patience 6 on the validation
accuracy everywhere; families: mlp on breast_cancer, mlp + cnn on digits):
  automl-auto / automl-bayesian / automl-random: `automl run` on a generated spec, max_time = budget,
      max_trials 100000, the agent's own space for the families (optimizer adam/adamw/sgd(/lbfgs on
      small tables), lr, momentum, nesterov, weight decay, batch size, lr schedule, grad clip, plus
      the family's parameters), processes isolation, TensorBoard, checkpoints, then refit + ensemble.
  optuna: the SAME space (built by automl.planning.build_space and translated to define-by-run
      suggest calls), the SAME torch models (automl's family `build`), the same optimizers and
      schedules (automl's make_optimizer / make_scheduler), in a plain torch loop written here
      (no checkpoints, no logging); TPESampler(seed), MedianPruner(5 startup trials, 3 warm-up
      epochs) on the per-epoch validation accuracy; study.optimize(timeout=budget). The best
      trial's best-epoch weights are kept in memory and scored on test (no refit).
  kerastuner: the same families written in Keras 3 on the torch backend (Dense MLP: depth 1-4,
      width 32-512 log, dropout 0-0.5, norm none/batch/layer, activation relu/gelu/silu; CNN on the
      8x8 digits: blocks 1-3, channels 16-128 log doubling per block, 1-2 convs per block, batch norm
      or none, dropout, head width 32-256 log); optimizer adam/adamw/sgd (momentum, nesterov), lr
      1e-4..3e-2 log, weight decay 1e-6..1e-2 log, batch 32-256. Not offered: L-BFGS, lr schedules,
      grad clipping. BayesianOptimizationOracle(seed, 10 initial points, like automl's bayesian).
      KerasTuner has no time budget: the oracle answers STOPPED once the deadline has passed and a
      callback stops the trial in flight at the first epoch end after it. Best model =
      tuner.get_best_models(1) (its best epoch, saved by KerasTuner), scored on test.

Budget: the clock of each tool starts when its search starts (automl: the run's started_at, so
its strategy set-up and worker start count against it; optuna/kerastuner: right before
optimize/search, after imports and data loading). A trial still running at the deadline is
stopped at its next epoch end and counts with its best epoch so far (automl does that itself;
implemented for optuna and kerastuner). `search_s` is the search time actually used; `wall_s` is
the whole process (imports, data, search, and for automl refit/ensemble/export/report).

Time to target: the test metric cannot steer anything, so the target is on VALIDATION accuracy
for every tool: the first time (seconds since the search started) at which a finished trial's
validation accuracy (best epoch) reached the target. Runs that never reach it count as "not
reached" (infinite) in the median.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from benchlib import markdown_table, plot, summary, write_results  # noqa: E402

DATASETS = {"digits": "sklearn:digits", "breast_cancer": "sklearn:breast_cancer"}
FAMILIES = {"digits": ("mlp", "cnn"), "breast_cancer": ("mlp",)}
DEFAULT_TARGETS = {"digits": 0.97, "breast_cancer": 0.96}
TOOLS = ("automl-auto", "automl-bayesian", "automl-random", "optuna", "kerastuner")
MAX_EPOCHS, PATIENCE = 30, 6
SPLIT = {"validation": 0.2, "test": 0.2}

# `automl run` with os.cpu_count() pinned: the agent gives its one worker cpu_count threads, and
# this is the only way to give it another number without touching the package
AUTOML_LAUNCH = ("import os, sys; n = int(os.environ['BENCH_THREADS']); os.cpu_count = lambda: n; "
                 "from automl.cli import main; main()")


# --- shared by the workers -------------------------------------------------------------------------

def load(dataset: str, seed: int):
    from automl.data import load_data
    from automl.spec import BuiltinData, SplitSpec

    return load_data(BuiltinData(source="builtin", name=DATASETS[dataset]), SplitSpec(**SPLIT), task=None, seed=seed)


def accuracy(y: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores, axis=1) == y))


def set_threads(threads: int | None) -> int:
    import torch

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


# --- optuna: automl's space and models, a plain torch loop ----------------------------------------

def run_optuna(dataset: str, seed: int, budget: float, threads: int | None) -> dict:
    import optuna
    import torch
    from torch import nn

    from automl.families.cnn import CNNFamily
    from automl.families.mlp import MLPFamily
    from automl.planning import build_space
    from automl.space import Choice, Float, Int
    from automl.spec import FamiliesSpec
    from automl.training.optim import make_optimizer, make_scheduler
    from automl.training.trainer import family_params

    set_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load(dataset, seed)
    profile = data.profile
    families = {"mlp": MLPFamily(), "cnn": CNNFamily()}
    chosen = list(FAMILIES[dataset])
    space = build_space(profile, {n: families[n] for n in chosen}, chosen, FamiliesSpec())
    X_tr, y_tr = torch.as_tensor(data.X_train), torch.as_tensor(data.y_train)
    X_va, X_te = torch.as_tensor(data.X_val), torch.as_tensor(data.X_test)
    y_va = torch.as_tensor(data.y_val)

    def suggest(trial) -> dict:
        config: dict = {}
        for p in space.params:
            if p.condition is not None and not p.condition.holds(config):  # inactive: never suggested
                continue
            if isinstance(p, Choice):
                config[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif isinstance(p, Int):
                config[p.name] = trial.suggest_int(p.name, p.low, p.high, log=p.log)
            elif isinstance(p, Float):
                config[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
        return config

    @torch.no_grad()
    def predict(model, X):
        model.eval()
        return model(X)

    best = {"value": -math.inf, "state": None, "config": None}
    trace: list[tuple[float, float | None]] = []
    t0 = time.monotonic()
    deadline = t0 + budget

    def objective(trial):
        config = suggest(trial)
        family, params = family_params(config)
        torch.manual_seed(seed * 100_003 + trial.number)
        model = families[family].build(params, profile)
        optimizer = make_optimizer(model, config)
        lbfgs = config["optimizer"] == "lbfgs"
        bs = int(config["batch_size"])
        batches = 1 if lbfgs else max(1, math.ceil(len(X_tr) / bs))
        scheduler = make_scheduler(optimizer, config, MAX_EPOCHS, batches)
        per_batch = isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
        clip = float(config.get("grad_clip", 0.0))
        value, val_loss, state, bad = -math.inf, math.inf, None, 0
        for epoch in range(1, MAX_EPOCHS + 1):
            model.train()
            if lbfgs:
                def closure():
                    optimizer.zero_grad(set_to_none=True)
                    loss = nn.functional.cross_entropy(model(X_tr), y_tr)
                    loss.backward()
                    return loss
                optimizer.step(closure)
            else:
                order = torch.randperm(len(X_tr))
                for start in range(0, len(order), bs):
                    index = order[start:start + bs]
                    if len(index) < 2:
                        continue
                    loss = nn.functional.cross_entropy(model(X_tr[index]), y_tr[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if clip > 0:
                        nn.utils.clip_grad_norm_(model.parameters(), clip)
                    optimizer.step()
                    if per_batch:
                        scheduler.step()
            if scheduler is not None and not per_batch:
                scheduler.step()
            out = predict(model, X_va)
            acc = float((out.argmax(1) == y_va).float().mean())
            vloss = float(nn.functional.cross_entropy(out, y_va))
            if not math.isfinite(vloss):
                break
            if (acc, -vloss) > (value, -val_loss):
                value, val_loss, bad = acc, vloss, 0
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            trial.report(acc, epoch)
            if time.monotonic() >= deadline:  # stopped by the budget: counts with its best epoch
                break
            if trial.should_prune():
                raise optuna.TrialPruned()
            if bad >= PATIENCE:
                break
        if state is None:
            raise optuna.TrialPruned()  # never a finite validation score
        if value > best["value"]:
            best.update(value=value, state=state, config=config)
        return value

    def on_trial_end(study, frozen):
        trace.append((time.monotonic() - t0, frozen.value if frozen.state == optuna.trial.TrialState.COMPLETE
                      else None))

    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3))
    study.optimize(objective, timeout=budget, callbacks=[on_trial_end], catch=(RuntimeError, ValueError))
    search_s = time.monotonic() - t0
    family, params = family_params(best["config"])
    model = families[family].build(params, profile)
    model.load_state_dict(best["state"])
    states = [t.state for t in study.trials]
    return {"val_acc": accuracy(data.y_val, predict(model, X_va).numpy()),
            "test_acc": accuracy(data.y_test, predict(model, X_te).numpy()),
            "test_acc_search_model": None, "search_s": search_s, "trace": trace,
            "trials_finished": sum(s == optuna.trial.TrialState.COMPLETE for s in states)
            + sum(s == optuna.trial.TrialState.PRUNED for s in states),
            "trials_pruned": sum(s == optuna.trial.TrialState.PRUNED for s in states),
            "best_config": best["config"]}


# --- kerastuner: the same families in Keras 3 on the torch backend --------------------------------

def run_kerastuner(dataset: str, seed: int, budget: float, threads: int | None, workdir: Path) -> dict:
    os.environ["KERAS_BACKEND"] = "torch"
    set_threads(threads)
    import keras
    import keras_tuner as kt

    keras.utils.set_random_seed(seed)
    data = load(dataset, seed)
    profile = data.profile
    n_classes = profile.n_classes

    def images(X):  # automl's (n, C, H, W) to Keras' channels-last (n, H, W, C)
        return np.ascontiguousarray(np.transpose(X, (0, 2, 3, 1))) if X.ndim == 4 else X

    X_tr, X_va, X_te = images(data.X_train), images(data.X_val), images(data.X_test)
    y_tr, y_va = data.y_train, data.y_val
    chosen = list(FAMILIES[dataset])
    smallest = min(profile.input_shape[1:]) if len(profile.input_shape) == 3 else 0
    max_blocks = max(1, min(4, int(math.log2(max(smallest, 2))))) if smallest else 1

    class HyperNet(kt.HyperModel):
        def build(self, hp):
            family = hp.Choice("family", chosen)
            inputs = keras.Input(X_tr.shape[1:])
            x = inputs
            if family == "mlp":
                with hp.conditional_scope("family", ["mlp"]):
                    depth = hp.Int("mlp.depth", 1, 4)
                    width = hp.Int("mlp.width", 32, 512, sampling="log")
                    dropout = hp.Float("mlp.dropout", 0.0, 0.5)
                    norm = hp.Choice("mlp.norm", ["none", "batch", "layer"])
                    activation = hp.Choice("mlp.activation", ["relu", "gelu", "silu"])
                x = keras.layers.Flatten()(x)
                for _ in range(depth):
                    x = keras.layers.Dense(width)(x)
                    if norm == "batch":
                        x = keras.layers.BatchNormalization()(x)
                    elif norm == "layer":
                        x = keras.layers.LayerNormalization()(x)
                    x = keras.layers.Activation(activation)(x)
                    if dropout > 0:
                        x = keras.layers.Dropout(dropout)(x)
            else:
                with hp.conditional_scope("family", ["cnn"]):
                    blocks = hp.Int("cnn.blocks", 1, max_blocks)
                    channels = hp.Int("cnn.channels", 16, 128, sampling="log")
                    convs = hp.Choice("cnn.convs_per_block", [1, 2])
                    norm = hp.Choice("cnn.norm", ["none", "batch"])
                    activation = hp.Choice("cnn.activation", ["relu", "gelu", "silu"])
                    dropout = hp.Float("cnn.dropout", 0.0, 0.5)
                    head = hp.Int("cnn.head_width", 32, 256, sampling="log")
                size = smallest
                for block in range(blocks):
                    for _ in range(convs):
                        x = keras.layers.Conv2D(channels * 2 ** block, 3, padding="same", use_bias=norm == "none")(x)
                        if norm == "batch":
                            x = keras.layers.BatchNormalization()(x)
                        x = keras.layers.Activation(activation)(x)
                    if size >= 2:
                        x = keras.layers.MaxPooling2D(2)(x)
                        size //= 2
                x = keras.layers.GlobalAveragePooling2D()(x)
                if dropout > 0:
                    x = keras.layers.Dropout(dropout)(x)
                x = keras.layers.Dense(head, activation=activation)(x)
            outputs = keras.layers.Dense(n_classes)(x)
            model = keras.Model(inputs, outputs)
            name = hp.Choice("optimizer", ["adam", "adamw", "sgd"])
            lr = hp.Float("lr", 1e-4, 3e-2, sampling="log")
            wd = hp.Float("weight_decay", 1e-6, 1e-2, sampling="log")
            if name == "sgd":
                with hp.conditional_scope("optimizer", ["sgd"]):
                    momentum = hp.Float("momentum", 0.5, 0.99)
                    nesterov = hp.Boolean("nesterov")
                optimizer = keras.optimizers.SGD(lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
            elif name == "adam":
                optimizer = keras.optimizers.Adam(lr, weight_decay=wd)
            else:
                optimizer = keras.optimizers.AdamW(lr, weight_decay=wd)
            model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
            return model

        def fit(self, hp, model, *args, **kwargs):
            return model.fit(*args, batch_size=hp.Choice("batch_size", [32, 64, 128, 256]), **kwargs)

    t0 = time.monotonic()
    deadline = t0 + budget
    trace: list[tuple[float, float | None]] = []

    class DeadlineOracle(kt.oracles.BayesianOptimizationOracle):
        def populate_space(self, trial_id):
            if time.monotonic() >= deadline:
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            return super().populate_space(trial_id)

    class StopAtDeadline(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if time.monotonic() >= deadline:
                self.model.stop_training = True

    class TimedTuner(kt.Tuner):
        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            score = self.oracle.get_trial(trial.trial_id).score
            trace.append((time.monotonic() - t0, float(score) if score is not None else None))

    oracle = DeadlineOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=100000, seed=seed,
                            num_initial_points=10)
    tuner = TimedTuner(oracle=oracle, hypermodel=HyperNet(), directory=str(workdir), project_name="kt",
                       overwrite=True)
    t0 = time.monotonic()
    deadline = t0 + budget
    tuner.search(X_tr, y_tr, validation_data=(X_va, y_va), epochs=MAX_EPOCHS, verbose=0, callbacks=[
        keras.callbacks.EarlyStopping("val_accuracy", mode="max", patience=PATIENCE), StopAtDeadline()])
    search_s = time.monotonic() - t0
    model = tuner.get_best_models(1)[0]
    best_hp = tuner.get_best_hyperparameters(1)[0].values
    trials = list(tuner.oracle.trials.values())
    return {"val_acc": accuracy(data.y_val, model.predict(X_va, verbose=0)),
            "test_acc": accuracy(data.y_test, model.predict(X_te, verbose=0)),
            "test_acc_search_model": None, "search_s": search_s, "trace": trace,
            "trials_finished": sum(t.score is not None for t in trials), "trials_pruned": 0,
            "best_config": best_hp}


# --- automl: the CLI, read back from the run directory ----------------------------------------------

def run_automl(strategy: str, dataset: str, seed: int, budget: float, threads: int | None, workdir: Path) -> dict:
    import sqlite3

    run_dir = workdir / "run"
    spec = {"name": f"{dataset}-{strategy}-{seed}", "seed": seed,
            "data": {"source": "builtin", "name": DATASETS[dataset]}, "metric": "accuracy", "split": SPLIT,
            "budget": {"max_trials": 100000, "max_time": budget, "max_epochs": MAX_EPOCHS, "patience": PATIENCE},
            "strategy": {"name": strategy}, "families": {"include": list(FAMILIES[dataset])},
            "execution": {"device": "cpu", "workers": 1}, "output": str(run_dir)}
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    args = ["run", str(spec_path), "--overwrite", "--quiet"]
    env = dict(os.environ)
    if threads:
        env["BENCH_THREADS"] = str(threads)
        command = [sys.executable, "-c", AUTOML_LAUNCH, *args]
    else:
        command = ["automl", *args]
    with open(workdir / "automl.log", "w") as log:
        proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"automl exited {proc.returncode}; see {workdir / 'automl.log'}")
    results = json.loads((run_dir / "results.json").read_text())
    db = sqlite3.connect(f"file:{run_dir / 'trials.db'}?mode=ro", uri=True)
    start = json.loads(db.execute("SELECT value FROM meta WHERE key='run'").fetchone()[0])["started_at"]
    rows = db.execute("SELECT status, metrics, finished_at FROM trials WHERE finished_at IS NOT NULL "
                      "ORDER BY finished_at").fetchall()
    db.close()
    trace = []
    for status, metrics, finished in rows:
        value = json.loads(metrics).get("accuracy") if status in ("COMPLETE", "PRUNED") else None
        trace.append((finished - start, value))
    counts = results["trials"]
    return {"val_acc": results["best"]["val"]["accuracy"], "test_acc": results["test"]["accuracy"],
            "test_acc_search_model": results["models"]["search"]["test"]["accuracy"],
            "default_model": results["default_model"], "search_s": results["duration_s"], "trace": trace,
            "trials_finished": counts.get("completed", 0) + counts.get("pruned", 0),
            "trials_pruned": counts.get("pruned", 0), "best_config": results["best"]["config"],
            "stopped_because": results["stopped_because"]}


# --- the driver ---------------------------------------------------------------------------------------

def worker_main(args) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.worker == "optuna":
        result = run_optuna(args.dataset, args.seed, args.budget, args.threads)
    elif args.worker == "kerastuner":
        result = run_kerastuner(args.dataset, args.seed, args.budget, args.threads, workdir / "kt")
    else:
        raise SystemExit(f"unknown worker {args.worker}")
    (workdir / "result.json").write_text(json.dumps(result, default=str))


def run_one(tool: str, dataset: str, seed: int, budget: float, threads: int | None, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if tool.startswith("automl-"):
        result = run_automl(tool.split("-", 1)[1], dataset, seed, budget, threads, workdir)
    else:
        command = [sys.executable, __file__, "--worker", tool, "--dataset", dataset, "--seed", str(seed),
                   "--budget", str(budget), "--workdir", str(workdir)] + (["--threads", str(threads)] if threads else [])
        with open(workdir / "worker.log", "w") as log:
            proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} exited {proc.returncode}; see {workdir / 'worker.log'}")
        result = json.loads((workdir / "result.json").read_text())
    result["wall_s"] = time.time() - started
    if result.get("test_acc_search_model") is None:
        result["test_acc_search_model"] = result["test_acc"]
    return result


def time_to_target(trace, target: float) -> float:
    for t, value in trace:
        if value is not None and value >= target - 1e-12:
            return float(t)
    return math.inf


def best_so_far(trace) -> list[tuple[float, float]]:
    out, best = [], -math.inf
    for t, value in trace:
        if value is not None and value > best:
            best = value
            out.append((float(t), value))
    return out


def parse_targets(text: str | None) -> dict[str, float]:
    targets = dict(DEFAULT_TARGETS)
    for item in (text or "").split(","):
        if item.strip():
            name, value = item.split("=")
            targets[name.strip()] = float(value)
    return targets


def median_ttt(values: list[float]) -> float | None:
    """Median with 'not reached' as +inf; None when the median itself is not reached."""
    median = float(np.median(values)) if values else math.inf
    return median if math.isfinite(median) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/end_to_end"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds of search per tool and run")
    parser.add_argument("--target", help="validation accuracy targets, e.g. digits=0.97,breast_cancer=0.96")
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    parser.add_argument("--threads", type=int, help="torch threads for every tool (default: each tool's own, "
                                                    "i.e. all cores)")
    parser.add_argument("--quick", action="store_true", help="first dataset, 1 seed, 15 s: checks that it works")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = args.out.resolve()  # the generated specs live elsewhere: a relative output would move with them
    if args.worker:
        return worker_main(args)
    if args.quick:
        args.datasets, args.seeds, args.budget = args.datasets[:1], 1, 15.0
    targets = parse_targets(args.target)
    work = args.out / "work"
    runs = []
    for dataset in args.datasets:
        for seed in range(args.seeds):
            for tool in args.tools:
                print(f"[end_to_end] {dataset} seed {seed}: {tool} ({args.budget:g} s)", flush=True)
                try:
                    result = run_one(tool, dataset, seed, args.budget, args.threads,
                                     work / f"{dataset}-{seed}-{tool}")
                    error = None
                except Exception as exc:  # one broken run must not lose the others
                    result, error = {}, str(exc)
                    print(f"[end_to_end]   failed: {error}", flush=True)
                runs.append({"tool": tool, "dataset": dataset, "seed": seed, "budget": args.budget,
                             "target": targets[dataset], "error": error, **result,
                             "time_to_target": time_to_target(result.get("trace", []), targets[dataset])
                             if not error else None})
                if not error:
                    print(f"[end_to_end]   val {result['val_acc']:.4f} test {result['test_acc']:.4f} "
                          f"trials {result['trials_finished']} search {result['search_s']:.1f}s "
                          f"wall {result['wall_s']:.1f}s", flush=True)
    report(args, targets, runs)


def report(args, targets, runs) -> None:
    rows, aggregate = [], []
    for dataset in args.datasets:
        for tool in args.tools:
            ok = [r for r in runs if r["dataset"] == dataset and r["tool"] == tool and not r["error"]]
            failed = sum(1 for r in runs if r["dataset"] == dataset and r["tool"] == tool and r["error"])
            if not ok:
                rows.append([dataset, tool, None, None, None, None, None, None, "—", None, None, failed])
                continue
            test = [r["test_acc"] for r in ok]
            ttt = [r["time_to_target"] for r in ok]
            entry = {"dataset": dataset, "tool": tool, "runs": len(ok), "failed": failed,
                     "test_acc": summary(test), "test_min": min(test), "test_max": max(test),
                     "test_acc_search_model": summary(r["test_acc_search_model"] for r in ok),
                     "val_acc": summary(r["val_acc"] for r in ok),
                     "trials_finished": summary(r["trials_finished"] for r in ok),
                     "time_to_target_median": median_ttt(ttt), "reached": sum(math.isfinite(t) for t in ttt),
                     "search_s": summary(r["search_s"] for r in ok), "wall_s": summary(r["wall_s"] for r in ok)}
            aggregate.append(entry)
            rows.append([dataset, tool, entry["test_acc"]["median"], f"{min(test):.4f}–{max(test):.4f}",
                         entry["test_acc_search_model"]["median"], entry["val_acc"]["median"],
                         entry["trials_finished"]["median"], entry["time_to_target_median"],
                         f"{entry['reached']}/{len(ok)}", entry["search_s"]["median"], entry["wall_s"]["median"],
                         failed])
    columns = ["dataset", "tool", "test acc (median)", "test min–max", "test, best search model", "val acc",
               "trials", "time to target s (median)", "reached", "search s", "wall s", "failed"]
    budget_note = (f"Budget {args.budget:g} s of search per run, {args.seeds} seed(s); targets on validation "
                   f"accuracy: {', '.join(f'{d} {targets[d]:g}' for d in args.datasets)}.")
    notes = [
        budget_note,
        "Same rows for every tool: automl.data.load_data, split validation 0.2 / test 0.2, seed = run seed.",
        "Families: mlp for breast_cancer, mlp + cnn for digits, for every tool (automl's include list).",
        "test acc: the model the tool hands over (automl: its default model, refit or ensemble when they beat "
        "the single model on validation; optuna, kerastuner: the best trial's best epoch). 'test, best search "
        "model': the best trial's own model for every tool (like for like).",
        "time to target: seconds from the search's start to the first finished trial whose validation accuracy "
        "(best epoch) reached the target; 'not reached' counts as infinite, and a median that is not reached "
        "shows as —.",
        "search s: search time used (automl: its loop's elapsed time; others: optimize/search call); a trial "
        "running at the deadline is stopped at its next epoch end. wall s: the whole process, with imports, "
        "data loading and, for automl, refit, ensemble, export and report.",
        f"torch threads: {args.threads or 'each tool’s default (all cores)'}.",
    ]
    per_run = markdown_table(["dataset", "seed", "tool", "test", "val", "trials", "time to target s", "search s",
                              "wall s", "error"],
                             [[r["dataset"], r["seed"], r["tool"], r.get("test_acc"), r.get("val_acc"),
                               r.get("trials_finished"),
                               (r["time_to_target"] if r.get("time_to_target") is not None
                                and math.isfinite(r["time_to_target"]) else "not reached"),
                               r.get("search_s"), r.get("wall_s"), (r["error"] or "")[:80]] for r in runs])
    raw = {"settings": {"datasets": args.datasets, "seeds": args.seeds, "budget": args.budget, "targets": targets,
                        "tools": args.tools, "threads": args.threads, "max_epochs": MAX_EPOCHS,
                        "patience": PATIENCE, "split": SPLIT, "families": FAMILIES},
           "aggregate": aggregate,
           "runs": [{**r, "time_to_target": (r["time_to_target"] if r.get("time_to_target") is not None
                                             and math.isfinite(r["time_to_target"]) else None)} for r in runs]}
    write_results(args.out, "end_to_end", raw, [("Per dataset and tool", markdown_table(columns, rows)),
                                                ("Every run", per_run)], notes)
    plot(args.out / "end_to_end.png", lambda plt: draw(plt, args, targets, runs))
    print((args.out / "end_to_end.md").read_text())


def draw(plt, args, targets, runs):
    fig, axes = plt.subplots(1, len(args.datasets), figsize=(6 * len(args.datasets), 4), squeeze=False)
    colors = dict(zip(TOOLS, ("tab:purple", "tab:blue", "tab:cyan", "tab:orange", "tab:green")))
    for ax, dataset in zip(axes[0], args.datasets):
        for tool in args.tools:
            for i, r in enumerate(r for r in runs if r["dataset"] == dataset and r["tool"] == tool and not r["error"]):
                curve = best_so_far(r["trace"])
                if not curve:
                    continue
                xs = [t for t, _ in curve] + [r["search_s"]]
                ys = [v for _, v in curve] + [curve[-1][1]]
                ax.step(xs, ys, where="post", color=colors[tool], alpha=0.8, label=tool if i == 0 else None)
                ax.plot(xs[:-1], ys[:-1], "o", color=colors[tool], markersize=3, alpha=0.8)  # improvements
        ax.axhline(targets[dataset], color="grey", linestyle=":", label="target")
        ax.set_title(f"{dataset}: best validation accuracy so far")
        ax.set_xlim(left=0)
        ax.set_xlabel("seconds since the search started")
        ax.set_ylabel("validation accuracy")
        ax.legend(loc="best", fontsize=8)
    return fig


if __name__ == "__main__":
    main()
