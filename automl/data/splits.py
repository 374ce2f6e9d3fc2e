"""Which rows train, validate and test: a held-out test split (none with a test file), then one
validation split or k folds."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from automl.data.raw import Raw
from automl.errors import DataError
from automl.spec import SplitSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices; with cross-validation every non-test row
    val: np.ndarray  # empty with cross-validation
    test: np.ndarray
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None  # positions into `train`


def split_rows(n: int, labels: np.ndarray | None, class_names, split: SplitSpec, seed: int, raw: Raw,
               fixed_test: bool = False) -> Split:
    """Test held out first; validation (or the k folds) from the rest. `labels`: encoded classes, or None.

    `fixed_test`: the test rows come from their own file (data.test_path), so none of these `n` rows is
    held out for testing and split.test is not used.
    """
    stratify = labels if split.stratify else None
    n_test = 0 if fixed_test else math.ceil(split.test * n)  # the rounding train_test_split uses
    held_out = "a test file" if fixed_test else f"test={split.test}"
    if split.cv_folds is not None:
        k = split.cv_folds
        if (n_test < 1 and not fixed_test) or n - n_test < k:
            raise DataError(f"{raw.source}: {n} rows are too few for {k}-fold cross-validation with {held_out}: "
                            f"{n - n_test} non-test rows, {k} needed at least; add rows, lower split.cv_folds or "
                            "remove it to use one validation split")
        rest, test = _test_rows(n, fixed_test, split.test, stratify, class_names, seed, raw)
        return Split(rest, np.empty(0, dtype=np.int64), test, _folds(rest, k, stratify, class_names, seed, raw))

    n_val = math.ceil(split.validation * (n - n_test))
    sizes = {"train": n - n_test - n_val, "validation": n_val, **({} if fixed_test else {"test": n_test})}
    empty = [part for part, size in sizes.items() if size < 1]
    if empty:
        raise DataError(f"{raw.source}: {n} rows are too few for split {held_out}, validation={split.validation}: "
                        f"the {' and '.join(empty)} split would be empty; add rows or change the split fractions")
    rest, test = _test_rows(n, fixed_test, split.test, stratify, class_names, seed, raw)
    train, val = _holdout(rest, split.validation, stratify, class_names, seed, raw)
    return Split(train, val, test)


def _test_rows(n: int, fixed_test: bool, fraction: float, labels, class_names, seed: int, raw: Raw):
    """(non-test rows, test rows) of the `n` rows read from data.path."""
    if fixed_test:
        return np.arange(n), np.empty(0, dtype=np.int64)
    return _holdout(np.arange(n), fraction, labels, class_names, seed, raw)


def _holdout(rows: np.ndarray, fraction: float, labels, class_names, seed: int, raw: Raw):
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


def _folds(rows: np.ndarray, k: int, labels, class_names, seed: int, raw: Raw):
    """k (train, validation) position pairs into `rows`; stratified when every class has k rows."""
    raw.notes.append(f"{k}-fold cross-validation on {len(rows)} rows")
    splitter, groups = KFold(k, shuffle=True, random_state=seed), None
    if labels is not None:
        counts = np.bincount(labels[rows], minlength=len(class_names))
        rare = [class_names[c] for c in np.flatnonzero((counts > 0) & (counts < k))]
        if rare:
            raw.notes.append(f"cross-validation folds not stratified: class {rare[0]!r} has fewer than {k} "
                             "non-test rows")
        else:
            splitter, groups = StratifiedKFold(k, shuffle=True, random_state=seed), labels[rows]
    positions = np.arange(len(rows))
    return tuple((train.astype(np.int64), val.astype(np.int64)) for train, val in splitter.split(positions, groups))
