"""What the rest of the package receives from the data layer.

`PreparedData` holds the three splits as numpy arrays ready for torch (features
float32, class indices int64 or regression targets float32), already transformed
by a preprocessor fit on the training split only, plus the profile the agent uses
to choose model families.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Profile:
    source: str  # e.g. "sklearn:digits" or the file path
    modality: str  # "tabular" | "image" | "sequence" | "text"
    task: str  # "classification" | "regression"
    target: str  # target column / array name
    n_samples: int
    n_train: int
    n_val: int
    n_test: int
    # one sample as the model sees it: (features,), (channels, height, width), (length, channels)
    # for sequences, (length,) token ids for text
    input_shape: tuple[int, ...]
    n_features: int  # raw feature columns before encoding
    feature_kinds: dict[str, int] = field(default_factory=dict)  # {"numeric": n, "categorical": m}
    n_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    class_counts: dict[str, int] | None = None  # over all rows
    imbalance: float | None = None  # largest class count / smallest
    missing_values: int = 0  # cells filled by imputation
    notes: tuple[str, ...] = ()  # human-readable facts worth showing in the report
    vocab_size: int | None = None  # text: token ids run 0..vocab_size-1; 0 is padding, 1 unknown words
    test_source: str | None = None  # data.test_path: the test rows are that file's, not a share of `source`

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data


@dataclass
class PreparedData:
    """With k-fold cross-validation, X_train/y_train hold every non-test row, X_val/y_val are
    empty and `folds` lists k (train rows, validation rows) index pairs into X_train."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    profile: Profile
    preprocessor: Any = None  # fitted transform from raw rows to model inputs (kept with the exported model)
    y_mean: float = 0.0  # regression targets are standardised with train statistics for training
    y_std: float = 1.0
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None

    @property
    def cv(self) -> bool:
        return self.folds is not None
