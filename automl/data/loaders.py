"""Load a data source into `PreparedData`: read, check, infer the task, split, preprocess.

Each reader turns its source into a `Raw` (features as read, target values, an unfitted
preprocessor); `load_data` does the rest the same way for every source, so splitting and
fitting on the training rows only cannot differ between sources.

A preprocessor may offer `fit_notes()` (facts learnt in `fit`, for the profile) and
`vocab_size_` (text).
"""
from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.preprocessing import LabelEncoder, StandardScaler

from automl.data.base import PreparedData
from automl.data.csvfile import (
    check_columns,
    read_table,
    read_test_table,
    target_values,
)
from automl.data.images import read_image_folder
from automl.data.preprocess import (
    ImageScaler,
    as_float32,
    blank_to_nan,
    classify_columns,
    frame_preprocessor,
    parse_numbers,
)
from automl.data.profile import build_profile
from automl.data.raw import FixedTest, Raw
from automl.data.sequences import SequenceScaler, read_sequence_csv
from automl.data.splits import split_rows
from automl.data.text import read_text_csv
from automl.errors import DataError
from automl.spec import BuiltinData, CsvData, DataSource, NpzData, SplitSpec

logger = logging.getLogger(__name__)

# Task inference: an integer-valued target with at most this many distinct values, and
# on average at least ROWS_PER_CLASS rows per value, is taken as class labels.
MAX_INFERRED_CLASSES = 20
ROWS_PER_CLASS = 5


def load_data(source: DataSource, split: SplitSpec, *, task: str | None, seed: int) -> PreparedData:
    readers = {"builtin": _read_builtin, "csv": _read_csv, "npz": _read_npz, "images": read_image_folder,
               "sequence_csv": read_sequence_csv, "text_csv": read_text_csv}
    raw = readers[source.source](source, task)
    task = _resolve_task(raw, task)

    labels, class_names = None, None
    if task == "classification":
        labels, class_names = _encode_labels(raw)
        y = labels
    else:
        y = raw.y.astype(np.float32)
    fixed = raw.test  # the rows of data.test_path, checked before any of them is transformed
    if fixed is not None:
        y_test = _test_labels(raw, fixed, class_names) if labels is not None else _test_targets(raw, fixed)
    rows = split_rows(len(y), labels, class_names, split, seed, raw, fixed_test=fixed is not None)

    take = (lambda r: raw.features.iloc[r]) if isinstance(raw.features, pd.DataFrame) else (lambda r: raw.features[r])
    # With cross-validation `rows.train` is every non-test row: the preprocessor then also sees
    # each fold's validation rows, which is harmless as it learns no target information.
    pre = raw.preprocessor
    X_train = _model_inputs(pre.fit_transform(take(rows.train)), raw.modality)  # images are read once, not twice
    X_test = _model_inputs(pre.transform(take(rows.test) if fixed is None else fixed.features), raw.modality)
    X_val = (np.empty((0, *X_train.shape[1:]), dtype=X_train.dtype) if rows.folds is not None
             else _model_inputs(pre.transform(take(rows.val)), raw.modality))
    raw.notes.extend(_fit_notes(pre))
    all_labels, missing = labels, raw.missing_values
    if fixed is None:
        y_test = y[rows.test]
    else:
        all_labels = None if labels is None else np.concatenate([labels, y_test])
        missing += fixed.missing_values
        raw.notes.append(f"test rows: {len(y_test)} from {Path(fixed.source).name} (data.test_path); "
                         "split.test is not used")

    profile = build_profile(
        source=raw.source, modality=raw.modality, task=task, target=raw.target,
        split_sizes=(len(rows.train), len(rows.val), len(y_test)), input_shape=X_train.shape[1:],
        n_features=raw.n_features, labels=all_labels, class_names=class_names, feature_kinds=raw.feature_kinds,
        missing_values=missing, notes=tuple(raw.notes), vocab_size=getattr(pre, "vocab_size_", None),
        test_source=None if fixed is None else fixed.source,
    )
    y_mean, y_std = 0.0, 1.0
    if task == "regression":
        y_mean, y_std = float(y[rows.train].mean()), float(y[rows.train].std())
        y_std = y_std if y_std > 0 and math.isfinite(y_std) else 1.0  # constant target: avoid dividing by 0
    logger.info("loaded %s: %s %s, %d/%d/%d rows, input %s", raw.source, profile.modality, task,
                profile.n_train, profile.n_val, profile.n_test, profile.input_shape)
    return PreparedData(X_train, y[rows.train], X_val, y[rows.val], X_test, y_test, profile, pre,
                        y_mean, y_std, folds=rows.folds)


def _model_inputs(X, modality: str) -> np.ndarray:
    """Token ids stay int64 (they index an embedding); everything else becomes float32."""
    if modality == "text":
        return np.ascontiguousarray(X, dtype=np.int64)
    return as_float32(X)


