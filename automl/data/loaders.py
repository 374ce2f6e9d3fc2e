"""Load a data source into `PreparedData`: read, check, infer the task, split, preprocess.

Each reader turns its source into a `_Raw` (features as read, target values, an unfitted
preprocessor); `load_data` does the rest the same way for every source, so splitting and
fitting on the training split only cannot differ between sources.
"""
from __future__ import annotations

import logging
import math
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder, StandardScaler

from automl.data.base import PreparedData
from automl.data.preprocess import (
    NUMERIC_SHARE, ImageScaler, as_float32, blank_to_nan, classify_columns, frame_preprocessor, parse_numbers,
)
from automl.data.profile import build_profile
from automl.errors import DataError
from automl.spec import BuiltinData, CsvData, NpzData, SplitSpec

logger = logging.getLogger(__name__)

# Task inference: an integer-valued target with at most this many distinct values, and
# on average at least ROWS_PER_CLASS rows per value, is taken as class labels.
MAX_INFERRED_CLASSES = 20
ROWS_PER_CLASS = 5


@dataclass
class _Raw:
    source: str
    target: str
    features: Any  # pandas DataFrame (CSV) or numpy array, as read
    y: np.ndarray  # target values, none missing: numbers, or text labels
    modality: str
    preprocessor: Any  # unfitted; fit on the train rows of `features`
    n_features: int
    where: Callable[[int], str]  # row index -> "line 7" / "row 6", for messages
    feature_kinds: dict[str, int] | None = None
    missing_values: int = 0
    class_names: tuple[str, ...] | None = None  # names of integer labels 0..K-1, when the source has them
    notes: list[str] = field(default_factory=list)


def load_data(source: BuiltinData | CsvData | NpzData, split: SplitSpec, *, task: str | None, seed: int) -> PreparedData:
    readers = {"builtin": _read_builtin, "csv": _read_csv, "npz": _read_npz}
    raw = readers[source.source](source, task)
    task = _resolve_task(raw, task)

    labels, class_names = None, None
    if task == "classification":
        labels, class_names = _encode_labels(raw)
        y = labels
    else:
        y = raw.y.astype(np.float32)
    train, val, test = _split_indices(len(y), labels, class_names, split, seed, raw)

    take = (lambda rows: raw.features.iloc[rows]) if isinstance(raw.features, pd.DataFrame) else (lambda rows: raw.features[rows])
    pre = raw.preprocessor.fit(take(train))
    X_train, X_val, X_test = (as_float32(pre.transform(take(rows))) for rows in (train, val, test))
    if isinstance(pre, ImageScaler) and pre.scale_ != 1.0:
        learnt = " (from the training split's range)" if pre.scale is None else ""
        raw.notes.append(f"pixel values multiplied by {pre.scale_:.4g}{learnt}")

    profile = build_profile(
        source=raw.source, modality=raw.modality, task=task, target=raw.target,
        split_sizes=(len(train), len(val), len(test)), input_shape=X_train.shape[1:], n_features=raw.n_features,
        labels=labels, class_names=class_names, feature_kinds=raw.feature_kinds,
        missing_values=raw.missing_values, notes=tuple(raw.notes),
    )
    y_mean, y_std = 0.0, 1.0
    if task == "regression":
        y_mean, y_std = float(y[train].mean()), float(y[train].std())
        y_std = y_std if y_std > 0 and math.isfinite(y_std) else 1.0  # constant target: avoid dividing by 0
    logger.info("loaded %s: %s %s, %d/%d/%d rows, input %s", raw.source, profile.modality, task,
                profile.n_train, profile.n_val, profile.n_test, profile.input_shape)
    return PreparedData(X_train, y[train], X_val, y[val], X_test, y[test], profile, pre, y_mean, y_std)


# --- readers -------------------------------------------------------------------------

_BUILTIN = {
    "sklearn:digits": datasets.load_digits,
    "sklearn:breast_cancer": datasets.load_breast_cancer,
    "sklearn:wine": datasets.load_wine,
    "sklearn:iris": datasets.load_iris,
    "sklearn:diabetes": datasets.load_diabetes,
}


