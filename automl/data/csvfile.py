"""Reading a CSV file as text, shared by the csv, sequence_csv and text_csv sources and `predict`.

Every cell is read as text so the callers decide the types themselves and can point at a
bad cell by its file line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from automl.data.preprocess import NUMERIC_SHARE, blank_to_nan, parse_numbers
from automl.errors import DataError


def read_table(path: Path, delimiter: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The non-blank rows of a CSV file (all cells text) and the file line number of each row."""
    name = str(path)
    if not path.is_file():
        raise DataError(f"{name}: file not found; check the path")
    try:
        # Blank lines kept so row i is line i + 2 (header is line 1). Quoted values spanning
        # several lines would shift that count; such files are rare here.
        frame = pd.read_csv(path, sep=delimiter, dtype=str, na_values=["?"], skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: the file is empty; it needs a header line and data rows") from None
    except pd.errors.ParserError as error:
        raise DataError(f"{name}: cannot be read as CSV with delimiter {delimiter!r}: {error}") from None
    except UnicodeDecodeError:
        raise DataError(f"{name}: not UTF-8 text; re-save the file as UTF-8 CSV") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    lines = np.arange(len(frame)) + 2
    filled = frame.apply(blank_to_nan).notna().any(axis=1).to_numpy()  # drop blank lines and all-empty rows
    frame, lines = frame[filled].reset_index(drop=True), lines[filled]
    if frame.empty:
        raise DataError(f"{name}: no data rows below the header line")
    return frame, lines


def check_columns(name: str, columns: list[str], delimiter: str, required: dict[str, str],
                  drop: tuple[str, ...] = ()) -> None:
    """`required` maps each column the spec names to its role ("target", "text", ...)."""
    available = ", ".join(map(repr, columns))
    for column, role in required.items():
        if column not in columns:
            hint = ""
            if len(columns) == 1:
                other = next((d for d in ",;\t|" if d != delimiter and d in columns[0]), None)
                if other:
                    hint = f"; the header contains {other!r}: set data.delimiter to {other!r}?"
            raise DataError(f"{name}: no {role} column {column!r}; columns are: {available}{hint}")
    unknown = [c for c in drop if c not in columns]
    if unknown:
        raise DataError(f"{name}: data.drop names column(s) not in the file: {', '.join(map(repr, unknown))}; "
                        f"columns are: {available}")
    for column, role in required.items():
        if column in drop:
            raise DataError(f"{name}: the {role} column {column!r} is also listed in data.drop; remove it from there")
    roles: dict[str, str] = {}
    for column, role in required.items():
        if column in roles:
            raise DataError(f"{name}: column {column!r} is both the {roles[column]} and the {role} column; "
                            "name different columns in the spec")
        roles[column] = role


def target_values(column: pd.Series, lines: np.ndarray, name: str, target: str, task: str | None) -> np.ndarray:
    """The target cells: numbers when every value is one, else the text labels; an empty cell is an error."""
    empty = np.flatnonzero(blank_to_nan(column).isna().to_numpy())
    if empty.size:
        shown = ", ".join(str(lines[i]) for i in empty[:5])
        raise DataError(f"{name}: target column {target!r} is empty on line(s) {shown}"
                        f"{f' ({empty.size} rows in all)' if empty.size > 5 else ''}; "
                        "fill in those values or remove the rows")
    numbers = parse_numbers(column)
    bad = np.flatnonzero(numbers.isna().to_numpy())
    if bad.size == 0:
        return numbers.to_numpy()
    share = 1 - bad.size / len(column)
    # A mostly numeric target with a stray word is a typo, unless the user said these are labels.
    if task == "regression" or (task is None and share >= NUMERIC_SHARE):
        why = "the task is regression" if task == "regression" else f"{share:.0%} of its values are numbers"
        raise DataError(f"{name}: target column {target!r} must be numeric ({why}) but line {lines[bad[0]]} has "
                        f"{column.iloc[bad[0]]!r}; fix the value, or set task to classification if these are labels")
    return blank_to_nan(column).to_numpy(dtype=object)


def read_test_table(path: Path, delimiter: str, target: str, task: str | None,
                    columns: dict[str, str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """data.test_path: its rows, their file lines and targets; `columns` (name -> role) are the
    columns the training file was read with, each of which the test file must have too."""
    frame, lines = read_table(path, delimiter)
    available = list(frame.columns)
    for column, role in {target: "target", **columns}.items():
        if column not in available:
            raise DataError(f"{path}: no {role} column {column!r}, which the training file has; the test file needs "
                            f"the training file's columns (it has: {', '.join(map(repr, available))})")
    return frame, lines, target_values(frame[target], lines, str(path), target, task)


def numeric_cells(frame: pd.DataFrame, lines: np.ndarray, name: str) -> np.ndarray:
    """Every cell as a float, (rows, columns); an empty or non-numeric cell is an error naming line and column."""
    values = np.empty(frame.shape, dtype=np.float64)
    for k, column in enumerate(frame.columns):
        parsed = parse_numbers(frame[column])
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if bad.size:
            cell = frame[column].iloc[bad[0]]
            what = "is empty" if pd.isna(blank_to_nan(frame[column]).iloc[bad[0]]) else f"has {cell!r}, not a number"
            more = f" ({bad.size} bad cells in this column)" if bad.size > 1 else ""
            raise DataError(f"{name}: line {lines[bad[0]]}, column {column!r} {what}{more}; every value of a "
                            "sequence must be a finite number: fix the cell, or list the column in data.drop")
        values[:, k] = parsed.to_numpy()
    return values
