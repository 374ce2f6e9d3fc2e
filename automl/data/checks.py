"""Checks of the loaded data before any search: what a careful data scientist looks at first.

Warnings (`Finding`s) are shown by `init`, `validate` and `run` and kept in the report;
refusals stop the run before anything is trained, since its scores would mean nothing:

- leakage: one column predicts the target almost perfectly on its own (cross-validated
  on the training rows: balanced accuracy or R² of at least LEAK_SCORE);
- duplicates: test (or validation) rows whose inputs equal a training row's;
- constant columns, and ID-like columns (unique per row), which carry nothing to learn;
- classes missing from the training rows;
- refused: fewer than MIN_TRAIN_ROWS rows to train on, or fewer than MIN_ROWS_PER_CLASS
  training rows per class on average.

Each check is a small pure function; `check_data` runs them on a `PreparedData`. Column
checks apply to tables only; the leak check looks at a sample of the training rows.
"""
from __future__ import annotations

import hashlib
import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import KFold
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from automl.data.base import PreparedData
from automl.errors import DataError

LEAK_SCORE = 0.98  # balanced accuracy (classification) or R² (regression) of one column alone
LEAK_MIN_ROWS = 30  # below this a perfect single-column score is too likely by chance to mean anything
LEAK_FOLDS = 3
# The leak check fits LEAK_FOLDS small trees per column: on at most LEAK_CELLS cells (rows x columns),
# between 1000 and 5000 rows, it stays around a second. A near-perfect predictor shows on 1000 rows too.
LEAK_CELLS = 250_000
LEAK_ROWS = (1000, 5000)
MIN_TRAIN_ROWS = 10  # rows a model trains on (per fold with cross-validation)
MIN_ROWS_PER_CLASS = 2.0  # training rows per class, on average
ID_MIN_ROWS = 10  # fewer rows than this are unique per row by chance
ID_SHARE = 0.95  # a text column with at least this share of distinct values is an ID
ID_NAME = re.compile(r"(^|[\W_])(id|ids|uuid|guid|key|index|idx)$|Id$|ID$|^unnamed: 0$", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    check: str  # "leakage" | "duplicates" | "constant" | "id_like" | "classes"
    message: str
    columns: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"check": self.check, "message": self.message, "columns": list(self.columns)}


@dataclass(frozen=True)
class DataChecks:
    findings: tuple[Finding, ...] = ()
    refusals: tuple[str, ...] = field(default=())  # each a full sentence naming the data and what to do

    def columns(self, check: str) -> list[str]:
        return [c for f in self.findings if f.check == check for c in f.columns]

    def raise_refusals(self) -> None:
        if self.refusals:
            raise DataError("; and ".join(self.refusals))


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "numeric" (float values) | "categorical" (integer codes, -1 unknown)
    values: np.ndarray  # training rows only


# --- the pure checks -------------------------------------------------------------------

def training_rows(n: int, test: float, validation: float, cv_folds: int | None) -> int:
    """Rows a model trains on for `n` rows under this split: the arithmetic of splits.split_rows."""
    rest = n - math.ceil(test * n)
    if cv_folds is not None:
        return rest - math.ceil(rest / cv_folds)  # the largest fold is left out
    return rest - math.ceil(validation * rest)


def rows_needed(test: float, validation: float, cv_folds: int | None) -> int:
    """The fewest rows that leave MIN_TRAIN_ROWS training rows under this split."""
    n = MIN_TRAIN_ROWS
    while training_rows(n, test, validation, cv_folds) < MIN_TRAIN_ROWS:
        n += 1
    return n


def looks_like_id(name: str, values: np.ndarray) -> bool:
    """Unique per row: integers named like an ID or filling most of their range, or text labels."""
    values = np.asarray(values)
    if len(values) < ID_MIN_ROWS:
        return False
    if values.dtype.kind in "biuf":
        numbers = values.astype(np.float64)
        if not np.all(np.isfinite(numbers)) or not np.all(numbers == np.round(numbers)):
            return False
        distinct = len(np.unique(numbers))
        dense = distinct >= 0.5 * (numbers.max() - numbers.min() + 1)  # 1..n in any order, maybe a sample of them
        return bool(distinct == len(numbers) and (dense or ID_NAME.search(name.strip())))
    present = [v for v in values if isinstance(v, str) and v.strip()]
    return bool(len(present) == len(values) and len(set(present)) >= ID_SHARE * len(values))