def _fit_notes(pre) -> list[str]:
    if isinstance(pre, ImageScaler) and pre.scale_ != 1.0:
        learnt = " (from the training split's range)" if pre.scale is None else ""
        return [f"pixel values multiplied by {pre.scale_:.4g}{learnt}"]
    return list(pre.fit_notes()) if hasattr(pre, "fit_notes") else []


# --- readers -------------------------------------------------------------------------

BUILTIN = {
    "sklearn:digits": datasets.load_digits,
    "sklearn:breast_cancer": datasets.load_breast_cancer,
    "sklearn:wine": datasets.load_wine,
    "sklearn:iris": datasets.load_iris,
    "sklearn:diabetes": datasets.load_diabetes,
}


def _read_builtin(source: BuiltinData, task: str | None) -> Raw:
    bunch = BUILTIN[source.name]()
    X, y = bunch.data, bunch.target
    names = getattr(bunch, "target_names", None)
    class_names = tuple(str(n) for n in names) if names is not None and len(names) else None
    if source.name == "sklearn:digits":
        # 8x8 grey images with values 0..16: a fixed scale, not learnt from the data.
        return Raw(source.name, "target", X, y, "image", ImageScaler((1, 8, 8), scale=1 / 16), X.shape[1],
                   lambda i: f"row {i}", class_names=class_names)
    return Raw(source.name, "target", X, y, "tabular", StandardScaler(), X.shape[1],
               lambda i: f"row {i}", class_names=class_names)


def _read_csv(source: CsvData, task: str | None) -> Raw:
    frame, lines = read_table(source.path, source.delimiter)
    name = str(source.path)
    ids = {source.id_column: "id"} if source.id_column else {}  # names rows for predict, never a feature
    check_columns(name, list(frame.columns), source.delimiter, {source.target: "target", **ids}, source.drop)
    y = target_values(frame[source.target], lines, name, source.target, task)

    features = [c for c in frame.columns if c != source.target and c not in source.drop and c not in ids]
    kinds = classify_columns(frame[features], lines, name)
    used = [*kinds.numeric, *kinds.categorical]
    if not used:
        raise DataError(f"{name}: no feature columns left besides the target {source.target!r} (after data.drop "
                        "and ignoring empty columns); the file needs at least one input column")
    cleaned = frame[used].apply(blank_to_nan)
    notes = [f"column {c!r} has no values: ignored" for c in kinds.empty]
    for column in kinds.categorical:
        distinct = cleaned[column].nunique()
        if distinct > 20 and distinct > len(frame) / 2:
            notes.append(f"column {column!r} has {distinct} distinct values (an id?); consider listing it in data.drop")

    return Raw(
        source=name, target=source.target, features=frame[used], y=y, modality="tabular",
        preprocessor=frame_preprocessor(kinds.numeric, kinds.categorical), n_features=len(used),
        where=lambda i: f"line {lines[i]}",
        feature_kinds={"numeric": len(kinds.numeric), "categorical": len(kinds.categorical)},
        missing_values=int(cleaned.isna().to_numpy().sum()), notes=notes,
        test=_read_csv_test(source, kinds, task) if source.test_path is not None else None,
    )


def _read_csv_test(source: CsvData, kinds, task: str | None) -> FixedTest:
    used = [*kinds.numeric, *kinds.categorical]
    frame, lines, y = read_test_table(source.test_path, source.delimiter, source.target, task,
                                      dict.fromkeys(used, "feature"))
    for column in kinds.numeric:  # a stray word would otherwise be imputed silently
        cells = blank_to_nan(frame[column])
        bad = np.flatnonzero(cells.notna().to_numpy() & parse_numbers(cells).isna().to_numpy())
        if bad.size:
            raise DataError(f"{source.test_path}: line {lines[bad[0]]}, column {column!r} has {cells.iloc[bad[0]]!r}, "
                            "but the column is numeric in the training file; fix the value or leave the cell empty "
                            "to have it imputed")
    missing = int(frame[used].apply(blank_to_nan).isna().to_numpy().sum())
    return FixedTest(str(source.test_path), frame[used], y, lambda i: f"line {lines[i]}", missing)


def read_npz_arrays(path: Path, keys: dict[str, str]) -> dict[str, np.ndarray]:
    """The arrays named by `keys` (array name -> what to do when it is missing)."""
    name = str(path)
    if not path.is_file():
        raise DataError(f"{name}: file not found; check the path")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{name}: not a readable .npz archive ({error}); write it with numpy.savez(path, X=..., y=...)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{name}: holds a single array, not an .npz archive; write it with numpy.savez(path, X=..., y=...)")
    with archive:
        for key, advice in keys.items():
            if key not in archive.files:
                raise DataError(f"{name}: no array {key!r}; arrays present: {', '.join(map(repr, archive.files)) or 'none'}; "
                                f"{advice}")
        try:
            return {key: archive[key] for key in keys}
        except ValueError as error:  # object arrays need pickle, which we refuse to load
            raise DataError(f"{name}: cannot load its arrays ({error}); store plain numeric/text arrays") from None


NPZ_SHAPES = {"tabular": ((2,), "(n, features)"), "image": ((3, 4), "(n, H, W) or (n, C, H, W)"),
              "sequence": ((2, 3), "(n, length, channels) or (n, length)")}


