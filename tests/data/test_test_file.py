"""data.test_path: a data set's own test file is the test set, read like the training file."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from automl.cli import main
from automl.data.loaders import load_data
from automl.errors import DataError
from automl.spec import CsvData, NpzData, SplitSpec, load_spec, spec_fingerprint


def table(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return pd.DataFrame({"a": x[:, 0] + shift, "b": x[:, 1], "colour": rng.choice(["red", "blue"], n),
                         "label": np.where(x[:, 0] + x[:, 1] > 0, "up", "down")})


def csv_pair(folder, n_train=150, n_test=37, shift=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    train, test = table(n_train, 0), table(n_test, 1, shift)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return folder / "train.csv", folder / "test.csv", test


def test_the_test_file_is_the_test_set_and_the_preprocessor_never_sees_it(tmp_path):
    train_path, test_path, test = csv_pair(tmp_path, shift=100.0)
    source = CsvData(source="csv", path=train_path, test_path=test_path, target="label")
    data = load_data(source, SplitSpec(test=0.3), task=None, seed=0)
    p = data.profile
    assert (p.n_train + p.n_val, p.n_test) == (150, 37)  # validation from the training file, no share held out
    assert p.test_source == str(test_path) and "test rows: 37 from test.csv (data.test_path)" in " ".join(p.notes)
    assert [p.class_names[k] for k in data.y_test] == list(test["label"])  # the file's rows, in its order
    # column 'a' is shifted by 100 in the test file only; scaled with training statistics it stays far off
    assert data.X_test[:, 0].min() > 50 and abs(data.X_train[:, 0].mean()) < 1

    folds = load_data(source, SplitSpec(cv_folds=3), task=None, seed=0)
    assert (folds.profile.n_train, folds.profile.n_val, folds.profile.n_test, len(folds.folds)) == (150, 0, 37, 3)


def test_an_npz_pair(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", X=rng.normal(size=(90, 4)), y=np.arange(90) % 3)
    test_y = np.arange(25) % 3
    np.savez(tmp_path / "test.npz", X=rng.normal(size=(25, 4)), y=test_y.astype(float))  # 1.0 is class "1"
    source = NpzData(source="npz", path=tmp_path / "train.npz", test_path=tmp_path / "test.npz")
    data = load_data(source, SplitSpec(), task="classification", seed=0)
    assert (data.profile.n_train + data.profile.n_val, data.profile.n_test) == (90, 25)
    np.testing.assert_array_equal(data.y_test, test_y)

    np.savez(tmp_path / "wide.npz", X=rng.normal(size=(25, 5)), y=test_y)
    with pytest.raises(DataError, match=r"wide\.npz: 'X' has shape \(25, 5\).*rows have shape \(4,\)"):
        load_data(source.model_copy(update={"test_path": tmp_path / "wide.npz"}), SplitSpec(), task=None, seed=0)


def write_spec(folder, data: dict, **extra) -> str:
    spec = {"name": "official", "data": data, "output": "run", "budget": {"max_trials": 1, "max_epochs": 1},
            "families": {"include": ["mlp"], "overrides": {"batch_size": {"choices": [32]}}},
            "refit": False, "ensemble": {"enabled": False}, "execution": {"isolation": "threads"}, **extra}
    (folder / "spec.json").write_text(json.dumps(spec))
    return str(folder / "spec.json")


@pytest.mark.parametrize("damage, expected", [
    (lambda f: f.drop(columns=["b"]), "no feature column 'b', which the training file has"),
    (lambda f: f.assign(label=["sideways"] * len(f)), "class 'sideways' (line 2, 37 in all) is not in the training"),
])
def test_a_test_file_that_does_not_match_is_a_data_error_naming_it(tmp_path, damage, expected):
    _, test_path, test = csv_pair(tmp_path / "data")
    damage(test).to_csv(test_path, index=False)
    spec = write_spec(tmp_path, {"source": "csv", "path": "data/train.csv", "test_path": "data/test.csv",
                                 "target": "label"})
    result = CliRunner().invoke(main, ["validate", spec])
    assert result.exit_code == 1 and str(test_path) in result.output and expected in result.output
    assert "Traceback" not in result.output


def test_a_relative_test_path_resolves_against_the_spec_folder_and_is_part_of_the_fingerprint(tmp_path):
    csv_pair(tmp_path / "data")
    (tmp_path / "specs").mkdir()
    spec_path = write_spec(tmp_path / "specs", {"source": "csv", "path": "../data/train.csv",
                                                "test_path": "../data/test.csv", "target": "label"})
    spec = load_spec(spec_path)
    assert spec.data.test_path == (tmp_path / "data" / "test.csv").resolve()
    result = CliRunner().invoke(main, ["validate", spec_path])  # run from the repository, not the spec's folder
    assert result.exit_code == 0, result.output
    assert f"test rows: 37 from {spec.data.test_path}" in result.output and "/ 37 test)" in result.output
    other = spec.model_copy(update={"data": spec.data.model_copy(update={"test_path": tmp_path / "other.csv"})})
    assert spec_fingerprint(spec)["data"] != spec_fingerprint(other)["data"]  # a resume on another test file is refused
    without = spec.model_copy(update={"data": spec.data.model_copy(update={"test_path": None})})
    assert "test_path" not in spec_fingerprint(without)["data"]  # runs made before the field existed still resume


def test_a_run_scores_its_models_on_the_test_file(tmp_path, one_torch_thread):
    from automl.final.predict import predict_file

    _, test_path, test = csv_pair(tmp_path / "data")
    spec = write_spec(tmp_path, {"source": "csv", "path": "data/train.csv", "test_path": "data/test.csv",
                                 "target": "label"}, metric="accuracy")
    result = CliRunner().invoke(main, ["run", spec, "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["profile"]["n_test"] == 37
    predicted = predict_file(tmp_path / "run", test_path)["prediction"]
    assert results["test"]["accuracy"] == pytest.approx(float(np.mean(predicted == test["label"])))


def test_init_with_a_test_file_writes_the_pair_and_no_test_share(tmp_path):
    train_path, test_path, _ = csv_pair(tmp_path / "data")
    out = tmp_path / "specs" / "spec.json"
    result = CliRunner().invoke(main, ["init", str(train_path), "--target", "label", "--test", str(test_path),
                                       "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["data"]["test_path"] == "../data/test.csv" and "test" not in document["split"]
    assert load_spec(out).data.test_path == test_path.resolve()
