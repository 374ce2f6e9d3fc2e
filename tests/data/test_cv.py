"""k-fold cross-validation: the test split held out, k folds over every other row."""
from __future__ import annotations

import numpy as np
import pytest

from automl.data.loaders import load_data
from automl.errors import DataError
from automl.spec import BuiltinData, NpzData, SplitSpec

IRIS = BuiltinData(source="builtin", name="sklearn:iris")


def test_folds_are_disjoint_cover_the_non_test_rows_and_are_stratified():
    data = load_data(IRIS, SplitSpec(cv_folds=5), task=None, seed=0)
    p = data.profile
    assert data.cv and len(data.folds) == 5
    assert (p.n_train, p.n_val, p.n_test) == (120, 0, 30)
    assert data.X_train.shape == (120, 4) and data.X_val.shape == (0, 4) and data.X_val.dtype == np.float32
    assert data.y_val.shape == (0,) and data.y_val.dtype == np.int64
    validation = np.concatenate([val for _, val in data.folds])
    assert sorted(validation.tolist()) == list(range(120))  # each row validates exactly once
    for train, val in data.folds:
        assert train.dtype == val.dtype == np.int64
        assert not set(train) & set(val) and len(train) + len(val) == 120
        assert np.bincount(data.y_train[val]).tolist() == [8, 8, 8]  # stratified: 40 per class / 5
    assert "5-fold cross-validation on 120 rows" in p.notes


def test_folds_follow_the_seed():
    first = load_data(IRIS, SplitSpec(cv_folds=3), task=None, seed=1)
    again = load_data(IRIS, SplitSpec(cv_folds=3), task=None, seed=1)
    other = load_data(IRIS, SplitSpec(cv_folds=3), task=None, seed=2)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first.folds, again.folds))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first.folds, other.folds))


def test_without_cv_there_are_no_folds():
    data = load_data(IRIS, SplitSpec(), task=None, seed=0)
    assert not data.cv and data.folds is None and data.profile.n_val > 0


def test_regression_and_rare_classes_use_plain_k_fold(tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 3))
    path = tmp_path / "rare.npz"
    np.savez(path, X=X, y=np.array([0] * 47 + [1] * 3))  # class 1 has < 4 non-test rows
    data = load_data(NpzData(source="npz", path=path), SplitSpec(cv_folds=4), task="classification", seed=0)
    assert len(data.folds) == 4 and any("not stratified" in note for note in data.profile.notes)
    regression = load_data(NpzData(source="npz", path=path), SplitSpec(cv_folds=4), task="regression", seed=0)
    assert len(regression.folds) == 4 and regression.y_val.dtype == np.float32


def test_too_few_rows_for_k_folds(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, X=np.zeros((6, 2)), y=np.arange(6.0))
    with pytest.raises(DataError) as info:
        load_data(NpzData(source="npz", path=path), SplitSpec(cv_folds=5), task="regression", seed=0)
    assert "tiny.npz" in str(info.value) and "5-fold" in str(info.value) and "too few" in str(info.value)