def npz_kind(shape: tuple[int, ...], kind: str, name: str, key: str) -> str:
    """What an NPZ X holds. auto: 2-D tabular, 4-D (n, C, H, W) image, 3-D an (n, H, W) image when
    H == W, else an (n, length, channels) sequence; (n, length) is a sequence only when asked."""
    ndim = len(shape)
    if kind == "auto" and ndim == 3:
        kind = "image" if shape[1] == shape[2] else "sequence"
    elif kind == "auto":
        kind = {2: "tabular", 4: "image"}.get(ndim, "auto")
    if kind == "auto":
        raise DataError(f"{name}: {key!r} has shape {shape}; expected (n, features), (n, H, W) or (n, C, H, W) "
                        "images, or (n, length, channels) sequences"
                        + ("; for one feature use X.reshape(-1, 1)" if ndim == 1 else ""))
    dims, layout = NPZ_SHAPES[kind]
    if ndim not in dims:
        raise DataError(f"{name}: {key!r} has shape {shape}, but data.kind {kind!r} needs {layout}; reshape the "
                        "array or set data.kind to 'auto'")
    return kind


def _read_npz(source: NpzData, task: str | None) -> Raw:
    X, y = _npz_rows(source.path, source)
    name = str(source.path)
    kind = npz_kind(X.shape, source.kind, name, source.x_key)
    n_features = int(np.prod(X.shape[1:]))
    as_input = (lambda a: a.reshape(*a.shape[:2], -1)) if kind == "sequence" else (lambda a: a)
    test = None
    if source.test_path is not None:
        X_test, y_test = _npz_rows(source.test_path, source)
        if X_test.shape[1:] != X.shape[1:]:
            raise DataError(f"{source.test_path}: {source.x_key!r} has shape {X_test.shape}, but the training file's "
                            f"rows have shape {X.shape[1:]}; the test file must hold rows of the same shape")
        test = FixedTest(str(source.test_path), as_input(X_test), y_test, lambda i: f"row {i}")

    where = lambda i: f"row {i}"  # noqa: E731
    if kind == "tabular":
        return Raw(name, source.y_key, X, y, "tabular", StandardScaler(), n_features, where, test=test)
    if kind == "sequence":
        return Raw(name, source.y_key, as_input(X), y, "sequence", SequenceScaler(), n_features, where, test=test)
    shape = (1, *X.shape[1:]) if X.ndim == 3 else X.shape[1:]  # (n, H, W) gets a channel axis
    return Raw(name, source.y_key, X, y, "image", ImageScaler(shape), n_features, where, test=test)


def _npz_rows(path: Path, source: NpzData) -> tuple[np.ndarray, np.ndarray]:
    """X and y of one archive, checked: numeric finite X, one finite target per row."""
    name = str(path)
    arrays = read_npz_arrays(path, {source.x_key: "set data.x_key to the right name",
                                   source.y_key: "set data.y_key to the right name"})
    X, y = arrays[source.x_key], arrays[source.y_key]
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name}: {source.x_key!r} must be numeric, not {X.dtype}")
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
    return X, y


# --- task and labels -------------------------------------------------------------------

def _is_numeric(y: np.ndarray) -> bool:
    return y.dtype.kind in "biuf"


def _resolve_task(raw: Raw, task: str | None) -> str:
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


def _test_labels(raw: Raw, fixed: FixedTest, class_names: tuple[str, ...]) -> np.ndarray:
    """The test file's classes as the training file's label indices; matched by their text, so a
    test file whose labels read as numbers fits a training file whose labels did not, and back."""
    index = {_label_text(v): k for k, v in enumerate(np.unique(raw.y))}  # LabelEncoder's order
    texts = [_label_text(v) for v in fixed.y]
    unknown = [i for i, text in enumerate(texts) if text not in index]
    if unknown:
        first = unknown[0]
        shown = ", ".join(map(repr, class_names[:10])) + (", ..." if len(class_names) > 10 else "")
        raise DataError(f"{fixed.source}: class {texts[first]!r} ({fixed.where(first)}"
                        f"{f', {len(unknown)} in all' if len(unknown) > 1 else ''}) is not in the training data "
                        f"{raw.source}, whose classes are {shown}; a model cannot learn a class it never sees: "
                        "remove those test rows or add examples of the class to the training data")
    return np.array([index[text] for text in texts], dtype=np.int64)


def _test_targets(raw: Raw, fixed: FixedTest) -> np.ndarray:
    if not _is_numeric(fixed.y):
        first = next((i for i, v in enumerate(fixed.y) if not _parses(v)), 0)
        raise DataError(f"{fixed.source}: target {raw.target!r} must be numeric for regression, as in the training "
                        f"file, but {fixed.where(first)} has {fixed.y[first]!r}; fix the test file")
    return fixed.y.astype(np.float32)


def _encode_labels(raw: Raw) -> tuple[np.ndarray, tuple[str, ...]]:
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
