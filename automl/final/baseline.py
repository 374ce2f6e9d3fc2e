"""Baselines: simple scikit-learn models fit on the training rows the trials use and scored on
the same validation and test rows, so that a run says what the deep search bought over them.

Tables get a linear model (logistic regression / ridge) and, when cheap, histogram gradient
boosting; sequences a 1-nearest-neighbour (Euclidean, on the flattened sequence), ROCKET (10,000
fixed random convolution kernels, Dempster et al. 2020) with a ridge model whose penalty is chosen
by leave-one-out, and a linear model; small images a linear model on the pixels; text a linear model on bag-of-words counts.
Each sees the preprocessed inputs the deep models see. The cost is bounded: above the caps
below a baseline trains on a random subsample of the training rows, or is skipped, and says so.
With cross-validation its validation score is the mean over the same folds as the trials'.
When the deep model is refit on the training and validation rows, so is the saved baseline
(after its validation score was taken), and its test score is the refit model's.

The best storable baseline on validation is saved as data, never as code: its arrays in
model/baseline.npz (read with allow_pickle=False: coefficients for a linear model, the
training rows for 1-NN; ROCKET's kernels come from a fixed seed and are rebuilt) and its facts in model/model.json. Gradient boosting cannot be stored
without pickle, so it is scored and reported but never saved.
"""
from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automl.data.base import PreparedData
from automl.execution.slots import usable_cores
from automl.files import finite_number
from automl.metrics import METRICS, compute_metrics
from automl.training.metrics import to_loss

log = logging.getLogger(__name__)

MAX_ROWS = 50_000  # training rows any baseline sees
MAX_CELLS = 10_000_000  # training rows x inputs per row for a linear model
MAX_FLAT_INPUTS = 4_096  # images and sequences with more values per sample get no baseline
MAX_VOCAB = 50_000  # text: bag-of-words columns
BOOST_MAX_CELLS = 2_000_000  # training rows x features x trees per round for gradient boosting
NEIGHBOUR_MAX_CELLS = 2_000_000  # stored training rows x inputs for 1-NN (8 MB of float32)
NEIGHBOUR_MAX_WORK = 10_000_000_000  # query rows x stored rows x inputs for 1-NN
LINEAR_ITERATIONS = 300
ROCKET_KERNELS = 10_000  # the paper's default: 20,000 features (PPV and max of each kernel)
ROCKET_MAX_TRAIN = 2_000  # training rows: ROCKET's closed-form head is for few series; more are subsampled
ROCKET_MAX_SCORED = 20_000  # validation + test rows whose features are computed; above it, no ROCKET
RIDGE_ALPHAS = np.logspace(-3, 3, 10)  # the paper's grid, chosen by leave-one-out
PREDICT_CHUNK = 4_096  # rows `automl predict` applies a baseline to at once (ROCKET: 80 MB of features)
FILE = "baseline.npz"
TITLES = {"logistic_regression": "logistic regression", "ridge": "ridge regression",
          "gradient_boosting": "histogram gradient boosting", "nearest_neighbour": "1-nearest-neighbour",
          "rocket_ridge": "ROCKET kernels + ridge"}


@dataclass(frozen=True)
class Candidate:
    name: str  # a key of TITLES
    kind: str  # "linear" | "boosting" | "nearest"
    inputs: str  # "flat": the inputs flattened | "words": bag-of-words of token ids | "rocket": kernel features


