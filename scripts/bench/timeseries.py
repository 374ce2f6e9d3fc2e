"""Suite 6: small time-series classification sets, the agent against 1-NN and logistic regression.

    python scripts/bench/timeseries.py --out bench_results/timeseries [--work DIR] \
        [--datasets GunPoint ItalyPowerDemand ...] [--protocol init|holdout] [--max-time 100]
        [--max-trials N] [--max-epochs N] [--families rocket fcn ...] [--cv-folds 5]

The sets are the UCR/UEA archive files that the aeon package ships inside itself (`pip install aeon
--no-deps` is enough: the .ts files are read here, aeon is never imported, so its numba is not
needed). For each set, the official TRAIN file becomes an NPZ that the agent runs on. Protocol
"init" (the default) is a user's path: the spec `automl init train.npz --test test.npz` writes
(for these sizes: 5-fold cross-validation, 20 trials, 30 epochs, patience 8, strategy auto, the
families that suit), with --max-time added and any budget option given replacing init's.
Protocol "holdout" is a fixed spec: one validation split of 25 %, max 12 trials, 100 epochs,
patience 20 (or the options given), strategy auto, every family that suits. Both refit, ensemble
and fit the classical baselines; the exported model then predicts the
official TEST file (automl.final.predict.predict_file) and that accuracy is "ours", with "model used"
naming what `automl predict` chose on validation; "deep model" is the best deep model alone (--model
single). The TEST file is also the run's own test set (`data.test_path`), so every TRAIN row
trains or validates. The comparison sees the same
TRAIN/TEST files: 1-NN with Euclidean distance and logistic regression (scikit-learn defaults,
max_iter 5000) on the raw values, channels flattened. "1-NN-ED published" is the archive's own
figure (the UCR 2018 archive's table; none for multivariate BasicMotions): a check that the files
and the 1-NN here are the archive's.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from benchlib import markdown_table, write_results

DATASETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions")
# 1 - the 1-NN Euclidean error of the UCR 2018 archive's table
PUBLISHED_1NN_ED = {"GunPoint": 0.913, "ItalyPowerDemand": 0.955, "ArrowHead": 0.800, "OSULeaf": 0.521}


def aeon_data_dir() -> Path:
    spec = importlib.util.find_spec("aeon")  # finds the package without running its __init__ (numba)
    if spec is None or spec.origin is None:
        sys.exit("the data sets come from the aeon package: pip install aeon --no-deps")
    return Path(spec.origin).parent / "datasets" / "data"


def read_ts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An equal-length .ts file -> X (n, length, channels) float64 and y (n,) class labels as strings."""
    rows, labels, in_data = [], [], False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        rows.append([[float(v) for v in dim.split(",")] for dim in dims])
        labels.append(label.strip())
    return np.asarray(rows, dtype=np.float64).transpose(0, 2, 1), np.asarray(labels)


def load_set(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = aeon_data_dir() / name
    return (*read_ts(folder / f"{name}_TRAIN.ts"), *read_ts(folder / f"{name}_TEST.ts"))


def baselines(X_train, y_train, X_test, y_test) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    flat_train, flat_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    knn = KNeighborsClassifier(n_neighbors=1).fit(flat_train, y_train)
    logistic = LogisticRegression(max_iter=5000).fit(flat_train, y_train)
    return {"1nn": float((knn.predict(flat_test) == y_test).mean()),
            "logistic": float((logistic.predict(flat_test) == y_test).mean())}


def run_agent(name: str, X_train, y_train, X_test, y_test, folder: Path, args) -> dict:
    from automl.agent import Agent
    from automl.final.predict import predict_file
    from automl.spec import load_spec

    from automl.init_spec import draft_spec

    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", X=X_train, y=y_train)
    np.savez(folder / "test.npz", X=X_test, y=y_test)
    given = {key: value for key, value in (("max_trials", args.max_trials), ("max_epochs", args.max_epochs),
                                           ("patience", args.patience)) if value is not None}
    if args.protocol == "init":
        # the official TEST file is the run's test set (data.test_path): no TRAIN row is held out for it
        spec, _ = draft_spec(folder / "train.npz", test=folder / "test.npz", name=name)
        spec["budget"].update(given)
    else:
        spec = {"name": name, "split": {"validation": 0.25},
                "data": {"source": "npz", "path": "train.npz", "kind": "sequence", "test_path": "test.npz"},
                "budget": {"max_trials": 12, "max_epochs": 100, "patience": 20, **given}}
    spec.update(seed=args.seed, output="run", execution={"isolation": "threads"})
    spec["budget"]["max_time"] = args.max_time
    if args.cv_folds:
        spec["split"] = {"cv_folds": args.cv_folds}
    if args.families:
        spec["families"] = {"include": list(args.families)}
    (folder / "spec.json").write_text(json.dumps(spec))
    started = time.perf_counter()
    Agent(load_spec(folder / "spec.json")).run()
    wall = time.perf_counter() - started
    results = json.loads((folder / "run" / "results.json").read_text())
    scores = {}
    for which in ("default", "single"):
        predictions = predict_file(folder / "run", folder / "test.npz", which)["prediction"].astype(str).to_numpy()
        scores[which] = float((predictions == y_test).mean())
    facts = json.loads((folder / "run" / "model" / "model.json").read_text())
    model = facts.get("default")
    if model == "baseline":
        model = f"baseline: {facts['baseline']['title']}"
    return {"accuracy": scores["default"], "deep": scores["single"], "model": model, "wall_s": wall,
            "best_family": results["best"]["family"],
            "trials": results["trials"]["completed"] + results["trials"]["pruned"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the tables and raw results")
    parser.add_argument("--work", type=Path, default=None,
                        help="the NPZ files and run directories (default: a temporary folder)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--protocol", choices=("init", "holdout"), default="init",
                        help="init: the spec `automl init` writes; holdout: one 25 %% validation split")
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--max-time", type=float, default=100.0)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--families", nargs="*", default=None, help="only these families (default: the agent's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cv-folds", type=int, default=None,
                        help="k-fold cross-validation instead of one validation split (a few dozen series leave "
                             "a validation split of 8-16 rows, where every good trial ties)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="automl-timeseries-"))
    raw, rows = [], []
    for name in args.datasets:
        X_train, y_train, X_test, y_test = load_set(name)
        base = baselines(X_train, y_train, X_test, y_test)
        ours = run_agent(name, X_train, y_train, X_test, y_test, work / name, args)
        raw.append({"dataset": name, "train": len(X_train), "test": len(X_test), "length": X_train.shape[1],
                    "channels": X_train.shape[2], **base, "ours": ours})
        rows.append([name, len(X_train), len(X_test), X_train.shape[1], X_train.shape[2], ours["accuracy"],
                     ours["model"], ours["deep"], base["1nn"], base["logistic"], PUBLISHED_1NN_ED.get(name, "-"), ours["best_family"],
                     ours["trials"], round(ours["wall_s"])])
        print(f"{name}: ours {ours['accuracy']:.3f} ({ours['model']}; deep {ours['deep']:.3f})  1-NN {base['1nn']:.3f}  logistic {base['logistic']:.3f}  "
              f"({ours['best_family']}, {ours['wall_s']:.0f} s)", flush=True)
    columns = ["data set", "train", "test", "length", "channels", "ours", "model used", "deep model", "1-NN", "logistic", "1-NN-ED published",
               "best family", "trials", "agent s"]
    table = markdown_table(columns, rows)
    write_results(args.out, "timeseries", {"results": raw}, [("Accuracy on the official test files", table)])
    print(table)


if __name__ == "__main__":
    main()
