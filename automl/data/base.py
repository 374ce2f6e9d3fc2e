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
    modality: str  # "tabular" | "image" | "sequence"
    task: str  # "classification" | "regression"
    target: str  # target column / array name
    n_samples: int
    n_train: int
    n_val: int
    n_test: int
    input_shape: tuple[int, ...]  # one sample as the model sees it: (features,) or (channels, height, width)
    n_features: int  # raw feature columns before encoding
    feature_kinds: dict[str, int] = field(default_factory=dict)  # {"numeric": n, "categorical": m}
    n_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    class_counts: dict[str, int] | None = None  # over all rows
    imbalance: float | None = None  # largest class count / smallest
    missing_values: int = 0  # cells filled by imputation
    notes: tuple[str, ...] = ()  # human-readable facts worth showing in the report

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data


@dataclass
class PreparedData:
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
