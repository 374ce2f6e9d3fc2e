"""Reading NEW data for `automl predict`, laid out like the training data.

`read_inputs` returns what the fitted preprocessor's `transform` accepts, and one id per
sample for the prediction table. The target column may be absent (or present: ignored).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from automl.data.csvfile import check_columns, numeric_cells, read_table
from automl.data.images import image_files, is_image
from automl.data.loaders import BUILTIN, read_npz_arrays
from automl.data.preprocess import blank_to_nan
from automl.data.sequences import long_sequences, object_array, wide_sequences
from automl.data.text import text_column
from automl.errors import DataError
from automl.spec import BuiltinData, CsvData, DataSource, ImageFolderData, NpzData, SequenceCsvData, TextCsvData


def read_inputs(source: dict, path: Path, id_column: str | None = None) -> tuple[Any, list[str]]:
    """`source` is the spec's data section as JSON (its path, the training file, is ignored).

    The ids are `id_column`'s values (else a csv source's data.id_column), else the file lines."""
    path = Path(path)
    spec = _source_spec(source, path)
    tables = {"csv": _csv, "sequence_csv": _sequence_csv, "text_csv": _text_csv}
    if spec.source == "csv":  # sequence_csv's id_column names sequences, not rows
        id_column = id_column or spec.id_column
    if spec.source in tables:
        return tables[spec.source](spec, path, id_column)
    if id_column:
        raise DataError(f"{path}: an id column ({id_column!r}) applies to CSV files only; this model reads "
                        f"{spec.source} inputs - predict without --id-column")
    return {"builtin": _builtin, "npz": _npz, "images": _images}[spec.source](spec, path)


def _source_spec(source: dict, path: Path):
    raw = {**source, "path": str(path)} if "path" in source else dict(source)
    try:
        return TypeAdapter(DataSource).validate_python(raw)
    except ValidationError as error:
        raise DataError(f"the model's data settings are not valid for this version of automl ({error}); "
                        "retrain the model") from None


def _line_ids(lines: np.ndarray) -> list[str]:
    return [f"line {line}" for line in lines]


def _row_ids(frame: pd.DataFrame, lines: np.ndarray, path: Path, id_column: str | None) -> list[str]:
    """The id column's values (stripped text, "" when empty), else the file lines."""
    if id_column is None:
        return _line_ids(lines)
    if id_column not in frame.columns:
        raise DataError(f"{path}: no id column {id_column!r} (data.id_column or --id-column); columns are: "
                        f"{', '.join(map(repr, frame.columns))}. Add the column, or name another with --id-column")
    return blank_to_nan(frame[id_column]).fillna("").astype(str).tolist()


def _builtin(source: BuiltinData, path: Path) -> tuple[np.ndarray, list[str]]:
    """Raw feature columns of the dataset, from an .npz (array "X") or a CSV of numbers (header optional)."""
    expected = BUILTIN[source.name]().data.shape[1]
    if path.suffix.lower() == ".npz":
        X = read_npz_arrays(path, {"X": "store the features as an array named 'X'"})["X"]
        if X.dtype.kind not in "biuf":
            raise DataError(f"{path}: 'X' must be numeric, not {X.dtype}")
        X, ids = X.reshape(len(X), -1), [f"row {i}" for i in range(len(X))]
    else:
        X, ids = _numeric_csv(path)
    if X.shape[1] != expected:
        raise DataError(f"{path}: has {X.shape[1]} feature column(s) per row, {source.name} has {expected}; "
                        "give the raw feature values in the dataset's column order")
    return X, ids


def _numeric_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path")
    try:
        frame = pd.read_csv(path, header=None, dtype=str, skip_blank_lines=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be read as a CSV of numbers ({error})") from None
    filled = frame.notna().any(axis=1).to_numpy()  # blank lines still count as lines
    frame, lines = frame[filled].reset_index(drop=True), (np.arange(len(frame)) + 1)[filled]
    if len(frame) and pd.to_numeric(frame.iloc[0], errors="coerce").isna().any():  # a word: a header line
        frame = frame.iloc[1:].set_axis(frame.iloc[0].astype(str).str.strip(), axis=1).reset_index(drop=True)
        lines = lines[1:]
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    return numeric_cells(frame, lines, str(path)), _line_ids(lines)


def _csv(source: CsvData, path: Path, id_column: str | None) -> tuple[pd.DataFrame, list[str]]:
    frame, lines = read_table(path, source.delimiter)
    return frame, _row_ids(frame, lines, path, id_column)


def _npz(source: NpzData, path: Path) -> tuple[np.ndarray, list[str]]:
    advice = f"store the inputs as an array named {source.x_key!r}, as in training"
    X = read_npz_arrays(path, {source.x_key: advice})[source.x_key]
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: {source.x_key!r} must be numeric, not {X.dtype}")
    return X, [f"row {i}" for i in range(len(X))]


def _images(source: ImageFolderData, path: Path) -> tuple[np.ndarray, list[str]]:
    """A folder searched at any depth (class sub-folders optional), or one image file."""
    if path.is_file():
        if not is_image(path):
            raise DataError(f"{path}: not a PNG or JPEG file; give an image or a folder of images")
        return np.array([str(path)], dtype=object), [path.name]
    if not path.is_dir():
        raise DataError(f"{path}: not found; give an image file or a folder of images")
    files = image_files(path)
    if not files:
        raise DataError(f"{path}: no PNG or JPEG files in this folder or below it")
    return np.array([str(f) for f in files], dtype=object), [f.relative_to(path).as_posix() for f in files]


def _sequence_csv(source: SequenceCsvData, path: Path, id_column: str | None) -> tuple[np.ndarray, list[str]]:
    frame, lines = read_table(path, source.delimiter)
    name, exclude = str(path), {source.target, *source.drop}
    if source.layout == "wide":
        ids = _row_ids(frame, lines, path, id_column)  # first: a missing id column is named as such
        return wide_sequences(frame, lines, name, exclude | ({id_column} if id_column else set())), ids
    if id_column:
        raise DataError(f"{path}: layout 'long' names each sequence by data.id_column {source.id_column!r}; "
                        "predict without --id-column")
    required = {source.id_column: "id", **({source.time_column: "time"} if source.time_column else {})}
    check_columns(name, list(frame.columns), source.delimiter, required)
    sequences, ids, _ = long_sequences(frame, lines, name, source.id_column, source.time_column, exclude)
    return object_array(sequences), ids


def _text_csv(source: TextCsvData, path: Path, id_column: str | None) -> tuple[np.ndarray, list[str]]:
    frame, lines = read_table(path, source.delimiter)
    check_columns(str(path), list(frame.columns), source.delimiter, {source.text_column: "text"})
    texts, _ = text_column(frame, source.text_column)
    return texts, _row_ids(frame, lines, path, id_column)
