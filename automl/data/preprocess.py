"""How raw features become model inputs.

Every preprocessor here is a sklearn-style transformer fit on the training split only
and kept with the model, so `predict` replays exactly the same transform on new rows:

- CSV: `frame_preprocessor` takes a raw pandas DataFrame of the feature columns
  (strings or already-typed values, extra columns ignored).
- tabular arrays (builtin, npz): a plain StandardScaler.
- images: `ImageScaler` takes (n, features), (n, H, W) or (n, C, H, W) arrays; image
  folders put `images.ImageFileReader` (file paths -> pixels) in front of it.
- sequences: `sequences.SequenceScaler`; text: `text.TextEncoder` (int64 token ids).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from automl.errors import DataError

logger = logging.getLogger(__name__)

# A column is numeric when at least this share of its non-empty values parse as numbers;
# below it the non-numbers are real categories, above it they are typos worth reporting.
NUMERIC_SHARE = 0.9


def as_float32(array) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def blank_to_nan(column: pd.Series) -> pd.Series:
    """Strip text cells; whitespace-only cells count as missing."""
    column = column.astype(object)
    text = column.map(lambda v: v.strip() if isinstance(v, str) else v)
    return text.where(text.map(lambda v: not (isinstance(v, str) and v == "")), np.nan)


def parse_numbers(column: pd.Series) -> pd.Series:
    """Finite floats, NaN where a value is missing or not a number (inf counts as not a number)."""
    values = pd.to_numeric(blank_to_nan(column), errors="coerce").astype(float)
    return values.where(np.isfinite(values), np.nan)


@dataclass(frozen=True)
class ColumnKinds:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    empty: tuple[str, ...]  # no value at all: nothing to learn, dropped


def classify_columns(frame: pd.DataFrame, lines: np.ndarray, path: str) -> ColumnKinds:
    """Numeric or categorical per column; a stray text value in a numeric column is a DataError.

    `lines` holds the file line number of each row, so the error points at the right line.
    """
    numeric, categorical, empty = [], [], []
    for name in frame.columns:
        present = blank_to_nan(frame[name]).notna().to_numpy()
        if not present.any():
            empty.append(name)
            continue
        parsed = parse_numbers(frame[name]).notna().to_numpy()
        share = parsed[present].mean()
        if share < NUMERIC_SHARE:
            categorical.append(name)
            continue
        bad = np.flatnonzero(present & ~parsed)
        if bad.size:
            row = bad[0]
            raise DataError(
                f"{path}: column {name!r} looks numeric ({share:.0%} of its values are numbers) but line "
                f"{lines[row]} has {frame[name].iloc[row]!r}"
                + (f" (and {bad.size - 1} more non-number(s))" if bad.size > 1 else "")
                + "; fix that value, leave the cell empty to have it imputed, or add the column to data.drop"
            )
        numeric.append(name)
    return ColumnKinds(tuple(numeric), tuple(categorical), tuple(empty))


def _category_text(value):
    if isinstance(value, str):
        return value.strip() or np.nan
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return np.nan
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # a typed frame may hold 3.0 where the training CSV said "3"
    return str(value)


class FrameCoercer(BaseEstimator, TransformerMixin):
    """Select the feature columns and give them the types seen in training.

    Numeric columns become floats (anything unparseable becomes missing and is imputed),
    categorical ones become text, so a frame read with pandas' own type guessing works too.
    """

    def __init__(self, numeric=(), categorical=()):
        self.numeric = numeric
        self.categorical = categorical

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        if not isinstance(X, pd.DataFrame):
            raise DataError("the preprocessor expects a pandas DataFrame with the feature columns")
        missing = [c for c in (*self.numeric, *self.categorical) if c not in X.columns]
        if missing:
            raise DataError(f"feature column(s) missing from the input: {', '.join(map(repr, missing))}; "
                            "give a file with the columns of the training file")
        out = {name: parse_numbers(X[name]).to_numpy() for name in self.numeric}
        out.update({name: X[name].map(_category_text).astype(object).to_numpy() for name in self.categorical})
        return pd.DataFrame(out, columns=[*self.numeric, *self.categorical], index=X.index)


def frame_preprocessor(numeric: tuple[str, ...], categorical: tuple[str, ...]) -> Pipeline:
    """Impute, scale numeric and one-hot categorical columns; dense output."""
    parts = []
    if numeric:
        # keep_empty_features: a column empty in the train split still keeps its slot.
        parts.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]), list(numeric)))
    if categorical:
        parts.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]), list(categorical)))
    return Pipeline([
        ("coerce", FrameCoercer(numeric, categorical)),
        ("columns", ColumnTransformer(parts, sparse_threshold=0.0)),
    ])


class ImageScaler(BaseEstimator, TransformerMixin):
    """Reshape to (n, *input_shape) and multiply by a scale.

    With `scale=None` the scale is learnt in `fit`: 1 when the training pixels already lie
    in [0, 1], else 1 / (largest absolute training value), so inputs land in [-1, 1].
    """

    def __init__(self, input_shape: tuple[int, ...], scale: float | None = None):
        self.input_shape = input_shape
        self.scale = scale

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        if self.scale is not None:
            self.scale_ = float(self.scale)
        elif X.size == 0 or (X.min() >= 0 and X.max() <= 1):
            self.scale_ = 1.0
        else:
            peak = float(np.abs(X).max())
            self.scale_ = 1.0 / peak if peak > 0 else 1.0
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=np.float32)
        expected = int(np.prod(self.input_shape))
        if X.ndim == 0 or X.size != len(X) * expected:
            raise DataError(f"expected images of shape {tuple(self.input_shape)}, got an array of shape {X.shape}")
        return as_float32(X.reshape(-1, *self.input_shape) * np.float32(self.scale_))