def is_constant(values: np.ndarray) -> bool:
    values = np.asarray(values)
    return len(values) > 0 and bool(np.all(values == values[0]))


def single_column_score(column: Column, y: np.ndarray, task: str, seed: int = 0) -> float:
    """How well this column alone predicts `y`, cross-validated: balanced accuracy or R².

    Numbers: a small decision tree; categories: each category's majority class (mean) in
    the other folds, so a relabelling of the target scores 1 and an ID scores nothing."""
    x, y = np.asarray(column.values), np.asarray(y)
    classes = task == "classification"
    score = balanced_accuracy_score if classes else r2_score
    truth, guess = [], []
    for train, test in KFold(LEAK_FOLDS, shuffle=True, random_state=seed).split(x):
        if column.kind == "categorical":
            guess.append(_lookup(x[train], y[train], x[test], classes))
        else:
            leaves = max(16, 2 * len(np.unique(y[train]))) if classes else 16
            model = (DecisionTreeClassifier if classes else DecisionTreeRegressor)(
                max_leaf_nodes=leaves, random_state=seed)
            with warnings.catch_warnings():  # "many classes for few rows" is not news here
                warnings.simplefilter("ignore")
                guess.append(model.fit(x[train, None], y[train]).predict(x[test, None]))
        truth.append(y[test])
        with warnings.catch_warnings():  # a class only guessed, never true, in a small fold
            warnings.simplefilter("ignore")
            fold = float(score(truth[-1], guess[-1]))
        if fold < LEAK_SCORE - 0.08:  # one fold this far below: the rest cannot lift it
            return fold
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(score(np.concatenate(truth), np.concatenate(guess)))


def _lookup(codes: np.ndarray, y: np.ndarray, query: np.ndarray, classes: bool) -> np.ndarray:
    size = int(max(codes.max(initial=-1), query.max(initial=-1))) + 2  # code -1 (unknown) shifted to 0
    codes, query = codes.astype(np.int64) + 1, query.astype(np.int64) + 1
    seen = np.bincount(codes, minlength=size) > 0
    if classes:
        labels = y.astype(np.int64)
        table = np.zeros((size, int(labels.max()) + 1))
        np.add.at(table, (codes, labels), 1)
        fallback, known = np.bincount(labels).argmax(), table.argmax(axis=1)
    else:
        counts = np.bincount(codes, minlength=size)
        known = np.bincount(codes, weights=y, minlength=size) / np.maximum(counts, 1)
        fallback = y.mean()
    return np.where(seen[query], known[query], fallback)


