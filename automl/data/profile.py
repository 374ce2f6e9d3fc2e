"""Build the `Profile` from what a loader learnt about its data.

The loader passes facts; the class statistics and the standard notes are derived here
so every source reports them the same way.
"""
from __future__ import annotations

import numpy as np

from automl.data.base import Profile

# Below this largest/smallest class ratio imbalance is not worth a note.
IMBALANCE_NOTE = 2.0


def build_profile(
    *,
    source: str,
    modality: str,
    task: str,
    target: str,
    split_sizes: tuple[int, int, int],
    input_shape: tuple[int, ...],
    n_features: int,
    labels: np.ndarray | None = None,
    class_names: tuple[str, ...] | None = None,
    feature_kinds: dict[str, int] | None = None,
    missing_values: int = 0,
    notes: tuple[str, ...] = (),
    vocab_size: int | None = None,
    test_source: str | None = None,
) -> Profile:
    """`labels` are the encoded classes (0..K-1) of all rows (a test file's too), for classification only."""
    n_train, n_val, n_test = split_sizes
    kinds = dict(feature_kinds) if feature_kinds else {"numeric": n_features, "categorical": 0}
    facts = list(notes)
    if kinds.get("categorical"):
        facts.append(f"{kinds['categorical']} categorical column(s) one-hot encoded")
    if missing_values:
        facts.append(f"{missing_values} missing value(s) imputed")

    n_classes = class_counts = imbalance = None
    if task == "classification":
        assert labels is not None and class_names is not None
        n_classes = len(class_names)
        counts = np.bincount(labels, minlength=n_classes)
        class_counts = {name: int(count) for name, count in zip(class_names, counts)}
        imbalance = float(counts.max() / counts.min()) if counts.min() > 0 else float("inf")
        if imbalance >= IMBALANCE_NOTE:
            facts.append(f"classes imbalanced {imbalance:.1f}:1")

    return Profile(
        source=source,
        modality=modality,
        task=task,
        target=target,
        n_samples=n_train + n_val + n_test,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        input_shape=tuple(int(d) for d in input_shape),
        n_features=n_features,
        feature_kinds=kinds,
        n_classes=n_classes,
        class_names=tuple(class_names) if class_names is not None else None,
        class_counts=class_counts,
        imbalance=imbalance,
        missing_values=int(missing_values),
        notes=tuple(facts),
        vocab_size=vocab_size,
        test_source=test_source,
    )
