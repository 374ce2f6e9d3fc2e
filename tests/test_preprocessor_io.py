"""The fitted preprocessor is saved as JSON and rebuilt with the same transform; a run
directory's pickle is never loaded."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from automl.data.inputs import read_inputs
from automl.data.loaders import load_data
from automl.errors import AutoMLError, DataError
from automl.final.preprocessor_io import UnknownPreprocessor, load_preprocessor, save_preprocessor
from automl.spec import BuiltinData, CsvData, ImageFolderData, NpzData, SplitSpec, TextCsvData

SPLIT = SplitSpec()


def mixed_csv(folder):
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame({"size": rng.normal(10, 3, n), "count": rng.integers(0, 9, n).astype(float),
                          "colour": rng.choice(["red", "green", "blue"], n), "shape": rng.choice(["a", "b"], n),
                          "y": rng.choice(["yes", "no"], n)})
    frame.loc[::7, "size"] = np.nan
    frame.loc[::5, "colour"] = None
    frame.to_csv(folder / "mixed.csv", index=False)
    return CsvData(source="csv", path=folder / "mixed.csv", target="y")


def tabular_npz(folder):
    rng = np.random.default_rng(1)
    np.savez(folder / "tab.npz", X=rng.normal(5, 2, (40, 3)), y=np.arange(40) % 2)
    return NpzData(source="npz", path=folder / "tab.npz")


def sequence_npz(folder):
    rng = np.random.default_rng(2)
    np.savez(folder / "seq.npz", X=rng.normal(1, 3, (40, 12, 2)).astype(np.float32), y=np.arange(40) % 2)
    return NpzData(source="npz", path=folder / "seq.npz", kind="sequence")


def image_npz(folder):
    rng = np.random.default_rng(3)
    np.savez(folder / "img.npz", X=rng.integers(0, 200, (30, 1, 6, 6)).astype(np.float32), y=np.arange(30) % 2)
    return NpzData(source="npz", path=folder / "img.npz")


def reviews_csv(folder):
    words = ["great", "awful", "the", "box", "was", "fine", "broken"]
    rng = np.random.default_rng(4)
    rows = [{"text": " ".join(rng.choice(words, rng.integers(2, 8))), "label": i % 2} for i in range(50)]
    rows[3]["text"] = ""
    pd.DataFrame(rows).to_csv(folder / "reviews.csv", index=False)
    return TextCsvData(source="text_csv", path=folder / "reviews.csv", text_column="text", target="label")


def image_folder(folder):
    rng = np.random.default_rng(5)
    for label in ("bright", "dark"):
        (folder / "shapes" / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (7, 9, 3)).astype(np.uint8)
            Image.fromarray(pixels, mode="RGB").save(folder / "shapes" / label / f"{i}.png")
    return ImageFolderData(source="images", path=folder / "shapes")


def builtin_digits(folder):
    return BuiltinData(source="builtin", name="sklearn:digits")


SOURCES = {"csv": mixed_csv, "npz tabular": tabular_npz, "sequence": sequence_npz, "npz image": image_npz,
           "text": reviews_csv, "image folder": image_folder, "digits": builtin_digits}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_the_reloaded_preprocessor_transforms_like_the_fitted_one(tmp_path, kind):
    source = SOURCES[kind](tmp_path)
    data = load_data(source, SPLIT, task=None, seed=0)
    path = source.path if hasattr(source, "path") else None
    if path is not None:
        features, _ = read_inputs(source.model_dump(mode="json"), path)
    else:
        features = data.X_test
    name = save_preprocessor(data.preprocessor, tmp_path)
    assert name == "preprocessor.json"
    assert json.loads((tmp_path / name).read_text())["format"] == "automl-preprocessor"
    loaded = load_preprocessor(tmp_path, name)
    assert type(loaded) is type(data.preprocessor)
    expected = data.preprocessor.transform(features)
    got = loaded.transform(features)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_unseen_categories_and_missing_cells_replay_the_same(tmp_path):
    source = mixed_csv(tmp_path)
    data = load_data(source, SPLIT, task=None, seed=0)
    new = pd.DataFrame({"size": ["", "3.5", "x"], "count": [1, None, 2], "colour": ["purple", None, "red"],
                        "shape": ["a", "c", " b "]})
    save_preprocessor(data.preprocessor, tmp_path)
    np.testing.assert_array_equal(load_preprocessor(tmp_path).transform(new), data.preprocessor.transform(new))


def test_none_round_trips_and_an_unknown_class_is_refused_not_pickled(tmp_path):
    save_preprocessor(None, tmp_path)
    assert load_preprocessor(tmp_path) is None

    class Custom:
        def transform(self, X):
            return X

    (tmp_path / "other").mkdir()
    with pytest.raises(UnknownPreprocessor, match="cannot be saved") as raised:
        save_preprocessor(Custom(), tmp_path / "other")
    assert "Custom" in str(raised.value) and "preprocessor.json" in str(raised.value)
    assert not list((tmp_path / "other").iterdir())  # nothing written, and no pickle instead


def test_a_damaged_document_names_the_file(tmp_path):
    (tmp_path / "preprocessor.json").write_text('{"format": "automl-preprocessor", "version": 1, '
                                                '"transform": {"type": "os.system"}}')
    with pytest.raises(DataError, match="preprocessor.json: a damaged preprocessor document"):
        load_preprocessor(tmp_path)


def test_predict_never_unpickles_a_run_directory(tmp_path, monkeypatch):
    """A run directory of the older layout: model.json points at preprocessor.pkl, a crafted pickle."""
    from automl.final.predict import predict_file

    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (model / "preprocessor.pkl").write_bytes(pickle.dumps(Payload()))
    (model / "model.json").write_text(json.dumps({
        "task": "classification", "class_names": ["a", "b"], "input_shape": [1], "input_dtype": "float32",
        "data": {"source": "npz", "path": "x.npz"}, "default": "single",
        "files": {"torchscript": "model.pt", "state_dict": "state_dict.pt", "preprocessor": "preprocessor.pkl"}}))

    def refuse(*args, **kwargs):
        raise AssertionError("predict unpickled a file of the run directory")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    np.savez(tmp_path / "new.npz", X=np.zeros((2, 1)))
    with pytest.raises(AutoMLError) as raised:
        predict_file(tmp_path / "run", tmp_path / "new.npz")
    message = str(raised.value)
    assert str(model / "preprocessor.pkl") in message and "not loaded" in message and "automl run" in message
    assert not marker.exists()
