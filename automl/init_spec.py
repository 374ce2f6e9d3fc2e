"""`automl init DATA`: look at a data file or folder and draft a spec with the agent's choices.

The kind of data is read off the path (a folder of class sub-folders, an .npz archive, a
CSV); for a CSV the columns decide between a plain table, a text column and a long-form
sequence table. The draft is then validated and planned like any spec, so what it says
(task, metric, families) is what `automl run` will do.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.data.checks import MIN_TRAIN_ROWS, looks_like_id, rows_needed, training_rows
from automl.data.preprocess import parse_numbers
from automl.errors import DataError

TARGET_NAMES = ("target", "label", "labels", "class", "y", "outcome")
ID_NAMES = ("id", "series_id", "sequence_id", "sample_id", "series", "sequence")
TIME_NAMES = ("time", "t", "step", "timestamp", "date", "time_step")
# A text column: mostly non-numeric cells averaging at least this many words.
TEXT_MIN_WORDS = 4
SNIFF_BYTES = 64 * 1024


def draft_source(data: Path, target: str | None) -> tuple[dict[str, Any], list[str]]:
    """The spec's data section for this path, and sentences saying how it was decided."""
    if not data.exists():
        raise DataError(f"{data}: no such file or folder")
    if data.is_dir():
        return {"source": "images", "path": str(data)}, [f"{data} is a folder: read as images, one sub-folder per class"]
    suffix = data.suffix.lower()
    if suffix == ".npz":
        return {"source": "npz", "path": str(data)}, [f"{data.name} is an .npz archive: arrays X and y"]
    if suffix in (".csv", ".tsv", ".txt"):
        return _draft_csv(data, target)
    raise DataError(f"{data}: cannot tell the kind of data from the suffix {suffix!r}; give a CSV file, an .npz "
                    "archive or a folder of images with one sub-folder per class")


def _draft_csv(path: Path, target: str | None) -> tuple[dict[str, Any], list[str]]:
    delimiter = _sniff_delimiter(path)
    try:
        frame = pd.read_csv(path, sep=delimiter, dtype=str, nrows=5000)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be read as CSV ({error})") from None
    columns = [str(c).strip() for c in frame.columns]
    frame.columns = columns
    why = []
    if target is None:
        target = next((c for c in columns if c.lower() in TARGET_NAMES), columns[-1])
        why.append(f"target column {target!r} ({'its name' if target.lower() in TARGET_NAMES else 'the last column'}; "
                   "use --target to choose another)")
    elif target not in columns:
        raise DataError(f"{path}: no column {target!r}; columns are: {', '.join(map(repr, columns))}")
    base = {"path": str(path), "target": target, **({"delimiter": delimiter} if delimiter != "," else {})}

    inputs = [c for c in columns if c != target]
    text = [c for c in inputs if _is_text(frame[c])]
    if text:
        column = max(text, key=lambda c: frame[c].fillna("").str.len().mean())
        why.append(f"column {column!r} holds free text (on average "
                   f"{frame[column].fillna('').str.split().str.len().mean():.0f} words): a text task")
        return {"source": "text_csv", **base, "text_column": column}, why
    id_column = next((c for c in inputs if c.lower() in ID_NAMES), None)
    if id_column is not None and frame[id_column].duplicated().any():
        time_column = next((c for c in inputs if c.lower() in TIME_NAMES), None)
        why.append(f"rows share values of {id_column!r}: a long-form sequence table, one sequence per {id_column}")
        source = {"source": "sequence_csv", **base, "layout": "long", "id_column": id_column}
        if time_column:
            source["time_column"] = time_column
        return source, why
    why.append(f"{len(inputs)} input column(s): a table")
    ids = [c for c in inputs if looks_like_id(c, _cells(frame[c]))]
    if ids and len(ids) < len(inputs):
        why.append(f"{', '.join(map(repr, ids))}: unique per row (an ID), listed in data.drop: a model cannot "
                   "generalise from an ID (take it out of drop to keep it)")
        return {"source": "csv", **base, "drop": ids}, why
    return {"source": "csv", **base}, why