def candidates(data: PreparedData) -> tuple[list[Candidate], str | None]:
    """The baselines suited to the data, and why there is none when there is none."""
    profile = data.profile
    linear = "logistic_regression" if profile.task == "classification" else "ridge"
    if profile.modality == "tabular":
        return [Candidate(linear, "linear", "flat"), Candidate("gradient_boosting", "boosting", "flat")], None
    if profile.modality == "text":
        if (profile.vocab_size or 0) > MAX_VOCAB:
            return [], f"no baseline: a vocabulary of {profile.vocab_size} words (over {MAX_VOCAB})"
        return [Candidate(linear, "linear", "words")], None
    inputs = math.prod(profile.input_shape)
    if inputs > MAX_FLAT_INPUTS:
        return [], f"no baseline: {inputs} values per sample (over {MAX_FLAT_INPUTS})"
    if profile.modality == "sequence":
        found = [Candidate("nearest_neighbour", "nearest", "flat"), Candidate(linear, "linear", "flat")]
        if len(data.X_val) + len(data.X_test) <= ROCKET_MAX_SCORED:
            # first: on a tie on validation (small sets) the first listed is kept, and ROCKET is the
            # strongest of the three on the UCR archive (Dempster et al. 2020)
            found.insert(0, Candidate("rocket_ridge", "linear", "rocket"))
        return found, None
    return [Candidate(linear, "linear", "flat")], None


# -- inputs and outputs: shared by the run and by `automl predict`, so both compute the same ------
def model_inputs(X: np.ndarray, inputs: str, vocab_size: int | None = None):
    """What a baseline reads: the flattened inputs, log(1 + word counts) of token ids (sparse), or
    ROCKET's features of (n, steps, channels) sequences."""
    if inputs == "rocket":
        return rocket_features(X)
    if inputs == "words":
        from scipy import sparse

        ids = np.asarray(X, dtype=np.int64).reshape(len(X), -1)
        rows = np.repeat(np.arange(len(ids)), ids.shape[1])
        cols = ids.reshape(-1)
        keep = (cols > 0) & (cols < int(vocab_size or 0))  # id 0 is padding
        counts = sparse.csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])),
                                   shape=(len(ids), int(vocab_size or 0)))  # duplicates are summed
        counts.data = np.log1p(counts.data)
        return counts
    return np.asarray(X, dtype=np.float32).reshape(len(X), -1)


