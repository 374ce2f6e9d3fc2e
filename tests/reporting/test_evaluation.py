"""What a reviewer reads at the end of a run: honest wall times, scores named by their model,
and the test-split evaluation of the model `automl predict` uses, all from the store."""
from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from automl.cli import main
from automl.final.finish import MAX_MATRIX_CLASSES, MAX_STORED_ROWS, evaluation_document
from automl.reporting.evaluation import evaluation_section
from automl.reporting.report import write_report
from automl.store import TrialStore
from tests.conftest import write_spec
from tests.reporting.test_report import make_run

LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d ")  # logging's lines, beside what the CLI prints


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """One real `automl run` on iris (2 trials): its output, final document, results and report."""
    folder = tmp_path_factory.mktemp("iris")
    spec = write_spec(folder, budget={"max_trials": 2, "max_epochs": 3, "patience": None})
    result = CliRunner().invoke(main, ["run", str(spec), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = folder / "run"
    store = TrialStore(run_dir / TrialStore.FILENAME, readonly=True)
    final, run, profile = store.get_meta("final"), store.get_meta("run"), store.get_meta("profile")
    store.close()
    return SimpleNamespace(output=result.output, run_dir=run_dir, final=final, run=run, profile=profile,
                           results=json.loads((run_dir / "results.json").read_text()),
                           md=(run_dir / "report.md").read_text(), html=(run_dir / "report.html").read_text())


def test_the_run_duration_is_the_whole_run_and_its_phases_add_up(iris_run):
    final, timings = iris_run.final, iris_run.final["timings"]
    assert {"search", "refit", "ensemble", "baselines", "export", "other"} <= set(timings)
    assert sum(timings.values()) == pytest.approx(final["duration_s"])
    # the figure beside Started / Finished in the report is their difference, not the search alone
    assert final["duration_s"] == pytest.approx(final["finished_at"] - iris_run.run["started_at"], abs=0.5)
    assert final["duration_s"] > timings["search"] + timings["refit"] > timings["search"]
    assert iris_run.results["duration_s"] == final["duration_s"]
    assert iris_run.results["search_duration_s"] == timings["search"]
    assert "| Wall time | " in iris_run.md and f"refit {_duration(timings['refit'])}" in iris_run.md


def _duration(seconds: float) -> str:
    from automl.reporting.formatting import format_duration

    return format_duration(seconds)


def test_the_confusion_matrix_belongs_to_the_model_predict_uses(iris_run):
    evaluation, chosen = iris_run.final["evaluation"], iris_run.final["predict_model"]
    assert evaluation["name"] == chosen["name"] and evaluation["label"] == chosen["label"]
    assert evaluation["classes"] == ["setosa", "versicolor", "virginica"]
    matrix = np.array(evaluation["confusion"])
    n_test = iris_run.profile["n_test"]
    assert matrix.sum() == evaluation["rows"] == n_test
    assert np.trace(matrix) / n_test == pytest.approx(chosen["test"]["accuracy"])  # the same model's test score
    per_class = evaluation["per_class"]
    assert [per_class[c]["support"] for c in evaluation["classes"]] == list(matrix.sum(axis=1))
    assert per_class["accuracy"] == pytest.approx(chosen["test"]["accuracy"])


def test_the_report_shows_the_evaluation(iris_run):
    assert (iris_run.run_dir / "report_files" / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert "](report_files/confusion_matrix.png)" in iris_run.md
    assert "<h2>Evaluation on the test split</h2>" in iris_run.html
    support = int(iris_run.final["evaluation"]["per_class"]["setosa"]["support"])
    assert re.search(rf"\| setosa \| [\d.]+ \| [\d.]+ \| [\d.]+ \| {support} \|", iris_run.md)
    assert f"| Model `automl predict` uses | {iris_run.final['predict_model']['label']} |" in iris_run.md


def test_the_terminal_ends_with_a_short_headline(iris_run):
    printed = [line for line in iris_run.output.splitlines() if line.strip() and not LOG_LINE.match(line)]
    chosen, final = iris_run.final["predict_model"], iris_run.final
    assert len(printed) <= 4, printed
    assert printed[0] == f"automl predict uses {chosen['label']}: test accuracy {chosen['test']['accuracy']:.4f}"
    assert f"best trial {final['best_trial_id']} ({final['best_family']})" in printed[1]
    assert "wall time" in printed[2] and f"the run {_duration(final['duration_s'])}" in printed[2]
    assert printed[3] == f"report: {iris_run.run_dir / 'report.html'}"


def test_scores_are_labelled_with_their_model(tmp_path):
    """The best trial's table shows its own test score, not the refit's that `predict` uses."""
    store = make_run(tmp_path)
    final = store.get_meta("final")
    store.set_meta("final", {
        **final, "test": {"accuracy": 0.93}, "default_model": "refit",
        "models": {"search": {"trial_id": "t1", "val": {"accuracy": 0.95}, "test": {"accuracy": 0.8}},
                   "refit": {"epochs": 3, "rows": 1437, "test": {"accuracy": 0.93}}},
        "predict_model": {"name": "refit", "label": "trial t1 (mlp) refit on train+validation",
                          "test": {"accuracy": 0.93}}})
    store.close()
    md = write_report(tmp_path)["markdown"].read_text()
    assert "| Metric | Validation (trial t1) | Test (trial t1, as trained) |" in md
    assert "| accuracy | 0.95 | 0.8 |" in md
    assert "| Best configuration refit on train+validation: trial t1 (used by `automl predict`) | — | 0.93 |" in md
    assert "| Its test accuracy | 0.93 |" in md


def test_regression_pairs_are_sampled_beyond_the_cap():
    rows = MAX_STORED_ROWS + 2_000
    y = np.arange(rows, dtype=np.float64)
    data = SimpleNamespace(y_test=y, profile=SimpleNamespace(task="regression", n_classes=None, class_names=None))
    document = evaluation_document(data, y + 0.5, {"name": "search", "label": "trial 3"}, seed=0)
    assert document["rows"] == rows and document["stored"] == len(document["y_true"]) == MAX_STORED_ROWS
    assert len(set(document["y_true"])) == MAX_STORED_ROWS  # distinct rows, each with its own prediction
    assert np.allclose(np.subtract(document["y_pred"], document["y_true"]), 0.5)


def test_regression_report_plots_and_says_when_sampled(tmp_path):
    store = make_run(tmp_path, metric="rmse", direction="minimize")
    y_true = [1.0, 2.0, 3.0, 4.0]
    store.set_meta("final", {**store.get_meta("final"), "evaluation": {
        "name": "search", "label": "trial t2 (cnn) as trained in the search", "task": "regression", "rows": 20_000,
        "stored": 4, "y_true": y_true, "y_pred": [v + 0.5 for v in y_true]}})
    store.close()
    paths = write_report(tmp_path)
    for stem in ("predicted_vs_true", "residuals"):
        assert paths[stem].read_bytes().startswith(b"\x89PNG")
    md = paths["markdown"].read_text()
    assert "random 4 of the 20000 test rows" in md and "Mean residual 0.5" in md
    assert not (tmp_path / "report_files" / "confusion_matrix.png").exists()


def test_no_evaluation_mid_run(tmp_path):
    make_run(tmp_path, final=False).close()
    paths = write_report(tmp_path)
    assert "Evaluation on the test split" not in paths["markdown"].read_text()
    assert not {"confusion_matrix", "predicted_vs_true", "residuals"} & set(paths)


def test_many_classes_keep_the_per_class_table_without_a_matrix():
    n = MAX_MATRIX_CLASSES + 1
    y = np.arange(n).repeat(2)
    data = SimpleNamespace(y_test=y, profile=SimpleNamespace(task="classification", n_classes=n, class_names=None))
    document = evaluation_document(data, np.eye(n)[y], {"name": "search", "label": "trial 0"}, seed=0)
    assert document["confusion"] is None and document["per_class"]["accuracy"] == 1.0
    section = evaluation_section({"evaluation": document}, [])
    texts = [getattr(block, "text", "") for block in section.blocks]
    assert any(f"{n} classes are too many" in text for text in texts)
    table = next(block for block in section.blocks if block.kind == "table")
    assert len(table.rows) == n + 2 and table.rows[0] == ("0", "1", "1", "1", "2")