def _read_builtin(source: BuiltinData, task: str | None) -> _Raw:
    bunch = _BUILTIN[source.name]()
    X, y = bunch.data, bunch.target
    names = getattr(bunch, "target_names", None)
    class_names = tuple(str(n) for n in names) if names is not None and len(names) else None
    if source.name == "sklearn:digits":
        # 8x8 grey images with values 0..16: a fixed scale, not learnt from the data.
        return _Raw(source.name, "target", X, y, "image", ImageScaler((1, 8, 8), scale=1 / 16), X.shape[1],
                    lambda i: f"row {i}", class_names=class_names)
    return _Raw(source.name, "target", X, y, "tabular", StandardScaler(), X.shape[1],
                lambda i: f"row {i}", class_names=class_names)


def _read_csv(source: CsvData, task: str | None) -> _Raw:
    path, name = source.path, str(source.path)
    if not path.is_file():
        raise DataError(f"{name}: file not found; check data.path in the spec")
    try:
        # Everything as text so we decide the column types ourselves and can point at bad
        # cells; blank lines kept so row i is line i + 2 (header is line 1). Quoted values
        # spanning several lines would shift that count; such files are rare for tabular data.
        frame = pd.read_csv(path, sep=source.delimiter, dtype=str, na_values=["?"], skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: the file is empty; it needs a header line and data rows") from None
    except pd.errors.ParserError as error:
        raise DataError(f"{name}: cannot be read as CSV with delimiter {source.delimiter!r}: {error}") from None
    except UnicodeDecodeError:
        raise DataError(f"{name}: not UTF-8 text; re-save the file as UTF-8 CSV") from None
    frame.columns = [str(c).strip() for c in frame.columns]

    lines = np.arange(len(frame)) + 2
    cleaned = frame.apply(blank_to_nan)
    filled = cleaned.notna().any(axis=1).to_numpy()  # drop blank lines and all-empty rows
    frame, cleaned, lines = frame[filled].reset_index(drop=True), cleaned[filled].reset_index(drop=True), lines[filled]
    if frame.empty:
        raise DataError(f"{name}: no data rows below the header line")
    _check_columns(source, list(frame.columns))

    target = cleaned[source.target]
    empty = np.flatnonzero(target.isna().to_numpy())
    if empty.size:
        shown = ", ".join(str(lines[i]) for i in empty[:5])
        raise DataError(f"{name}: target column {source.target!r} is empty on line(s) {shown}"
                        f"{f' ({empty.size} rows in all)' if empty.size > 5 else ''}; fill in those values or remove the rows")

    features = [c for c in frame.columns if c != source.target and c not in source.drop]
    kinds = classify_columns(frame[features], lines, name)
    used = [*kinds.numeric, *kinds.categorical]
    if not used:
        raise DataError(f"{name}: no feature columns left besides the target {source.target!r} (after data.drop "
                        "and ignoring empty columns); the file needs at least one input column")
    notes = [f"column {c!r} has no values: ignored" for c in kinds.empty]
    for column in kinds.categorical:
        distinct = cleaned[column].nunique()
        if distinct > 20 and distinct > len(frame) / 2:
            notes.append(f"column {column!r} has {distinct} distinct values (an id?); consider listing it in data.drop")

    return _Raw(
        source=name, target=source.target, features=frame[used], y=_csv_target(target, lines, name, source.target, task),
        modality="tabular", preprocessor=frame_preprocessor(kinds.numeric, kinds.categorical),
        n_features=len(used), where=lambda i: f"line {lines[i]}",
        feature_kinds={"numeric": len(kinds.numeric), "categorical": len(kinds.categorical)},
        missing_values=int(cleaned[used].isna().to_numpy().sum()), notes=notes,
    )


def _check_columns(source: CsvData, columns: list[str]) -> None:
    name, available = str(source.path), ", ".join(map(repr, columns))
    if source.target not in columns:
        hint = ""
        if len(columns) == 1:
            other = next((d for d in ",;\t|" if d != source.delimiter and d in columns[0]), None)
            if other:
                hint = f"; the header contains {other!r}: set data.delimiter to {other!r}?"
        raise DataError(f"{name}: no target column {source.target!r}; columns are: {available}{hint}")
    unknown = [c for c in source.drop if c not in columns]
    if unknown:
        raise DataError(f"{name}: data.drop names column(s) not in the file: {', '.join(map(repr, unknown))}; "
                        f"columns are: {available}")
    if source.target in source.drop:
        raise DataError(f"{name}: the target column {source.target!r} is also listed in data.drop; remove it from there")


def _csv_target(target: pd.Series, lines: np.ndarray, name: str, column: str, task: str | None) -> np.ndarray:
    """Numbers when every value is one, else the text labels."""
    numbers = parse_numbers(target)
    bad = np.flatnonzero(numbers.isna().to_numpy())
    if bad.size == 0:
        return numbers.to_numpy()
    share = 1 - bad.size / len(target)
    # A mostly numeric target with a stray word is a typo, unless the user said these are labels.
    if task == "regression" or (task is None and share >= NUMERIC_SHARE):
        why = "the task is regression" if task == "regression" else f"{share:.0%} of its values are numbers"
        raise DataError(f"{name}: target column {column!r} must be numeric ({why}) but line {lines[bad[0]]} has "
                        f"{target.iloc[bad[0]]!r}; fix the value, or set task to classification if these are labels")
    return target.to_numpy(dtype=object)


def _read_npz(source: NpzData, task: str | None) -> _Raw:
    path, name = source.path, str(source.path)
    if not path.is_file():
        raise DataError(f"{name}: file not found; check data.path in the spec")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{name}: not a readable .npz archive ({error}); write it with numpy.savez(path, X=..., y=...)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{name}: holds a single array, not an .npz archive; write it with numpy.savez(path, X=..., y=...)")
    with archive:
        for key, setting in ((source.x_key, "x_key"), (source.y_key, "y_key")):
            if key not in archive.files:
                raise DataError(f"{name}: no array {key!r}; arrays present: {', '.join(map(repr, archive.files)) or 'none'}; "
                                f"set data.{setting} to the right name")
        try:
            X, y = archive[source.x_key], archive[source.y_key]
        except ValueError as error:  # object arrays need pickle, which we refuse to load
            raise DataError(f"{name}: cannot load its arrays ({error}); store plain numeric/text arrays") from None

    if X.dtype.kind not in "biuf":
        raise DataError(f"{name}: {source.x_key!r} must be numeric, not {X.dtype}")
    if X.ndim not in (2, 3, 4):
        raise DataError(f"{name}: {source.x_key!r} has shape {X.shape}; expected (n, features), (n, H, W) or (n, C, H, W)"
                        + ("; for one feature use X.reshape(-1, 1)" if X.ndim == 1 else ""))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise DataError(f"{name}: {source.y_key!r} has shape {y.shape}; expected one target per row, shape (n,)")
    if len(X) != len(y):
        raise DataError(f"{name}: {source.x_key!r} has {len(X)} rows but {source.y_key!r} has {len(y)}; they must match")
    if len(X) == 0:
        raise DataError(f"{name}: the arrays are empty")
    bad = np.flatnonzero(~np.isfinite(X.reshape(len(X), -1)).all(axis=1))
    if bad.size:
        raise DataError(f"{name}: {source.x_key!r} row {bad[0]} has a non-finite value (NaN or inf)"
                        f"{f' ({bad.size} rows in all)' if bad.size > 1 else ''}; fix or remove those rows")
    if y.dtype.kind == "S":
        y = y.astype(str)
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise DataError(f"{name}: {source.y_key!r} row {bad[0]} is {y[bad[0]]} (missing target)"
                            f"{f' ({bad.size} rows in all)' if bad.size > 1 else ''}; fix or remove those rows")

    if X.ndim == 2:
        return _Raw(name, source.y_key, X, y, "tabular", StandardScaler(), X.shape[1], lambda i: f"row {i}")
    shape = (1, *X.shape[1:]) if X.ndim == 3 else X.shape[1:]  # (n, H, W) gets a channel axis
    return _Raw(name, source.y_key, X, y, "image", ImageScaler(shape), int(np.prod(shape)), lambda i: f"row {i}")


# --- task, labels, splits ------------------------------------------------------------

def _is_numeric(y: np.ndarray) -> bool:
    return y.dtype.kind in "biuf"


def _resolve_task(raw: _Raw, task: str | None) -> str:
    if task == "regression" and not _is_numeric(raw.y):
        first = next((i for i, v in enumerate(raw.y) if not _parses(v)), 0)
        raise DataError(f"{raw.source}: target {raw.target!r} must be numeric for regression, but {raw.where(first)} "
                        f"has {raw.y[first]!r}; fix the data or set task to classification")
    if task is not None:
        return task
    if not _is_numeric(raw.y):
        task, why = "classification", "the target is not numeric"
    else:
        values = raw.y.astype(np.float64)
        distinct = len(np.unique(values))
        few = distinct <= MAX_INFERRED_CLASSES and distinct <= max(2, len(values) // ROWS_PER_CLASS)
        if few and np.all(values == np.round(values)):
            task, why = "classification", f"the target has {distinct} distinct integer values"
        else:
            task, why = "regression", f"the target has {distinct} distinct numeric values"
    raw.notes.append(f"task inferred as {task}: {why} (set task in the spec to override)")
    logger.info("%s: task inferred as %s (%s)", raw.source, task, why)
    return task


def _parses(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _label_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # CSV numbers are read as floats; "3" reads better than "3.0"
    return str(value)


def _encode_labels(raw: _Raw) -> tuple[np.ndarray, tuple[str, ...]]:
    encoder = LabelEncoder().fit(raw.y)
    labels = encoder.transform(raw.y).astype(np.int64)
    names = tuple(_label_text(v) for v in encoder.classes_)
    if raw.class_names is not None and _is_numeric(raw.y) and len(names) == len(raw.class_names):
        names = tuple(raw.class_names[int(v)] for v in encoder.classes_)  # builtin: "setosa", not "0"
    if len(names) < 2:
        raise DataError(f"{raw.source}: target {raw.target!r} has a single class ({names[0]!r}) in all "
                        f"{len(labels)} rows; classification needs at least two classes -- check the target "
                        "column, or set task to regression if it is a number to predict")
    return labels, names


def _split_indices(n: int, labels: np.ndarray | None, class_names, split: SplitSpec, seed: int, raw: _Raw):
    """Train / validation / test row indices: test held out first, validation from the rest."""
    n_test = math.ceil(split.test * n)  # the rounding train_test_split uses
    n_val = math.ceil(split.validation * (n - n_test))
    sizes = {"train": n - n_test - n_val, "validation": n_val, "test": n_test}
    empty = [part for part, size in sizes.items() if size < 1]
    if empty:
        raise DataError(f"{raw.source}: {n} rows are too few for split test={split.test}, validation={split.validation}: "
                        f"the {' and '.join(empty)} split would be empty; add rows or change the split fractions")
    stratify = labels if split.stratify else None
    rest, test = _holdout(np.arange(n), split.test, stratify, class_names, seed, raw)
    train, val = _holdout(rest, split.validation, stratify, class_names, seed, raw)
    return train, val, test


def _holdout(rows: np.ndarray, fraction: float, labels, class_names, seed: int, raw: _Raw):
    # Decision: a class too rare to stratify (one row, or more classes than held-out rows)
    # turns stratification off for that split, with a note, instead of failing the run.
    if labels is not None:
        counts = np.bincount(labels[rows], minlength=len(class_names))
        rare = [class_names[k] for k in np.flatnonzero((counts > 0) & (counts < 2))]
        try:
            if not rare:
                return train_test_split(rows, test_size=fraction, random_state=seed, stratify=labels[rows])
            why = f"class {rare[0]!r} has a single row"
        except ValueError as error:
            why = str(error)
        note = "splits not fully stratified: a class is too rare to spread over every split"
        if note not in raw.notes:
            raw.notes.append(note)
        logger.warning("%s: splitting without stratification (%s)", raw.source, why)
    return train_test_split(rows, test_size=fraction, random_state=seed)
