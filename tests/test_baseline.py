"""Every run fits simple scikit-learn baselines on the trials' training rows, scores them on the
same validation and test rows, says when the deep search did not beat them, and saves the best
one as data that `automl predict` can use."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from automl.cli import main
from automl.data.base import PreparedData, Profile
from automl.final import baseline
from automl.final.predict import PredictError, model_file, predict_file
from tests.conftest import write_spec


@pytest.fixture(scope="module")
def weak_deep_run(tmp_path_factory):
    """A linearly separable table where the deep search cannot learn: one epoch at a tiny learning rate."""
    folder = tmp_path_factory.mktemp("baseline")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 4))
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["label"] = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    frame.to_csv(folder / "table.csv", index=False)
    spec = write_spec(folder, data={"source": "csv", "path": "table.csv", "target": "label"},
                      budget={"max_trials": 1, "max_epochs": 1, "patience": None}, refit=False,
                      ensemble={"enabled": False},
                      families={"include": ["mlp"], "overrides": {
                          "batch_size": {"choices": [32]}, "optimizer": {"choices": ["sgd"]},
                          "lr": {"low": 1e-6, "high": 2e-6}, "mlp.width": {"low": 16, "high": 16}}})
    result = CliRunner().invoke(main, ["run", str(spec), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder, spec, result.output


def test_the_run_reports_the_baselines_scores_and_that_the_deep_model_lost(weak_deep_run):
    folder, _, output = weak_deep_run
    results = json.loads((folder / "run" / "results.json").read_text())
    entries = {m["name"]: m for m in results["baseline"]["models"]}
    linear = entries["logistic_regression"]
    assert linear["val"]["accuracy"] >= 0.9 and linear["test"]["accuracy"] >= 0.9 and linear["saved"]
    boosting = entries["gradient_boosting"]
    assert 0 <= boosting["test"]["accuracy"] <= 1 and not boosting["saved"] and "pickle" in boosting["note"]
    assert results["final_val"]["accuracy"] < results["baseline"]["models"][0]["val"]["accuracy"]
    assert results["baseline"]["deep_beats_baseline"] is False and results["baseline"]["used_by_predict"]
    message = results["baseline"]["message"]
    assert "did not beat the baseline" in message
    # the run's last lines: the model predict uses, and the verdict
    assert output.startswith("automl predict uses the baseline logistic regression: test accuracy") or \
        "\nautoml predict uses the baseline logistic regression: test accuracy" in output
    assert "baseline logistic regression: test accuracy" in output and "did not beat it on validation" in output
    report = (folder / "run" / "report.md").read_text()
    assert message in report and "Baseline: a simple model on the same split" in report


def test_predict_uses_the_baseline_it_saved_with_the_training_preprocessing(weak_deep_run):
    from sklearn.linear_model import LogisticRegression

    from automl.agent import make_plan
    from automl.data.inputs import read_inputs
    from automl.spec import load_spec

    folder, spec_path, _ = weak_deep_run
    run_dir = folder / "run"
    out = folder / "p.csv"
    done = CliRunner().invoke(main, ["predict", str(run_dir), str(folder / "table.csv"), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "model: the baseline (logistic regression, better on validation" in done.output
    table = pd.read_csv(out)
    # the same model, fit here by scikit-learn on the run's training rows
    spec = load_spec(spec_path)
    data = make_plan(spec).data
    expected = LogisticRegression(max_iter=baseline.LINEAR_ITERATIONS).fit(data.X_train, data.y_train)
    features, _ = read_inputs(spec.data.model_dump(mode="json"), folder / "table.csv")
    proba = expected.predict_proba(data.preprocessor.transform(features))
    np.testing.assert_allclose(table[["proba_no", "proba_yes"]].to_numpy(), proba, atol=1e-6)
    single = predict_file(run_dir, folder / "table.csv", "single")
    assert single.attrs["model"] == "the best single model"
    assert not np.allclose(single["proba_yes"], table["proba_yes"])


def test_the_saved_baseline_loads_without_pickle(weak_deep_run):
    folder, _, _ = weak_deep_run
    facts = json.loads((folder / "run" / "model" / "model.json").read_text())
    assert facts["default"] == "baseline" and facts["baseline"]["kind"] == "linear"
    with np.load(folder / "run" / "model" / facts["files"]["baseline"], allow_pickle=False) as saved:
        assert sorted(saved.files) == ["classes", "coef", "intercept"]
        assert saved["coef"].shape == (1, 4) and saved["classes"].tolist() == [0, 1]


def test_predict_asks_for_a_baseline_the_run_did_not_save(tmp_path):
    with pytest.raises(PredictError, match="saved no baseline"):
        model_file(tmp_path, {"files": {"torchscript": "model.pt"}}, "baseline")


# -- the baselines on prepared data, without a search ------------------------------------------
def prepared(modality: str, X: np.ndarray, y: np.ndarray, task: str = "classification", n_classes: int = 2,
             vocab_size: int | None = None, folds=None) -> PreparedData:
    n = len(X)
    train, val = (slice(0, n * 6 // 10), slice(n * 6 // 10, n * 8 // 10)) if folds is None else \
        (slice(0, n * 8 // 10), slice(0, 0))
    test = slice(n * 8 // 10, n)
    profile = Profile("test", modality, task, "y", n, 0, 0, 0, tuple(X.shape[1:]), 1,
                      n_classes=n_classes if task == "classification" else None, vocab_size=vocab_size)
    return PreparedData(X[train], y[train], X[val], y[val], X[test], y[test], profile, folds=folds)


def waves(n: int = 120, length: int = 16, classes: int = 2):
    rng = np.random.default_rng(1)
    y = np.arange(n) % classes
    t = np.linspace(0, 1, length)
    X = np.stack([np.sin(2 * np.pi * (1 + 3 * k) * t) for k in y])[..., None] + rng.normal(0, 0.3, (n, length, 1))
    return X.astype(np.float32), y


def test_sequences_get_a_nearest_neighbour_that_predicts_like_scikit_learns():
    from sklearn.neighbors import KNeighborsClassifier

    X, y = waves()
    data = prepared("sequence", X, y)
    document, fitted = baseline.fit_baselines(data, ("accuracy",), seed=0)
    assert [m["name"] for m in document["models"]] == ["rocket_ridge", "nearest_neighbour", "logistic_regression"]
    flat = X.reshape(len(X), -1)
    knn = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(flat[:72], y[:72])
    nearest = document["models"][1]
    assert nearest["test"]["accuracy"] == pytest.approx(knn.score(flat[96:], y[96:]))
    assert nearest["val"]["accuracy"] == pytest.approx(knn.score(flat[72:96], y[72:96]))
    assert fitted is not None and document["saved"] == fitted.candidate.name


def test_sequences_get_rocket_with_a_ridge_that_predict_applies_in_chunks(tmp_path, monkeypatch):
    from sklearn.linear_model import RidgeClassifierCV

    X, y = waves(90, length=20, classes=3)  # three classes: one decision function per class
    data = prepared("sequence", X, y, n_classes=3)
    document, fitted = baseline.fit_baselines(data, ("accuracy",), seed=0, refit=True)
    rocket = next(m for m in document["models"] if m["name"] == "rocket_ridge")
    assert rocket["rows"] == 72 and "refit on the training and validation rows" in rocket["note"]
    features = baseline.rocket_features(X)
    assert len(features) == 90 and features.shape[1] >= 2 * baseline.ROCKET_KERNELS
    # the validation score is the model fit on the training rows alone: scikit-learn's own pipeline
    mean, scale = features[:54].mean(0), features[:54].std(0)
    scale[scale == 0] = 1
    reference = RidgeClassifierCV(alphas=baseline.RIDGE_ALPHAS).fit((features[:54] - mean) / scale, y[:54])
    assert rocket["val"]["accuracy"] == pytest.approx(reference.score((features[54:72] - mean) / scale, y[54:72]))
    assert rocket["test"]["accuracy"] >= 0.9
    # saved as arrays, applied by `automl predict` in chunks to the same predictions
    document["used_by_predict"] = False
    document["saved"] = "rocket_ridge"
    fitted = baseline._fit(baseline.Candidate("rocket_ridge", "linear", "rocket"), features[:72], y[:72],
                           "classification", 0)
    (tmp_path / "model.json").write_text(json.dumps({"files": {}, "task": "classification"}))
    baseline.save_baseline(document, fitted, data, tmp_path)
    facts = json.loads((tmp_path / "model.json").read_text())
    monkeypatch.setattr(baseline, "PREDICT_CHUNK", 7)
    chunked = baseline.baseline_predictions(tmp_path, facts, X[72:]).argmax(1)
    assert (chunked == fitted.outputs(features[72:], "classification", 3).argmax(1)).all()
    assert (chunked == y[72:]).mean() == pytest.approx(rocket["test"]["accuracy"])


def test_text_gets_a_linear_model_on_word_counts_and_big_images_none():
    rng = np.random.default_rng(2)
    y = np.arange(100) % 2
    ids = rng.integers(2, 10, size=(100, 6))
    ids[:, 0] = 10 + y  # one word gives the class away
    ids[::3, -2:] = 0  # padding
    document, fitted = baseline.fit_baselines(prepared("text", ids, y, vocab_size=12), ("accuracy",), seed=0)
    assert document["models"][0]["name"] == "logistic_regression"
    assert document["models"][0]["test"]["accuracy"] == 1.0
    words = baseline.model_inputs(ids[:2], "words", 12).toarray()
    assert words[0, 10 + y[0]] == pytest.approx(np.log(2)) and words[:, 0].sum() == 0  # padding is no word
    big = prepared("image", np.zeros((20, 3, 64, 64), np.float32), np.arange(20) % 2)
    document, fitted = baseline.fit_baselines(big, ("accuracy",), seed=0)
    assert document["models"] == [] and fitted is None and "12288 values per sample" in document["note"]


def test_regression_gets_ridge_and_the_rows_are_capped(monkeypatch):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 3).astype(np.float32)
    data = prepared("tabular", X, y, task="regression")
    monkeypatch.setattr(baseline, "MAX_ROWS", 50)
    document, fitted = baseline.fit_baselines(data, ("rmse", "r2"), seed=0)
    ridge = document["models"][0]
    assert ridge["name"] == "ridge" and ridge["rows"] == 50 and "random 50 of the 120" in ridge["note"]
    assert fitted.candidate.name == "ridge" and document["saved"] == "ridge"
    assert ridge["val"]["rmse"] < 0.2  # y is linear in X: ridge all but fits it
    predicted = baseline.outputs("linear", fitted.arrays, data.X_test, "regression", 0)
    assert np.sqrt(np.mean((predicted - data.y_test) ** 2)) == pytest.approx(ridge["test"]["rmse"])


def test_cross_validation_scores_the_baseline_on_the_same_folds():
    X, y = waves(100)
    folds = tuple((np.setdiff1d(np.arange(80), held), held) for held in np.array_split(np.arange(80), 4))
    document, _ = baseline.fit_baselines(prepared("sequence", X, y, folds=folds), ("accuracy",), seed=0)
    from sklearn.neighbors import KNeighborsClassifier

    flat = X.reshape(len(X), -1)
    per_fold = [KNeighborsClassifier(1, algorithm="brute").fit(flat[tr], y[tr]).score(flat[va], y[va])
                for tr, va in folds]
    assert document["models"][1]["val"]["accuracy"] == pytest.approx(np.mean(per_fold))
    assert "the mean over the 4 folds" in document["models"][1]["note"]


@pytest.mark.parametrize("metric, deep, saved_val, predict_val, beats, used", [
    ("accuracy", 0.90, 0.95, 0.90, False, True),
    ("accuracy", 0.95, 0.95, 0.95, False, True),  # a tie: not beaten, and predict takes the simpler model
    ("accuracy", 0.97, 0.95, 0.97, True, False),
    ("rmse", 2.0, 3.0, 2.0, True, False),  # lower is better
    ("rmse", 4.0, 3.0, 3.5, False, True),
])
def test_the_verdict_follows_the_metrics_direction(metric, deep, saved_val, predict_val, beats, used):
    document = {"models": [{"name": "ridge", "title": "ridge regression", "val": {metric: saved_val}},
                           {"name": "gradient_boosting", "title": "boosting", "val": {metric: float("nan")}}],
                "saved": "ridge"}
    baseline.judge(document, metric, deep, predict_val)
    assert document["best"] == "ridge"
    assert document["deep_beats_baseline"] is beats and document["used_by_predict"] is used
    assert ("did not beat the baseline" in document["message"]) is not beats
    assert ("`automl predict` uses the baseline" in document["message"]) is used
