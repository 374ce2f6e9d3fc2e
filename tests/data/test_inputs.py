"""read_inputs: new files read like the training data; the fitted preprocessor replays on them."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from automl.data.inputs import read_inputs
from automl.data.loaders import load_data
from automl.errors import DataError
from automl.spec import (
    BuiltinData, CsvData, ImageFolderData, NpzData, SequenceCsvData, SplitSpec, TextCsvData,
)

SPLIT = SplitSpec()


def write(path, text):
    path.write_text(text)
    return path


def sorted_rows(X: np.ndarray) -> np.ndarray:
    flat = X.reshape(len(X), -1)
    return flat[np.lexsort(flat.T[::-1])]


def assert_round_trip(source, path, expected_ids: int):
    """transform(read_inputs(training file)) gives the same rows load_data produced, as a set."""
    data = load_data(source, SPLIT, task=None, seed=0)
    features, ids = read_inputs(source.model_dump(mode="json"), path)
    assert len(ids) == expected_ids == len(set(ids))
    pre = pickle.loads(pickle.dumps(data.preprocessor))  # as `predict` gets it
    replayed = pre.transform(features)
    loaded = np.concatenate([data.X_train, data.X_val, data.X_test])
    assert replayed.shape == loaded.shape
    np.testing.assert_allclose(sorted_rows(np.asarray(replayed, dtype=np.float64)),
                               sorted_rows(loaded.astype(np.float64)), atol=1e-5)
    return features, ids


def test_builtin_from_csv_with_or_without_header_and_from_npz(tmp_path):
    source = {"source": "builtin", "name": "sklearn:iris"}
    bare = write(tmp_path / "bare.csv", "5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n")
    headed = write(tmp_path / "head.csv", "a,b,c,d\n5.1,3.5,1.4,0.2\n\n6.2,2.9,4.3,1.3\n")
    X, ids = read_inputs(source, bare)
    assert X.shape == (2, 4) and ids == ["line 1", "line 2"]
    X2, ids2 = read_inputs(source, headed)
    np.testing.assert_array_equal(X, X2)
    assert ids2 == ["line 2", "line 4"]
    np.savez(tmp_path / "x.npz", X=X)
    X3, ids3 = read_inputs(source, tmp_path / "x.npz")
    np.testing.assert_array_equal(X, X3)
    assert ids3 == ["row 0", "row 1"]


def test_builtin_round_trip_digits(tmp_path):
    from sklearn.datasets import load_digits

    np.savez(tmp_path / "digits.npz", X=load_digits().data.reshape(-1, 8, 8))
    assert_round_trip(BuiltinData(source="builtin", name="sklearn:digits"), tmp_path / "digits.npz", 1797)


def test_builtin_wrong_column_count(tmp_path):
    with pytest.raises(DataError) as info:
        read_inputs({"source": "builtin", "name": "sklearn:iris"}, write(tmp_path / "x.csv", "1,2,3\n"))
    assert "x.csv" in str(info.value) and "3 feature column(s)" in str(info.value) and "4" in str(info.value)


def test_builtin_non_number_names_line_and_column(tmp_path):
    with pytest.raises(DataError) as info:
        read_inputs({"source": "builtin", "name": "sklearn:iris"}, write(tmp_path / "x.csv", "1,2,3,4\n1,2,x,4\n"))
    assert "x.csv" in str(info.value) and "line 2" in str(info.value) and "'x'" in str(info.value)


def test_csv_round_trip_without_the_target(tmp_path):
    rows = "\n".join(f"{i * 0.5},{'abc'[i % 3]},{i % 2}" for i in range(30))
    path = write(tmp_path / "train.csv", "x,colour,label\n" + rows + "\n")
    source = CsvData(source="csv", path=path, target="label")
    assert_round_trip(source, path, 30)
    new = write(tmp_path / "new.csv", "colour,x\nb,1.5\n\nz,\n")
    frame, ids = read_inputs(source.model_dump(mode="json"), new)
    assert ids == ["line 2", "line 4"]
    data = load_data(source, SPLIT, task=None, seed=0)
    assert data.preprocessor.transform(frame).shape == (2, data.profile.input_shape[0])


def test_npz_round_trip(tmp_path):
    path = tmp_path / "seq.npz"
    np.savez(path, X=np.random.default_rng(0).normal(size=(40, 9)), y=np.arange(40) % 2)
    _, ids = assert_round_trip(NpzData(source="npz", path=path, kind="sequence"), path, 40)
    assert ids[:2] == ["row 0", "row 1"]


def test_npz_missing_key(tmp_path):
    np.savez(tmp_path / "new.npz", features=np.zeros((2, 2)))
    with pytest.raises(DataError) as info:
        read_inputs({"source": "npz", "path": "train.npz", "x_key": "X", "y_key": "y", "kind": "auto"},
                    tmp_path / "new.npz")
    assert "new.npz" in str(info.value) and "'X'" in str(info.value) and "'features'" in str(info.value)


def save_png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (6, 6)).astype(np.uint8)).save(path)


def test_images_round_trip_and_flat_or_single_inputs(tmp_path):
    root = tmp_path / "imgs"
    for i in range(12):
        save_png(root / ("cat" if i % 2 else "dog") / f"{i}.png", i)
    source = ImageFolderData(source="images", path=root)
    _, ids = assert_round_trip(source, root, 12)
    assert "cat/1.png" in ids
    flat = tmp_path / "new"
    save_png(flat / "a.png", 50)
    save_png(flat / "deep" / "b.jpeg", 51)
    features, ids = read_inputs(source.model_dump(mode="json"), flat)
    assert ids == ["a.png", "deep/b.jpeg"]
    features, ids = read_inputs(source.model_dump(mode="json"), flat / "a.png")
    assert ids == ["a.png"] and len(features) == 1


def test_images_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        read_inputs({"source": "images", "path": "x", "image_size": None, "color": "auto"}, tmp_path / "empty")
    assert "empty" in str(info.value) and "no PNG or JPEG" in str(info.value)


def test_sequence_wide_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rows = "\n".join(f"{i % 2}," + ",".join(f"{v:.3f}" for v in rng.normal(size=4)) for i in range(30))
    path = write(tmp_path / "wide.csv", "label,a,b,c,d\n" + rows + "\n")
    assert_round_trip(SequenceCsvData(source="sequence_csv", path=path, target="label"), path, 30)


def test_sequence_long_round_trip_ids_are_sequence_ids(tmp_path):
    lines = ["id,t,v,label"] + [f"s{i},{t},{i * t * 0.1},{i % 2}" for i in range(30) for t in range(2 + i % 3)]
    path = write(tmp_path / "long.csv", "\n".join(lines) + "\n")
    source = SequenceCsvData(source="sequence_csv", path=path, target="label", layout="long", id_column="id",
                             time_column="t")
    _, ids = assert_round_trip(source, path, 30)
    assert ids[:3] == ["s0", "s1", "s2"]
    with pytest.raises(DataError) as info:
        read_inputs(source.model_dump(mode="json"), write(tmp_path / "new.csv", "seq,t,v\na,1,2\n"))
    assert "new.csv" in str(info.value) and "id column 'id'" in str(info.value)


def test_text_round_trip_and_missing_text_column(tmp_path):
    rows = "\n".join(f"word{i % 7} and more{i % 3},{i % 2}" for i in range(30))
    path = write(tmp_path / "text.csv", "review,label\n" + rows + "\n")
    source = TextCsvData(source="text_csv", path=path, text_column="review", target="label")
    texts, ids = assert_round_trip(source, path, 30)
    assert ids[0] == "line 2" and texts[0] == "word0 and more0"
    with pytest.raises(DataError) as info:
        read_inputs(source.model_dump(mode="json"), write(tmp_path / "new.csv", "body\nhello\n"))
    assert "new.csv" in str(info.value) and "text column 'review'" in str(info.value)
