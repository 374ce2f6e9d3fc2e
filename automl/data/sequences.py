"""Sequences: NPZ arrays (n, length, channels) and CSV files in wide or long layout.

Model inputs are float32 (n, length, channels). The preprocessor pads (at the end) or
cuts every sequence to the longest training sequence and standardises each channel with
training statistics, so sequences of different lengths can share one batch.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from automl.data.csvfile import (
    check_columns,
    numeric_cells,
    read_table,
    read_test_table,
    target_values,
)
from automl.data.preprocess import blank_to_nan, parse_numbers
from automl.data.raw import FixedTest, Raw
from automl.errors import DataError
from automl.spec import SequenceCsvData


def object_array(items: list) -> np.ndarray:
    """A 1-D object array of `items`; np.array would stack equal-shaped arrays into one block."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _as_sequences(X) -> list[np.ndarray] | np.ndarray:
    """(n, length, channels) float array, or a list of (length_i, channels) arrays for ragged input."""
    if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":
        if X.ndim == 2:  # univariate: (n, length)
            return X[:, :, None].astype(np.float64)
        if X.ndim == 3:
            return X.astype(np.float64)
        raise DataError(f"expected sequences of shape (n, length, channels), got an array of shape {X.shape}")
    out = []
    for i, item in enumerate(X):
        item = np.asarray(item, dtype=np.float64)
        if item.ndim == 1:
            item = item[:, None]
        if item.ndim != 2:
            raise DataError(f"sequence {i} has shape {item.shape}; expected (length, channels)")
        out.append(item)
    return out


class SequenceScaler(BaseEstimator, TransformerMixin):
    """Sequences -> float32 (n, length, channels), length and per-channel mean/std learnt in `fit`.

    Accepts a numeric (n, length, channels) or (n, length) array, or a list/object array of
    (length_i, channels) arrays. Padding is 0 after scaling, i.e. the channel's training mean.
    """

    def fit(self, X, y=None):
        sequences = _as_sequences(X)
        if len(sequences) == 0:
            raise DataError("no training sequences to learn the length and scaling from")
        channels = {s.shape[1] for s in sequences}
        if len(channels) > 1:
            raise DataError(f"the sequences have different numbers of channels: {sorted(channels)}")
        lengths = [len(s) for s in sequences]
        self.channels_, self.length_, self.min_length_ = channels.pop(), max(lengths), min(lengths)
        steps = np.concatenate(sequences) if isinstance(sequences, list) else sequences.reshape(-1, self.channels_)
        self.mean_ = steps.mean(axis=0)
        std = steps.std(axis=0)
        self.std_ = np.where(np.isfinite(std) & (std > 0), std, 1.0)  # a constant channel: just centred
        return self

    def transform(self, X):
        sequences = _as_sequences(X)
        out = np.zeros((len(sequences), self.length_, self.channels_), dtype=np.float32)
        for i, sequence in enumerate(sequences):
            if sequence.shape[1] != self.channels_:
                raise DataError(f"sequence {i} has {sequence.shape[1]} channel(s); the model was trained on "
                                f"{self.channels_}")
            sequence = sequence[:self.length_]
            out[i, :len(sequence)] = (sequence - self.mean_) / self.std_
        return out

    def fit_notes(self) -> list[str]:
        if self.min_length_ == self.length_:
            return []
        return [f"sequences of {self.min_length_} to {self.length_} steps in the training split: padded at the end "
                f"to {self.length_} (longer ones are cut)"]


# --- CSV layouts -----------------------------------------------------------------------

def wide_sequences(frame: pd.DataFrame, lines: np.ndarray, name: str, exclude: set[str]) -> np.ndarray:
    """One row per sequence, every other column a time step: (n, steps, 1) floats."""
    steps = [c for c in frame.columns if c not in exclude]
    if not steps:
        raise DataError(f"{name}: no time-step columns besides {', '.join(map(repr, sorted(exclude)))}; in layout "
                        "'wide' each row is one sequence and each other column one step")
    return numeric_cells(frame[steps], lines, name)[:, :, None]


def long_sequences(frame: pd.DataFrame, lines: np.ndarray, name: str, id_column: str, time_column: str | None,
                   exclude: set[str]) -> tuple[list[np.ndarray], list[str], list[np.ndarray]]:
    """Rows grouped by id into (steps, channels) arrays, in order of first appearance.

    Returns the sequences, their ids and the rows of each (in file order, for the target check).
    """
    ids = blank_to_nan(frame[id_column])
    _no_empty(ids, lines, name, id_column)
    channels = [c for c in frame.columns if c not in exclude | {id_column, time_column}]
    if not channels:
        raise DataError(f"{name}: no value columns besides the id, time, target and dropped columns; in layout "
                        "'long' each row is one step and the other columns are its values")
    values = numeric_cells(frame[channels], lines, name)
    order = _time_key(frame, lines, name, time_column)
    codes, names = pd.factorize(ids.astype(str))
    by_sequence = np.argsort(codes, kind="stable")  # stable: each sequence's rows stay in file order
    groups = np.split(by_sequence, np.cumsum(np.bincount(codes))[:-1])
    sequences = [values[rows[np.argsort(order[rows], kind="stable")]] for rows in groups]
    return sequences, [str(n) for n in names], groups