def _cells(column: pd.Series) -> np.ndarray:
    """Numbers when every cell is one, else the text cells (as checks.looks_like_id takes them)."""
    numbers = parse_numbers(column)
    return numbers.to_numpy() if numbers.notna().all() else column.to_numpy(dtype=object)


def _sniff_delimiter(path: Path) -> str:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            sample = handle.read(SNIFF_BYTES)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; re-save the file as UTF-8 CSV") from None
    if not sample.strip():
        raise DataError(f"{path}: the file is empty; it needs a header line and data rows")
    try:
        return csv.Sniffer().sniff(sample.splitlines()[0], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _is_text(column: pd.Series) -> bool:
    values = column.dropna().astype(str)
    if values.empty:
        return False
    numeric = pd.to_numeric(values, errors="coerce").notna().mean()
    words = values.map(lambda v: len(re.findall(r"\w+", v))).mean()
    return numeric < 0.5 and words >= TEXT_MIN_WORDS


def draft_spec(data: Path, target: str | None = None, name: str | None = None,
               test: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """A spec document (JSON-ready) for `data` (and its own `test` file), planned by the agent, and the
    reasons for its choices."""
    from automl.planning import make_plan
    from automl.spec import parse_spec

    data = data.resolve()
    source, why = draft_source(data, target)
    if test is not None:
        source["test_path"] = str(test.resolve())
        why.append(f"test rows from {test.name}, read like {data.name}")
    name = name or re.sub(r"[^A-Za-z0-9_.-]+", "_", data.stem) or "run"
    document: dict[str, Any] = {"name": name, "data": source}
    # planned once without refusing, to count the rows; then with the split that fits them
    plan = make_plan(parse_spec(document, str(data)), refuse=False)
    split = _split_for(plan.data.profile, data, test is not None)
    if "cv_folds" in split:
        plan = make_plan(parse_spec({**document, "split": split}, str(data)))
    else:
        plan.checks.raise_refusals()  # planned with this very split (the default)
    profile = plan.data.profile
    chosen = [c.family for c in plan.choices if c.chosen]
    small = "cv_folds" in split
    document.update({
        "task": profile.task,
        "metric": plan.metric,
        "split": split,
        "budget": {"max_trials": 20, "max_epochs": 30, "patience": 8},
        "strategy": {"name": "auto"},  # the agent picks it from the budget, the epochs and the space
        "families": {"include": chosen},
    })
    why.append(f"{profile.modality} {profile.task} with {profile.n_samples} rows; metric {plan.metric}")
    if small:
        why.append("small data: 5-fold cross-validation gives a steadier score than one validation split")
    why += [f"family {c.family}: {'chosen' if c.chosen else 'not used'} - {c.reason}" for c in plan.choices]
    why += [f"warning: {finding.message}" for finding in plan.checks.findings]
    return document, why


def _split_for(profile, data: Path, test_file: bool) -> dict[str, Any]:
    """k folds (replacing the validation split) up to 1000 rows; refused when too few rows are left to train on."""
    rows = profile.n_samples - (profile.n_test if test_file else 0)  # a test file's rows are not split
    held_out = {} if test_file else {"test": 0.2}
    split = {**held_out, "cv_folds": 5} if rows <= 1000 else {"validation": 0.2, **held_out}
    test, folds = (0.0 if test_file else 0.2), split.get("cv_folds")
    if training_rows(rows, test, 0.2, folds) < MIN_TRAIN_ROWS:
        raise DataError(f"{data}: {rows} rows are too few to train, tune and test a model: the split init writes "
                        f"({', '.join(f'{k}={v}' for k, v in split.items())}) needs at least "
                        f"{rows_needed(test, 0.2, folds)} rows to leave {MIN_TRAIN_ROWS} training rows per fold; "
                        "add rows")
    return split
