"""Loading every source into PreparedData: shapes, splits, preprocessing, profile, errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from automl.data.loaders import load_data
from automl.errors import DataError
from automl.spec import BuiltinData, CsvData, NpzData, SplitSpec

SPLIT = SplitSpec()


def builtin(name):
    return BuiltinData(source="builtin", name=name)


def csv_source(path, target="label", **kwargs):
    return CsvData(source="csv", path=path, target=target, **kwargs)


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def write_npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def npz_source(path, **kwargs):
    return NpzData(source="npz", path=path, **kwargs)


def data_error(source, task=None, split=SPLIT) -> str:
    with pytest.raises(DataError) as info:
        load_data(source, split, task=task, seed=0)
    return str(info.value)


# --- builtin -------------------------------------------------------------------------

@pytest.mark.parametrize("name, modality, shape, task, rows", [
    ("sklearn:digits", "image", (1, 8, 8), "classification", 1797),
    ("sklearn:breast_cancer", "tabular", (30,), "classification", 569),
    ("sklearn:wine", "tabular", (13,), "classification", 178),
    ("sklearn:iris", "tabular", (4,), "classification", 150),
    ("sklearn:diabetes", "tabular", (10,), "regression", 442),
])
def test_builtin_datasets_load_ready_for_torch(name, modality, shape, task, rows):
    data = load_data(builtin(name), SPLIT, task=None, seed=0)
    p = data.profile
    assert (p.source, p.modality, p.task, p.input_shape) == (name, modality, task, shape)
    assert p.n_train + p.n_val + p.n_test == p.n_samples == rows
    for X, y, n in ((data.X_train, data.y_train, p.n_train), (data.X_val, data.y_val, p.n_val),
                    (data.X_test, data.y_test, p.n_test)):
        assert X.shape == (n, *shape) and y.shape == (n,)
        assert X.dtype == np.float32 and X.flags.c_contiguous
        assert y.dtype == (np.int64 if task == "classification" else np.float32)
    assert p.n_test == int(np.ceil(0.2 * rows))


def test_digits_profile_is_a_ten_class_image_scaled_to_unit_range():
    data = load_data(builtin("sklearn:digits"), SPLIT, task=None, seed=0)
    p = data.profile
    assert p.modality == "image" and p.input_shape == (1, 8, 8) and p.n_features == 64
    assert p.n_classes == 10 and p.class_names == tuple(str(d) for d in range(10))
    assert sum(p.class_counts.values()) == 1797
    assert data.X_train.min() >= 0 and data.X_train.max() == 1.0
    raw = load_digits().data[:3]  # predict reuses the preprocessor on raw rows
    np.testing.assert_allclose(data.preprocessor.transform(raw), raw.reshape(3, 1, 8, 8) / 16)


def test_builtin_class_names_are_the_dataset_labels():
    p = load_data(builtin("sklearn:iris"), SPLIT, task=None, seed=0).profile
    assert p.class_names == ("setosa", "versicolor", "virginica")
    assert p.class_counts == {"setosa": 50, "versicolor": 50, "virginica": 50} and p.imbalance == 1.0


def test_splits_are_stratified_by_class():
    data = load_data(builtin("sklearn:iris"), SPLIT, task=None, seed=0)
    assert np.bincount(data.y_test).tolist() == [10, 10, 10]
    assert np.bincount(data.y_val).tolist() == [8, 8, 8]


def test_test_split_is_stable_for_a_seed_and_changes_with_it():
    first = load_data(builtin("sklearn:wine"), SPLIT, task=None, seed=3)
    again = load_data(builtin("sklearn:wine"), SPLIT, task=None, seed=3)
    other = load_data(builtin("sklearn:wine"), SPLIT, task=None, seed=4)
    np.testing.assert_array_equal(first.X_test, again.X_test)
    np.testing.assert_array_equal(first.y_test, again.y_test)
    assert not np.array_equal(first.X_test, other.X_test)


def test_splits_are_disjoint_and_cover_every_row(tmp_path):
    X = np.arange(100, dtype=float).reshape(-1, 1)  # each row unique, and scaling keeps it so
    data = load_data(npz_source(write_npz(tmp_path, X=X, y=X.ravel() * 0.37)), SPLIT, task=None, seed=0)
    parts = [set(a.ravel().round(4)) for a in (data.X_train, data.X_val, data.X_test)]
    assert sum(map(len, parts)) == len(set.union(*parts)) == 100


# --- CSV -----------------------------------------------------------------------------

MIXED = """\
size,colour,weight,id,label
1.5,red,10,a1,cat
2.0,blue,,a2,dog
,red,12,a3,cat
3.1,,13,a4,dog
2.2,green,14,a5,cat
1.1,red,15,a6,dog
0.5,blue,16,a7,cat
2.8,red,17,a8,dog
1.9,green,18,a9,cat
2.4,blue,19,a10,dog
"""


def test_csv_with_categorical_and_missing_values(tmp_path):
    data = load_data(csv_source(write(tmp_path, MIXED), drop=("id",)), SplitSpec(test=0.2, validation=0.25),
                     task=None, seed=0)
    p = data.profile
    assert p.task == "classification" and p.class_names == ("cat", "dog") and p.n_classes == 2
    assert p.feature_kinds == {"numeric": 2, "categorical": 1} and p.n_features == 3
    assert p.missing_values == 3
    assert any("1 categorical" in note for note in p.notes) and any("3 missing" in note for note in p.notes)
    assert p.input_shape == (data.X_train.shape[1],) and 2 + 1 <= p.input_shape[0] <= 2 + 3
    assert not np.isnan(data.X_train).any() and not np.isnan(data.X_test).any()

    # predict reuses the preprocessor on a frame read by pandas, with an unseen category,
    # extra columns and a missing value.
    fresh = pd.DataFrame({"size": [1.0, None], "colour": ["purple", "red"], "weight": [11, 12], "id": ["x", "y"]})
    out = data.preprocessor.transform(fresh)
    assert out.shape == (2, p.input_shape[0]) and not np.isnan(out).any()


def test_csv_numeric_features_are_standardised_on_train(tmp_path):
    rows = "\n".join(f"{i},{i % 2}" for i in range(40))
    data = load_data(csv_source(write(tmp_path, "x,label\n" + rows)), SPLIT, task=None, seed=0)
    assert abs(float(data.X_train.mean())) < 1e-5 and abs(float(data.X_train.std()) - 1) < 1e-3


def test_csv_delimiter_and_numeric_labels(tmp_path):
    path = write(tmp_path, "a;label\n" + "\n".join(f"{i};{i % 3}" for i in range(30)))
    p = load_data(csv_source(path, delimiter=";"), SPLIT, task=None, seed=0).profile
    assert p.task == "classification" and p.class_names == ("0", "1", "2")


def test_csv_mostly_text_column_is_categorical(tmp_path):
    rows = "\n".join(f"{'x' if i % 2 else i},{i % 2}" for i in range(20))
    p = load_data(csv_source(write(tmp_path, "code,label\n" + rows)), SPLIT, task=None, seed=0).profile
    assert p.feature_kinds == {"numeric": 0, "categorical": 1}


def test_csv_missing_file(tmp_path):
    message = data_error(csv_source(tmp_path / "nope.csv"))
    assert "nope.csv" in message and "not found" in message


def test_csv_empty_file(tmp_path):
    message = data_error(csv_source(write(tmp_path, "")))
    assert "data.csv" in message and "empty" in message


def test_csv_header_only(tmp_path):
    message = data_error(csv_source(write(tmp_path, "a,label\n")))
    assert "data.csv" in message and "no data rows" in message


def test_csv_missing_target_lists_columns(tmp_path):
    message = data_error(csv_source(write(tmp_path, MIXED), target="species"))
    assert "data.csv" in message and "'species'" in message
    assert all(repr(c) in message for c in ("size", "colour", "weight", "label"))


def test_csv_wrong_delimiter_is_hinted(tmp_path):
    message = data_error(csv_source(write(tmp_path, "a;label\n1;x\n2;y\n")))
    assert "data.delimiter" in message and "';'" in message


def test_csv_unknown_drop_column(tmp_path):
    message = data_error(csv_source(write(tmp_path, MIXED), drop=("ID",)))
    assert "data.drop" in message and "'ID'" in message


def test_csv_empty_target_names_file_lines(tmp_path):
    path = write(tmp_path, "a,label\n1,x\n2,\n3,y\n4,x\n5,\n")
    message = data_error(csv_source(path))
    assert "data.csv" in message and "'label'" in message and "line(s) 3, 6" in message


def test_csv_single_class(tmp_path):
    message = data_error(csv_source(write(tmp_path, "a,label\n1,x\n2,x\n3,x\n")))
    assert "data.csv" in message and "'label'" in message and "single class" in message


def test_csv_non_number_in_numeric_column_names_column_line_and_value(tmp_path):
    rows = [f"{i},{i % 2}" for i in range(12)]
    rows[5] = "abc,1"  # line 7: header is line 1, first row line 2
    rows.insert(2, "")  # a blank line is still a line in the file
    message = data_error(csv_source(write(tmp_path, "height,label\n" + "\n".join(rows))))
    assert "data.csv" in message and "'height'" in message and "line 8" in message and "'abc'" in message


def test_csv_regression_with_text_target(tmp_path):
    message = data_error(csv_source(write(tmp_path, "a,label\n1,x\n2,y\n3,x\n")), task="regression")
    assert "data.csv" in message and "'label'" in message and "line 2" in message and "regression" in message


def test_too_few_rows_for_the_split(tmp_path):
    message = data_error(csv_source(write(tmp_path, "a,label\n1,x\n2,y\n")))  # 1 test row, 1 validation, 0 train
    assert "data.csv" in message and "too few" in message and "train" in message


def test_rare_class_turns_stratification_off_with_a_note(tmp_path):
    labels = ["x"] * 15 + ["y"] * 14 + ["z"]  # 'z' has one row: cannot be in every split
    path = write(tmp_path, "a,label\n" + "\n".join(f"{i},{c}" for i, c in enumerate(labels)))
    p = load_data(csv_source(path), SPLIT, task=None, seed=0).profile
    assert p.n_classes == 3 and p.imbalance == 15.0
    assert any("stratified" in note for note in p.notes) and any("15.0:1" in note for note in p.notes)


# --- NPZ -----------------------------------------------------------------------------

def test_npz_tabular(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(5, 3, size=(80, 4))
    path = write_npz(tmp_path, X=X, y=(X[:, 0] > 5).astype(int))
    data = load_data(npz_source(path), SPLIT, task=None, seed=0)
    p = data.profile
    assert (p.modality, p.task, p.input_shape, p.target) == ("tabular", "classification", (4,), "y")
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.preprocessor.transform(X[:2]), data.preprocessor.transform(X)[:2])


def test_npz_images_get_a_channel_axis_and_unit_range(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(60, 6, 5)).astype(np.uint8)
    path = write_npz(tmp_path, images=X, labels=np.arange(60) % 3)
    data = load_data(npz_source(path, x_key="images", y_key="labels", kind="image"), SPLIT, task=None, seed=0)
    p = data.profile
    assert (p.modality, p.input_shape, p.n_classes, p.target) == ("image", (1, 6, 5), 3, "labels")
    assert data.X_train.min() >= 0 and data.X_train.max() <= 1 and data.X_train.max() > 0.9


def test_npz_channel_first_images_and_unit_range_kept(tmp_path):
    X = np.random.default_rng(0).random((40, 3, 4, 4)).astype(np.float32)
    data = load_data(npz_source(write_npz(tmp_path, X=X, y=np.arange(40) % 2)), SPLIT, task=None, seed=0)
    assert data.profile.input_shape == (3, 4, 4)
    np.testing.assert_array_equal(data.preprocessor.transform(X[:5]), X[:5])


def test_npz_missing_file(tmp_path):
    message = data_error(npz_source(tmp_path / "gone.npz"))
    assert "gone.npz" in message and "not found" in message


def test_npz_missing_key_lists_keys(tmp_path):
    message = data_error(npz_source(write_npz(tmp_path, features=np.zeros((5, 2)), y=np.zeros(5))))
    assert "data.npz" in message and "'X'" in message and "'features'" in message and "x_key" in message


def test_npz_length_mismatch(tmp_path):
    message = data_error(npz_source(write_npz(tmp_path, X=np.zeros((5, 2)), y=np.zeros(4))))
    assert "data.npz" in message and "5" in message and "4" in message


def test_npz_non_finite_features_name_the_row(tmp_path):
    X = np.ones((20, 3))
    X[7, 1] = np.nan
    X[9, 0] = np.inf
    message = data_error(npz_source(write_npz(tmp_path, X=X, y=np.arange(20) % 2)))
    assert "data.npz" in message and "row 7" in message


def test_npz_nan_target_names_the_row(tmp_path):
    y = np.arange(20, dtype=float)
    y[4] = np.nan
    message = data_error(npz_source(write_npz(tmp_path, X=np.ones((20, 2)), y=y)))
    assert "data.npz" in message and "row 4" in message


# --- task inference and regression ---------------------------------------------------

def test_task_inference_both_ways(tmp_path):
    X = np.random.default_rng(0).normal(size=(100, 2))
    floats = load_data(npz_source(write_npz(tmp_path, "a.npz", X=X, y=X[:, 0] * 2.5)), SPLIT, task=None, seed=0)
    integers = load_data(npz_source(write_npz(tmp_path, "b.npz", X=X, y=np.arange(100.0) % 4)), SPLIT, task=None, seed=0)
    counts = load_data(npz_source(write_npz(tmp_path, "c.npz", X=X, y=np.arange(100))), SPLIT, task=None, seed=0)
    text = load_data(npz_source(write_npz(tmp_path, "d.npz", X=X, y=np.array(["a", "b"] * 50))), SPLIT, task=None, seed=0)
    assert floats.profile.task == "regression" and counts.profile.task == "regression"
    assert integers.profile.task == "classification" and integers.profile.class_names == ("0", "1", "2", "3")
    assert text.profile.task == "classification" and text.profile.class_names == ("a", "b")
    assert any("inferred" in note for note in floats.profile.notes)


def test_explicit_task_overrides_inference():
    data = load_data(builtin("sklearn:iris"), SPLIT, task="regression", seed=0)
    assert data.profile.task == "regression" and data.y_train.dtype == np.float32
    assert not any("inferred" in note for note in data.profile.notes)


def test_regression_with_text_target_in_npz(tmp_path):
    path = write_npz(tmp_path, X=np.ones((10, 2)), y=np.array(["a", "b"] * 5))
    message = data_error(npz_source(path), task="regression")
    assert "data.npz" in message and "regression" in message and "row 0" in message


def test_regression_targets_stay_in_original_units_with_train_statistics():
    data = load_data(builtin("sklearn:diabetes"), SPLIT, task=None, seed=0)
    assert data.y_train.min() >= 25 and data.y_train.max() <= 346  # diabetes targets' range
    assert data.y_mean == pytest.approx(float(data.y_train.mean()), rel=1e-6)
    assert data.y_std == pytest.approx(float(data.y_train.std()), rel=1e-6)
    assert data.y_mean != pytest.approx(float(data.y_test.mean()), rel=1e-6)