def _no_empty(column: pd.Series, lines: np.ndarray, name: str, setting: str) -> None:
    empty = np.flatnonzero(column.isna().to_numpy())
    if empty.size:
        raise DataError(f"{name}: column {setting!r} is empty on line {lines[empty[0]]}"
                        f"{f' ({empty.size} rows in all)' if empty.size > 1 else ''}; every row needs a value")


def _time_key(frame: pd.DataFrame, lines: np.ndarray, name: str, time_column: str | None) -> np.ndarray:
    """Sort key for the steps: the time as a number when every value is one, else as text; file order without one."""
    if time_column is None:
        return np.arange(len(frame))
    times = blank_to_nan(frame[time_column])
    _no_empty(times, lines, name, time_column)
    numbers = parse_numbers(times)
    return numbers.to_numpy() if numbers.notna().all() else times.astype(str).to_numpy()


def _columns(source: SequenceCsvData) -> dict[str, str]:
    """The columns the spec names, by role."""
    required = {source.target: "target"}
    if source.id_column:
        required[source.id_column] = "id"
    if source.time_column:
        required[source.time_column] = "time"
    return required


def read_sequence_csv(source: SequenceCsvData, task: str | None) -> Raw:
    frame, lines = read_table(source.path, source.delimiter)
    name = str(source.path)
    required = _columns(source)
    check_columns(name, list(frame.columns), source.delimiter, required, source.drop)
    y = target_values(frame[source.target], lines, name, source.target, task)
    exclude = {source.target, *source.drop}
    values = [c for c in frame.columns if c not in exclude and c not in required]  # steps (wide), channels (long)
    test = _read_test(source, values, task) if source.test_path is not None else None

    if source.layout == "wide":
        X = wide_sequences(frame, lines, name, exclude)
        return Raw(name, source.target, X, y, "sequence", SequenceScaler(), X.shape[1],
                   lambda i: f"line {lines[i]}", test=test)
    sequences, ids, first = _long_csv(frame, lines, name, source, y, exclude)
    return Raw(name, source.target, object_array(sequences), y[first], "sequence", SequenceScaler(),
               sequences[0].shape[1], lambda i: f"sequence {ids[i]!r} (line {lines[first[i]]})",
               notes=[f"{len(ids)} sequences from {len(frame)} rows, grouped by {source.id_column!r}"], test=test)


def _long_csv(frame: pd.DataFrame, lines: np.ndarray, name: str, source: SequenceCsvData, y: np.ndarray,
              exclude: set[str]) -> tuple[list[np.ndarray], list[str], np.ndarray]:
    """The sequences, their ids and the first row of each; the target must not change within a sequence."""
    sequences, ids, groups = long_sequences(frame, lines, name, source.id_column, source.time_column, exclude)
    for sequence_id, rows in zip(ids, groups):
        differs = np.flatnonzero(y[rows] != y[rows[0]])
        if differs.size:
            other = rows[differs[0]]
            raise DataError(f"{name}: target {source.target!r} changes within sequence {sequence_id!r}: line "
                            f"{lines[rows[0]]} has {y[rows[0]]!r}, line {lines[other]} has {y[other]!r}; a sequence "
                            "has one target value on all its rows")
    return sequences, ids, np.array([rows[0] for rows in groups])


def _read_test(source: SequenceCsvData, values: list[str], task: str | None) -> FixedTest:
    """data.test_path, with the training file's step (wide) or value (long) columns."""
    name = str(source.test_path)
    named = {c: role for c, role in _columns(source).items() if c != source.target}
    roles = {**named, **dict.fromkeys(values, "time-step" if source.layout == "wide" else "value")}
    frame, lines, y = read_test_table(source.test_path, source.delimiter, source.target, task, roles)
    if source.layout == "wide":
        return FixedTest(name, wide_sequences(frame[values], lines, name, set()), y, lambda i: f"line {lines[i]}")
    frame = frame[[source.target, *named, *values]]
    sequences, ids, first = _long_csv(frame, lines, name, source, y, {source.target})
    return FixedTest(name, object_array(sequences), y[first],
                     lambda i: f"sequence {ids[i]!r} (line {lines[first[i]]})")