def rocket_features(X: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(n, steps, channels) -> (n, 2 * ROCKET_KERNELS) float32: the kernels of the `rocket` family,
    drawn from its fixed seed, so the run and `automl predict` compute the same features."""
    import torch

    from automl.families.networks import RandomKernels

    X = np.asarray(X, dtype=np.float32)
    kernels = RandomKernels(X.shape[1], X.shape[2], ROCKET_KERNELS)
    with torch.no_grad():
        parts = [kernels(torch.from_numpy(X[i:i + chunk])).numpy() for i in range(0, len(X), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, kernels.features), np.float32)


def outputs(kind: str, arrays: Mapping[str, np.ndarray], Z, task: str, n_classes: int) -> np.ndarray:
    """Class probabilities (n, n_classes) or predictions (n,) of a saved baseline."""
    if kind == "linear":
        z = np.asarray(Z @ arrays["coef"].T) + arrays["intercept"]
        if task == "regression":
            return z[:, 0]
        if z.shape[1] == 1:  # binary: one decision function, as scikit-learn stores it
            positive = 1.0 / (1.0 + np.exp(-z[:, 0]))
            proba = np.column_stack([1.0 - positive, positive])
        else:
            z = z - z.max(axis=1, keepdims=True)
            proba = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return _all_classes(proba, arrays["classes"], n_classes)
    if kind == "nearest":
        nearest = _nearest(np.asarray(Z, dtype=np.float64), arrays["X"].astype(np.float64))
        picked = arrays["y"][nearest]
        if task == "regression":
            return picked.astype(np.float64)
        return np.eye(n_classes)[picked]
    raise ValueError(f"a baseline of kind {kind!r} cannot be applied")


def _all_classes(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over every class of the task: one the training rows lacked gets 0."""
    out = np.zeros((len(proba), n_classes))
    out[:, np.asarray(classes, dtype=np.int64)] = proba
    return out


def _nearest(queries: np.ndarray, train: np.ndarray, chunk: int = 1024) -> np.ndarray:
    norms = (train ** 2).sum(axis=1)
    found = [np.argmin(norms[None, :] - 2.0 * queries[i:i + chunk] @ train.T, axis=1)
             for i in range(0, len(queries), chunk)]
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


# -- fitting ----------------------------------------------------------------------------------
class _Skip(Exception):
    """This baseline does not apply to these rows (the reason is reported)."""


@dataclass
class Fitted:
    candidate: Candidate
    arrays: dict[str, np.ndarray] | None  # what is saved; None: gradient boosting, never saved
    estimator: Any = None

    def outputs(self, Z, task: str, n_classes: int) -> np.ndarray:
        if self.arrays is not None:
            return outputs(self.candidate.kind, self.arrays, Z, task, n_classes)
        if task == "regression":
            return self.estimator.predict(Z).astype(np.float64)
        return _all_classes(self.estimator.predict_proba(Z), self.estimator.classes_, n_classes)


def _fit(candidate: Candidate, Z, y: np.ndarray, task: str, seed: int) -> Fitted:
    classification = task == "classification"
    if classification and len(np.unique(y)) < 2:
        raise _Skip("the training rows hold a single class")
    if candidate.kind == "nearest":
        return Fitted(candidate, {"X": np.asarray(Z, dtype=np.float32), "y": np.asarray(y)})
    if candidate.kind == "boosting":
        from sklearn import ensemble

        cls = ensemble.HistGradientBoostingClassifier if classification else ensemble.HistGradientBoostingRegressor
        return Fitted(candidate, None, cls(random_state=seed).fit(Z, y))
    from sklearn.linear_model import LogisticRegression, Ridge

    if candidate.inputs == "rocket":
        return _fit_ridge_cv(candidate, Z, y, classification)
    if classification:
        model = LogisticRegression(max_iter=LINEAR_ITERATIONS).fit(Z, y)
        return Fitted(candidate, {"coef": model.coef_, "intercept": model.intercept_,
                                  "classes": model.classes_.astype(np.int64)})
    model = Ridge(alpha=1.0).fit(Z, y)
    return Fitted(candidate, {"coef": np.atleast_2d(model.coef_), "intercept": np.atleast_1d(model.intercept_)})


def _fit_ridge_cv(candidate: Candidate, Z: np.ndarray, y: np.ndarray, classification: bool) -> Fitted:
    """Ridge on standardised features, its penalty chosen by leave-one-out (scikit-learn's efficient
    form), as ROCKET's authors fit it; the standardisation is folded into the saved coefficients."""
    from sklearn.linear_model import RidgeClassifierCV, RidgeCV

    mean, scale = Z.mean(axis=0), Z.std(axis=0)
    scale[scale == 0] = 1.0
    model = (RidgeClassifierCV if classification else RidgeCV)(alphas=RIDGE_ALPHAS).fit((Z - mean) / scale, y)
    coef = np.atleast_2d(model.coef_) / scale
    intercept = np.atleast_1d(model.intercept_) - coef @ mean
    arrays = {"coef": coef, "intercept": intercept}
    if classification:
        arrays["classes"] = model.classes_.astype(np.int64)
    return Fitted(candidate, arrays)


def _row_cap(candidate: Candidate, data: PreparedData) -> int:
    """The most training rows this baseline may use."""
    profile = data.profile
    per_row = max(1, math.prod(profile.input_shape) if candidate.inputs == "flat" else profile.input_shape[0])
    if candidate.kind == "boosting":
        trees = profile.n_classes if (profile.n_classes or 0) > 2 else 1
        return min(MAX_ROWS, BOOST_MAX_CELLS // (per_row * trees))
    if candidate.inputs == "rocket":
        return ROCKET_MAX_TRAIN
    if candidate.kind == "nearest":
        queries = max(1, (len(data.X_train) if data.cv else len(data.X_val)) + len(data.X_test))
        return min(MAX_ROWS, NEIGHBOUR_MAX_CELLS // per_row, NEIGHBOUR_MAX_WORK // (queries * per_row))
    return min(MAX_ROWS, MAX_CELLS // per_row)


def _metrics(names, task: str, y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    return compute_metrics(names, task, y, predictions) if len(y) else {}


def _evaluate(candidate: Candidate, data: PreparedData, names, seed: int,
              refit: bool) -> tuple[dict[str, Any], Fitted]:
    """(the report entry with validation and test scores, the model fit on every row allowed: the
    training rows, and the validation rows too when `refit`)."""
    profile, task = data.profile, data.profile.task
    n_classes = profile.n_classes or 0
    cap = _row_cap(candidate, data)
    rng = np.random.default_rng(seed)

    def fit(rows: np.ndarray, X: np.ndarray = data.X_train, y: np.ndarray = data.y_train) -> Fitted:
        if len(rows) > cap:
            rows = np.sort(rng.choice(rows, cap, replace=False))
        return _fit(candidate, model_inputs(X[rows], candidate.inputs, profile.vocab_size), y[rows], task, seed)

    def score(fitted: Fitted, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        Z = model_inputs(X, candidate.inputs, profile.vocab_size)
        return _metrics(names, task, y, fitted.outputs(Z, task, n_classes))

    start = time.perf_counter()
    if data.cv:
        folds = [score(fit(train), data.X_train[held], data.y_train[held]) for train, held in data.folds]
        val = {name: float(np.mean([fold[name] for fold in folds])) for name in folds[0]}
    fitted = fit(np.arange(len(data.X_train)))
    rows = len(data.X_train)
    if not data.cv:
        val = score(fitted, data.X_val, data.y_val)
        if refit and len(data.X_val):  # as the deep model: its validation score taken, it learns from those rows too
            rows += len(data.X_val)
            fitted = fit(np.arange(rows), np.concatenate([data.X_train, data.X_val]),
                         np.concatenate([data.y_train, data.y_val]))
    entry: dict[str, Any] = {"name": candidate.name, "title": TITLES[candidate.name], "val": val,
                             "test": score(fitted, data.X_test, data.y_test), "rows": min(cap, rows),
                             "seconds": time.perf_counter() - start, "saved": False}
    notes = [f"validation: the mean over the {len(data.folds)} folds" if data.cv else "",
             "refit on the training and validation rows after its validation score"
             if rows > len(data.X_train) else "",
             f"trained on a random {cap} of the {rows} rows, to bound its cost" if cap < rows else "",
             "scored only: it cannot be saved without pickle" if fitted.arrays is None else ""]
    if any(notes):
        entry["note"] = "; ".join(n for n in notes if n)
    return entry, fitted


def fit_baselines(data: PreparedData, metric_names, seed: int,
                  refit: bool = False) -> tuple[dict[str, Any], Fitted | None]:
    """The `baseline` document (every baseline's scores) and the fitted baseline worth saving, if any:
    the storable one best on the selection metric, `metric_names[0]`, on validation. `refit`: fit
    the saved models on the validation rows too, as the deep model's refit does."""
    from threadpoolctl import threadpool_limits

    metric = metric_names[0]
    direction = _direction(metric)
    found, why_none = candidates(data)
    document: dict[str, Any] = {"models": [], "note": why_none, "saved": None}
    best_saved: Fitted | None = None
    start = time.perf_counter()
    # half the cores: gradient boosting's OpenMP threads crawl on a machine that is shared
    with threadpool_limits(limits=max(1, usable_cores() // 2)), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: the iteration cap is part of the baseline
        for candidate in found:
            try:
                entry, fitted = _evaluate(candidate, data, metric_names, seed, refit)
            except (_Skip, ValueError, ArithmeticError, MemoryError, np.linalg.LinAlgError) as error:
                log.warning("baseline %s skipped: %s", candidate.name, error)
                document["models"].append({"name": candidate.name, "title": TITLES[candidate.name],
                                           "skipped": str(error)})
                continue
            document["models"].append(entry)
            value = entry["val"].get(metric)
            if fitted.arrays is not None and _finite(value) and (
                    best_saved is None or _better(value, document["saved_val"], direction)):
                best_saved, document["saved"], document["saved_val"] = fitted, candidate.name, value
    document.pop("saved_val", None)
    for entry in document["models"]:
        entry["saved"] = entry["name"] == document["saved"]
    document["seconds"] = time.perf_counter() - start
    return document, best_saved


# -- the verdict ------------------------------------------------------------------------------
def _direction(metric: str) -> str:
    return METRICS[metric].direction


def _finite(value: Any) -> bool:
    return finite_number(value) is not None


def _better(a: float, b: float, direction: str) -> bool:
    return to_loss(a, direction) < to_loss(b, direction)


def judge(document: dict[str, Any], metric: str, deep_val: float | None,
          predict_val: float | None) -> dict[str, Any]:
    """The document with the best baseline on validation, whether the deep search beat it, and
    whether `automl predict` should use the saved baseline: when it is at least as good on
    validation as the deep model predict would otherwise use (`predict_val`). A tie goes to the
    baseline: the deep score is the best of many trials on the same rows, so it is the optimistic
    one, and on a small validation split (where ties happen) the simpler model is the safer bet."""
    direction = _direction(metric)
    scored = [m for m in document["models"] if _finite((m.get("val") or {}).get(metric))]
    document.update(best=None, deep_beats_baseline=None, used_by_predict=False, message=None)
    if not scored:
        return document
    best = scored[0]
    for entry in scored[1:]:
        if _better(entry["val"][metric], best["val"][metric], direction):
            best = entry
    document["best"] = best["name"]
    if not _finite(deep_val):
        return document
    value = best["val"][metric]
    beats = _better(deep_val, value, direction)
    document["deep_beats_baseline"] = beats
    saved = next((m for m in scored if m["name"] == document["saved"]), None)
    document["used_by_predict"] = bool(saved and _finite(predict_val)
                                       and not _better(predict_val, saved["val"][metric], direction))
    if beats:
        message = (f"The deep search's best model (validation {metric} {deep_val:.4f}) beat the best baseline, "
                   f"{best['title']} ({value:.4f}).")
    else:
        tie = ", the same score" if deep_val == value else ""
        message = (f"The deep search's best model (validation {metric} {deep_val:.4f}) did not beat the baseline "
                   f"{best['title']} (validation {metric} {value:.4f}{tie}).")
    if document["used_by_predict"]:
        message += f" `automl predict` uses the baseline {saved['title']} by default (--model single for the deep one)."
    document["message"] = message
    return document


# -- saving -----------------------------------------------------------------------------------
def save_baseline(document: Mapping[str, Any], fitted: Fitted | None, data: PreparedData, model_dir: Path) -> None:
    """model/baseline.npz and the baseline's facts in model/model.json (written by the export before)."""
    path = model_dir / FILE
    path.unlink(missing_ok=True)  # a rerun without a saved baseline leaves no stale one
    facts_path = model_dir / "model.json"
    facts = json.loads(facts_path.read_text())
    facts.pop("baseline", None)
    facts["files"].pop("baseline", None)
    if fitted is not None and fitted.arrays is not None:
        np.savez(path, **fitted.arrays)
        candidate = fitted.candidate
        facts["baseline"] = {"name": candidate.name, "title": TITLES[candidate.name], "kind": candidate.kind,
                             "inputs": candidate.inputs, "vocab_size": data.profile.vocab_size,
                             "n_classes": data.profile.n_classes}
        facts["files"]["baseline"] = FILE
        if document.get("used_by_predict"):
            facts["default"] = "baseline"
    facts_path.write_text(json.dumps(facts, indent=2))


def baseline_predictions(model_dir: Path, facts: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    """What the saved baseline predicts for preprocessed inputs X (as `automl predict` gives them)."""
    info = facts["baseline"]
    with np.load(model_dir / facts["files"]["baseline"], allow_pickle=False) as saved:
        arrays = {key: saved[key] for key in saved.files}
    parts = [outputs(info["kind"], arrays, model_inputs(X[i:i + PREDICT_CHUNK], info["inputs"], info.get("vocab_size")),
                     facts["task"], int(info.get("n_classes") or 0)) for i in range(0, max(len(X), 1), PREDICT_CHUNK)]
    return np.concatenate(parts)