def row_keys(X: np.ndarray) -> list[bytes]:
    """A short digest per row, to compare rows across splits without copying them."""
    rows = np.ascontiguousarray(X).reshape(len(X), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def repeated_in(rows: np.ndarray, reference: np.ndarray) -> int:
    """How many of `rows` have inputs equal to some row of `reference`."""
    if len(rows) == 0 or len(reference) == 0:
        return 0
    known = set(row_keys(reference))
    return sum(key in known for key in row_keys(rows))


def repeated_within(rows: np.ndarray) -> int:
    """How many rows repeat an earlier row."""
    keys = row_keys(rows)
    return len(keys) - len(set(keys))


# --- on the loaded data ------------------------------------------------------------------

def check_data(data: PreparedData, split, *, drop_advice: str = "remove it from the data", seed: int = 0) -> DataChecks:
    """Every check on the loaded data; `split` is the spec's SplitSpec (named in messages)."""
    profile = data.profile
    findings: list[Finding] = []
    refusals = _size_refusals(data, split)
    if refusals:  # the run stops here: nothing else is worth the time
        return DataChecks((), tuple(refusals))
    if profile.task == "classification":
        findings += _class_findings(data)
    findings += _duplicate_findings(data)
    if profile.modality == "tabular":
        findings += column_findings(tabular_columns(data), data.y_train, profile.task, drop_advice, seed)
    return DataChecks(tuple(findings), tuple(refusals))


def _fit_rows(data: PreparedData) -> int:
    if data.folds:
        return min(len(train) for train, _ in data.folds)
    return len(data.y_train)


def _split_text(split, cv: bool, test_file: bool) -> str:
    test = "a test file" if test_file else f"test={split.test}"
    return f"split {test}, " + (f"cv_folds={split.cv_folds}" if cv else f"validation={split.validation}")


def _size_refusals(data: PreparedData, split) -> list[str]:
    profile, fit_rows = data.profile, _fit_rows(data)
    test_file = getattr(profile, "test_source", None) is not None  # the test rows are not a share of the source
    source, where = profile.source, _split_text(split, data.cv, test_file)
    refusals = []
    if fit_rows < MIN_TRAIN_ROWS:
        folds = " per fold" if data.cv else ""
        refusals.append(
            f"{source}: {profile.n_samples} rows leave {fit_rows} training row(s){folds} with {where}; at least "
            f"{MIN_TRAIN_ROWS} are needed to train and judge a model (that takes about "
            f"{rows_needed(0.0 if test_file else split.test, split.validation, split.cv_folds if data.cv else None)} "
            "rows with this split): add rows, or lower split.test / split.validation")
    if profile.task == "classification" and profile.n_classes:
        per_class = fit_rows / profile.n_classes
        if per_class < MIN_ROWS_PER_CLASS and fit_rows >= MIN_TRAIN_ROWS:
            refusals.append(
                f"{source}: {profile.n_classes} classes in {profile.n_samples} rows leave {per_class:.1f} training "
                f"rows per class on average ({fit_rows} training rows with {where}); at least {MIN_ROWS_PER_CLASS:g} "
                "per class are needed to learn a class: merge rare classes into coarser ones, add rows, or set "
                "task to regression if the target is a number")
    return refusals


def _class_findings(data: PreparedData) -> list[Finding]:
    names = data.profile.class_names or ()
    seen = np.bincount(data.y_train.astype(np.int64), minlength=len(names)) > 0
    missing = [names[k] for k in np.flatnonzero(~seen)]
    if not missing:
        return []
    shown = ", ".join(map(repr, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return [Finding("classes", f"{len(missing)} of {len(names)} classes have no training row ({shown}): the model "
                               "can never predict them; add rows of those classes or merge them into others")]


def _duplicate_findings(data: PreparedData) -> list[Finding]:
    findings = []
    in_test = repeated_in(data.X_test, data.X_train)
    if in_test:
        findings.append(Finding("duplicates", f"{in_test} of {len(data.X_test)} test rows have the same inputs as a "
                                              "training row: the test score partly measures memory; remove duplicate "
                                              "rows from the data unless such repeats are expected in use"))
    if data.cv:
        within = repeated_within(data.X_train)
        if within:
            findings.append(Finding("duplicates", f"{within} of the {len(data.X_train)} cross-validation rows repeat "
                                                  "another row's inputs: a fold can be scored on rows it trained on; "
                                                  "remove duplicate rows from the data"))
    else:
        in_val = repeated_in(data.X_val, data.X_train)
        if in_val:
            findings.append(Finding("duplicates", f"{in_val} of {len(data.X_val)} validation rows have the same inputs "
                                                  "as a training row: the search favours models that memorise; "
                                                  "remove duplicate rows from the data"))
    return findings


def column_findings(columns: list[Column], y: np.ndarray, task: str, drop_advice: str, seed: int = 0) -> list[Finding]:
    """Constant, ID-like and leaking columns among `columns` (training rows of one table)."""
    constant = [c.name for c in columns if is_constant(c.values)]
    ids = [c.name for c in columns if c.name not in constant and
           (looks_like_id(c.name, c.values) if c.kind == "numeric" else
            len(np.unique(c.values)) >= max(ID_MIN_ROWS, ID_SHARE * len(c.values)))]
    findings = []
    if constant:
        findings.append(Finding("constant", f"{_names(constant)} {_has(constant)} a single value in the training rows: "
                                            f"nothing to learn from; {_advice(drop_advice, constant)}", tuple(constant)))
    if ids:
        findings.append(Finding("id_like", f"{_names(ids)} {_has(ids, 'is', 'are')} unique per row (an ID): a model "
                                           f"cannot generalise from an ID; {_advice(drop_advice, ids)}", tuple(ids)))
    if len(y) < LEAK_MIN_ROWS:
        return findings
    metric = "balanced accuracy" if task == "classification" else "R²"
    rows = _leak_sample(len(y), len(columns), seed)
    for column in columns:
        if column.name in constant or column.name in ids:
            continue
        score = single_column_score(Column(column.name, column.kind, column.values[rows]), y[rows], task, seed)
        if score >= LEAK_SCORE:
            findings.append(Finding(
                "leakage", f"column {column.name!r} alone predicts the target ({metric} {score:.3f}, cross-validated on "
                           "the training rows): a leak? If its value is only known together with or after the target "
                           f"(a relabelling, an outcome), {_advice(drop_advice, [column.name])}", (column.name,)))
    return findings


def _leak_sample(n: int, n_columns: int, seed: int) -> np.ndarray:
    size = int(np.clip(LEAK_CELLS // max(n_columns, 1), *LEAK_ROWS))
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _names(columns: list[str]) -> str:
    return ("column " if len(columns) == 1 else "columns ") + ", ".join(map(repr, columns))


def _has(columns: list[str], one: str = "has", many: str = "have") -> str:
    return one if len(columns) == 1 else many


def _advice(advice: str, columns: list[str]) -> str:
    return advice if len(columns) == 1 else advice.replace(" it ", " them ")


def tabular_columns(data: PreparedData) -> list[Column]:
    """The table's raw columns on the training rows, read back from the fitted preprocessor.

    Model inputs are scaled (numbers) or one-hot encoded (categories); both are undone here
    so the checks see one column per raw column. A preprocessor of unknown shape: one
    column per model input."""
    X, pre = data.X_train, data.preprocessor
    columns = _frame_columns(X, pre)
    if columns is None:
        mean, scale = getattr(pre, "mean_", None), getattr(pre, "scale_", None)
        known = mean is not None and scale is not None and len(mean) == X.shape[1]
        columns = [Column(f"column {k}", "numeric", _unscale(X[:, k], mean[k], scale[k]) if known
                          else X[:, k].astype(np.float64)) for k in range(X.shape[1])]
    return columns


def _unscale(z: np.ndarray, mean: float, scale: float) -> np.ndarray:
    """Undo standardisation; values within the float32 rounding of an integer become that integer."""
    z = z.astype(np.float64)
    values = z * scale + mean
    near = np.round(values)
    noise = 4 * np.finfo(np.float32).eps * (np.abs(z) + 1) * scale
    return np.where(np.abs(values - near) <= noise, near, values)


def _frame_columns(X: np.ndarray, pre) -> list[Column] | None:
    steps = getattr(pre, "named_steps", {})
    coerce, transformer = steps.get("coerce"), steps.get("columns")
    if coerce is None or transformer is None or not hasattr(transformer, "named_transformers_"):
        return None
    columns, at = [], 0
    try:
        if coerce.numeric:
            scaler = transformer.named_transformers_["numeric"].named_steps["scale"]
            for k, name in enumerate(coerce.numeric):
                columns.append(Column(name, "numeric", _unscale(X[:, at], scaler.mean_[k], scaler.scale_[k])))
                at += 1
        if coerce.categorical:
            encoder = transformer.named_transformers_["categorical"].named_steps["onehot"]
            for name, categories in zip(coerce.categorical, encoder.categories_):
                block = X[:, at:at + len(categories)]
                columns.append(Column(name, "categorical", np.where(block.max(axis=1) > 0, block.argmax(axis=1), -1)))
                at += len(categories)
    except (KeyError, AttributeError, IndexError):
        return None
    return columns if at == X.shape[1] else None
