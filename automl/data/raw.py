"""What every reader hands to `load_data`: the features as read plus an unfitted preprocessor.

Kept apart from the loaders so the per-modality readers (images, sequences, text) can
build one without importing `load_data`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class FixedTest:
    """The rows of data.test_path, read like the training file: the test set, as read."""

    source: str
    features: Any
    y: np.ndarray
    where: Callable[[int], str]
    missing_values: int = 0


@dataclass
class Raw:
    source: str
    target: str
    features: Any  # pandas DataFrame, numpy array, or object array (file paths, texts, ragged sequences)
    y: np.ndarray  # target values, none missing: numbers, or text labels
    modality: str  # "tabular" | "image" | "sequence" | "text"
    preprocessor: Any  # unfitted; fit on the training rows of `features`; must pickle (workers) and be a class
    # automl.final.preprocessor_io can save as JSON (the export never pickles it)
    n_features: int  # raw feature columns before encoding
    where: Callable[[int], str]  # row index -> "line 7" / "row 6" / a file name, for messages
    feature_kinds: dict[str, int] | None = None
    missing_values: int = 0
    class_names: tuple[str, ...] | None = None  # names of integer labels 0..K-1, when the source has them
    notes: list[str] = field(default_factory=list)
    test: FixedTest | None = None  # with data.test_path; `features` and `y` are the training file's alone
